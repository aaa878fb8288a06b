//! Client assertions and signed registration requests, checked against docs/protocol.md §4.1/§3.4
//! and V2, and verified by an independent JWT library (jsonwebtoken), which must reject a
//! wrong key, a wrong `aud` and an expired `exp`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure with a location

use std::time::Duration;

use jiff::Timestamp;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use tpp_operator::identity::assertion::{self, AssertionPolicy, AssertionTarget, Audience};
use tpp_operator::identity::jwt::decode_unverified;
use tpp_operator::identity::signed_request::{
    self, ClientMetadata, RegistrationRequest, TokenEndpointAuth,
};
use tpp_operator::identity::{IdentityError, Jwk, KeyAlgorithm, PrivateKey};

// docs/protocol.md §9 V2
const ISSUER: &str = "https://auth1.sandbox.mya.ozoneapi.io";
const TOKEN_ENDPOINT: &str = "https://as1.sandbox.mya.ozoneapi.io/token";
const CLIENT_ID: &str = "55aa605c-89ef-4473-aa88-47709f0ff383";

fn target() -> AssertionTarget<'static> {
    AssertionTarget {
        client_id: CLIENT_ID,
        issuer: ISSUER,
        token_endpoint: TOKEN_ENDPOINT,
    }
}

fn decoding_key(jwk: &Jwk) -> DecodingKey {
    match jwk.kty {
        tpp_operator::identity::KeyType::Rsa => {
            DecodingKey::from_rsa_components(jwk.n.as_deref().unwrap(), jwk.e.as_deref().unwrap())
        }
        tpp_operator::identity::KeyType::Ec => {
            DecodingKey::from_ec_components(jwk.x.as_deref().unwrap(), jwk.y.as_deref().unwrap())
        }
    }
    .unwrap()
}

fn verify(jws: &str, jwk: &Jwk, alg: Algorithm, aud: &str) -> jsonwebtoken::errors::Result<Value> {
    let mut validation = Validation::new(alg);
    validation.set_audience(&[aud]);
    validation.set_issuer(&[CLIENT_ID]);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "iat", "iss", "sub", "aud"]);
    jsonwebtoken::decode::<Value>(jws, &decoding_key(jwk), &validation).map(|data| data.claims)
}

#[test]
fn assertion_has_the_v2_shape() {
    let key = PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    let now = Timestamp::from_second(1_769_766_702).unwrap();
    let jws = assertion::client_assertion(
        &key.signer().unwrap(),
        target(),
        &AssertionPolicy::default(),
        now,
    )
    .unwrap();
    let decoded = decode_unverified(jws.expose_secret()).unwrap();

    assert_eq!(
        decoded.header,
        json!({"alg": "PS256", "kid": key.kid(), "typ": "JWT"})
            .as_object()
            .unwrap()
            .clone()
    );
    assert_eq!(decoded.kid().unwrap().len(), 43);
    assert_eq!(decoded.str_claim("iss"), Some(CLIENT_ID));
    assert_eq!(decoded.str_claim("sub"), Some(CLIENT_ID));
    assert_eq!(
        decoded.claims["aud"],
        json!(ISSUER),
        "aud is a plain string"
    );
    assert_eq!(
        decoded.claims["iat"],
        json!(1_769_766_702 - 5),
        "iat is integer seconds, backdated by the default 5 s"
    );
    assert_eq!(decoded.claims["exp"], json!(1_769_766_702 - 5 + 300));
    assert!(!decoded.claims.contains_key("nbf"));
    let jti = uuid::Uuid::parse_str(decoded.str_claim("jti").unwrap()).unwrap();
    assert_eq!(jti.get_version_num(), 4);
    decoded.verify_with(&key.public_jwk()).unwrap();
}

#[test]
fn ps256_assertion_verifies_independently_and_fails_for_wrong_key_aud_or_exp() {
    let key = PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    let signer = key.signer().unwrap();
    let policy = AssertionPolicy::default();
    let fresh = assertion::client_assertion(&signer, target(), &policy, Timestamp::now()).unwrap();
    let claims = verify(
        fresh.expose_secret(),
        &key.public_jwk(),
        Algorithm::PS256,
        ISSUER,
    )
    .unwrap();
    assert_eq!(claims["sub"], CLIENT_ID);

    let other = PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    assert!(
        verify(
            fresh.expose_secret(),
            &other.public_jwk(),
            Algorithm::PS256,
            ISSUER
        )
        .is_err(),
        "wrong key"
    );
    assert!(
        verify(
            fresh.expose_secret(),
            &key.public_jwk(),
            Algorithm::PS256,
            TOKEN_ENDPOINT
        )
        .is_err(),
        "wrong aud"
    );

    let an_hour_ago = Timestamp::from_second(Timestamp::now().as_second() - 3600).unwrap();
    let stale = assertion::client_assertion(&signer, target(), &policy, an_hour_ago).unwrap();
    let err = verify(
        stale.expose_secret(),
        &key.public_jwk(),
        Algorithm::PS256,
        ISSUER,
    )
    .unwrap_err();
    assert!(
        matches!(
            err.kind(),
            jsonwebtoken::errors::ErrorKind::ExpiredSignature
        ),
        "{err:?}"
    );
}

