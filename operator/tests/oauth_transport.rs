//! Loopback tests of the oauth transport and discovery against an in-test TLS server on
//! 127.0.0.1: mTLS, CA-only trust, limits, timeouts, status classification, interaction ids,
//! connection reuse per certificate, the per-AS rate limiter, and redaction.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure with a location

mod support;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde_json::json;
use support::fixture::{Fixture, identity_of};
use support::{ClientCerts, Reply, pki, serve};
use tpp_operator::oauth::{
    AsClient, AsRequest, ClientPool, Clock, Discovery, EgressPolicy, OauthError, PoolConfig,
    RateLimit, Step, TransportConfig,
};

fn get(url: &str) -> AsRequest<'static> {
    AsRequest::new(Method::GET, url::Url::parse(url).expect("url"))
}

async fn send(client: &AsClient, url: &str) -> Result<tpp_operator::oauth::AsResponse, OauthError> {
    client.send(Step::Discovery, get(url)).await
}

#[tokio::test]
async fn presents_the_client_certificate_over_mtls() {
    let fx = Fixture::new();
    let server = fx.serve(|_| Reply::raw(200, "{}")).await;
    let client = fx.mtls_client();
    let response = send(&client, &server.url("/x")).await.expect("response");
    assert_eq!(response.status, 200);
    let seen = server.seen();
    let presented = seen[0]
        .client_cert
        .clone()
        .expect("a client certificate was presented");
    let expected = CertificateDer::from_pem_slice(fx.client.cert_pem.as_bytes())
        .expect("pem")
        .to_vec();
    assert_eq!(presented, expected);
    assert!(client.is_mtls());
    assert_eq!(client.client_x5t_s256(), Some(fx.identity().x5t_s256()));
}

#[tokio::test]
async fn a_client_without_identity_presents_no_certificate() {
    let fx = Fixture::new();
    let server = fx.serve(|_| Reply::raw(204, "")).await;
    send(&fx.plain_client(), &server.url("/x"))
        .await
        .expect("response");
    assert!(server.seen()[0].client_cert.is_none());
}

#[tokio::test]
async fn sends_a_fresh_uuid_v4_interaction_id_on_every_request() {
    let fx = Fixture::new();
    let server = fx.serve(|_| Reply::raw(200, "")).await;
    let client = fx.plain_client();
    let first = send(&client, &server.url("/a")).await.expect("first");
    let second = send(&client, &server.url("/b")).await.expect("second");
    let ids: Vec<String> = server
        .seen()
        .iter()
        .map(|s| s.header("x-fapi-interaction-id").expect("header"))
        .collect();
    assert_eq!(
        ids,
        [first.interaction_id.clone(), second.interaction_id.clone()]
    );
    assert_ne!(ids[0], ids[1]);
    for id in ids {
        assert_eq!(
            uuid::Uuid::parse_str(&id).map(|u| u.get_version_num()).ok(),
            Some(4)
        );
    }
}

#[tokio::test]
async fn refuses_a_server_certificate_from_another_ca_as_a_permanent_tls_failure() {
    let fx = Fixture::new();
    let server = fx.serve(|_| Reply::raw(200, "")).await;
    let stranger = pki("another-ca", &["127.0.0.1"]);
    let client =
        AsClient::new(&TransportConfig::new(stranger.ca_pem.into_bytes()), None).expect("client");
    let err = send(&client, &server.url("/x"))
        .await
        .expect_err("untrusted server");
    fx.assert_redacted(&err);
    assert!(matches!(err, OauthError::Tls { .. }), "{err:?}");
    assert_eq!(err.reason(), "TlsFailure");
    assert!(!err.is_transient());
    assert!(server.seen().is_empty());
    fx.assert_redacted(&err);
}

