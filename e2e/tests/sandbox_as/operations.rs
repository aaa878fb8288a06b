//! Discovery, fault injection, counters, TLS resumption and the `sandbox-as` binary.

use std::time::Duration;

use e2e::sandbox::{Endpoint, Fault, FaultKind, FaultTarget};
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn discovery_is_served_with_loopback_hosts_and_no_client_certificate() -> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    let doc: Value = http(&sb, None)?
        .get(sb.discovery_url())
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(doc["issuer"], sb.issuer());
    assert_eq!(
        doc["token_endpoint"],
        format!("https://127.0.0.1:{}/token", sb.port())
    );
    assert_eq!(
        doc["mtls_endpoint_aliases"]["pushed_authorization_request_endpoint"],
        format!("https://127.0.0.1:{}/par", sb.port())
    );
    assert_eq!(
        doc["authorization_endpoint"],
        format!("https://localhost:{}/auth", sb.port())
    );
    assert_ne!(
        doc["issuer"].as_str().map(|s| &s[..18]),
        doc["token_endpoint"].as_str().map(|s| &s[..18]),
        "issuer host differs from token host"
    );
    assert_eq!(
        doc["token_endpoint_auth_signing_alg_values_supported"],
        json!(["PS256"])
    );
    Ok(())
}

#[tokio::test]
async fn discovery_patch_can_drop_par_and_advertise_rs256() -> anyhow::Result<()> {
    let sb = start(|cfg| {
        cfg.discovery_patch = Some(json!({
            "pushed_authorization_request_endpoint": null,
            "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
        }))
    })
    .await?;
    let doc: Value = http(&sb, None)?
        .get(sb.discovery_url())
        .send()
        .await?
        .json()
        .await?;
    assert!(doc.get("pushed_authorization_request_endpoint").is_none());
    assert_eq!(
        doc["token_endpoint_auth_signing_alg_values_supported"],
        json!(["RS256"])
    );
    Ok(())
}

#[tokio::test]
async fn injected_429_is_returned_count_times_then_the_request_succeeds() -> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    let cert = transport_cert("tpp")?;
    let http = http(&sb, Some(&cert))?;
    let key = SigningKey::generate("k1")?;
    let id = client_id(&register_pkjwt(&sb, &http, key.jwks()).await?)?;
    let fault = http.post(format!("{}/faults", sb.admin_url()))
        .json(&json!({"endpoint": "token", "kind": {"status": {"code": 429, "retry_after_secs": 3}}, "count": 2}))
        .send().await?;
    assert_eq!(fault.status(), 201);
    for _ in 0..2 {
        let response = http
            .post(sb.token_endpoint())
            .header("x-fapi-interaction-id", "abc-123")
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await?;
        assert_eq!(response.status(), 429);
        assert_eq!(
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("3")
        );
        assert_eq!(
            response
                .headers()
                .get("x-fapi-interaction-id")
                .and_then(|v| v.to_str().ok()),
            Some("abc-123")
        );
    }
    assert_eq!(
        token_request(
            &sb,
            &http,
            &id,
            &key.assertion(&id, sb.issuer(), 0.0, 60.0)?
        )
        .await?
        .0,
        200
    );
    let counters: Value = http
        .get(format!("{}/counters", sb.admin_url()))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(counters["requests"]["token"]["429"], 2);
    assert_eq!(counters["requests"]["token"]["200"], 1);
    let snapshot = sb.counters();
    assert_eq!(snapshot.token_requests_per_second.values().sum::<u64>(), 3);
    assert!(snapshot.handshakes.full >= 1);
    Ok(())
}

#[tokio::test]
async fn dropped_connection_fault_closes_without_an_answer() -> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    assert!(sb.add_fault(Fault {
        endpoint: FaultTarget::Discovery,
        kind: FaultKind::Drop,
        count: 1
    }));
    let http = http(&sb, None)?;
    assert!(http.get(sb.discovery_url()).send().await.is_err());
    assert_eq!(http.get(sb.discovery_url()).send().await?.status(), 200);
    assert_eq!(
        sb.counters().requests_with(Endpoint::Discovery, "dropped"),
        1
    );
    Ok(())
}

#[tokio::test]
async fn a_drop_after_handling_fault_registers_the_client_but_sends_no_answer() -> anyhow::Result<()>
{
    let sb = start(|_| {}).await?;
    let cert = transport_cert("tpp")?;
    let http = http(&sb, Some(&cert))?;
    let key = SigningKey::generate("k1")?;
    assert!(sb.add_fault(Fault {
        endpoint: FaultTarget::Registration,
        kind: FaultKind::DropAfterHandling,
        count: 1
    }));
    assert!(
        register_pkjwt(&sb, &http, key.jwks()).await.is_err(),
        "no answer reaches the client"
    );
    let counters = sb.counters();
    assert_eq!(
        counters.registrations_created, 1,
        "the AS created the client"
    );
    assert_eq!(
        counters.requests_with(Endpoint::Registration, "dropped_after_201"),
        1
    );
    assert_eq!(sb.registered_clients().len(), 1);
    // The rule is used up: the next registration is answered.
    register_pkjwt(&sb, &http, key.jwks()).await?;
    assert_eq!(sb.counters().registrations_created, 2);
    Ok(())
}

#[tokio::test]
async fn an_issuer_fault_serves_discovery_with_another_issuer_and_nothing_else_changes()
-> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    assert!(sb.add_fault(Fault {
        endpoint: FaultTarget::Discovery,
        kind: FaultKind::Issuer {
            issuer: "https://localhost:1/moved".into()
        },
        count: 1
    }));
    let http = http(&sb, None)?;
    let moved: Value = http.get(sb.discovery_url()).send().await?.json().await?;
    assert_eq!(moved["issuer"], "https://localhost:1/moved");
    assert_eq!(moved["token_endpoint"], sb.token_endpoint());
    let back: Value = http.get(sb.discovery_url()).send().await?.json().await?;
    assert_eq!(back["issuer"], sb.issuer());
    Ok(())
}

