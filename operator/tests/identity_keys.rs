//! Keys: generation, encodings, RFC 7638 kids, JWK round trips, and the josekit <-> rcgen
//! hand-off. CPU only; two tests use the `openssl` CLI as an independent tool.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure with a location

use std::io::Write as _;
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use josekit::jwk::KeyPair as _;
use rcgen::PublicKeyData as _;
use secrecy::ExposeSecret as _;
use sha2::{Digest as _, Sha256};
use tpp_operator::identity::cert::{self, CertificateProfile};
use tpp_operator::identity::jwt::decode_unverified;
use tpp_operator::identity::{IdentityError, KeyAlgorithm, PrivateKey};

fn independent_thumbprint(jwk: &serde_json::Value) -> String {
    // RFC 7638 §3: required members in lexicographic order, no whitespace, written by hand.
    let canonical = match jwk["kty"].as_str() {
        Some("RSA") => format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            jwk["e"].as_str().unwrap(),
            jwk["n"].as_str().unwrap()
        ),
        _ => format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        ),
    };
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

#[test]
fn generated_keys_have_43_char_thumbprint_kids_and_their_jws_alg() {
    for (alg, jws_alg, kty) in [
        (KeyAlgorithm::Rsa2048, "PS256", "RSA"),
        (KeyAlgorithm::EcP256, "ES256", "EC"),
    ] {
        let key = PrivateKey::generate(alg).unwrap();
        assert_eq!(key.algorithm(), alg);
        assert_eq!(key.kid().len(), 43);
        assert!(
            key.kid()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        let public = serde_json::to_value(key.public_jwk()).unwrap();
        assert_eq!(public["kty"], kty);
        assert_eq!(public["alg"], jws_alg);
        assert_eq!(public["kid"], key.kid());
        assert_eq!(independent_thumbprint(&public), key.kid());
        assert!(public.get("d").is_none(), "public JWK must not carry d");
    }
}

#[test]
fn rsa_3072_and_4096_generation_yield_those_modulus_sizes() {
    for (alg, bytes) in [(KeyAlgorithm::Rsa3072, 384), (KeyAlgorithm::Rsa4096, 512)] {
        let key = PrivateKey::generate(alg).unwrap();
        let n = URL_SAFE_NO_PAD.decode(key.public_jwk().n.unwrap()).unwrap();
        assert_eq!(n.len(), bytes, "{alg}");
        assert_eq!(key.signer().unwrap().sign(b"x").unwrap().len(), bytes);
    }
}

#[test]
fn two_generated_keys_differ() {
    let a = PrivateKey::generate(KeyAlgorithm::EcP256).unwrap();
    let b = PrivateKey::generate(KeyAlgorithm::EcP256).unwrap();
    assert_ne!(a.kid(), b.kid());
}

#[test]
fn private_jwk_round_trip_keeps_key_public_jwk_and_kid() {
    for alg in [KeyAlgorithm::Rsa2048, KeyAlgorithm::EcP256] {
        let key = PrivateKey::generate(alg).unwrap();
        let json = key.to_private_jwk_json().unwrap();
        let members: serde_json::Value = serde_json::from_str(json.expose_secret()).unwrap();
        let expected: &[&str] = if alg.is_rsa() {
            &["n", "e", "d", "p", "q", "dp", "dq", "qi"]
        } else {
            &["crv", "x", "y", "d"]
        };
        for member in expected {
            assert!(members[member].is_string(), "{alg}: missing {member}");
        }
        let back = PrivateKey::from_private_jwk_json(json.expose_secret()).unwrap();
        assert_eq!(back.expose_pkcs8_der(), key.expose_pkcs8_der());
        assert_eq!(back.public_jwk(), key.public_jwk());
        assert_eq!(back.kid(), key.kid());
        // private -> public -> kid is stable
        assert_eq!(back.public_jwk().thumbprint().unwrap(), key.kid());
    }
}

#[test]
fn private_jwk_with_inconsistent_members_is_rejected() {
    let key = PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    let other = PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    let mut members: serde_json::Value =
        serde_json::from_str(key.to_private_jwk_json().unwrap().expose_secret()).unwrap();
    let donor: serde_json::Value =
        serde_json::from_str(other.to_private_jwk_json().unwrap().expose_secret()).unwrap();
    members["d"] = donor["d"].clone();
    let err = PrivateKey::from_private_jwk_json(&members.to_string()).unwrap_err();
    assert!(
        matches!(err, IdentityError::ParsePrivateKey { .. }),
        "{err}"
    );
}

#[test]
fn pkcs8_pem_round_trips_and_openssl_reads_it() {
    let key = PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    let pem = key.to_pkcs8_pem();
    assert!(
        pem.expose_secret()
            .starts_with(concat!("-----BEGIN ", "PRIVATE KEY-----\n"))
    );
    assert!(pem.expose_secret().lines().all(|l| l.len() <= 64));
    assert_eq!(
        PrivateKey::from_pem(pem.expose_secret()).unwrap().kid(),
        key.kid()
    );

    let mut child = Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the openssl CLI is needed for this test");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(pem.expose_secret().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let spki_from_us = key.to_rcgen_key_pair().unwrap().subject_public_key_info();
    assert_eq!(out.stdout, spki_from_us);
}

#[test]
fn josekit_ps256_pkcs8_is_refused_by_rcgen_but_accepted_after_import() {
    // josekit writes PS256 keys as PKCS#8 with the id-RSASSA-PSS OID.
    let jose = josekit::jws::PS256.generate_key_pair(2048).unwrap();
    let der = jose.to_der_private_key();
    let direct =
        rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der.clone().into(), &rcgen::PKCS_RSA_SHA256);
    assert!(
        direct.is_err(),
        "rcgen started accepting PSS PKCS#8; the re-wrap may be unnecessary"
    );

    let key = PrivateKey::from_der(&der).unwrap();
    assert_eq!(key.algorithm(), KeyAlgorithm::Rsa2048);
    let jose_public = serde_json::to_value(jose.to_jwk_public_key()).unwrap();
    assert_eq!(key.kid(), independent_thumbprint(&jose_public));
    // rcgen can now sign a certificate with it.
    let profile =
        CertificateProfile::new("CN=from-josekit", std::time::Duration::from_secs(3600)).unwrap();
    let issued = cert::self_signed(&key, &profile, Timestamp::now()).unwrap();
    assert!(
        cert::key_matches_certificate(key.to_pkcs8_pem().expose_secret(), &issued.pem).unwrap()
    );
}

