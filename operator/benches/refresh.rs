//! The token refresh path as the reconciler runs it, client side, against its floor, measured
//! in the same run.
//!
//! Product path (`reconcile::act::refresh_tokens`): read the active signing key from its stored
//! private JWK, parse it into a `Signer`, mint the `private_key_jwt` assertion with
//! `identity::assertion::client_assertion`, build the `client_credentials` form body (the crate's
//! `Form` is private; the body is built the same way, with `url::form_urlencoded`), parse the
//! transport identity with `ClientIdentity::from_pem` (as `Session::identity` does), then a full
//! mTLS handshake with an RSA-2048 client certificate. `_pool_miss` also rebuilds the rustls
//! configuration with `oauth::tls::tls_config` (what a `ClientPool` miss costs).
//!
//! Floor: a raw aws-lc-rs RSA-PSS sign of the same signing input with a held key, plus the same
//! handshake; `_parse` adds the PKCS#8 parse of the key (keys not held parsed).
//! A bounded interleaved loop prints `ratio <path>/<floor> = x.xx`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure with a location

#[allow(dead_code)] // the handshake floor parts serve the handshake bench
#[path = "support/mtls.rs"]
mod mtls;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PSS_SHA256, RsaKeyPair};
use criterion::{Criterion, criterion_group};
use jiff::Timestamp;
use rustls::ClientConfig;
use secrecy::{ExposeSecret as _, SecretString};
use tpp_operator::identity::assertion::{
    AssertionPolicy, AssertionTarget, Audience, client_assertion,
};
use tpp_operator::identity::cert::{CertificateProfile, self_signed};
use tpp_operator::identity::{KeyAlgorithm, PrivateKey};
use tpp_operator::oauth::ClientIdentity;
use tpp_operator::oauth::client_auth::JWT_BEARER;
use tpp_operator::oauth::tls::tls_config;

const CLIENT_ID: &str = "55aa605c-89ef-4473-aa88-47709f0ff383";
const ISSUER: &str = "https://localhost:8443";
const TOKEN_ENDPOINT: &str = "https://127.0.0.1:8443/token";

struct Fixture {
    server: mtls::Server,
    signing_jwk: SecretString,
    signing_pkcs8: Vec<u8>,
    raw: RsaKeyPair,
    signing_input: Vec<u8>,
    cert_pem: String,
    transport_key_pem: SecretString,
    client: Arc<ClientConfig>,
    rng: SystemRandom,
}

fn fixture() -> Fixture {
    let server = mtls::server();
    let signing = PrivateKey::generate(KeyAlgorithm::Rsa2048).expect("signing key");
    let transport = PrivateKey::generate(KeyAlgorithm::Rsa2048).expect("transport key");
    let profile =
        CertificateProfile::new("C=GB,O=Example TPP,CN=bench", Duration::from_secs(86_400))
            .expect("profile");
    let cert = self_signed(&transport, &profile, Timestamp::now()).expect("cert");
    let transport_key_pem = transport.to_pkcs8_pem();
    let identity =
        ClientIdentity::from_pem(cert.pem.as_bytes(), transport_key_pem.clone()).expect("identity");
    let client =
        Arc::new(tls_config(server.ca_pem.as_bytes(), Some(&identity)).expect("tls config"));
    let jws = client_assertion(
        &signing.signer().expect("signer"),
        target(),
        &policy(),
        Timestamp::now(),
    )
    .expect("assertion");
    let signing_input = jws
        .expose_secret()
        .rsplit_once('.')
        .map(|(i, _)| i.as_bytes().to_vec())
        .unwrap_or_default();
    Fixture {
        signing_jwk: signing.to_private_jwk_json().expect("jwk"),
        signing_pkcs8: signing.expose_pkcs8_der().to_vec(),
        raw: RsaKeyPair::from_pkcs8(signing.expose_pkcs8_der()).expect("raw key"),
        signing_input,
        cert_pem: cert.pem,
        transport_key_pem,
        client,
        server,
        rng: SystemRandom::new(),
    }
}

fn target() -> AssertionTarget<'static> {
    AssertionTarget {
        client_id: CLIENT_ID,
        issuer: ISSUER,
        token_endpoint: TOKEN_ENDPOINT,
    }
}

