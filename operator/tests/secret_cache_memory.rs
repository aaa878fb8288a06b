//! The bytes the Secret cache keeps per client (issue 16, M4), measured with a counting global
//! allocator on the three Secrets of one `Dynamic` client exactly as the operator writes them:
//! the real builders (`store::build`, `store::state`), real RSA-2048 signing and transport keys,
//! a real self-signed certificate, the registration answer the AS echoes for the metadata the
//! operator sends (with the public JWK set), and one access token of a realistic length (a
//! ~1 KB PS256 JWT). The figures are what `SecretCache::remember` allocates and keeps, by
//! Secret and by data key; `cargo test -p tpp-operator --test secret_cache_memory -- --nocapture`
//! prints the table BENCHMARKS.md quotes ("Issue 16", Secret cache). The same meter measures the
//! per-client metric series.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure with a location

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
use secrecy::ExposeSecret;
use serde_json::json;
use tpp_operator::crd::TppClient;
use tpp_operator::identity::cert::{CertificateProfile, self_signed};
use tpp_operator::identity::{KeyAlgorithm, PrivateKey};
use tpp_operator::reconcile::policy::registration_metadata;
use tpp_operator::redact::Sensitive;
use tpp_operator::rotation::{CertRecord, KeyRecord, KeyState, KeyUse, TokenRecord};
use tpp_operator::store::build::{
    CredentialsContent, credentials_secret, keys_secret, registration_secret,
};
use tpp_operator::store::cache::SecretCache;
use tpp_operator::store::state::{
    KeysState, RegistrationState, StoredCertificate, StoredKey, StoredToken,
};

/// A counting global allocator: the bytes the measuring thread holds, requested and as glibc's
/// malloc rounds them (a chunk is the request plus an 8-byte header, in 16-byte steps, 32 bytes
/// at least). Other threads are passed through uncounted.
mod alloc_meter {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Counting;

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    thread_local! {
        static ON: Cell<bool> = const { Cell::new(false) };
        static REQUESTED: Cell<isize> = const { Cell::new(0) };
        static CHUNKS: Cell<isize> = const { Cell::new(0) };
        static COUNT: Cell<isize> = const { Cell::new(0) };
    }

    /// What glibc's malloc takes for a request of `size` bytes on x86-64.
    pub fn chunk(size: usize) -> usize {
        (size + 8).div_ceil(16).max(2) * 16
    }

    fn add(size: usize, sign: isize) {
        let _ = ON.try_with(|on| {
            if on.get() {
                REQUESTED.with(|n| n.set(n.get() + sign * size as isize));
                CHUNKS.with(|n| n.set(n.get() + sign * chunk(size) as isize));
                COUNT.with(|n| n.set(n.get() + sign));
            }
        });
    }

    // SAFETY: every call is forwarded to `System` unchanged; the bookkeeping only touches
    // thread-local `Cell`s, which neither allocate nor unwind.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: forwarded with the caller's layout.
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                add(layout.size(), 1);
            }
            p
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: forwarded with the caller's layout.
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                add(layout.size(), 1);
            }
            p
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            add(layout.size(), -1);
            // SAFETY: forwarded with the caller's pointer and layout.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: forwarded with the caller's pointer, layout and size.
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                add(layout.size(), -1);
                add(new_size, 1);
            }
            p
        }
    }

    /// Bytes held at the end of a measured call beyond those held at its start.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Held {
        /// As requested by the program.
        pub requested: isize,
        /// As glibc's malloc rounds them (what RSS pays).
        pub chunks: isize,
        /// Allocations.
        pub count: isize,
    }

    struct Stop;
    impl Drop for Stop {
        fn drop(&mut self) {
            ON.with(|on| on.set(false));
        }
    }

    /// Run `f`, counting what this thread allocates and frees meanwhile.
    pub fn held<T>(f: impl FnOnce() -> T) -> (T, Held) {
        REQUESTED.with(|n| n.set(0));
        CHUNKS.with(|n| n.set(0));
        COUNT.with(|n| n.set(0));
        ON.with(|on| on.set(true));
        let out = {
            let _stop = Stop;
            f()
        };
        let h = Held {
            requested: REQUESTED.with(Cell::get),
            chunks: CHUNKS.with(Cell::get),
            count: COUNT.with(Cell::get),
        };
        (out, h)
    }
}

use alloc_meter::{Held, held};

const NS: &str = "tpp-bench";
const TOKEN: &str = "accounts";

