//! rustls TLS 1.3 mTLS handshakes in memory, client side only (rustls `ClientConnection` and
//! `ServerConnection` pumping bytes through buffers; only client-side calls are timed): full
//! with an RSA-2048 and with a P-256 client certificate, and resumed. Each is set beside its
//! physical floor measured in the same run (the negotiated key exchange, two P-256
//! verifications and the client's CertificateVerify signature; for a resumed handshake the key
//! exchange alone), and a bounded interleaved loop prints `ratio <bench>/<floor> = x.xx`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure with a location

#[path = "support/mtls.rs"]
mod mtls;

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use rustls::{ClientConfig, HandshakeKind, ServerConfig};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tpp_operator::identity::cert::{CertificateProfile, self_signed};
use tpp_operator::identity::{KeyAlgorithm, PrivateKey};

struct Case {
    name: &'static str,
    client: Arc<ClientConfig>,
    floor: mtls::Floor,
    resumed: bool,
}

fn client(server: &mtls::Server, alg: KeyAlgorithm, resume: bool) -> (Arc<ClientConfig>, Vec<u8>) {
    let key = PrivateKey::generate(alg).expect("key");
    let profile =
        CertificateProfile::new("C=GB,O=Example TPP,CN=bench", Duration::from_secs(86_400))
            .expect("profile");
    let cert = self_signed(&key, &profile, jiff::Timestamp::now()).expect("cert");
    let der = CertificateDer::from_pem_slice(cert.pem.as_bytes()).expect("certificate pem");
    let pkcs8 = key.expose_pkcs8_der().to_vec();
    let config = mtls::client_config(
        &server.ca_pem,
        vec![der],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.clone())),
        resume,
    );
    (config, pkcs8)
}

fn cases(server: &mtls::Server) -> Vec<Case> {
    let (rsa, rsa_pkcs8) = client(server, KeyAlgorithm::Rsa2048, false);
    let (p256, p256_pkcs8) = client(server, KeyAlgorithm::EcP256, false);
    let (resumable, res_pkcs8) = client(server, KeyAlgorithm::Rsa2048, true);
    // Prime the session cache; every resumed handshake then gets fresh tickets.
    let (_, first) = mtls::handshake(&resumable, &server.config);
    assert_eq!(first, HandshakeKind::Full);
    let (_, second) = mtls::handshake(&resumable, &server.config);
    assert_eq!(
        second,
        HandshakeKind::Resumed,
        "the session was not resumed"
    );
    vec![
        Case {
            name: "full_rsa2048",
            floor: mtls::Floor::new(&rsa, &server.config, &rsa_pkcs8),
            client: rsa,
            resumed: false,
        },
        Case {
            name: "full_p256",
            floor: mtls::Floor::new(&p256, &server.config, &p256_pkcs8),
            client: p256,
            resumed: false,
        },
        Case {
            name: "resumed_rsa2048",
            floor: mtls::Floor::new(&resumable, &server.config, &res_pkcs8),
            client: resumable,
            resumed: true,
        },
    ]
}

fn one(case: &Case, server: &Arc<ServerConfig>) -> Duration {
    let (t, kind) = mtls::handshake(&case.client, server);
    debug_assert_eq!(kind == HandshakeKind::Resumed, case.resumed);
    t
}

fn floor(case: &Case) -> Duration {
    if case.resumed {
        case.floor.key_exchange()
    } else {
        case.floor.full()
    }
}

fn benches_handshake(c: &mut Criterion) {
    let server = mtls::server();
    let cases = cases(&server);
    let mut g = c.benchmark_group("mtls_handshake_client_side");
    for case in &cases {
        g.bench_function(case.name, |b| {
            b.iter_custom(|n| mtls::sum(n, || one(case, &server.config)))
        });
        g.bench_function(format!("{}_floor", case.name), |b| {
            b.iter_custom(|n| mtls::sum(n, || floor(case)))
        });
    }
    g.finish();
}

criterion_group!(benches, benches_handshake);

/// Interleaved rounds so that load from other processes hits both sides alike.
fn ratios() {
    const ROUNDS: u32 = 10;
    const PER_ROUND: u32 = 50;
    let server = mtls::server();
    let cases = cases(&server);
    let mut totals = vec![(Duration::ZERO, Duration::ZERO); cases.len()];
    for _ in 0..ROUNDS {
        for (case, (bench, fl)) in cases.iter().zip(totals.iter_mut()) {
            for _ in 0..PER_ROUND {
                *bench += one(case, &server.config);
            }
            for _ in 0..PER_ROUND {
                *fl += floor(case);
            }
        }
    }
    let n = f64::from(ROUNDS * PER_ROUND);
    let ms = |d: Duration| d.as_secs_f64() * 1e3 / n;
    for (case, (bench, fl)) in cases.iter().zip(&totals) {
        println!(
            "ratio {0}/{0}_floor = {1:.2} ({2:.3} ms vs {3:.3} ms per handshake, client side)",
            case.name,
            bench.as_secs_f64() / fl.as_secs_f64(),
            ms(*bench),
            ms(*fl)
        );
    }
    println!(
        "ratio full_rsa2048/full_p256 = {:.2}; ratio resumed_rsa2048/full_rsa2048 = {:.2}",
        totals[0].0.as_secs_f64() / totals[1].0.as_secs_f64(),
        totals[2].0.as_secs_f64() / totals[0].0.as_secs_f64()
    );
}

fn main() {
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
    ratios();
}
