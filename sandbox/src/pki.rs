//! Throw-away PKI: the sandbox's own CA and serving certificate, plus a small test CA that
//! issues client certificates (for `tls_client_auth` tests) and self-signed look-alikes.
//! Pure computation with rcgen (aws-lc-rs); no I/O.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The sandbox CA and its serving certificate (SANs `DNS:localhost`, `IP:127.0.0.1`, `IP:::1`).
pub struct ServerPki {
    /// PEM of the CA certificate clients must trust.
    pub ca_pem: String,
    /// Serving certificate chain (leaf, CA).
    pub chain: Vec<CertificateDer<'static>>,
    /// Serving private key.
    pub key: PrivateKeyDer<'static>,
}

impl ServerPki {
    /// Generates a fresh CA and serving certificate.
    pub fn generate() -> anyhow::Result<Self> {
        let ca = TestCa::generate("tpp-operator sandbox AS CA")?;
        let key = KeyPair::generate().context("generate serving key")?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.subject_alt_names = vec![
            SanType::DnsName("localhost".try_into().context("dns san")?),
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ];
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .signed_by(&key, &ca.issuer)
            .context("sign serving certificate")?;
        Ok(Self {
            ca_pem: ca.pem(),
            chain: vec![cert.der().clone(), ca.issuer.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }
}

/// A CA for tests: issues client certificates with a chosen subject DN.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A client certificate and its key, in PEM and DER.
#[derive(Clone)]
pub struct ClientCert {
    /// PEM certificate.
    pub cert_pem: String,
    /// PEM PKCS#8 private key.
    pub key_pem: String,
    /// DER certificate.
    pub cert_der: CertificateDer<'static>,
    /// DER PKCS#8 private key.
    pub key_der: Vec<u8>,
}

impl std::fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCert").finish_non_exhaustive()
    }
}

impl TestCa {
    /// Generates a self-signed CA named `common_name`.
    pub fn generate(common_name: &str) -> anyhow::Result<Self> {
        let key = KeyPair::generate().context("generate CA key")?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, key).context("self-sign CA")?;
        Ok(Self { issuer })
    }

    /// PEM of the CA certificate.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Issues a client certificate (EKU clientAuth) for the `(type, value)` subject attributes.
    pub fn issue_client(&self, subject: &[(DnType, &str)]) -> anyhow::Result<ClientCert> {
        let key = KeyPair::generate().context("generate client key")?;
        let cert = client_params(subject)
            .signed_by(&key, &self.issuer)
            .context("sign client certificate")?;
        Ok(ClientCert::new(cert.pem(), cert.der().clone(), &key))
    }
}

/// A self-signed client certificate (what `private_key_jwt` clients typically present).
pub fn self_signed_client(subject: &[(DnType, &str)]) -> anyhow::Result<ClientCert> {
    let key = KeyPair::generate().context("generate client key")?;
    let cert = client_params(subject)
        .self_signed(&key)
        .context("self-sign client certificate")?;
    Ok(ClientCert::new(cert.pem(), cert.der().clone(), &key))
}

fn client_params(subject: &[(DnType, &str)]) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    for (ty, value) in subject {
        dn.push(ty.clone(), *value);
    }
    params.distinguished_name = dn;
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}

impl ClientCert {
    fn new(cert_pem: String, cert_der: CertificateDer<'static>, key: &KeyPair) -> Self {
        Self {
            cert_pem,
            key_pem: key.serialize_pem(),
            cert_der,
            key_der: key.serialize_der(),
        }
    }

    /// `x5t#S256` of the certificate: unpadded base64url SHA-256 of the DER.
    pub fn x5t_s256(&self) -> String {
        super::tls::x5t_s256(&self.cert_der)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_client_certificate_names_its_subject() -> anyhow::Result<()> {
        let ca = TestCa::generate("test ca")?;
        let cert = ca.issue_client(&[
            (DnType::CommonName, "client-1"),
            (DnType::OrganizationName, "Org"),
        ])?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert.cert_der)?;
        let subject = parsed.subject().to_string();
        assert!(subject.contains("CN=client-1"), "{subject}");
        assert!(subject.contains("O=Org"), "{subject}");
        assert!(parsed.issuer().to_string().contains("CN=test ca"));
        Ok(())
    }
}