/// As `reconcile::act::KeyMinter` builds it: the literal audience, a 300 s lifetime.
fn policy() -> AssertionPolicy {
    AssertionPolicy {
        audience: Audience::Literal(ISSUER.into()),
        lifetime: Duration::from_secs(300),
        include_nbf: false,
        backdate: tpp_operator::identity::assertion::DEFAULT_BACKDATE,
    }
}

/// Everything before the handshake; returns the identity for a pool miss.
fn prepare(f: &Fixture) -> ClientIdentity {
    let key = PrivateKey::from_private_jwk_json(f.signing_jwk.expose_secret()).expect("jwk");
    let signer = key.signer().expect("signer");
    let assertion =
        client_assertion(&signer, target(), &policy(), Timestamp::now()).expect("assertion");
    let mut body = url::form_urlencoded::Serializer::new(String::new());
    body.append_pair("grant_type", "client_credentials")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("scope", "accounts")
        .append_pair("client_assertion_type", JWT_BEARER)
        .append_pair("client_assertion", assertion.expose_secret());
    black_box(SecretString::from(body.finish()));
    ClientIdentity::from_pem(f.cert_pem.as_bytes(), f.transport_key_pem.clone()).expect("identity")
}

fn product(f: &Fixture) -> Duration {
    let t = Instant::now();
    black_box(prepare(f));
    t.elapsed() + mtls::handshake(&f.client, &f.server.config).0
}

fn product_pool_miss(f: &Fixture) -> Duration {
    let t = Instant::now();
    let identity = prepare(f);
    let config =
        Arc::new(tls_config(f.server.ca_pem.as_bytes(), Some(&identity)).expect("tls config"));
    t.elapsed() + mtls::handshake(&config, &f.server.config).0
}

fn raw_sign(f: &Fixture, key: &RsaKeyPair) {
    let mut out = [0u8; 256];
    key.sign(
        &RSA_PSS_SHA256,
        &f.rng,
        black_box(&f.signing_input),
        &mut out,
    )
    .expect("sign");
    black_box(out);
}

fn floor(f: &Fixture) -> Duration {
    let t = Instant::now();
    raw_sign(f, &f.raw);
    t.elapsed() + mtls::handshake(&f.client, &f.server.config).0
}

fn floor_parse(f: &Fixture) -> Duration {
    let t = Instant::now();
    let key = RsaKeyPair::from_pkcs8(black_box(&f.signing_pkcs8)).expect("parse");
    raw_sign(f, &key);
    t.elapsed() + mtls::handshake(&f.client, &f.server.config).0
}

type Path = (&'static str, fn(&Fixture) -> Duration);
const PATHS: [Path; 4] = [
    ("refresh_product", product),
    ("refresh_product_pool_miss", product_pool_miss),
    ("floor_sign_handshake", floor),
    ("floor_parse_sign_handshake", floor_parse),
];

fn benches_refresh(c: &mut Criterion) {
    let f = fixture();
    let mut g = c.benchmark_group("token_refresh_client_side");
    for (name, path) in PATHS {
        g.bench_function(name, |b| b.iter_custom(|n| mtls::sum(n, || path(&f))));
    }
    g.finish();
}

criterion_group!(benches, benches_refresh);

/// Interleaved rounds so that load from other processes hits every path alike.
fn ratios() {
    const ROUNDS: u32 = 10;
    const PER_ROUND: u32 = 30;
    let f = fixture();
    let mut totals = [Duration::ZERO; 4];
    for _ in 0..ROUNDS {
        for ((_, path), total) in PATHS.iter().zip(totals.iter_mut()) {
            for _ in 0..PER_ROUND {
                *total += path(&f);
            }
        }
    }
    let n = f64::from(ROUNDS * PER_ROUND);
    let ms = |d: Duration| d.as_secs_f64() * 1e3 / n;
    for (name, t) in PATHS.iter().map(|p| p.0).zip(totals) {
        println!("{name}: {:.3} ms per refresh (client side)", ms(t));
    }
    let r = |a: usize, b: usize| totals[a].as_secs_f64() / totals[b].as_secs_f64();
    println!(
        "ratio refresh_product/floor_sign_handshake = {:.2}",
        r(0, 2)
    );
    println!(
        "ratio refresh_product/floor_parse_sign_handshake = {:.2} (target: <= 1.3)",
        r(0, 3)
    );
    println!(
        "ratio refresh_product_pool_miss/floor_parse_sign_handshake = {:.2}",
        r(1, 3)
    );
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    ratios();
}
