//! Property-based fuzzing of every parser of outside input the operator has (issue 13, item 9):
//! discovery documents, registration, token, introspection and PAR responses, error bodies,
//! `Retry-After`, JWKS, JWTs, PEM/DER certificates and keys, CA bundles, subject DNs,
//! durations, the persisted key state, and the CRD spec types from arbitrary JSON. No nightly
//! toolchain here for cargo-fuzz, so each target runs under proptest over three kinds of input:
//! arbitrary bytes (or strings), the seed corpus in `tests/fixtures/fuzz_corpus/<target>/` mutated byte by
//! byte (flips, truncation, insertion), and for JSON targets the corpus documents with random
//! nodes replaced by arbitrary JSON (structure-aware). The property is the same everywhere: the
//! parser returns (Ok or Err) without panicking, and a few targets check an invariant on Ok.
//!
//! Cases per target: `PROPTEST_CASES` (proptest's default 256 when unset; `make fuzz` runs
//! thousands, bounded in time by `FUZZ_SECONDS`). Each target prints how many cases it ran.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure with a location

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use secrecy::SecretString;
use serde_json::Value;
use tpp_operator::crd::{AuthorizationServerSpec, ClusterAuthorizationServerSpec, TppClientSpec};
use tpp_operator::duration::{self, Duration as SpecDuration};
use tpp_operator::identity::dn::SubjectDn;
use tpp_operator::identity::jwks::JwkSet;
use tpp_operator::identity::{PrivateKey, cert, jwt};
use tpp_operator::oauth::wire::{ErrorBody, RETRY_AFTER_CAP, parse_retry_after};
use tpp_operator::oauth::{
    ClientIdentity, OauthError, Step, discovery, endpoints, registration, token,
};
use tpp_operator::store::build::certificates_only;
use tpp_operator::store::state::{KEYS_STATE_KEY, KeysState};

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz_corpus")
        .join(target)
}

/// The seed inputs of `target`: one per file, or one per line for `*.txt` files.
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir(target))
        .unwrap_or_else(|e| panic!("corpus {target}: {e}"))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        if f.extension().is_some_and(|e| e == "txt") {
            out.extend(
                bytes
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(<[u8]>::to_vec),
            );
        } else {
            out.push(bytes);
        }
    }
    assert!(!out.is_empty(), "corpus {target} is empty");
    out
}

/// One byte-level mutation: flip, overwrite, insert or truncate at a position.
#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        match *m {
            Mutation::Flip(i, b) if len > 0 => bytes[i % len] ^= b,
            Mutation::Insert(i, b) => bytes.insert(i % (len + 1), b),
            Mutation::Remove(i) if len > 0 => {
                bytes.remove(i % len);
            }
            Mutation::Truncate(i) => bytes.truncate(i % (len + 1)),
            _ => {}
        }
    }
    bytes
}

/// Arbitrary bytes, or a corpus entry mutated.
fn inputs(target: &str) -> BoxedStrategy<Vec<u8>> {
    let seeds = corpus(target);
    let n = seeds.len();
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        (0..n, proptest::collection::vec(mutation(), 0..6))
            .prop_map(move |(i, ms)| mutate(seeds[i].clone(), &ms)),
    ]
    .boxed()
}

