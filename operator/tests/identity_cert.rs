//! Transport certificates: profile, validity from an injected `now`, stable subject DN,
//! `x5t#S256` against independent computations (sha2 over our own PEM decoding, and the
//! openssl CLI), CSRs and key/certificate matching.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure with a location

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jiff::Timestamp;
use secrecy::ExposeSecret as _;
use sha2::{Digest as _, Sha256};
use tpp_operator::identity::cert::{self, CertificateProfile, SubjectAltName};
use tpp_operator::identity::{IdentityError, KeyAlgorithm, PrivateKey};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer as _;

const SUBJECT: &str = "C=GB,O=OpenBanking,OU=0015800001041RHAAY,CN=5aRav7KBdrEqqs1e1fwNgk";

fn now() -> Timestamp {
    Timestamp::from_second(1_769_766_702).unwrap()
}

fn openssl(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new("sh")
        .args(["-c", &args.join(" ")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sh and the openssl CLI are needed for this test");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{args:?} failed");
    out.stdout
}

/// `openssl verify` (at the test's `now`) checks the self-signature and the `sslclient` purpose (clientAuth EKU).
fn openssl_verifies_as_tls_client(pem: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cert.pem");
    std::fs::write(&path, pem).unwrap();
    let path = path.to_str().unwrap();
    // At the injected `now`, not the wall clock.
    let at = now().as_second().to_string();
    let out = openssl(
        &[
            "openssl",
            "verify",
            "-attime",
            &at,
            "-purpose",
            "sslclient",
            "-CAfile",
            path,
            path,
        ],
        b"",
    );
    assert!(String::from_utf8(out).unwrap().contains(": OK"));
}

fn pem_body_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
}

#[test]
fn self_signed_certificate_carries_the_client_auth_profile() {
    let key = PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    let mut profile = CertificateProfile::new(SUBJECT, Duration::from_secs(90 * 86_400)).unwrap();
    profile.subject_alt_names = vec![
        SubjectAltName::Dns("tpp.example".into()),
        SubjectAltName::Uri("spiffe://tpp/client".into()),
        SubjectAltName::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SubjectAltName::Email("ops@tpp.example".into()),
    ];
    let issued = cert::self_signed(&key, &profile, now()).unwrap();

    assert_eq!(issued.info.not_before.as_second(), now().as_second() - 60);
    assert_eq!(
        issued.info.not_after.as_second(),
        now().as_second() + 90 * 86_400
    );
    assert_eq!(issued.info.subject, SUBJECT);

    let (_, x509) = x509_parser::parse_x509_certificate(&issued.info.der).unwrap();
    assert!(
        x509.extended_key_usage()
            .unwrap()
            .unwrap()
            .value
            .client_auth
    );
    let ku = x509.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature());
    assert!(!ku.key_cert_sign());
    let sans = &x509
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names;
    assert!(sans.contains(&GeneralName::DNSName("tpp.example")));
    assert!(sans.contains(&GeneralName::URI("spiffe://tpp/client")));
    assert!(sans.contains(&GeneralName::RFC822Name("ops@tpp.example")));
    assert!(sans.contains(&GeneralName::IPAddress(&[127, 0, 0, 1])));
    openssl_verifies_as_tls_client(&issued.pem);
    assert!(
        cert::key_matches_certificate(key.to_pkcs8_pem().expose_secret(), &issued.pem).unwrap()
    );
}

#[test]
fn certificate_without_sans_has_no_san_extension() {
    let key = PrivateKey::generate(KeyAlgorithm::EcP256).unwrap();
    let issued = cert::self_signed(
        &key,
        &CertificateProfile::new("CN=x", Duration::from_secs(3600)).unwrap(),
        now(),
    )
    .unwrap();
    let (_, x509) = x509_parser::parse_x509_certificate(&issued.info.der).unwrap();
    assert!(x509.subject_alternative_name().unwrap().is_none());
    openssl_verifies_as_tls_client(&issued.pem);
}

