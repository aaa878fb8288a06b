//! The published JWK set and the redaction guarantee of every secret-holding type.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure with a location

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jiff::Timestamp;
use secrecy::ExposeSecret as _;
use tpp_operator::identity::assertion::{self, AssertionPolicy, AssertionTarget};
use tpp_operator::identity::cert::{self, CertificateProfile};
use tpp_operator::identity::jwks::{PublishedAlg, PublishedKey, build_jwks};
use tpp_operator::identity::{IdentityError, KeyAlgorithm, KeyUse, PrivateKey};

fn now() -> Timestamp {
    Timestamp::from_second(1_769_766_702).unwrap()
}

fn published(
    key: &PrivateKey,
    key_use: KeyUse,
    alg: PublishedAlg,
    chain: Vec<Vec<u8>>,
) -> PublishedKey {
    PublishedKey {
        jwk: key.public_jwk(),
        key_use,
        alg,
        certificate_chain: chain,
    }
}

#[test]
fn jwks_lists_every_key_sorted_by_kid_with_x5c_and_x5t() {
    let signing = PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    let next = PrivateKey::generate(KeyAlgorithm::EcP256).unwrap();
    let encryption = PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    let issued = cert::self_signed(
        &signing,
        &CertificateProfile::new("CN=signing", Duration::from_secs(3600)).unwrap(),
        now(),
    )
    .unwrap();

    let keys = vec![
        published(
            &signing,
            KeyUse::Sig,
            PublishedAlg::Ps256,
            vec![issued.info.der.clone()],
        ),
        published(&next, KeyUse::Sig, PublishedAlg::Es256, vec![]),
        published(&encryption, KeyUse::Enc, PublishedAlg::RsaOaep256, vec![]),
    ];
    let mut reversed = keys.clone();
    reversed.reverse();
    let set = build_jwks(keys).unwrap();
    assert_eq!(
        set,
        build_jwks(reversed).unwrap(),
        "order of input does not matter"
    );

    let kids: Vec<&str> = set.keys.iter().map(|k| k.kid.as_deref().unwrap()).collect();
    let mut sorted = kids.clone();
    sorted.sort_unstable();
    assert_eq!(kids, sorted);

    let json = serde_json::to_value(&set).unwrap();
    let entry = |kid: &str| {
        json["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .unwrap()
            .clone()
    };
    let sig = entry(signing.kid());
    assert_eq!(sig["kty"], "RSA");
    assert_eq!(sig["use"], "sig");
    assert_eq!(sig["alg"], "PS256");
    assert!(sig["n"].is_string() && sig["e"].is_string());
    assert_eq!(
        sig["x5c"][0],
        STANDARD.encode(&issued.info.der),
        "x5c is standard base64 DER"
    );
    assert_eq!(sig["x5t#S256"], issued.info.x5t_s256);
    let ec = entry(next.kid());
    assert_eq!(
        (ec["kty"].as_str(), ec["crv"].as_str(), ec["alg"].as_str()),
        (Some("EC"), Some("P-256"), Some("ES256"))
    );
    assert!(ec.get("x5c").is_none());
    let enc = entry(encryption.kid());
    assert_eq!(
        (enc["use"].as_str(), enc["alg"].as_str()),
        (Some("enc"), Some("RSA-OAEP-256"))
    );
    for key in json["keys"].as_array().unwrap() {
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(key.get(private).is_none());
        }
    }
}

#[test]
fn duplicate_kids_are_an_error() {
    let key = PrivateKey::generate(KeyAlgorithm::EcP256).unwrap();
    let err = build_jwks([
        published(&key, KeyUse::Sig, PublishedAlg::Es256, vec![]),
        published(&key, KeyUse::Sig, PublishedAlg::Es256, vec![]),
    ])
    .unwrap_err();
    assert!(matches!(err, IdentityError::DuplicateKid { ref kid } if kid == key.kid()));
}

#[test]
fn alg_must_fit_the_key_and_certificate_must_hold_the_same_key() {
    let rsa = PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    let ec = PrivateKey::generate(KeyAlgorithm::EcP256).unwrap();
    assert!(build_jwks([published(&ec, KeyUse::Sig, PublishedAlg::Ps256, vec![])]).is_err());
    assert!(
        build_jwks([published(
            &rsa,
            KeyUse::Sig,
            PublishedAlg::RsaOaep256,
            vec![]
        )])
        .is_err()
    );
    let other_cert = cert::self_signed(
        &ec,
        &CertificateProfile::new("CN=x", Duration::from_secs(60)).unwrap(),
        now(),
    )
    .unwrap();
    assert!(
        build_jwks([published(
            &rsa,
            KeyUse::Sig,
            PublishedAlg::Ps256,
            vec![other_cert.info.der]
        )])
        .is_err()
    );
}

/// Every way private material could leak through formatting.
#[test]
fn secret_holding_types_never_format_key_material() {
    for alg in [KeyAlgorithm::Rsa2048, KeyAlgorithm::EcP256] {
        let key = PrivateKey::generate(alg).unwrap();
        let signer = key.signer().unwrap();
        let pem = key.to_pkcs8_pem();
        let private_jwk = key.to_private_jwk_json().unwrap();
        let members: serde_json::Value = serde_json::from_str(private_jwk.expose_secret()).unwrap();
        let target = AssertionTarget {
            client_id: "c",
            issuer: "https://as",
            token_endpoint: "https://as/token",
        };
        let jws = assertion::client_assertion(&signer, target, &AssertionPolicy::default(), now())
            .unwrap();

        let mut forbidden: Vec<String> = ["d", "p", "q", "dp", "dq", "qi"]
            .iter()
            .filter_map(|m| members[m].as_str().map(str::to_owned))
            .collect();
        forbidden.extend(
            pem.expose_secret()
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .map(str::to_owned),
        );
        forbidden.push(STANDARD.encode(key.expose_pkcs8_der()));
        forbidden.push(format!("{:?}", key.expose_pkcs8_der()));
        forbidden.push(jws.expose_secret().to_owned());
        forbidden.push(jws.expose_secret().rsplit('.').next().unwrap().to_owned());

        // An error from a bad private JWK must not echo its members either.
        let mut broken = members.clone();
        broken["kty"] = serde_json::json!("RSA");
        broken["qi"] = serde_json::json!("!!not base64!!");
        let jwk_error = PrivateKey::from_private_jwk_json(&broken.to_string()).unwrap_err();
        let json_error =
            PrivateKey::from_private_jwk_json(&private_jwk.expose_secret().replace('}', ","))
                .unwrap_err();

        let rendered = [
            format!("{key:?}"),
            format!("{key:#?}"),
            format!("{key}"),
            format!("{signer:?}"),
            format!("{pem:?}"),
            format!("{private_jwk:?}"),
            format!("{jws:?}"),
            format!("{jwk_error} {jwk_error:?}"),
            format!("{json_error} {json_error:?}"),
        ];
        for text in &rendered {
            for secret in &forbidden {
                assert!(
                    !text.contains(secret.as_str()),
                    "{alg}: {text:?} leaks material"
                );
            }
        }
        assert!(
            rendered[0].contains(key.kid()) && rendered[0].contains(alg.name()),
            "Debug still identifies the key"
        );
    }
}
