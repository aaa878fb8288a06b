//! TLS termination for the sandbox: a rustls server config (aws-lc-rs) that requests but does
//! not require client certificates and accepts any well-formed one (self-signed included), so
//! the application sees every peer certificate; and [`PeerCert`], what a request knows about
//! its peer (DER, `x5t#S256`, whether it chains to the configured client CA, subject, SANs).
//! Pure apart from the clock read during chain checks; no network I/O.

use std::sync::Arc;

use anyhow::Context as _;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
    client::danger::HandshakeSignatureValid,
    crypto::{CryptoProvider, WebPkiSupportedAlgorithms},
    server::{
        WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
};
use rustls_pki_types::{CertificateDer, UnixTime, pem::PemObject as _};
use sha2::{Digest as _, Sha256};

use super::{dn, pki::ServerPki};

/// The aws-lc-rs provider, always selected explicitly.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// `x5t#S256`: unpadded base64url SHA-256 of a certificate's DER.
pub fn x5t_s256(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(der))
}

/// Requests a client certificate, accepts any well-formed one, verifies handshake signatures
/// with the provider's real algorithms.
#[derive(Debug)]
struct RequestAnyClientCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for RequestAnyClientCert {
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
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match x509_parser::parse_x509_certificate(end_entity) {
            Ok(([], _)) => Ok(ClientCertVerified::assertion()),
            _ => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Builds the server config: TLS 1.2+, serving chain from `pki`, client certs requested.
pub fn server_config(pki: &ServerPki) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = provider();
    let verifier = Arc::new(RequestAnyClientCert {
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("tls protocol versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(pki.chain.clone(), pki.key.clone_key())
        .context("serving certificate")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Stateless session tickets, as production servers use: TLS 1.3 resumption then works for
    // any number of clients (the default stateful cache holds 256 sessions).
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().context("session ticketer")?;
    Ok(Arc::new(config))
}

/// Checks whether a client certificate chains to the configured client CA bundle.
#[derive(Clone)]
pub struct ClientCaCheck {
    verifier: Arc<dyn ClientCertVerifier>,
}

impl ClientCaCheck {
    /// Builds the check from a PEM bundle of CA certificates.
    pub fn from_pem(pem: &str) -> anyhow::Result<Self> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots
                .add(cert.context("parse client CA pem")?)
                .context("add client CA")?;
        }
        anyhow::ensure!(!roots.is_empty(), "client CA bundle holds no certificate");
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .context("build client CA verifier")?;
        Ok(Self { verifier })
    }

    /// True when `end_entity` (with `intermediates`) chains to the bundle now.
    pub fn chains(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> bool {
        self.verifier
            .verify_client_cert(end_entity, intermediates, UnixTime::now())
            .is_ok()
    }
}

/// Subject alternative names of a peer certificate, by kind.
#[derive(Clone, Debug, Default)]
pub struct SubjectAltNames {
    /// `dNSName` entries.
    pub dns: Vec<String>,
    /// `uniformResourceIdentifier` entries.
    pub uri: Vec<String>,
    /// `iPAddress` entries, rendered.
    pub ip: Vec<String>,
    /// `rfc822Name` entries.
    pub email: Vec<String>,
}

/// What a request knows about the certificate its TLS peer presented.
#[derive(Clone, Debug)]
pub struct PeerCert {
    /// DER of the end-entity certificate.
    pub der: Arc<Vec<u8>>,
    /// `x5t#S256` of it.
    pub x5t_s256: String,
    /// Whether it chains to the configured client CA (false when none is configured).
    pub chains_to_client_ca: bool,
    /// Subject attributes, normalised.
    pub subject: Vec<dn::Attribute>,
    /// Subject alternative names.
    pub sans: SubjectAltNames,
}

/// The peer certificate of a connection, if any; inserted into every request's extensions.
#[derive(Clone, Debug, Default)]
pub struct Peer(pub Option<Arc<PeerCert>>);

impl PeerCert {
    /// Inspects a presented chain (end entity first).
    pub fn inspect(
        chain: &[CertificateDer<'_>],
        client_ca: Option<&ClientCaCheck>,
    ) -> Option<Self> {
        let (end_entity, intermediates) = chain.split_first()?;
        let (_, parsed) = x509_parser::parse_x509_certificate(end_entity).ok()?;
        let mut sans = SubjectAltNames::default();
        if let Ok(Some(ext)) = parsed.subject_alternative_name() {
            use x509_parser::extensions::GeneralName;
            for name in &ext.value.general_names {
                match name {
                    GeneralName::DNSName(v) => sans.dns.push((*v).to_string()),
                    GeneralName::URI(v) => sans.uri.push((*v).to_string()),
                    GeneralName::RFC822Name(v) => sans.email.push((*v).to_string()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = render_ip(bytes) {
                            sans.ip.push(ip);
                        }
                    }
                    _ => {}
                }
            }
        }
        Some(Self {
            der: Arc::new(end_entity.to_vec()),
            x5t_s256: x5t_s256(end_entity),
            chains_to_client_ca: client_ca.is_some_and(|ca| ca.chains(end_entity, intermediates)),
            subject: dn::from_x509_name(parsed.subject()),
            sans,
        })
    }
}

fn render_ip(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => {
            let octets: [u8; 4] = bytes.try_into().ok()?;
            Some(std::net::Ipv4Addr::from(octets).to_string())
        }
        16 => {
            let octets: [u8; 16] = bytes.try_into().ok()?;
            Some(std::net::Ipv6Addr::from(octets).to_string())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{TestCa, self_signed_client};
    use rcgen::DnType;

    #[test]
    fn ca_issued_certificate_chains_and_self_signed_look_alike_does_not() -> anyhow::Result<()> {
        let ca = TestCa::new("client ca")?;
        let check = ClientCaCheck::from_pem(&ca.cert_pem)?;
        let subject = [
            (DnType::CommonName, "tpp"),
            (DnType::OrganizationName, "Org"),
        ];
        let issued = ca.issue_client(&subject)?;
        let look_alike = self_signed_client(&subject)?;
        let issued_peer = PeerCert::inspect(std::slice::from_ref(&issued.cert_der), Some(&check));
        let look_alike_peer =
            PeerCert::inspect(std::slice::from_ref(&look_alike.cert_der), Some(&check));
        assert!(issued_peer.as_ref().is_some_and(|p| p.chains_to_client_ca));
        assert!(
            look_alike_peer
                .as_ref()
                .is_some_and(|p| !p.chains_to_client_ca)
        );
        assert_eq!(
            issued_peer.map(|p| p.subject),
            look_alike_peer.map(|p| p.subject),
            "both carry the same subject"
        );
        Ok(())
    }

    #[test]
    fn thumbprint_is_unpadded_base64url_of_sha256() {
        let t = x5t_s256(b"abc");
        assert_eq!(t, "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
    }
}
