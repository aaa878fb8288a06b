//! The credentials Secret's server-side apply body: `store::build::credentials_secret` and
//! `serde_json::to_vec` (what kube's `Patch::Apply` sends), against the floor measured in the same
//! run: base64 of the same values into a flat JSON object (the bytes any apply body must hold).
//! A bounded interleaved loop prints `ratio secret_apply_body/floor = x.xx`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure with a location

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use base64::Engine as _;
use criterion::{Criterion, criterion_group};
use jiff::Timestamp;
use secrecy::ExposeSecret as _;
use tpp_operator::crd::{
    AuthorizationServerRef, Registration, RegistrationMode, TppClient, TppClientSpec,
};
use tpp_operator::identity::cert::{CertificateProfile, self_signed};
use tpp_operator::identity::{KeyAlgorithm, PrivateKey};
use tpp_operator::redact::Sensitive;
use tpp_operator::rotation::TokenRecord;
use tpp_operator::store::build::{CredentialsContent, credentials_secret};
use tpp_operator::store::state::StoredToken;

struct Fixture {
    client: TppClient,
    cert_pem: String,
    key_pem: String,
    signing_pem: String,
    tokens: BTreeMap<String, StoredToken>,
}

fn fixture() -> Fixture {
    let mut client = TppClient::new(
        "payments",
        TppClientSpec {
            authorization_server_ref: AuthorizationServerRef {
                name: "sandbox".into(),
                ..Default::default()
            },
            registration: Registration {
                mode: RegistrationMode::Dynamic,
                client_id: None,
                metadata: Default::default(),
                software_statement_ref: None,
                initial_access_token_ref: None,
                deletion_policy: Default::default(),
                jwks_uri: None,
                max_unknown_attempts: 1,
                on_lost: Default::default(),
            },
            authentication: Default::default(),
            signing_key: Default::default(),
            encryption_key: None,
            transport_certificate: Default::default(),
            tokens: vec![],
            secret_template: None,
            suspend: false,
            consumers: None,
            credentials: None,
        },
    );
    client.metadata.namespace = Some("payments".into());
    client.metadata.uid = Some("0b7c6a8e-3c1f-4f57-9a43-1d2f0e4b5c6d".into());
    let key = PrivateKey::generate(KeyAlgorithm::Rsa2048).expect("key");
    let signing = PrivateKey::generate(KeyAlgorithm::Rsa2048).expect("key");
    let profile =
        CertificateProfile::new("C=GB,O=Example TPP,CN=bench", Duration::from_secs(86_400))
            .expect("profile");
    let cert = self_signed(&key, &profile, Timestamp::now()).expect("cert");
    let now = Timestamp::now();
    let tokens = BTreeMap::from([(
        "accounts".to_owned(),
        StoredToken {
            record: TokenRecord {
                name: "accounts".into(),
                issued_at: now,
                expires_at: now,
                cert_x5t_s256: "x".repeat(43),
            },
            access_token: Sensitive::new(uuid::Uuid::new_v4().to_string()),
            scope: "accounts".into(),
        },
    )]);
    Fixture {
        client,
        cert_pem: cert.pem,
        key_pem: key.to_pkcs8_pem().expose_secret().to_owned(),
        signing_pem: signing.to_pkcs8_pem().expose_secret().to_owned(),
        tokens,
    }
}

fn content(f: &Fixture) -> CredentialsContent<'_> {
    CredentialsContent {
        cert_pem: &f.cert_pem,
        key_pem: &f.key_pem,
        ca_pem: &f.cert_pem,
        client_id: "55aa605c-89ef-4473-aa88-47709f0ff383",
        issuer: "https://localhost:8443",
        token_endpoint: "https://127.0.0.1:8443/token",
        signing: Some((
            &f.signing_pem,
            "kid-0123456789abcdef0123456789abcdef01234567",
        )),
        tokens: &f.tokens,
    }
}

fn product(f: &Fixture) -> usize {
    let secret = credentials_secret(&f.client, &content(f));
    serde_json::to_vec(&secret).expect("json").len()
}

/// The same values, base64-encoded into one flat JSON object.
fn floor(f: &Fixture) -> usize {
    let c = content(f);
    let token = f.tokens.values().next().expect("token");
    let expires = token.record.expires_at.to_string();
    let values: [(&str, &str); 12] = [
        ("tls.crt", c.cert_pem),
        ("tls.key", c.key_pem),
        ("ca.crt", c.ca_pem),
        ("client_id", c.client_id),
        ("issuer", c.issuer),
        ("token_endpoint", c.token_endpoint),
        ("signing.key", f.signing_pem.as_str()),
        (
            "signing.kid",
            "kid-0123456789abcdef0123456789abcdef01234567",
        ),
        ("accounts.access_token", token.access_token.expose()),
        ("accounts.expires_at", &expires),
        ("accounts.issued_at", &expires),
        ("accounts.scope", &token.scope),
    ];
    let mut out = Vec::with_capacity(16 * 1024);
    out.push(b'{');
    for (i, (k, v)) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b"\":\"");
        let mut s = String::new();
        base64::engine::general_purpose::STANDARD.encode_string(v.as_bytes(), &mut s);
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
    out.push(b'}');
    black_box(&out);
    out.len()
}

fn benches_secret(c: &mut Criterion) {
    let f = fixture();
    let mut g = c.benchmark_group("secret_apply_body");
    g.bench_function("credentials_secret_to_vec", |b| {
        b.iter(|| product(black_box(&f)))
    });
    g.bench_function("floor_base64_flat_json", |b| {
        b.iter(|| floor(black_box(&f)))
    });
    g.finish();
}

criterion_group!(benches, benches_secret);

/// Interleaved rounds so that load from other processes hits both sides alike.
fn ratios() {
    const ROUNDS: u32 = 20;
    const PER_ROUND: u32 = 500;
    let f = fixture();
    let (mut product_t, mut floor_t) = (Duration::ZERO, Duration::ZERO);
    let (mut product_len, mut floor_len) = (0, 0);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for _ in 0..PER_ROUND {
            product_len = product(black_box(&f));
        }
        product_t += t.elapsed();
        let t = Instant::now();
        for _ in 0..PER_ROUND {
            floor_len = floor(black_box(&f));
        }
        floor_t += t.elapsed();
    }
    let n = f64::from(ROUNDS * PER_ROUND);
    println!(
        "ratio secret_apply_body/floor = {:.2} ({:.1} us vs {:.1} us; {product_len} vs {floor_len} bytes)",
        product_t.as_secs_f64() / floor_t.as_secs_f64(),
        product_t.as_secs_f64() * 1e6 / n,
        floor_t.as_secs_f64() * 1e6 / n
    );
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    ratios();
}