/// A TppClient as `bench-scale` applies it (e2e/src/scale/run.rs), as read from the API.
fn client() -> TppClient {
    let mut c: TppClient = serde_json::from_value(json!({
        "apiVersion": "tpp.dev/v1alpha1", "kind": "TppClient",
        "metadata": {"name": "c-00421", "namespace": NS,
                     "uid": "3f2b7c1e-9a4d-4e8b-a1c2-7d5e6f8a9b0c"},
        "spec": {
            "authorizationServerRef": {"name": "sandbox"},
            "registration": {"mode": "Dynamic"},
            "tokens": [{"name": TOKEN, "scope": "accounts"}],
        },
    }))
    .unwrap();
    c.metadata.namespace = Some(NS.into());
    c
}

/// A PS256 access token of the usual shape and length (header, claims with a `cnf`, a
/// 256-byte signature): about 1 KB.
fn access_token(x5t: &str, client_id: &str) -> String {
    let header = json!({"alg": "PS256", "typ": "at+jwt", "kid": "k9Yq3WZl2x0pVf7nQmR1sT4uV6wX8yZaBcDeFgHiJkL"});
    let claims = json!({
        "iss": "https://as.sandbox.example:8443/",
        "sub": client_id, "client_id": client_id,
        "aud": "https://rs.sandbox.example/open-banking/v3.1",
        "exp": 1_796_000_500, "iat": 1_796_000_000, "nbf": 1_796_000_000,
        "jti": "0b6f3c2e-7d41-4a9e-bc58-2f1e9d7a6c35",
        "scope": "accounts", "cnf": {"x5t#S256": x5t},
    });
    let enc = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let signature = URL_SAFE_NO_PAD.encode([0x5a_u8; 256]);
    format!("{}.{}.{signature}", enc(&header), enc(&claims))
}

/// The server's copy: what an apply answers, with the server's fields `remember` must drop.
fn as_written(mut s: Secret) -> Secret {
    s.metadata.resource_version = Some("184467".into());
    s.metadata.uid = Some("a1b2c3d4-e5f6-4789-9abc-def012345678".into());
    s.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::from_second(1_796_000_000).unwrap(),
    ));
    let fields: serde_json::Value = json!({
        "f:data": s.data.as_ref().unwrap().keys()
            .map(|k| (format!("f:{k}"), json!({}))).collect::<serde_json::Map<_, _>>(),
        "f:metadata": {"f:labels": {}, "f:ownerReferences": {}},
        "f:type": {},
    });
    s.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
        manager: Some("tpp-operator".into()),
        operation: Some("Apply".into()),
        api_version: Some("v1".into()),
        fields_type: Some("FieldsV1".into()),
        fields_v1: Some(FieldsV1(fields)),
        time: s.metadata.creation_timestamp.clone(),
        subresource: None,
    }]);
    s
}