#[tokio::test]
async fn a_server_requiring_a_client_certificate_fails_a_client_without_one() {
    let fx = Fixture::new();
    let server = serve(&fx.server, ClientCerts::Required(&fx.client.ca_pem), |_| {
        Reply::raw(200, "")
    })
    .await;
    let err = send(&fx.plain_client(), &server.url("/x"))
        .await
        .expect_err("no client cert");
    fx.assert_redacted(&err);
    assert_eq!(err.reason(), "TlsFailure", "{err:?}");
    assert!(!err.is_transient());
    let ok = send(&fx.mtls_client(), &server.url("/x"))
        .await
        .expect("with client cert");
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn stops_reading_an_oversized_body() {
    let fx = Fixture::new();
    let server = fx
        .serve(|seen| {
            let reply = Reply::raw(200, vec![b'x'; 4096]);
            if seen.path == "/chunked" {
                reply.chunked()
            } else {
                reply
            }
        })
        .await;
    let mut config = fx.config();
    config.body_limit = 1024;
    let client = AsClient::new(&config, None).expect("client");
    for path in ["/sized", "/chunked"] {
        let err = send(&client, &server.url(path))
            .await
            .expect_err("too large");
        fx.assert_redacted(&err);
        assert!(
            matches!(err, OauthError::BodyTooLarge { limit: 1024, .. }),
            "{path}: {err:?}"
        );
        assert!(!err.is_transient());
    }
    config.body_limit = 4096;
    let client = AsClient::new(&config, None).expect("client");
    assert_eq!(
        send(&client, &server.url("/chunked"))
            .await
            .expect("at the limit")
            .body
            .len(),
        4096
    );
}

#[tokio::test]
async fn a_slow_response_is_a_transient_timeout() {
    let fx = Fixture::new();
    let server = fx
        .serve(|_| Reply::raw(200, "").delayed(Duration::from_secs(3)))
        .await;
    let mut config = fx.config();
    config.timeout = Duration::from_millis(300);
    let client = AsClient::new(&config, None).expect("client");
    let started = Instant::now();
    let err = send(&client, &server.url("/slow"))
        .await
        .expect_err("timeout");
    fx.assert_redacted(&err);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(err, OauthError::Timeout { .. }), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(err.reason(), "AuthorizationServerUnavailable");
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    let fx = Fixture::new();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let err = send(&fx.plain_client(), &format!("https://127.0.0.1:{port}/x"))
        .await
        .expect_err("refused");
    fx.assert_redacted(&err);
    assert!(matches!(err, OauthError::Connect { .. }), "{err:?}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn maps_statuses_to_transient_or_permanent_errors() {
    let fx = Fixture::new();
    let server = fx
        .serve(|seen| match seen.path.as_str() {
            "/503" => Reply::raw(503, "down"),
            "/429" => Reply::raw(429, "").header("retry-after", "3"),
            "/400" => Reply::json(
                400,
                json!({"error":"invalid_request","error_description":"bad\nthing"}),
            ),
            _ => Reply::raw(200, "not json"),
        })
        .await;
    let issuer = server.url("");
    let client = fx.plain_client();
    let discovery = Discovery::default();
    let fetch = |path: &'static str| {
        let url = server.url(path);
        let discovery = &discovery;
        let client = &client;
        let issuer = issuer.clone();
        async move {
            discovery
                .get(client, &issuer, Some(&url))
                .await
                .expect_err("fails")
        }
    };
    let unavailable = fetch("/503").await;
    assert!(unavailable.is_transient() && unavailable.status() == Some(503));
    let limited = fetch("/429").await;
    assert!(limited.is_transient());
    assert_eq!(limited.retry_after(), Some(Duration::from_secs(3)));
    assert_eq!(limited.reason(), "RateLimited");
    let rejected = fetch("/400").await;
    assert!(!rejected.is_transient());
    assert_eq!(rejected.status(), Some(400));
    // A discovery answer comes from a server not yet shown to be the AS: its body is not echoed
    // (docs/security.md, item 5), only its status.
    assert_eq!(rejected.oauth_error(), None);
    assert!(!rejected.to_string().contains("bad thing"), "{rejected}");
    let invalid = fetch("/garbage").await;
    assert!(
        matches!(invalid, OauthError::InvalidJson { .. }),
        "{invalid:?}"
    );
    assert!(!invalid.is_transient());
    for err in [unavailable, limited, rejected, invalid] {
        fx.assert_redacted(&err);
    }
}

struct Manual(AtomicI64);
impl Clock for Manual {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::from_second(self.0.load(Ordering::SeqCst))
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }
}