#[test]
fn subject_dn_is_byte_identical_across_renewals_and_matches_openssl_rfc2253() {
    let profile = CertificateProfile::new(
        "C=GB, O=OpenBanking, OU=0015800001041RHAAY, CN=5aRav7KBdrEqqs1e1fwNgk",
        Duration::from_secs(3600),
    )
    .unwrap();
    let first = cert::self_signed(
        &PrivateKey::generate(KeyAlgorithm::EcP256).unwrap(),
        &profile,
        now(),
    )
    .unwrap();
    let later = Timestamp::from_second(now().as_second() + 86_400).unwrap();
    let renewed = cert::self_signed(
        &PrivateKey::generate(KeyAlgorithm::EcP256).unwrap(),
        &profile,
        later,
    )
    .unwrap();
    let subject_der = |der: &[u8]| {
        x509_parser::parse_x509_certificate(der)
            .unwrap()
            .1
            .subject()
            .as_raw()
            .to_vec()
    };
    assert_eq!(subject_der(&first.info.der), subject_der(&renewed.info.der));
    assert_ne!(first.info.x5t_s256, renewed.info.x5t_s256);

    let openssl_subject = openssl(
        &[
            "openssl", "x509", "-noout", "-subject", "-nameopt", "RFC2253",
        ],
        first.pem.as_bytes(),
    );
    assert_eq!(
        String::from_utf8(openssl_subject).unwrap().trim(),
        format!("subject={SUBJECT}")
    );
}

#[test]
fn x5t_s256_equals_independent_sha256_of_the_der() {
    let key = PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    let issued = cert::self_signed(
        &key,
        &CertificateProfile::new(SUBJECT, Duration::from_secs(3600)).unwrap(),
        now(),
    )
    .unwrap();

    let by_hand = URL_SAFE_NO_PAD.encode(Sha256::digest(pem_body_der(&issued.pem)));
    assert_eq!(issued.info.x5t_s256, by_hand);
    assert_eq!(issued.info.x5t_s256.len(), 43);

    let pipeline =
        ["openssl x509 -outform DER | openssl dgst -sha256 -binary | basenc --base64url"];
    let by_openssl = String::from_utf8(openssl(&pipeline, issued.pem.as_bytes())).unwrap();
    assert_eq!(
        issued.info.x5t_s256,
        by_openssl.trim().trim_end_matches('=')
    );

    assert_eq!(cert::parse_pem(&issued.pem).unwrap(), issued.info);
}

#[test]
fn csr_carries_subject_and_sans_and_openssl_verifies_it() {
    let key = PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    let mut profile = CertificateProfile::new(SUBJECT, Duration::from_secs(3600)).unwrap();
    profile.subject_alt_names = vec![SubjectAltName::Dns("tpp.example".into())];
    let pem = cert::csr_pem(&key, &profile).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));

    let der = pem_body_der(&pem);
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&der).unwrap();
    assert_eq!(
        tpp_operator::identity::dn::rfc4514_from_x509(&csr.certification_request_info.subject),
        SUBJECT
    );
    openssl(&["openssl", "req", "-noout", "-verify"], pem.as_bytes());
}

#[test]
fn default_transport_key_is_rsa_2048_and_its_certificate_matches_it() {
    let profile = CertificateProfile::new("CN=default", Duration::from_secs(3600)).unwrap();
    let (key, issued) =
        cert::generate_self_signed(cert::DEFAULT_TRANSPORT_KEY, &profile, now()).unwrap();
    assert_eq!(key.algorithm(), KeyAlgorithm::Rsa2048);
    assert!(
        cert::key_matches_certificate(key.to_pkcs8_pem().expose_secret(), &issued.pem).unwrap()
    );
    let (_, x509) = x509_parser::parse_x509_certificate(&issued.info.der).unwrap();
    assert_eq!(x509.public_key().parsed().unwrap().key_size(), 2048);
}

#[test]
fn key_from_another_pair_does_not_match_the_certificate() {
    let key = PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    let other = PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    let issued = cert::self_signed(
        &key,
        &CertificateProfile::new("CN=x", Duration::from_secs(3600)).unwrap(),
        now(),
    )
    .unwrap();
    assert!(
        !cert::key_matches_certificate(other.to_pkcs8_pem().expose_secret(), &issued.pem).unwrap()
    );
    let ec = PrivateKey::generate(KeyAlgorithm::EcP256).unwrap();
    assert!(
        !cert::key_matches_certificate(ec.to_pkcs8_pem().expose_secret(), &issued.pem).unwrap()
    );
}

#[test]
fn zero_validity_and_non_certificate_pem_are_rejected() {
    let key = PrivateKey::generate(KeyAlgorithm::EcP256).unwrap();
    let profile = CertificateProfile::new("CN=x", Duration::ZERO).unwrap();
    assert!(matches!(
        cert::self_signed(&key, &profile, now()),
        Err(IdentityError::CertificateParams { .. })
    ));
    let key_pem = key.to_pkcs8_pem();
    assert!(matches!(
        cert::parse_pem(key_pem.expose_secret()),
        Err(IdentityError::ParseCertificate { .. })
    ));
    assert!(matches!(
        cert::parse_pem("no pem here"),
        Err(IdentityError::ParseCertificate { .. })
    ));
}