/// The three Secrets of one onboarded Dynamic client, as the operator last wrote them.
fn client_secrets() -> [Secret; 3] {
    let client = client();
    let now = jiff::Timestamp::from_second(1_796_000_000).unwrap();
    let signing = PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    let transport = PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    let profile = CertificateProfile::new(
        &format!("CN={NS}.c-00421"),
        std::time::Duration::from_secs(90 * 86_400),
    )
    .unwrap();
    let issued = self_signed(&transport, &profile, now).unwrap();
    let keys = KeysState {
        keys: vec![StoredKey {
            record: KeyRecord {
                kid: signing.kid().to_owned(),
                use_: KeyUse::Sig,
                state: KeyState::Active,
                created_at: now,
                published_at: Some(now),
                activated_at: Some(now),
                retiring_at: None,
            },
            alg: "PS256".into(),
            private_jwk: Sensitive::new(
                signing
                    .to_private_jwk_json()
                    .unwrap()
                    .expose_secret()
                    .to_owned(),
            ),
        }],
        certificate: Some(StoredCertificate {
            cert_pem: issued.pem.clone(),
            key_pem: Sensitive::new(transport.to_pkcs8_pem().expose_secret().to_owned()),
            record: CertRecord {
                not_before: issued.info.not_before,
                not_after: issued.info.not_after,
                x5t_s256: issued.info.x5t_s256.clone(),
            },
            subject: issued.info.subject.clone(),
        }),
        ..Default::default()
    };
    // The answer: the metadata sent (public JWK set inline), what the AS adds, the RAT out.
    let jwks = keys.public_jwks(&keys.visible_kids()).unwrap();
    let client_id = "6f1d2c3b-4a59-4e87-b6c5-d4e3f2a1b0c9";
    let mut answer = registration_metadata(&client, NS, "c-00421", Some(&jwks));
    answer.insert("client_id".into(), json!(client_id));
    answer.insert("client_id_issued_at".into(), json!(1_796_000_000));
    answer.insert(
        "registration_client_uri".into(),
        json!(format!(
            "https://as.sandbox.example:8443/tpp-registration/{client_id}"
        )),
    );
    let mut registration = RegistrationState {
        client_id: Some(client_id.into()),
        registration_client_uri: Some(format!(
            "https://as.sandbox.example:8443/tpp-registration/{client_id}"
        )),
        response: Some(serde_json::to_string(&answer).unwrap()),
        registered_at: Some(now),
        ..Default::default()
    };
    registration.set_access_token("9c8b7a6f-5e4d-4c3b-8a29-1f0e9d8c7b6a");
    let token = StoredToken {
        record: TokenRecord {
            name: TOKEN.into(),
            issued_at: now,
            expires_at: now + jiff::SignedDuration::from_secs(500),
            cert_x5t_s256: issued.info.x5t_s256.clone(),
        },
        access_token: Sensitive::new(access_token(&issued.info.x5t_s256, client_id)),
        scope: "accounts".into(),
    };
    let tokens = BTreeMap::from([(TOKEN.to_owned(), token)]);
    let ca = tpp_testkit_ca();
    let credentials = credentials_secret(
        &client,
        &CredentialsContent {
            cert_pem: &issued.pem,
            key_pem: transport.to_pkcs8_pem().expose_secret(),
            ca_pem: &ca,
            client_id,
            issuer: "https://as.sandbox.example:8443/",
            token_endpoint: "https://mtls.as.sandbox.example:8443/token",
            signing: Some((signing.to_pkcs8_pem().expose_secret(), signing.kid())),
            tokens: &tokens,
        },
    );
    [
        as_written(keys_secret(&client, &keys)),
        as_written(registration_secret(&client, &registration)),
        as_written(credentials),
    ]
}

/// The AS's CA bundle: one P-256 root, as the sandbox's chain.
fn tpp_testkit_ca() -> String {
    let key = PrivateKey::generate(KeyAlgorithm::EcP256).unwrap();
    let profile = CertificateProfile::new(
        "CN=Sandbox Root CA,O=Sandbox",
        std::time::Duration::from_secs(3650 * 86_400),
    )
    .unwrap();
    self_signed(
        &key,
        &profile,
        jiff::Timestamp::from_second(1_796_000_000).unwrap(),
    )
    .unwrap()
    .pem
}

/// What the cache holds for `secret`: the bytes its `forget` frees (the entry alone: the map's
/// table does not shrink on a removal).
fn entry(secret: &Secret) -> Held {
    let cache = SecretCache::default();
    let name = secret.metadata.name.clone().unwrap();
    cache.remember(NS, secret);
    assert!(cache.get(NS, &name).is_some(), "{name} is cached");
    let ((), freed) = held(|| cache.forget(NS, &name));
    Held {
        requested: -freed.requested,
        chunks: -freed.chunks,
        count: -freed.count,
    }
}

fn without(secret: &Secret, key: &str) -> Secret {
    let mut s = secret.clone();
    s.data.as_mut().unwrap().remove(key);
    s
}

/// Per client: the three entries plus their share of the map's table (measured over many
/// clients, so the table's growth is amortised as in the operator).
fn per_client(secrets: &[Secret; 3]) -> f64 {
    const CLIENTS: usize = 200;
    let copies: Vec<Secret> = (0..CLIENTS)
        .flat_map(|i| {
            secrets.iter().map(move |s| {
                let mut s = s.clone();
                let name = s.metadata.name.clone().unwrap();
                s.metadata.name = Some(name.replace("c-00421", &format!("c-{i:05}")));
                s
            })
        })
        .collect();
    let cache = SecretCache::default();
    let ((), h) = held(|| {
        for s in &copies {
            cache.remember(NS, s);
        }
    });
    assert_eq!(cache.len(), 3 * CLIENTS);
    h.chunks as f64 / CLIENTS as f64
}