#[tokio::test]
async fn binary_prints_its_ready_line_and_serves_discovery_with_the_printed_ca()
-> anyhow::Result<()> {
    use tokio::io::AsyncBufReadExt as _;
    let dir = tempfile::tempdir()?;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sandbox-as"))
        .arg("--state-dir")
        .arg(dir.path())
        .env("SANDBOX_AS_AUD_POLICY", "strict")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await??;
    let ready: Value = serde_json::from_str(&line.unwrap_or_default())?;
    let issuer = ready["issuer"].as_str().unwrap_or_default().to_string();
    let port: u16 = issuer.rsplit(':').next().unwrap_or_default().parse()?;
    assert_eq!(ready["admin"], format!("https://127.0.0.1:{port}/_sandbox"));
    let ca = std::fs::read_to_string(ready["ca"].as_str().unwrap_or_default())?;
    let doc: Value = http_with(&ca, port, None)?
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(doc["issuer"], issuer.as_str());
    child.start_kill()?;
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await?;
    Ok(())
}

#[tokio::test]
async fn handshakes_are_counted_as_full_or_resumed() -> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    let cert = transport_cert("tpp")?;
    let config = tls_config(sb.ca_pem(), Some(&cert))?;
    for _ in 0..2 {
        let fresh_pool = http_from(config.clone(), sb.port())?;
        assert_eq!(
            fresh_pool.get(sb.discovery_url()).send().await?.status(),
            200
        );
    }
    let handshakes = sb.counters().handshakes;
    assert_eq!(
        (handshakes.full, handshakes.resumed),
        (1, 1),
        "second connection resumes the first session"
    );
    Ok(())
}

#[tokio::test]
async fn delay_fault_holds_the_answer_back() -> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    let http = http(&sb, None)?;
    let added = http
        .post(format!("{}/faults", sb.admin_url()))
        .json(&json!({"endpoint": "discovery", "kind": {"delay": {"ms": 400}}, "count": 1}))
        .send()
        .await?;
    assert_eq!(added.status(), 201);
    let started = std::time::Instant::now();
    assert_eq!(http.get(sb.discovery_url()).send().await?.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(400));
    let cleared = http
        .delete(format!("{}/faults", sb.admin_url()))
        .send()
        .await?;
    assert_eq!(cleared.status(), 204);
    Ok(())
}

#[tokio::test]
async fn refused_material_makes_the_token_endpoint_refuse_that_key_or_certificate_only()
-> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    let cert = transport_cert("tpp")?;
    let http = http(&sb, Some(&cert))?;
    let old = SigningKey::generate("k1")?;
    let new = SigningKey::generate("k2")?;
    let keys = json!({"keys": [old.public_jwk(), new.public_jwk()]});
    let id = client_id(&register_pkjwt(&sb, &http, keys).await?)?;
    let mint = |key: &SigningKey| key.assertion(&id, sb.issuer(), 0.0, 60.0);

    let refused = http
        .post(format!("{}/refused-material", sb.admin_url()))
        .json(&json!({"material": "k2"}))
        .send()
        .await?;
    assert_eq!(refused.status(), 204);
    let (status, body) = token_request(&sb, &http, &id, &mint(&new)?).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, body) = token_request(&sb, &http, &id, &mint(&old)?).await?;
    assert_eq!(status, 200, "the old key still works: {body}");
    let token = body["access_token"].as_str().unwrap_or_default().to_owned();
    let x5t = sb.introspect(&token)["cnf"]["x5t#S256"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // The certificate: every request over it is refused, whatever key signs.
    assert!(sb.refuse_tokens_for(&x5t));
    let (status, _) = token_request(&sb, &http, &id, &mint(&old)?).await?;
    assert_eq!(status, 401);
    sb.accept_tokens_for(&x5t);
    let accepted = http
        .delete(format!("{}/refused-material/k2", sb.admin_url()))
        .send()
        .await?;
    assert_eq!(accepted.status(), 204);
    let (status, body) = token_request(&sb, &http, &id, &mint(&new)?).await?;
    assert_eq!(status, 200, "accepted again: {body}");
    Ok(())
}

#[tokio::test]
async fn a_hold_after_handling_fault_registers_the_client_and_answers_after_the_client_gave_up()
-> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    let cert = transport_cert("tpp")?;
    let key = SigningKey::generate("k1")?;
    assert!(sb.add_fault(Fault {
        endpoint: FaultTarget::Registration,
        kind: FaultKind::HoldAfterHandling { ms: 5_000 },
        count: 1
    }));
    // A client whose whole-request timeout is shorter than the hold.
    let impatient = reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config(sb.ca_pem(), Some(&cert))?)
        .resolve(
            "localhost",
            std::net::SocketAddr::from(([127, 0, 0, 1], sb.port())),
        )
        .no_proxy()
        .timeout(Duration::from_millis(500))
        .build()?;
    let err = register_pkjwt(&sb, &impatient, key.jwks())
        .await
        .expect_err("the answer is held past the client's timeout");
    assert!(
        format!("{err:?}").to_lowercase().contains("timed out"),
        "a timeout: {err:?}"
    );
    let counters = sb.counters();
    assert_eq!(
        counters.registrations_created, 1,
        "the AS created the client"
    );
    assert_eq!(
        counters.requests_with(Endpoint::Registration, "held_after_201"),
        1
    );
    Ok(())
}
