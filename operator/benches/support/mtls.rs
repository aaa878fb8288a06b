//! In-memory TLS 1.3 mTLS handshakes for benchmarks: a rustls `ClientConnection` and
//! `ServerConnection` (aws-lc-rs, set explicitly) pump bytes through `Vec`s, and only the time
//! spent in client-side calls is counted. Also the client side's physical floor: the key
//! exchange the handshake negotiated, two ECDSA P-256 verifications (the server's chain and its
//! CertificateVerify) and the client's CertificateVerify signature. No I/O.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _,
    RSA_PSS_SHA256, RsaKeyPair, UnparsedPublicKey,
};
use rustls::client::Resumption;
use rustls::crypto::{CryptoProvider, SupportedKxGroup, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, DistinguishedName, HandshakeKind,
    ServerConfig, ServerConnection, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// The aws-lc-rs provider, always explicit.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Requests any client certificate and checks handshake signatures (as the sandbox AS does).
#[derive(Debug)]
struct AnyClientCert(WebPkiSupportedAlgorithms);

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// A server like the sandbox AS: P-256 CA, P-256 `localhost` leaf, client certs requested.
pub struct Server {
    /// The server configuration (stateful session cache and TLS 1.3 tickets: rustls defaults).
    pub config: Arc<ServerConfig>,
    /// PEM of the CA, the client's only root.
    pub ca_pem: String,
}

/// Builds the server.
pub fn server() -> Server {
    let ca = tpp_testkit::pki::TestCa::new("bench CA").expect("ca");
    let leaf = ca.server_cert("localhost", &[]).expect("leaf cert");
    let p = provider();
    let verifier = Arc::new(AnyClientCert(p.signature_verification_algorithms));
    let key = leaf.private_key();
    let config = ServerConfig::builder_with_provider(p)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![leaf.cert_der.clone(), ca.cert_der()], key)
        .expect("server config");
    Server {
        config: Arc::new(config),
        ca_pem: ca.cert_pem,
    }
}

/// A client configuration with `chain`/`key` as its certificate; `resume` keeps the default
/// in-memory session cache, else resumption is off.
pub fn client_config(
    ca_pem: &str,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    resume: bool,
) -> Arc<ClientConfig> {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("ca pem")).expect("ca root");
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client config");
    if !resume {
        config.resumption = Resumption::disabled();
    }
    Arc::new(config)
}

fn feed_server(server: &mut ServerConnection, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        server.read_tls(&mut bytes).expect("server read");
        server.process_new_packets().expect("server process");
    }
}

/// One handshake (plus the session tickets that follow it); returns the time spent in
/// client-side calls and how the handshake went.
pub fn handshake(
    client: &Arc<ClientConfig>,
    server: &Arc<ServerConfig>,
) -> (Duration, HandshakeKind) {
    let start = Instant::now();
    handshake_timed(client, server, move || start.elapsed())
}

/// [`handshake`] timed by `clock` (a monotonic reading: wall time since some start, or the
/// thread's CPU time).
pub fn handshake_timed(
    client: &Arc<ClientConfig>,
    server: &Arc<ServerConfig>,
    clock: impl Fn() -> Duration,
) -> (Duration, HandshakeKind) {
    let name = ServerName::try_from("localhost").expect("name");
    let start = clock();
    let mut c = ClientConnection::new(client.clone(), name).expect("client conn");
    let mut client_time = clock().saturating_sub(start);
    let mut s = ServerConnection::new(server.clone()).expect("server conn");
    let mut buf = Vec::with_capacity(8192);
    for _ in 0..16 {
        buf.clear();
        let t = clock();
        while c.wants_write() {
            c.write_tls(&mut buf).expect("client write");
        }
        client_time += clock().saturating_sub(t);
        let sent = !buf.is_empty();
        feed_server(&mut s, &buf);
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf).expect("server write");
        }
        let received = !buf.is_empty();
        let t = clock();
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).expect("client read");
            c.process_new_packets().expect("client process");
        }
        client_time += clock().saturating_sub(t);
        if !sent && !received && !c.is_handshaking() {
            break;
        }
    }
    assert!(
        !c.is_handshaking() && !s.is_handshaking(),
        "handshake did not finish"
    );
    let kind = c.handshake_kind().expect("handshake kind");
    black_box(&c);
    (client_time, kind)
}

