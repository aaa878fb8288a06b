//! The sandbox's serving PKI: its own CA and a loopback serving certificate (SANs `localhost`,
//! 127.0.0.1, ::1), issued from the tests' one throw-away PKI (crate `tpp-testkit`), which is
//! re-exported here for the sandbox's client-certificate tests.

pub use tpp_testkit::pki::{CertPair, TestCa, self_signed_client};

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

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
        let ca = TestCa::new("tpp-operator sandbox AS CA")?;
        let leaf = ca.server_cert("localhost", &[])?;
        Ok(Self {
            chain: vec![leaf.cert_der.clone(), ca.cert_der()],
            key: leaf.private_key(),
            ca_pem: ca.cert_pem,
        })
    }
}
