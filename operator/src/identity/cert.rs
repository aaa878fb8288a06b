//! X.509 transport certificates for mTLS: self-signed generation and CSRs (rcgen), PEM
//! parsing (x509-parser), the `x5t#S256` thumbprint, and key/certificate matching.
//!
//! Contract: a generated certificate has the subject given in RFC 4514 form (identical DER
//! for identical input, so the DN survives renewals), `notBefore = now - 1 min` (clock-skew
//! allowance), `notAfter = now + validity`, a random 127-bit serial, key usage
//! `digitalSignature`, extended key usage `clientAuth`, and the requested SANs. `now` is a
//! parameter: there is no hidden clock. Certificates are public: nothing here is secret.
//! CPU only, no I/O.

use std::net::IpAddr;
use std::time::Duration;

use jiff::Timestamp;
use sha2::{Digest as _, Sha256};

use super::dn::{SubjectDn, rfc4514_from_x509};
use super::error::IdentityError;
use super::jwk::b64url;
use super::keys::{KeyAlgorithm, PrivateKey};

/// How far `notBefore` is back-dated to tolerate peers whose clocks run behind.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(60);

/// The transport key algorithm used unless the spec asks for another (RSA-2048).
pub const DEFAULT_TRANSPORT_KEY: KeyAlgorithm = KeyAlgorithm::Rsa2048;

/// A subject alternative name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubjectAltName {
    /// `dNSName`.
    Dns(String),
    /// `uniformResourceIdentifier`.
    Uri(String),
    /// `iPAddress`.
    Ip(IpAddr),
    /// `rfc822Name`.
    Email(String),
}

/// What to put in a transport certificate or CSR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateProfile {
    /// Subject DN, parsed from RFC 4514 form.
    pub subject: SubjectDn,
    /// Lifetime from `now` (ignored for CSRs: the CA decides).
    pub validity: Duration,
    /// Subject alternative names; empty means no SAN extension.
    pub subject_alt_names: Vec<SubjectAltName>,
}

impl CertificateProfile {
    /// A profile with a subject parsed from `subject` (RFC 4514) and no SANs.
    pub fn new(subject: &str, validity: Duration) -> Result<Self, IdentityError> {
        Ok(Self {
            subject: SubjectDn::parse(subject)?,
            validity,
            subject_alt_names: Vec::new(),
        })
    }

    fn to_params(&self) -> Result<rcgen::CertificateParams, IdentityError> {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = self.subject.to_rcgen()?;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        params.subject_alt_names = self
            .subject_alt_names
            .iter()
            .map(san_to_rcgen)
            .collect::<Result<_, _>>()?;
        Ok(params)
    }
}

fn san_to_rcgen(san: &SubjectAltName) -> Result<rcgen::SanType, IdentityError> {
    let ia5 = |s: &str, kind: &str| {
        rcgen::string::Ia5String::try_from(s).map_err(|_| IdentityError::CertificateParams {
            reason: format!("{kind} SAN {s:?} is not ASCII"),
        })
    };
    Ok(match san {
        SubjectAltName::Dns(s) => rcgen::SanType::DnsName(ia5(s, "DNS")?),
        SubjectAltName::Uri(s) => rcgen::SanType::URI(ia5(s, "URI")?),
        SubjectAltName::Email(s) => rcgen::SanType::Rfc822Name(ia5(s, "email")?),
        SubjectAltName::Ip(ip) => rcgen::SanType::IpAddress(*ip),
    })
}

/// A generated certificate: PEM, DER and what was read back from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// `-----BEGIN CERTIFICATE-----` PEM (the `tls.crt`).
    pub pem: String,
    /// The parsed facts (validity, subject, `x5t#S256`, DER).
    pub info: CertificateInfo,
}

/// Facts read from a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateInfo {
    /// `notBefore`.
    pub not_before: Timestamp,
    /// `notAfter`.
    pub not_after: Timestamp,
    /// Subject in RFC 4514 string form (most significant RDN last).
    pub subject: String,
    /// Unpadded base64url SHA-256 of the DER: what the AS binds tokens to (RFC 8705).
    pub x5t_s256: String,
    /// The certificate DER.
    pub der: Vec<u8>,
}