/// The client side's share of a handshake's cryptography, measured with aws-lc-rs directly.
pub struct Floor {
    group: &'static dyn SupportedKxGroup,
    verify_key: Vec<u8>,
    verify_msg: Vec<u8>,
    verify_sig: Vec<u8>,
    rng: SystemRandom,
    rsa: Option<RsaKeyPair>,
    ecdsa: Option<EcdsaKeyPair>,
}

impl Floor {
    /// The floor for a client certificate key `client_pkcs8` (RSA or P-256) and the key
    /// exchange group `client` negotiates with `server`.
    pub fn new(
        client: &Arc<ClientConfig>,
        server: &Arc<ServerConfig>,
        client_pkcs8: &[u8],
    ) -> Self {
        let name = ServerName::try_from("localhost").expect("name");
        let mut c = ClientConnection::new(client.clone(), name).expect("client conn");
        let mut s = ServerConnection::new(server.clone()).expect("server conn");
        let mut buf = Vec::new();
        while c.negotiated_key_exchange_group().is_none() {
            buf.clear();
            while c.wants_write() {
                c.write_tls(&mut buf).expect("write");
            }
            feed_server(&mut s, &buf);
            buf.clear();
            while s.wants_write() {
                s.write_tls(&mut buf).expect("write");
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).expect("read");
                c.process_new_packets().expect("process");
            }
        }
        let group = c.negotiated_key_exchange_group().expect("group");
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("p256");
        let server_key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref())
            .expect("p256");
        let verify_msg = vec![0x20; 130];
        let verify_sig = server_key
            .sign(&rng, &verify_msg)
            .expect("sign")
            .as_ref()
            .to_vec();
        let rsa = RsaKeyPair::from_pkcs8(client_pkcs8).ok();
        let ecdsa = match rsa {
            Some(_) => None,
            None => EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, client_pkcs8).ok(),
        };
        Self {
            group,
            verify_key: server_key.public_key().as_ref().to_vec(),
            verify_msg,
            verify_sig,
            rng,
            rsa,
            ecdsa,
        }
    }

    /// Client-side key exchange only (the floor of a resumed handshake).
    pub fn key_exchange(&self) -> Duration {
        let t = Instant::now();
        let kx = self.group.start().expect("kx start");
        let mut client = t.elapsed();
        let server = self
            .group
            .start_and_complete(kx.pub_key())
            .expect("server kx");
        let t = Instant::now();
        black_box(kx.complete(&server.pub_key).expect("kx complete"));
        client += t.elapsed();
        client
    }

    /// Key exchange + two P-256 verifications + the client's CertificateVerify signature.
    pub fn full(&self) -> Duration {
        let kx = self.key_exchange();
        let t = Instant::now();
        let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.verify_key);
        for _ in 0..2 {
            key.verify(black_box(&self.verify_msg), &self.verify_sig)
                .expect("verify");
        }
        let mut out = [0u8; 512];
        if let Some(rsa) = &self.rsa {
            rsa.sign(
                &RSA_PSS_SHA256,
                &self.rng,
                &self.verify_msg,
                &mut out[..rsa.public_modulus_len()],
            )
            .expect("rsa sign");
        } else if let Some(ec) = &self.ecdsa {
            black_box(ec.sign(&self.rng, &self.verify_msg).expect("ec sign"));
        }
        kx + t.elapsed()
    }
}

/// Runs `f` `iters` times and sums the durations it reports (for `iter_custom`).
pub fn sum(iters: u64, mut f: impl FnMut() -> Duration) -> Duration {
    (0..iters).map(|_| f()).sum()
}