/// Arbitrary JSON values (bounded depth and width).
fn json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
        prop_oneof![
            Just("https://as.example/x?y#z"),
            Just("90d"),
            Just("Bearer"),
            Just("")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-zA-Z_]{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// Replaces the `n`th node (pre-order, modulo the node count) of `v` with `with`.
fn replace_node(v: &mut Value, n: usize, with: Value) {
    fn count(v: &Value) -> usize {
        1 + match v {
            Value::Array(a) => a.iter().map(count).sum(),
            Value::Object(o) => o.values().map(count).sum(),
            _ => 0,
        }
    }
    fn walk(v: &mut Value, n: &mut usize, with: &mut Option<Value>) {
        if *n == 0 {
            if let Some(w) = with.take() {
                *v = w;
            }
            return;
        }
        *n -= 1;
        let children: Vec<&mut Value> = match v {
            Value::Array(a) => a.iter_mut().collect(),
            Value::Object(o) => o.values_mut().collect(),
            _ => Vec::new(),
        };
        for c in children {
            walk(c, n, with);
            if with.is_none() {
                return;
            }
        }
    }
    let mut n = n % count(v);
    walk(v, &mut n, &mut Some(with));
}

/// Arbitrary JSON, a corpus document with nodes replaced, or mutated corpus bytes that still
/// parse as JSON.
fn json_inputs(target: &str) -> BoxedStrategy<Value> {
    let seeds: Vec<Value> = corpus(target)
        .iter()
        .map(|b| serde_json::from_slice(b).unwrap_or_else(|e| panic!("corpus {target}: {e}")))
        .collect();
    let n = seeds.len();
    let bytes = inputs(target);
    prop_oneof![
        json(),
        (
            0..n,
            proptest::collection::vec((any::<usize>(), json()), 1..4)
        )
            .prop_map(move |(i, picks)| {
                let mut v = seeds[i].clone();
                for (at, with) in picks {
                    replace_node(&mut v, at, with);
                }
                v
            }),
        bytes.prop_map(|b| serde_json::from_slice(&b).unwrap_or(Value::Null)),
    ]
    .boxed()
}

/// Runs `check` over `strategy` for `PROPTEST_CASES` cases (or until `FUZZ_SECONDS` of the
/// target's share elapsed, when set), failing on any panic; prints the cases executed.
fn fuzz<S: Strategy>(target: &str, strategy: S, check: impl Fn(S::Value)) {
    const BATCH: u32 = 500;
    let cases = Config::default().cases;
    let deadline = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(|s| Instant::now() + Duration::from_secs(s));
    let batch = Config {
        cases: cases.min(BATCH),
        failure_persistence: None,
        ..Config::default()
    };
    // A fresh runner per batch (a runner counts its successes across runs), each on a random
    // stream derived from one seed runner, so that the time bound stops generation too.
    let mut seeds = TestRunner::new(batch.clone());
    let executed = std::sync::atomic::AtomicU64::new(0);
    let count = || executed.load(std::sync::atomic::Ordering::Relaxed);
    while count() < u64::from(cases) && deadline.is_none_or(|d| Instant::now() <= d) {
        let mut runner = TestRunner::new_with_rng(batch.clone(), seeds.new_rng());
        let result = runner.run(&strategy, |input| {
            executed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            check(input);
            Ok(())
        });
        if let Err(e) = result {
            panic!("fuzz {target}: {e} (after {} cases)", count());
        }
    }
    eprintln!(
        "fuzz {target}: {} cases executed (of {cases}), 0 panics",
        count()
    );
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_769_766_702).unwrap()
}

#[test]
fn every_seed_of_the_corpus_goes_through_its_parser() {
    // The seeds themselves: the well-formed ones must parse, so mutations start from real input.
    for seed in corpus("discovery") {
        discovery::parse(&seed).expect("discovery seed parses");
    }
    for seed in corpus("tpp_client") {
        serde_json::from_slice::<TppClientSpec>(&seed).expect("TppClient example decodes");
    }
    for seed in corpus("authorization_server") {
        serde_json::from_slice::<AuthorizationServerSpec>(&seed).expect("AS example decodes");
    }
    for seed in corpus("jwks") {
        serde_json::from_slice::<JwkSet>(&seed).expect("JWKS seed parses");
    }
    for seed in corpus("jwt") {
        jwt::decode_unverified(std::str::from_utf8(&seed).unwrap()).expect("JWT seed decodes");
    }
    let pem = corpus("pem");
    let text = |b: &Vec<u8>| String::from_utf8(b.clone()).unwrap();
    assert!(pem.iter().any(|p| cert::parse_pem(&text(p)).is_ok()));
    assert!(
        pem.iter()
            .filter(|p| PrivateKey::from_pem(&text(p)).is_ok())
            .count()
            >= 2
    );
}

#[test]
fn fuzz_discovery_documents() {
    fuzz("discovery", inputs("discovery"), |b| {
        if let Ok(meta) = discovery::parse(&b) {
            let _ = discovery::check_issuer(&meta, "https://as.example");
        }
    });
    fuzz("discovery-json", json_inputs("discovery"), |v| {
        let _ = discovery::parse(&serde_json::to_vec(&v).unwrap());
    });
}

