//! A throw-away PKI for one test run: a test CA ([`TestCa`]) that issues loopback serving
//! certificates (`localhost`, 127.0.0.1, ::1) and client certificates (EKU clientAuth, any
//! subject), self-signed look-alikes, and a ServiceAccount signing key. Pure computation with
//! rcgen (aws-lc-rs); no I/O.

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest as _, Sha256};

/// A certificate and its PKCS#8 private key, in PEM and DER.
#[derive(Clone)]
pub struct CertPair {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The PKCS#8 private key, PEM.
    pub key_pem: String,
    /// The certificate, DER.
    pub cert_der: CertificateDer<'static>,
    /// The PKCS#8 private key, DER.
    pub key_der: Vec<u8>,
}

impl std::fmt::Debug for CertPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertPair")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

impl CertPair {
    fn new(cert_pem: String, cert_der: CertificateDer<'static>, key: &KeyPair) -> Self {
        Self {
            cert_pem,
            key_pem: key.serialize_pem(),
            cert_der,
            key_der: key.serialize_der(),
        }
    }

    /// A pair from a PEM certificate and a PEM PKCS#8 key (e.g. read back from a Secret).
    pub fn from_pem(cert_pem: String, key_pem: String) -> anyhow::Result<Self> {
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("parse the certificate PEM: {e:?}"))?;
        let key_der = PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|_| anyhow::anyhow!("parse the PKCS#8 key PEM"))?
            .secret_pkcs8_der()
            .to_vec();
        Ok(Self {
            cert_pem,
            key_pem,
            cert_der,
            key_der,
        })
    }

    /// The private key as rustls takes it.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// `x5t#S256` of the certificate: unpadded base64url SHA-256 of the DER (RFC 8705).
    pub fn x5t_s256(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(&self.cert_der))
    }
}

/// A test certificate authority.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub cert_pem: String,
}

impl TestCa {
    /// A new self-signed CA named `CN=cn`.
    pub fn new(cn: &str) -> anyhow::Result<Self> {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&[
            (DnType::CommonName, cn),
            (DnType::OrganizationName, "tpp-operator tests"),
        ]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().context("generate CA key")?;
        let issuer = CertifiedIssuer::self_signed(params, key).context("self-sign CA")?;
        Ok(Self {
            cert_pem: issuer.pem(),
            issuer,
        })
    }

    /// The CA certificate, DER (to complete a serving chain).
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A serving certificate `CN=cn` (EKU serverAuth) for `localhost`, 127.0.0.1 and ::1, plus
    /// `extra_names` (DNS names or IP addresses).
    pub fn server_cert(&self, cn: &str, extra_names: &[&str]) -> anyhow::Result<CertPair> {
        let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        for name in extra_names {
            if !names.iter().any(|n| n == name) {
                names.push((*name).to_string());
            }
        }
        let mut params = CertificateParams::new(names).context("serving certificate names")?;
        params.distinguished_name = dn(&[(DnType::CommonName, cn)]);
        params.is_ca = IsCa::NoCa;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        self.sign(params, KeyPair::generate().context("generate serving key")?)
    }

    /// A client certificate with subject `CN=cn` and organisations `orgs` (groups, for the
    /// apiserver), EKU clientAuth.
    pub fn client_cert(&self, cn: &str, orgs: &[&str]) -> anyhow::Result<CertPair> {
        let mut subject = vec![(DnType::CommonName, cn)];
        subject.extend(orgs.iter().map(|o| (DnType::OrganizationName, *o)));
        self.issue_client(&subject)
    }

    /// A client certificate (EKU clientAuth) for the `(type, value)` subject attributes.
    pub fn issue_client(&self, subject: &[(DnType, &str)]) -> anyhow::Result<CertPair> {
        let key = KeyPair::generate().context("generate client key")?;
        self.client_cert_for(dn(subject), key)
    }

    /// A client certificate for an arbitrary subject and key (e.g. an RSA key for an mTLS
    /// OAuth client whose AS uses `tls_client_auth`).
    pub fn client_cert_for(
        &self,
        subject: DistinguishedName,
        key: KeyPair,
    ) -> anyhow::Result<CertPair> {
        self.sign(client_params(subject), key)
    }

    fn sign(&self, params: CertificateParams, key: KeyPair) -> anyhow::Result<CertPair> {
        let cert = params
            .signed_by(&key, &self.issuer)
            .context("sign certificate")?;
        Ok(CertPair::new(cert.pem(), cert.der().clone(), &key))
    }
}

/// A self-signed client certificate (what `private_key_jwt` clients typically present, and the
/// look-alike of an issued one).
pub fn self_signed_client(subject: &[(DnType, &str)]) -> anyhow::Result<CertPair> {
    let key = KeyPair::generate().context("generate client key")?;
    let cert = client_params(dn(subject))
        .self_signed(&key)
        .context("self-sign client certificate")?;
    Ok(CertPair::new(cert.pem(), cert.der().clone(), &key))
}

fn client_params(subject: DistinguishedName) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject;
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}

/// A distinguished name from (type, value) pairs.
pub fn dn(parts: &[(DnType, &str)]) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    for (t, v) in parts {
        name.push(t.clone(), *v);
    }
    name
}

/// A PKCS#8 PEM key pair for signing ServiceAccount tokens (ECDSA P-256): (private, public).
pub fn service_account_key() -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate().context("generate ServiceAccount key")?;
    Ok((key.serialize_pem(), key.public_key_pem()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn issued_client_certificate_names_its_subject_and_issuer() -> anyhow::Result<()> {
        let ca = TestCa::new("test ca")?;
        let cert = ca.client_cert("client-1", &["Org"])?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert.cert_der)?;
        let subject = parsed.subject().to_string();
        assert!(subject.contains("CN=client-1"), "{subject}");
        assert!(subject.contains("O=Org"), "{subject}");
        assert!(parsed.issuer().to_string().contains("CN=test ca"));
        Ok(())
    }

    #[test]
    fn serving_certificate_covers_every_loopback_name_once() -> anyhow::Result<()> {
        let ca = TestCa::new("test ca")?;
        let cert = ca.server_cert("peer", &["127.0.0.1", "peer.local"])?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert.cert_der)?;
        let san = parsed
            .subject_alternative_name()?
            .map(|s| format!("{:?}", s.value.general_names))
            .unwrap_or_default();
        for name in ["localhost", "peer.local", "127, 0, 0, 1"] {
            assert_eq!(san.matches(name).count(), 1, "{name} once in {san}");
        }
        Ok(())
    }

    #[test]
    fn a_pair_read_back_from_pem_equals_the_issued_one() -> anyhow::Result<()> {
        let ca = TestCa::new("test ca")?;
        let issued = ca.client_cert("c", &[])?;
        let read = CertPair::from_pem(issued.cert_pem.clone(), issued.key_pem.clone())?;
        assert_eq!(read.cert_der, issued.cert_der);
        assert_eq!(read.key_der, issued.key_der);
        assert_eq!(read.x5t_s256(), issued.x5t_s256());
        Ok(())
    }
}