/// Generates a self-signed certificate for `key` valid from `now - 1 min` to
/// `now + profile.validity`.
pub fn self_signed(
    key: &PrivateKey,
    profile: &CertificateProfile,
    now: Timestamp,
) -> Result<IssuedCertificate, IdentityError> {
    let mut params = profile.to_params()?;
    if profile.validity.is_zero() {
        return Err(IdentityError::CertificateParams {
            reason: "validity must be positive".to_owned(),
        });
    }
    let skew = i64::try_from(CLOCK_SKEW_ALLOWANCE.as_secs()).unwrap_or(60);
    let validity = i64::try_from(profile.validity.as_secs()).map_err(|_| {
        IdentityError::CertificateParams {
            reason: "validity is too long".to_owned(),
        }
    })?;
    params.not_before = offset_date_time(now.as_second().saturating_sub(skew))?;
    params.not_after = offset_date_time(now.as_second().saturating_add(validity))?;
    params.serial_number = Some(random_serial()?);
    let key_pair = key.to_rcgen_key_pair()?;
    let cert = params
        .self_signed(&key_pair)
        .map_err(|source| IdentityError::GenerateCertificate { source })?;
    let pem = cert.pem();
    let info = inspect_der(cert.der().as_ref())?;
    Ok(IssuedCertificate { pem, info })
}

/// Generates a fresh transport key (CPU-heavy for RSA: call from a blocking pool) and its
/// self-signed certificate.
pub fn generate_self_signed(
    algorithm: KeyAlgorithm,
    profile: &CertificateProfile,
    now: Timestamp,
) -> Result<(PrivateKey, IssuedCertificate), IdentityError> {
    let key = PrivateKey::generate(algorithm)?;
    let certificate = self_signed(&key, profile, now)?;
    Ok((key, certificate))
}

/// A PEM PKCS#10 certificate signing request for `key` with the profile's subject, key usage,
/// extended key usage and SANs (validity is the CA's choice).
pub fn csr_pem(key: &PrivateKey, profile: &CertificateProfile) -> Result<String, IdentityError> {
    let params = profile.to_params()?;
    let key_pair = key.to_rcgen_key_pair()?;
    let csr = params
        .serialize_request(&key_pair)
        .map_err(|source| IdentityError::GenerateCertificate { source })?;
    csr.pem()
        .map_err(|source| IdentityError::GenerateCertificate { source })
}

/// Reads the first certificate of a PEM bundle (the leaf of a `tls.crt`).
pub fn parse_pem(pem: &str) -> Result<CertificateInfo, IdentityError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|_| {
        IdentityError::ParseCertificate {
            reason: "no PEM block found".to_owned(),
        }
    })?;
    if block.label != "CERTIFICATE" {
        return Err(IdentityError::ParseCertificate {
            reason: format!("PEM block is {:?}, not CERTIFICATE", block.label),
        });
    }
    inspect_der(&block.contents)
}

/// Reads a DER certificate.
pub fn inspect_der(der: &[u8]) -> Result<CertificateInfo, IdentityError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| IdentityError::ParseCertificate {
            reason: format!("invalid DER: {e}"),
        })?;
    let time = |t: x509_parser::time::ASN1Time| {
        Timestamp::from_second(t.timestamp()).map_err(|_| IdentityError::ParseCertificate {
            reason: "validity out of range".to_owned(),
        })
    };
    Ok(CertificateInfo {
        not_before: time(cert.validity().not_before)?,
        not_after: time(cert.validity().not_after)?,
        subject: rfc4514_from_x509(cert.subject()),
        x5t_s256: x5t_s256(der),
        der: der.to_vec(),
    })
}

/// `x5t#S256`: unpadded base64url SHA-256 of a certificate's DER.
pub fn x5t_s256(der: &[u8]) -> String {
    b64url(Sha256::digest(der))
}

/// Whether the PEM private key belongs to the leaf certificate of the PEM bundle (compares
/// the public key bits), e.g. for a user-supplied `kubernetes.io/tls` Secret. Supports the
/// key types [`PrivateKey`] does.
pub fn key_matches_certificate(key_pem: &str, cert_pem: &str) -> Result<bool, IdentityError> {
    let key = PrivateKey::from_pem(key_pem)?;
    let info = parse_pem(cert_pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&info.der).map_err(|e| {
        IdentityError::ParseCertificate {
            reason: format!("invalid DER: {e}"),
        }
    })?;
    let key_pair = key.to_rcgen_key_pair()?;
    Ok(cert.public_key().subject_public_key.data.as_ref() == key_pair.public_key_raw())
}

fn offset_date_time(unix_seconds: i64) -> Result<time::OffsetDateTime, IdentityError> {
    time::OffsetDateTime::from_unix_timestamp(unix_seconds).map_err(|_| {
        IdentityError::CertificateParams {
            reason: "validity out of range".to_owned(),
        }
    })
}

fn random_serial() -> Result<rcgen::SerialNumber, IdentityError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| IdentityError::CertificateParams {
        reason: "no randomness for the serial".to_owned(),
    })?;
    // Positive and non-zero leading byte, so the INTEGER is exactly 16 bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(rcgen::SerialNumber::from_slice(&bytes))
}