#[test]
fn es256_assertion_verifies_independently() {
    let key = PrivateKey::generate(KeyAlgorithm::EcP256).unwrap();
    let jws = assertion::client_assertion(
        &key.signer().unwrap(),
        target(),
        &AssertionPolicy::default(),
        Timestamp::now(),
    )
    .unwrap();
    assert_eq!(
        decode_unverified(jws.expose_secret()).unwrap().alg(),
        Some("ES256")
    );
    verify(
        jws.expose_secret(),
        &key.public_jwk(),
        Algorithm::ES256,
        ISSUER,
    )
    .unwrap();
    let other = PrivateKey::generate(KeyAlgorithm::EcP256).unwrap();
    assert!(
        verify(
            jws.expose_secret(),
            &other.public_jwk(),
            Algorithm::ES256,
            ISSUER
        )
        .is_err()
    );
}

#[test]
fn audience_policy_picks_issuer_token_endpoint_or_literal_and_nbf_equals_iat() {
    let signer = PrivateKey::generate(KeyAlgorithm::EcP256)
        .unwrap()
        .signer()
        .unwrap();
    let now = Timestamp::from_second(1_800_000_000).unwrap();
    for (audience, expected) in [
        (Audience::Issuer, ISSUER),
        (Audience::TokenEndpoint, TOKEN_ENDPOINT),
        (
            Audience::Literal("001580000103UAQAA2".into()),
            "001580000103UAQAA2",
        ),
    ] {
        let policy = AssertionPolicy {
            audience,
            lifetime: Duration::from_secs(120),
            include_nbf: true,
            backdate: Duration::from_secs(3),
        };
        let decoded = decode_unverified(
            assertion::client_assertion(&signer, target(), &policy, now)
                .unwrap()
                .expose_secret(),
        )
        .unwrap();
        assert_eq!(decoded.str_claim("aud"), Some(expected));
        assert_eq!(decoded.claims["nbf"], decoded.claims["iat"]);
        assert_eq!(decoded.claims["iat"], json!(1_800_000_000 - 3));
        assert_eq!(decoded.claims["exp"], json!(1_800_000_000 - 3 + 120));
    }
}

#[test]
fn iat_is_backdated_and_exp_minus_iat_stays_the_lifetime() {
    // An AS whose clock is a few seconds behind must not see an assertion issued "in the
    // future" (issue 13, item 8); an AS that checks exp - iat against its maximum (300 s for a
    // strict FAPI AS, the default lifetime) must still see exactly the lifetime.
    let signer = PrivateKey::generate(KeyAlgorithm::EcP256)
        .unwrap()
        .signer()
        .unwrap();
    let now = Timestamp::from_second(1_800_000_000).unwrap();
    let mint = |lifetime: u64, backdate: u64| {
        let policy = AssertionPolicy {
            lifetime: Duration::from_secs(lifetime),
            backdate: Duration::from_secs(backdate),
            ..AssertionPolicy::default()
        };
        let jws = assertion::client_assertion(&signer, target(), &policy, now).unwrap();
        let decoded = decode_unverified(jws.expose_secret()).unwrap();
        (
            decoded.claims["iat"].as_i64().unwrap() - 1_800_000_000,
            decoded.claims["exp"].as_i64().unwrap() - 1_800_000_000,
        )
    };
    assert_eq!(mint(300, 5), (-5, 295));
    assert_eq!(mint(300, 0), (0, 300));
    assert_eq!(mint(600, 60), (-60, 540));
    // A short lifetime keeps at least half of it ahead of now.
    assert_eq!(mint(4, 5), (-2, 2));
    let too_far = AssertionPolicy {
        backdate: Duration::from_secs(61),
        ..AssertionPolicy::default()
    };
    let err = assertion::client_assertion(&signer, target(), &too_far, now).unwrap_err();
    assert_eq!(err.reason(), "AssertionBackdateInvalid");
}

#[test]
fn lifetimes_over_600_seconds_or_zero_are_refused() {
    let signer = PrivateKey::generate(KeyAlgorithm::EcP256)
        .unwrap()
        .signer()
        .unwrap();
    for (seconds, ok) in [(600, true), (601, false), (0, false), (3600, false)] {
        let policy = AssertionPolicy {
            lifetime: Duration::from_secs(seconds),
            ..AssertionPolicy::default()
        };
        let result = assertion::client_assertion(&signer, target(), &policy, Timestamp::now());
        assert_eq!(result.is_ok(), ok, "{seconds}s");
        if !ok {
            assert!(matches!(result, Err(IdentityError::Lifetime { .. })));
        }
    }
}

