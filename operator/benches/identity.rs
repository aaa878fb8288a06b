//! Identity benchmarks: RSA key generation, PS256 assertion signing with the cached
//! `Signer` against the raw aws-lc-rs RSA-PSS floor on the same bytes, and rcgen
//! certificate generation. After criterion's groups, a bounded interleaved timing loop
//! prints `ratio assertion_sign/raw_pss_sign = x.xx` (target: within 1.3x) and sign/s to set
//! beside `hack/bench-floor.sh` (`openssl speed rsa2048`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure with a location

use std::hint::black_box;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PSS_SHA256, RsaKeyPair};
use criterion::{Criterion, criterion_group};
use jiff::Timestamp;
use secrecy::ExposeSecret as _;
use tpp_operator::identity::assertion::{AssertionPolicy, AssertionTarget, client_assertion};
use tpp_operator::identity::cert::{CertificateProfile, self_signed};
use tpp_operator::identity::{KeyAlgorithm, PrivateKey, Signer};

const TARGET: AssertionTarget<'static> = AssertionTarget {
    client_id: "55aa605c-89ef-4473-aa88-47709f0ff383",
    issuer: "https://auth1.sandbox.mya.ozoneapi.io",
    token_endpoint: "https://as1.sandbox.mya.ozoneapi.io/token",
};

struct Fixture {
    key: PrivateKey,
    signer: Signer,
    raw: RsaKeyPair,
    signing_input: Vec<u8>,
}

fn fixture(alg: KeyAlgorithm) -> Fixture {
    let key = PrivateKey::generate(alg).expect("key generation");
    let signer = key.signer().expect("signer");
    let raw = RsaKeyPair::from_pkcs8(key.expose_pkcs8_der()).expect("aws-lc-rs parses our PKCS#8");
    let jws = client_assertion(
        &signer,
        TARGET,
        &AssertionPolicy::default(),
        Timestamp::now(),
    )
    .expect("assertion");
    let signing_input = jws
        .expose_secret()
        .rsplit_once('.')
        .map(|(input, _)| input.as_bytes().to_vec())
        .unwrap_or_default();
    Fixture {
        key,
        signer,
        raw,
        signing_input,
    }
}

fn assertion_sign(f: &Fixture) {
    black_box(
        client_assertion(
            &f.signer,
            TARGET,
            &AssertionPolicy::default(),
            Timestamp::now(),
        )
        .expect("assertion"),
    );
}

fn raw_pss_sign(f: &Fixture, rng: &SystemRandom, out: &mut [u8]) {
    f.raw
        .sign(&RSA_PSS_SHA256, rng, black_box(&f.signing_input), out)
        .expect("raw sign");
    black_box(out);
}

fn benches_identity(c: &mut Criterion) {
    let mut keygen = c.benchmark_group("keygen");
    keygen.sample_size(10);
    keygen.bench_function("rsa2048", |b| {
        b.iter(|| PrivateKey::generate(KeyAlgorithm::Rsa2048).expect("keygen"))
    });
    keygen.bench_function("rsa3072", |b| {
        b.iter(|| PrivateKey::generate(KeyAlgorithm::Rsa3072).expect("keygen"))
    });
    keygen.finish();

    let f = fixture(KeyAlgorithm::Rsa2048);
    let rng = SystemRandom::new();
    let mut out = vec![0; f.raw.public_modulus_len()];
    let mut sign = c.benchmark_group("sign_rsa2048");
    sign.bench_function("assertion_sign", |b| b.iter(|| assertion_sign(&f)));
    sign.bench_function("raw_pss_sign", |b| {
        b.iter(|| raw_pss_sign(&f, &rng, &mut out))
    });
    let josekit = f.key.to_josekit_signer().expect("josekit signer");
    sign.bench_function("josekit_openssl_sign", |b| {
        b.iter(|| josekit.sign(black_box(&f.signing_input)).expect("sign"))
    });
    sign.finish();

    let profile = CertificateProfile::new(
        "C=GB,O=Example TPP,CN=bench",
        Duration::from_secs(365 * 86_400),
    )
    .expect("profile");
    let mut cert = c.benchmark_group("certificate");
    cert.bench_function("self_signed_rsa2048", |b| {
        b.iter(|| self_signed(&f.key, &profile, Timestamp::now()).expect("cert"))
    });
    cert.finish();
}

criterion_group!(benches, benches_identity);

/// Interleaved rounds so that load from other processes hits both sides alike.
fn ratios() {
    const ROUNDS: u32 = 10;
    const PER_ROUND: u32 = 20; // 200 iterations of each in total
    let f = fixture(KeyAlgorithm::Rsa2048);
    let rng = SystemRandom::new();
    let mut out = vec![0; f.raw.public_modulus_len()];
    let josekit = f.key.to_josekit_signer().expect("josekit signer");
    let (mut assertion, mut raw, mut jose) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for _ in 0..PER_ROUND {
            assertion_sign(&f);
        }
        assertion += start.elapsed();
        let start = Instant::now();
        for _ in 0..PER_ROUND {
            raw_pss_sign(&f, &rng, &mut out);
        }
        raw += start.elapsed();
        let start = Instant::now();
        for _ in 0..PER_ROUND {
            black_box(josekit.sign(black_box(&f.signing_input)).expect("sign"));
        }
        jose += start.elapsed();
    }
    let n = f64::from(ROUNDS * PER_ROUND);
    let per_second = |d: Duration| n / d.as_secs_f64();
    println!(
        "ratio assertion_sign/raw_pss_sign = {:.2}",
        assertion.as_secs_f64() / raw.as_secs_f64()
    );
    println!(
        "ratio josekit_openssl_sign/raw_pss_sign = {:.2}",
        jose.as_secs_f64() / raw.as_secs_f64()
    );
    println!(
        "rsa2048 sign/s: assertion_sign = {:.0}, raw_pss_sign = {:.0}, josekit_openssl_sign = {:.0} (compare: hack/bench-floor.sh)",
        per_second(assertion),
        per_second(raw),
        per_second(jose)
    );
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    ratios();
}
