//! A throw-away PKI for one test run (docs/test-infrastructure.md A6): a test CA, the apiserver's
//! serving certificate, an admin client certificate (`O=system:masters`), a ServiceAccount signing
//! key, and helpers to issue further client or server certificates from the same CA. CPU only.

use anyhow::Result;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct CertPair {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The PKCS#8 private key, PEM.
    pub key_pem: String,
}

impl std::fmt::Debug for CertPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertPair")
            .field("key_pem", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

/// A test certificate authority.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub cert_pem: String,
}

impl TestCa {
    /// A new CA named `cn`.
    pub fn new(cn: &str) -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(&[
            (DnType::CommonName, cn),
            (DnType::OrganizationName, "tpp-operator e2e"),
        ]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A serving certificate for `localhost` and 127.0.0.1 (plus `extra_dns`).
    pub fn server_cert(&self, cn: &str, extra_dns: &[&str]) -> Result<CertPair> {
        let mut sans: Vec<String> = vec!["localhost".into()];
        sans.extend(extra_dns.iter().map(|s| s.to_string()));
        let mut params = CertificateParams::new(sans)?;
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse()?));
        params.distinguished_name = dn(&[(DnType::CommonName, cn)]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        self.sign(params, KeyPair::generate()?)
    }

    /// A client certificate with subject `CN=cn` and organisations `orgs` (groups, for the
    /// apiserver), EKU clientAuth.
    pub fn client_cert(&self, cn: &str, orgs: &[&str]) -> Result<CertPair> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, cn);
        for o in orgs {
            name.push(DnType::OrganizationName, *o);
        }
        params.distinguished_name = name;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(params, KeyPair::generate()?)
    }

    /// A client certificate for an arbitrary subject and key (e.g. an RSA key for an mTLS
    /// OAuth client whose AS uses `tls_client_auth`).
    pub fn client_cert_for(&self, subject: DistinguishedName, key: KeyPair) -> Result<CertPair> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = subject;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(params, key)
    }

    fn sign(&self, params: CertificateParams, key: KeyPair) -> Result<CertPair> {
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A distinguished name from (type, value) pairs.
pub fn dn(parts: &[(DnType, &str)]) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    for (t, v) in parts {
        name.push(t.clone(), *v);
    }
    name
}

/// A PKCS#8 PEM key pair for signing ServiceAccount tokens (ECDSA P-256).
pub fn service_account_key() -> Result<(String, String)> {
    let key = KeyPair::generate()?;
    Ok((key.serialize_pem(), key.public_key_pem()))
}