#[test]
fn every_assertion_has_a_fresh_jti() {
    let signer = PrivateKey::generate(KeyAlgorithm::EcP256)
        .unwrap()
        .signer()
        .unwrap();
    let now = Timestamp::now();
    let jtis: std::collections::HashSet<String> = (0..20)
        .map(|_| {
            let jws =
                assertion::client_assertion(&signer, target(), &AssertionPolicy::default(), now)
                    .unwrap();
            decode_unverified(jws.expose_secret())
                .unwrap()
                .str_claim("jti")
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(jtis.len(), 20);
}

#[test]
fn fractional_v2_style_numeric_dates_are_read_exactly() {
    // A V2-shaped token with fractional NumericDates, as OFM samples carry.
    let key = PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    let claims = json!({
        "aud": ISSUER, "iss": CLIENT_ID, "sub": CLIENT_ID,
        "jti": "633bfebd-b960-4330-80c7-0f163a52c4e3",
        "iat": 1769766702.739, "exp": 1769767012.739
    });
    let payload = josekit::jwt::JwtPayload::from_map(claims.as_object().unwrap().clone()).unwrap();
    let jws = josekit::jwt::encode_with_signer(
        &payload,
        &josekit::jws::JwsHeader::new(),
        &key.signer().unwrap(),
    )
    .unwrap();
    let decoded = decode_unverified(&jws).unwrap();
    decoded.verify_with(&key.public_jwk()).unwrap();
    let iat = decoded.time_claim("iat").unwrap().unwrap();
    let exp = decoded.time_claim("exp").unwrap().unwrap();
    assert_eq!(iat.as_millisecond(), 1_769_766_702_739);
    assert_eq!(exp.as_millisecond(), 1_769_767_012_739);
    assert!(decoded.time_claim("nbf").unwrap().is_none());
}

#[test]
fn signed_registration_request_matches_section_3_4_and_verifies() {
    let key = PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    let metadata = ClientMetadata {
        redirect_uris: vec!["https://tpp.example/cb".into()],
        auth: TokenEndpointAuth::TlsClientAuth {
            subject_dn: "CN=5aRav7KBdrEqqs1e1fwNgk,O=OpenBanking,C=GB".into(),
        },
        grant_types: vec!["client_credentials".into()],
        response_types: vec!["code".into()],
        scopes: vec!["openid".into(), "accounts".into()],
    }
    .to_map();
    let ssa = "eyJhbGciOiJQUzI1NiJ9.eyJzb2Z0d2FyZV9pZCI6IngifQ.c2ln";
    let request = RegistrationRequest {
        software_id: "5aRav7KBdrEqqs1e1fwNgk",
        software_statement: ssa,
        audience: ISSUER,
        metadata: &metadata,
    };
    let now = Timestamp::now();
    let jws =
        signed_request::signed_registration_request(&key.signer().unwrap(), request, now).unwrap();
    let decoded = decode_unverified(jws.expose_secret()).unwrap();

    assert_eq!(
        decoded.header,
        json!({"alg": "PS256", "kid": key.kid()})
            .as_object()
            .unwrap()
            .clone()
    );
    assert_eq!(decoded.str_claim("iss"), Some("5aRav7KBdrEqqs1e1fwNgk"));
    assert_eq!(
        decoded.str_claim("software_id"),
        Some("5aRav7KBdrEqqs1e1fwNgk")
    );
    assert_eq!(decoded.str_claim("software_statement"), Some(ssa));
    assert_eq!(decoded.str_claim("aud"), Some(ISSUER));
    assert_eq!(decoded.claims["iat"], json!(now.as_second()));
    assert_eq!(decoded.claims["exp"], json!(now.as_second() + 300));
    assert!(uuid::Uuid::parse_str(decoded.str_claim("jti").unwrap()).is_ok());
    assert_eq!(
        decoded.str_claim("tls_client_auth_subject_dn"),
        Some("CN=5aRav7KBdrEqqs1e1fwNgk,O=OpenBanking,C=GB")
    );
    assert_eq!(
        decoded.claims["tls_client_certificate_bound_access_tokens"],
        json!(true)
    );

    let mut validation = Validation::new(Algorithm::PS256);
    validation.set_audience(&[ISSUER]);
    validation.set_issuer(&["5aRav7KBdrEqqs1e1fwNgk"]);
    jsonwebtoken::decode::<Value>(
        jws.expose_secret(),
        &decoding_key(&key.public_jwk()),
        &validation,
    )
    .unwrap();
    validation.set_audience(&["001580000103UAQAA2"]);
    assert!(
        jsonwebtoken::decode::<Value>(
            jws.expose_secret(),
            &decoding_key(&key.public_jwk()),
            &validation
        )
        .is_err()
    );
}

#[test]
fn registration_metadata_cannot_override_request_claims() {
    let signer = PrivateKey::generate(KeyAlgorithm::EcP256)
        .unwrap()
        .signer()
        .unwrap();
    let mut metadata = serde_json::Map::new();
    metadata.insert("iss".into(), json!("someone-else"));
    let request = RegistrationRequest {
        software_id: "s",
        software_statement: "a.b.c",
        audience: ISSUER,
        metadata: &metadata,
    };
    let err = signed_request::signed_registration_request(&signer, request, Timestamp::now())
        .unwrap_err();
    assert!(
        matches!(err, IdentityError::ReservedClaim { ref claim } if claim == "iss"),
        "{err}"
    );
}