#[tokio::test]
async fn discovery_caches_per_url_until_the_ttl_expires() {
    let fx = Fixture::new();
    let issuer = Arc::new(std::sync::OnceLock::<String>::new());
    let served = issuer.clone();
    let server = fx
        .serve(move |_| Reply::json(200, json!({"issuer": served.get().cloned().unwrap_or_default(), "token_endpoint":"https://x/token"})))
        .await;
    let _ = issuer.set(server.url(""));
    let clock = Arc::new(Manual(AtomicI64::new(1_000_000)));
    let discovery = Discovery::new(Duration::from_secs(900), clock.clone());
    let client = fx.plain_client();
    let issuer = server.url("");
    let meta = discovery
        .get(&client, &issuer, None)
        .await
        .expect("discovered");
    assert_eq!(meta.token_endpoint.as_deref(), Some("https://x/token"));
    clock.0.store(1_000_899, Ordering::SeqCst);
    discovery.get(&client, &issuer, None).await.expect("cached");
    assert_eq!(server.seen().len(), 1);
    assert_eq!(server.seen()[0].path, "/.well-known/openid-configuration");
    clock.0.store(1_000_900, Ordering::SeqCst);
    discovery
        .get(&client, &issuer, None)
        .await
        .expect("refetched");
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn a_discovery_document_cached_under_one_ca_is_not_served_to_a_client_with_another() {
    // Tenant A's AuthorizationServer trusts the AS's real CA and fetched the document; tenant
    // B's names the same URL with a CA it controls: B must fetch (and here fail TLS), never be
    // served A's document from the cache (issue 13, item 5).
    let fx = Fixture::new();
    let issuer = Arc::new(std::sync::OnceLock::<String>::new());
    let served = issuer.clone();
    let server = fx
        .serve(move |_| {
            Reply::json(
                200,
                json!({"issuer": served.get().cloned().unwrap_or_default()}),
            )
        })
        .await;
    let _ = issuer.set(server.url(""));
    let issuer = server.url("");
    let discovery = Discovery::default();
    let trusted = fx.plain_client();
    discovery
        .get(&trusted, &issuer, None)
        .await
        .expect("discovered");
    let stranger = pki("another-ca", &["127.0.0.1"]);
    let other =
        AsClient::new(&TransportConfig::new(stranger.ca_pem.into_bytes()), None).expect("client");
    assert_ne!(other.trust_id(), trusted.trust_id());
    let err = discovery
        .get(&other, &issuer, None)
        .await
        .expect_err("another trust is not served the cached document");
    assert!(matches!(err, OauthError::Tls { .. }), "{err:?}");
    // The same trust still hits the cache; invalidation drops every trust's entry.
    discovery
        .get(&trusted, &issuer, None)
        .await
        .expect("cached");
    assert_eq!(server.seen().len(), 1);
    discovery.invalidate(&issuer, None);
    discovery
        .get(&trusted, &issuer, None)
        .await
        .expect("refetched");
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn the_egress_policy_refuses_internal_hosts_before_anything_is_sent() {
    let fx = Fixture::new();
    let server = fx.serve(|_| Reply::raw(200, "")).await;
    let refusing = fx
        .plain_client()
        .with_egress(Arc::new(EgressPolicy::default()));
    // The discovery URL, an endpoint the discovery document names, a registration_client_uri:
    // every request goes through send(), which checks its host.
    for url in [
        server.url("/.well-known/openid-configuration"),
        "https://10.0.0.7/token".to_owned(),
        "https://kubernetes.default.svc/api".to_owned(),
    ] {
        let err = send(&refusing, &url).await.expect_err("refused");
        assert!(matches!(err, OauthError::EgressRefused { .. }), "{err:?}");
        assert_eq!(err.reason(), "EgressRefused");
        assert!(!err.is_transient());
        let host = url::Url::parse(&url)
            .unwrap()
            .host_str()
            .unwrap()
            .to_owned();
        let message = err.to_string();
        assert!(
            message.contains(&host) && message.contains("--allowed-as-hosts"),
            "{message}"
        );
    }
    assert!(server.seen().is_empty(), "nothing reached the server");
    let allowing = fx
        .plain_client()
        .with_egress(Arc::new(EgressPolicy::new(&["127.0.0.1"])));
    send(&allowing, &server.url("/x"))
        .await
        .expect("listed host");
    assert_eq!(server.seen().len(), 1);
}

/// A DNS answer fixed by the test: every name resolves to 127.0.0.1.
struct ToLoopback;

impl tpp_operator::oauth::egress::Lookup for ToLoopback {
    fn lookup(&self, _host: String) -> reqwest::dns::Resolving {
        Box::pin(async {
            let addrs = vec![std::net::SocketAddr::from(([127, 0, 0, 1], 0))];
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[tokio::test]
async fn a_public_name_that_resolves_to_loopback_is_refused_before_anything_is_sent() {
    let fx = Fixture::new();
    let server = fx.serve(|_| Reply::raw(200, "")).await;
    let url = format!(
        "https://as.bank.example:{}/.well-known/openid-configuration",
        server.addr.port()
    );
    let refusing = fx
        .plain_client()
        .with_egress(Arc::new(EgressPolicy::new(&["other.example"])))
        .with_lookup(Arc::new(ToLoopback));
    let err = send(&refusing, &url).await.expect_err("refused");
    assert!(
        matches!(err, OauthError::EgressResolvedInternal { .. }),
        "{err:?}"
    );
    assert_eq!(err.reason(), "EgressRefused");
    assert!(!err.is_transient(), "a refused address is permanent");
    let message = err.to_string();
    assert!(
        message.contains("as.bank.example")
            && message.contains("127.0.0.1")
            && message.contains("--allowed-as-hosts"),
        "{message}"
    );
    assert!(server.seen().is_empty(), "nothing reached the server");

    // Listed, by name or by address: the connection is made (the server's certificate does not
    // name as.bank.example, so TLS refuses it, after the resolver let it through).
    for listed in ["as.bank.example", "127.0.0.1"] {
        let allowing = fx
            .plain_client()
            .with_egress(Arc::new(EgressPolicy::new(&[listed])))
            .with_lookup(Arc::new(ToLoopback));
        let err = send(&allowing, &url).await.expect_err("tls");
        assert!(matches!(err, OauthError::Tls { .. }), "{listed}: {err:?}");
    }
}

#[tokio::test]
async fn discovery_refuses_a_document_for_another_issuer() {
    let fx = Fixture::new();
    let server = fx
        .serve(|_| Reply::json(200, json!({"issuer":"https://evil.example"})))
        .await;
    let err = Discovery::default()
        .get(&fx.plain_client(), &server.url(""), None)
        .await
        .expect_err("mismatch");
    fx.assert_redacted(&err);
    assert!(matches!(err, OauthError::IssuerMismatch { .. }), "{err:?}");
    assert!(!err.is_transient());
    assert_eq!(err.reason(), "IssuerMismatch");
}

#[tokio::test]
async fn a_certificate_switch_uses_a_new_client_and_connection() {
    let fx = Fixture::new();
    let server = fx.serve(|_| Reply::raw(200, "")).await;
    let pool = ClientPool::new(PoolConfig::default());
    let config = fx.config();
    let first = pool
        .client("ns/as", &config, Some(&identity_of(&fx.client)), None)
        .expect("first");
    send(&first, &server.url("/1")).await.expect("first call");
    let again = pool
        .client("ns/as", &config, Some(&identity_of(&fx.client)), None)
        .expect("reused");
    send(&again, &server.url("/2")).await.expect("second call");
    let switched = pool
        .client("ns/as", &config, Some(&identity_of(&fx.other_client)), None)
        .expect("switched");
    send(&switched, &server.url("/3"))
        .await
        .expect("third call");
    assert_eq!(pool.len(), 2);
    let certs: Vec<Option<Vec<u8>>> = server.seen().into_iter().map(|s| s.client_cert).collect();
    assert_eq!(certs[0], certs[1]);
    assert_ne!(
        certs[1], certs[2],
        "the new certificate went out on a new connection"
    );
}

#[tokio::test]
async fn the_per_as_rate_limiter_spaces_requests_of_all_clients() {
    let fx = Fixture::new();
    let server = fx.serve(|_| Reply::raw(200, "")).await;
    let pool = ClientPool::new(PoolConfig::default());
    let rate = RateLimit {
        per_second: NonZeroU32::new(5).expect("5"),
        burst: NonZeroU32::new(1).expect("1"),
    };
    let a = pool
        .client("ns/as", &fx.config(), None, Some(rate))
        .expect("a");
    let b = pool
        .client("ns/as", &fx.config(), Some(&fx.identity()), Some(rate))
        .expect("b");
    let started = Instant::now();
    send(&a, &server.url("/1")).await.expect("1");
    send(&b, &server.url("/2")).await.expect("2");
    send(&a, &server.url("/3")).await.expect("3");
    assert!(
        started.elapsed() >= Duration::from_millis(350),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn refuses_plain_http_before_sending_anything() {
    let fx = Fixture::new();
    let err = send(&fx.plain_client(), "http://127.0.0.1:9/x")
        .await
        .expect_err("plain http");
    fx.assert_redacted(&err);
    assert!(matches!(err, OauthError::InsecureUrl { .. }), "{err:?}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn a_response_debug_never_shows_the_body() {
    let fx = Fixture::new();
    let server = fx
        .serve(|_| Reply::json(200, json!({"access_token": support::fixture::ACCESS_TOKEN})))
        .await;
    let response = send(&fx.plain_client(), &server.url("/t"))
        .await
        .expect("response");
    assert!(String::from_utf8_lossy(&response.body).contains(support::fixture::ACCESS_TOKEN));
    assert!(!format!("{response:?}").contains(support::fixture::ACCESS_TOKEN));
}

#[tokio::test]
async fn concurrent_discovery_misses_share_one_fetch() {
    let fx = Fixture::new();
    let server = fx
        .serve(|seen| {
            let host = seen.header("host").unwrap_or_default();
            Reply::json(200, json!({"issuer": format!("https://{host}")}))
                .delayed(Duration::from_millis(200))
        })
        .await;
    let discovery = Arc::new(Discovery::default());
    let client = fx.plain_client();
    let issuer = server.url("");
    let calls = (0..5).map(|_| {
        let (discovery, client, issuer) = (discovery.clone(), client.clone(), issuer.clone());
        tokio::spawn(async move { discovery.get(&client, &issuer, None).await.map(|_| ()) })
    });
    for call in calls.collect::<Vec<_>>() {
        call.await.expect("joined").expect("discovered");
    }
    assert_eq!(server.seen().len(), 1);
    let other = discovery
        .get(
            &client,
            "https://127.0.0.1",
            Some(&format!("{issuer}/.well-known/openid-configuration")),
        )
        .await
        .expect_err("another issuer");
    assert_eq!(
        other.reason(),
        "IssuerMismatch",
        "a cached document is re-checked against the issuer"
    );
    fx.assert_redacted(&other);
}