#[test]
fn fuzz_registration_token_introspection_and_par_responses() {
    fuzz("registration", json_inputs("registration"), |v| {
        let _ = registration::parse_registration(Step::Register, v.clone());
        let _ = registration::numeric_date(&v);
        let _ = endpoints::parse_introspection(&v);
        let _ = endpoints::parse_par(&v);
    });
    fuzz("token", json_inputs("token"), |v| {
        if let Ok(t) = token::parse_token_response(&v, now()) {
            let _ = format!("{t:?}");
        }
    });
}

#[test]
fn fuzz_error_bodies_and_retry_after() {
    fuzz("error_body", inputs("error_body"), |b| {
        let parsed = ErrorBody::parse(&b);
        let text = parsed.to_string();
        assert!(!text.chars().any(char::is_control), "{text:?}");
        let err = OauthError::from_status(Step::Token, 400, None, &b, "id", now());
        let _ = (err.to_string(), err.reason(), err.is_transient());
    });
    fuzz("retry_after", inputs("retry_after"), |b| {
        let s = String::from_utf8_lossy(&b);
        if let Some(d) = parse_retry_after(&s, now()) {
            assert!(d <= RETRY_AFTER_CAP, "{s:?} gave {d:?}");
        }
    });
}

#[test]
fn fuzz_jwks_and_jwts() {
    fuzz("jwks", inputs("jwks"), |b| {
        if let Ok(set) = serde_json::from_slice::<JwkSet>(&b) {
            for key in &set.keys {
                let _ = key.thumbprint();
            }
        }
    });
    let key = serde_json::from_slice::<JwkSet>(&corpus("jwks")[1])
        .unwrap()
        .keys[0]
        .clone();
    fuzz("jwt", inputs("jwt"), |b| {
        if let Ok(decoded) = jwt::decode_unverified(&String::from_utf8_lossy(&b)) {
            let _ = (decoded.alg(), decoded.kid(), decoded.str_claim("iss"));
            let _ = decoded.time_claim("exp");
            let _ = decoded.verify_with(&key);
        }
    });
}

#[test]
fn fuzz_pem_and_der_from_secrets() {
    fuzz("pem", inputs("pem"), |b| {
        let s = String::from_utf8_lossy(&b);
        let _ = cert::parse_pem(&s);
        let _ = cert::inspect_der(&b);
        let _ = PrivateKey::from_pem(&s);
        let _ = PrivateKey::from_der(&b);
        let _ = PrivateKey::from_private_jwk_json(&s);
        let _ = ClientIdentity::from_pem(&b, SecretString::from(s.to_string()));
        let _ = cert::key_matches_certificate(&s, &s);
        let kept = certificates_only(&s);
        assert!(!kept.contains("PRIVATE KEY"), "{kept}");
    });
    let keys = proptest::collection::vec(any::<u8>(), 0..256);
    fuzz("keys_state", keys, |b| {
        let secret = Secret {
            data: Some([(KEYS_STATE_KEY.to_owned(), ByteString(b))].into()),
            ..Default::default()
        };
        let _ = KeysState::from_secret(Some(&secret));
    });
}

#[test]
fn fuzz_durations_and_subject_dns() {
    fuzz("duration", inputs("duration"), |b| {
        let s = String::from_utf8_lossy(&b);
        if let Ok(d) = s.parse::<SpecDuration>() {
            assert!(d <= duration::MAX);
            let _ = d.to_string().parse::<SpecDuration>().unwrap();
        }
    });
    fuzz("subject_dn", inputs("subject_dn"), |b| {
        let _ = SubjectDn::parse(&String::from_utf8_lossy(&b));
    });
}

#[test]
fn fuzz_crd_specs_from_arbitrary_json() {
    fuzz("tpp_client", json_inputs("tpp_client"), |v| {
        if let Ok(spec) = serde_json::from_value::<TppClientSpec>(v) {
            // What decodes re-encodes to something that decodes. (Not to the same value:
            // `signingKey.rotation.every: null` decodes to "no scheduled rotation" but is
            // skipped when encoded, which decodes to the 90d default: found by this target,
            // harmless while the operator never writes a spec back; see docs/security.md.)
            let again = serde_json::to_value(&spec).unwrap();
            serde_json::from_value::<TppClientSpec>(again).unwrap();
        }
    });
    fuzz(
        "authorization_server",
        json_inputs("authorization_server"),
        |v| {
            let _ = serde_json::from_value::<AuthorizationServerSpec>(v.clone());
            let _ = serde_json::from_value::<ClusterAuthorizationServerSpec>(v);
        },
    );
}