#[test]
fn the_secret_cache_keeps_at_most_a_bounded_number_of_bytes_per_client() {
    let secrets = client_secrets();
    println!("| Secret | data key | value bytes | kept (requested) | kept (malloc chunks) |");
    println!("| --- | --- | --- | --- | --- |");
    let mut total = Held::default();
    for s in &secrets {
        let name = s.metadata.name.clone().unwrap();
        let whole = entry(s);
        let mut keys_share = 0;
        for (k, v) in s.data.as_ref().unwrap() {
            let rest = entry(&without(s, k));
            let share = whole.chunks - rest.chunks;
            keys_share += share;
            println!(
                "| {name} | {k} | {} | {} | {share} |",
                v.0.len(),
                whole.requested - rest.requested
            );
        }
        println!(
            "| {name} | (metadata, map nodes, entry) | | | {} |",
            whole.chunks - keys_share
        );
        println!(
            "| **{name}** | | | **{}** | **{}** ({} allocations) |",
            whole.requested, whole.chunks, whole.count
        );
        total.requested += whole.requested;
        total.chunks += whole.chunks;
        total.count += whole.count;
    }
    let with_table = per_client(&secrets);
    println!(
        "| **per client** | | | **{}** | **{}** ({} allocations); with the map's table: {with_table:.0} |",
        total.requested, total.chunks, total.count
    );
    assert!(
        with_table < BOUND_PER_CLIENT as f64,
        "the Secret cache keeps {with_table:.0} bytes per client (bound {BOUND_PER_CLIENT})"
    );
}

#[test]
fn every_value_the_cache_keeps_of_an_onboarded_client_comes_back_byte_for_byte() {
    let secrets = client_secrets();
    let cache = SecretCache::default();
    for s in &secrets {
        cache.remember(NS, s);
    }
    let mut compared = 0;
    for s in &secrets {
        let name = s.metadata.name.clone().unwrap();
        let given = s.data.as_ref().unwrap();
        let back = cache.get(NS, &name).unwrap().data.unwrap();
        for (k, v) in &back {
            assert_eq!(Some(v), given.get(k), "{name} {k}");
            compared += 1;
        }
        for k in [
            "state.json",
            "response.json",
            "tls.crt",
            "accounts.access_token",
        ] {
            assert!(
                !given.contains_key(k) || back.contains_key(k),
                "{name} {k} not kept"
            );
        }
    }
    assert!(compared >= 12, "{compared} values compared");
}

/// The bound of [`the_secret_cache_keeps_at_most_a_bounded_number_of_bytes_per_client`], in
/// malloc chunks with the map's table: 16,372 bytes when the cache held slim `Secret`s (maps,
/// `String`s, every credentials key but the private keys and CA bundle); 11,396 with compact
/// entries and the keys every write rebuilds left out; 9,684 with each value's base64 text held
/// as the bytes it encodes (`store::pack`) (BENCHMARKS.md, "Issue 16").
const BOUND_PER_CLIENT: usize = 10_000;

/// What the per-client series keep (`Metrics::record_client` and `set_ready`, as a reconcile
/// records a Ready client with one token), per client over 1,000 clients.
fn metrics_per_client() -> f64 {
    const CLIENTS: usize = 1_000;
    let at = |s: i64| jiff::Timestamp::from_second(s).unwrap();
    let names: Vec<String> = (0..CLIENTS).map(|i| format!("c-{i:05}")).collect();
    let metrics = tpp_operator::metrics::Metrics::new(false);
    let ((), h) = held(|| {
        for name in &names {
            let facts = tpp_operator::metrics::ClientFacts {
                tokens: [(TOKEN.to_owned(), at(2_000_000_000))]
                    .into_iter()
                    .collect(),
                certificate_not_after: Some(at(2_100_000_000)),
                signing_key_activated_at: Some(at(1_900_000_000)),
                signing_key_expiry: Some(at(2_200_000_000)),
            };
            metrics.record_client(NS, name, "sandbox", facts);
            metrics.set_ready(NS, name, "sandbox", Some(true));
        }
    });
    h.chunks as f64 / CLIENTS as f64
}

#[test]
fn the_per_client_series_keep_at_most_a_bounded_number_of_bytes_per_client() {
    let per_client = metrics_per_client();
    println!("metrics: {per_client:.0} bytes per client");
    assert!(
        per_client < METRICS_BOUND_PER_CLIENT as f64,
        "the per-client series keep {per_client:.0} bytes per client (bound {METRICS_BOUND_PER_CLIENT})"
    );
}

/// The bound of [`the_per_client_series_keep_at_most_a_bounded_number_of_bytes_per_client`]:
/// with each client's tokens in a map (a node of eleven entries for one token) they kept 923
/// bytes; in a vector of the exact size, 507 (BENCHMARKS.md, "Heap profile at 10,000").
const METRICS_BOUND_PER_CLIENT: usize = 560;