#[test]
fn josekit_private_jwk_and_traditional_pem_import() {
    let jose = josekit::jws::ES256.generate_key_pair().unwrap();
    let from_jwk = PrivateKey::from_private_jwk_json(&jose.to_jwk_key_pair().to_string()).unwrap();
    let from_sec1 =
        PrivateKey::from_pem(std::str::from_utf8(&jose.to_traditional_pem_private_key()).unwrap())
            .unwrap();
    assert_eq!(from_jwk.kid(), from_sec1.kid());
    assert_eq!(from_jwk.algorithm(), KeyAlgorithm::EcP256);

    let rsa = josekit::jws::RS256.generate_key_pair(2048).unwrap();
    let from_pkcs1 =
        PrivateKey::from_pem(std::str::from_utf8(&rsa.to_traditional_pem_private_key()).unwrap())
            .unwrap();
    let from_rsa_jwk =
        PrivateKey::from_private_jwk_json(&rsa.to_jwk_key_pair().to_string()).unwrap();
    assert_eq!(
        from_pkcs1.expose_pkcs8_der(),
        from_rsa_jwk.expose_pkcs8_der()
    );
}

#[test]
fn our_keys_sign_through_josekit_and_josekit_verifies_our_signer() {
    for alg in [KeyAlgorithm::Rsa2048, KeyAlgorithm::EcP256] {
        let key = PrivateKey::generate(alg).unwrap();
        let public =
            josekit::jwk::Jwk::from_bytes(serde_json::to_vec(&key.public_jwk()).unwrap()).unwrap();
        let mut payload = josekit::jwt::JwtPayload::new();
        payload.set_subject("hand-off");
        let header = josekit::jws::JwsHeader::new();

        // ours -> josekit's own (OpenSSL) signer, verified by our aws-lc-rs verifier
        let jose_signed =
            josekit::jwt::encode_with_signer(&payload, &header, &*key.to_josekit_signer().unwrap())
                .unwrap();
        let decoded = decode_unverified(&jose_signed).unwrap();
        assert_eq!(decoded.kid(), Some(key.kid()));
        decoded.verify_with(&key.public_jwk()).unwrap();

        // our aws-lc-rs signer, verified by josekit (OpenSSL) from our public JWK
        let ours =
            josekit::jwt::encode_with_signer(&payload, &header, &key.signer().unwrap()).unwrap();
        let verifier: Box<dyn josekit::jws::JwsVerifier> = if alg.is_rsa() {
            Box::new(josekit::jws::PS256.verifier_from_jwk(&public).unwrap())
        } else {
            Box::new(josekit::jws::ES256.verifier_from_jwk(&public).unwrap())
        };
        let (claims, _) = josekit::jwt::decode_with_verifier(&ours, &*verifier).unwrap();
        assert_eq!(claims.subject(), Some("hand-off"));
    }
}

#[test]
fn signatures_from_another_key_do_not_verify() {
    let key = PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    let other = PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    let jws = josekit::jwt::encode_with_signer(
        &josekit::jwt::JwtPayload::new(),
        &josekit::jws::JwsHeader::new(),
        &key.signer().unwrap(),
    )
    .unwrap();
    let decoded = decode_unverified(&jws).unwrap();
    assert!(matches!(
        decoded.verify_with(&other.public_jwk()),
        Err(IdentityError::VerifySignature)
    ));
    decoded.verify_with(&key.public_jwk()).unwrap();
}

#[test]
fn garbage_and_short_rsa_keys_are_rejected() {
    assert!(matches!(
        PrivateKey::from_der(b"nonsense"),
        Err(IdentityError::ParsePrivateKey { .. })
    ));
    assert!(
        PrivateKey::from_pem(concat!(
            "-----BEGIN ",
            "PRIVATE KEY-----\nAAAA\n-----END ",
            "PRIVATE KEY-----\n"
        ))
        .is_err()
    );
    let out = Command::new("openssl")
        .args(["genrsa", "1024"])
        .stderr(Stdio::null())
        .output()
        .expect("openssl CLI");
    assert!(out.status.success());
    let err = PrivateKey::from_pem(std::str::from_utf8(&out.stdout).unwrap()).unwrap_err();
    assert!(
        matches!(err, IdentityError::ParsePrivateKey { .. }),
        "{err}"
    );
}
