//! Whole reconciles driven through the in-memory effects ([`super::fake::FakeEffects`]): the
//! real session, planner, actions, write order and status, with no API server and no AS.
//! Onboarding in every registration mode, refresh, rotation, renewal, the failure branches, and
//! a crash after every single effect followed by a restart from what was persisted.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::{ByteString, api::core::v1::Secret};

use super::{
    context::Context,
    fake::{Call, FakeEffects},
    server::ResolvedServer,
    session::Session,
    status,
};
use crate::{
    clock::{Clock, FixedClock},
    config::Config,
    crd::{TppClient, TppClientStatus, condition::types},
    error::Error,
    metrics::Metrics,
    oauth::{OauthError, ProviderMetadata, Step, TransportConfig},
    reason::Reason,
    rotation::{self, Plan},
};

const T0: i64 = 1_800_000_000;
const NS: &str = "ns";

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(T0 + second).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A kube client that fails every request: nothing in these tests may reach an API server.
fn offline_client() -> kube::Client {
    let service = tower::service_fn(|_req: http::Request<kube::client::Body>| async {
        Err::<http::Response<kube::client::Body>, std::io::Error>(std::io::Error::other(
            "unit tests have no API server",
        ))
    });
    kube::Client::new(service, "default")
}

fn server() -> Arc<ResolvedServer> {
    server_with(serde_json::json!({"issuer": "https://as.test"}))
}

fn server_with(spec: serde_json::Value) -> Arc<ResolvedServer> {
    let spec = serde_json::from_value(spec).unwrap_or_else(|e| panic!("a valid spec: {e}"));
    let meta: ProviderMetadata = serde_json::from_value(serde_json::json!({
        "issuer": "https://as.test",
        "token_endpoint": "https://as.test/token",
        "registration_endpoint": "https://as.test/register",
        "revocation_endpoint": "https://as.test/revoke",
    }))
    .unwrap_or_else(|e| panic!("valid metadata: {e}"));
    Arc::new(ResolvedServer {
        spec,
        as_key: "as/ns/bank".into(),
        ca_pem: "ca".into(),
        transport: TransportConfig::new(Vec::new()),
        meta: Arc::new(meta),
    })
}

/// A client of `mode`, with fast keys (ES256, ECDSA) and one token `accounts`; `spec` is merged
/// into the spec.
fn client(mode: &str, spec: serde_json::Value) -> TppClient {
    let mut registration = serde_json::json!({"mode": mode});
    match mode {
        "Static" => {
            registration["clientId"] = "spec-client".into();
            registration["jwksUri"] = "https://operator.test/jwks/ns/payments".into();
        }
        "HubOnboarding" => registration["clientId"] = "spec-client".into(),
        "SignedRequest" => {
            registration["softwareStatementRef"] =
                serde_json::json!({"name": "ssa", "key": "ssa.jwt"});
            registration["metadata"] = serde_json::json!({"softwareId": "software-1"});
        }
        _ => {}
    }
    let mut full = serde_json::json!({
        "authorizationServerRef": {"name": "bank"},
        "registration": registration,
        "signingKey": {"algorithm": "ES256"},
        "transportCertificate": {"keyAlgorithm": "ECDSA"},
        "tokens": [{"name": "accounts", "scope": "accounts"}],
    });
    if let (Some(full), Some(extra)) = (full.as_object_mut(), spec.as_object()) {
        for (k, v) in extra {
            full.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "tpp.dev/v1alpha1", "kind": "TppClient",
        "metadata": {"name": "payments", "namespace": NS, "uid": "uid-1", "generation": 1},
        "spec": full,
    }))
    .unwrap_or_else(|e| panic!("a valid TppClient: {e}"))
}

/// One operator process (context and clock) against one fake cluster and AS.
struct World {
    clock: Arc<FixedClock>,
    ctx: Context,
    fake: FakeEffects,
    client: TppClient,
    status: TppClientStatus,
    events: Vec<(Reason, String)>,
    server: Arc<ResolvedServer>,
}

impl World {
    fn new(mode: &str, spec: serde_json::Value) -> Self {
        let clock = Arc::new(FixedClock::new(at(0)));
        let config = <Config as clap::Parser>::parse_from(["tpp-operator"]);
        let ctx = Context::new(
            offline_client(),
            config,
            Arc::new(Metrics::new(false)),
            clock.clone(),
        );
        let fake = FakeEffects::new(clock.clone());
        let ssa = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("ssa".into()),
                ..Default::default()
            },
            data: Some(
                [(
                    "ssa.jwt".to_owned(),
                    ByteString(b"eyJhbGciOiJub25lIn0.eyJzb2Z0d2FyZV9pZCI6InMxIn0.".to_vec()),
                )]
                .into(),
            ),
            ..Default::default()
        };
        fake.put_user_secret(ssa);
        Self {
            clock,
            ctx,
            fake,
            client: client(mode, spec),
            status: TppClientStatus::default(),
            events: vec![],
            server: server(),
        }
    }

    /// One reconcile from load to status, as `client::reconcile_inner` runs it.
    async fn reconcile(&mut self) -> Result<Option<Plan>, Error> {
        let mut s = Session::load(
            &self.ctx,
            &self.fake,
            &self.client,
            NS.into(),
            self.server.clone(),
        )
        .await?;
        let policy = super::policy::rotation_policy(&self.client, "uid-1");
        let first = rotation::plan(&policy, &s.observed(), self.clock.now());
        let (plan, result) = super::client::drive(&mut s, &policy, first).await;
        self.status = status::from_session(
            &s,
            &self.status,
            plan.as_ref(),
            result.as_ref().err(),
            self.clock.now(),
        );
        self.events.append(&mut s.events);
        result.map(|()| plan)
    }

    /// Reconcile until Ready (a bounded number of times, moving the clock to each wake-up).
    async fn until_ready(&mut self) -> Result<(), String> {
        for _ in 0..8 {
            match self.reconcile().await {
                Ok(_) if self.ready() => return Ok(()),
                Ok(plan) => {
                    let wake = plan.and_then(|p| p.next_wakeup).unwrap_or(self.clock.now());
                    self.clock.set(wake.max(self.clock.now()));
                }
                Err(e) => {
                    self.clock.advance(SignedDuration::from_secs(2));
                    if !e.is_transient() {
                        return Err(format!("permanent: {}", e.chain()));
                    }
                }
            }
        }
        Err(format!("not ready: {:?}", self.status.conditions))
    }

    fn ready(&self) -> bool {
        crate::crd::condition::is_true(&self.status.conditions, types::READY)
    }

    fn reason(&self, type_: &str) -> Option<String> {
        crate::crd::condition::find(&self.status.conditions, type_).map(|c| c.reason.clone())
    }

    fn credential(&self, key: &str) -> Option<String> {
        self.fake.data("payments-credentials", key)
    }

    fn annotate(&mut self, key: &str, value: &str) {
        self.client
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
    }

    /// The world after the process died: a new context and clock, the same cluster and AS.
    fn restarted(self) -> Self {
        let config = <Config as clap::Parser>::parse_from(["tpp-operator"]);
        let ctx = Context::new(
            offline_client(),
            config,
            Arc::new(Metrics::new(false)),
            self.clock.clone(),
        );
        self.fake.restart();
        Self { ctx, ..self }
    }

    /// What must hold whenever the client is Ready: the credentials Secret has a token bound to
    /// the certificate beside it, the active signing key, and the client id the AS knows.
    fn check_consistent(&self, mode: &str) {
        let cert = self.credential("tls.crt").unwrap_or_default();
        let x5t = crate::identity::cert::parse_pem(&cert)
            .map(|i| i.x5t_s256)
            .unwrap_or_default();
        let keys = self
            .fake
            .data("payments-keys", "state.json")
            .unwrap_or_default();
        assert!(
            keys.contains(&x5t),
            "the certificate in use is the persisted one"
        );
        let kid = self.credential("signing.kid").unwrap_or_default();
        assert!(
            keys.contains(&format!("\"kid\":\"{kid}\"")),
            "the mounted signing key {kid} is persisted"
        );
        assert!(self.credential("accounts.access_token").is_some());
        let id = self.credential("client_id").unwrap_or_default();
        match mode {
            "Dynamic" | "SignedRequest" => {
                assert!(self.fake.clients().contains(&id), "{id} is known to the AS")
            }
            _ => assert_eq!(id, "spec-client"),
        }
    }
}

const MODES: [&str; 4] = ["Static", "Dynamic", "SignedRequest", "HubOnboarding"];

async fn onboard(mode: &str) -> World {
    let mut w = World::new(mode, serde_json::json!({}));
    if let Err(e) = w.until_ready().await {
        panic!("{mode}: {e}");
    }
    w
}

#[tokio::test]
async fn a_dynamic_client_is_registered_once_and_ready_in_one_reconcile() {
    let mut w = World::new("Dynamic", serde_json::json!({}));
    w.reconcile()
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    assert!(w.ready(), "{:?}", w.status.conditions);
    assert_eq!(w.fake.clients().len(), 1);
    assert!(
        w.fake.finalizer(),
        "deletionPolicy Delete adds the finalizer first"
    );
    let log = w.fake.log();
    let register = log.iter().position(|e| e == "register");
    let finalizer = log.iter().position(|e| e == "add finalizer");
    assert!(finalizer < register, "{log:?}");
    w.check_consistent("Dynamic");
}

#[tokio::test]
async fn a_signed_request_client_is_registered_once_and_ready() {
    let w = onboard("SignedRequest").await;
    assert_eq!(w.fake.clients().len(), 1);
    assert!(w.fake.log().iter().any(|e| e == "read user ssa"));
    w.check_consistent("SignedRequest");
}

#[tokio::test]
async fn a_hub_client_is_onboarded_once_and_ready() {
    let w = onboard("HubOnboarding").await;
    assert_eq!(w.fake.onboardings(), 1);
    assert!(w.fake.clients().is_empty());
    w.check_consistent("HubOnboarding");
}

#[tokio::test]
async fn a_static_client_waits_for_its_first_key_to_propagate_before_its_first_token() {
    let mut w = World::new("Static", serde_json::json!({}));
    let plan = w
        .reconcile()
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    assert!(!w.ready());
    assert_eq!(w.fake.tokens_issued(), 0);
    assert_eq!(
        w.reason(types::SIGNING_KEY_READY).as_deref(),
        Some("Pending")
    );
    let wake = plan.and_then(|p| p.next_wakeup);
    assert_eq!(wake, Some(at(20 * 60)), "the default propagation delay");
    w.clock.set(at(20 * 60));
    w.reconcile()
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    assert!(w.ready(), "{:?}", w.status.conditions);
    assert!(w.fake.clients().is_empty() && w.fake.onboardings() == 0);
    w.check_consistent("Static");
}

#[tokio::test]
async fn a_static_client_without_a_jwks_uri_waits_for_approval_of_its_first_key() {
    let mut w = World::new(
        "Static",
        serde_json::json!({"registration": {"mode": "Static", "clientId": "spec-client"}}),
    );
    w.reconcile()
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    w.clock.set(at(3_600));
    w.reconcile()
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    assert_eq!(
        w.reason(types::SIGNING_KEY_READY).as_deref(),
        Some("AwaitingKeyApproval")
    );
    assert_eq!(w.fake.tokens_issued(), 0);
    let kid = w
        .status
        .signing_keys
        .first()
        .map(|k| k.kid.clone())
        .unwrap_or_default();
    w.annotate(crate::crd::annotations::APPROVED_KIDS, &kid);
    w.reconcile()
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    assert!(w.ready(), "{:?}", w.status.conditions);
}

#[tokio::test]
async fn an_onboarded_client_is_current_by_the_kstatus_rules() {
    for mode in MODES {
        let w = onboard(mode).await;
        assert_eq!(
            w.reason(types::RECONCILING).as_deref(),
            Some("Reconciled"),
            "{mode}"
        );
        assert_eq!(
            crate::crd::condition::find(&w.status.conditions, types::STALLED)
                .map(|c| c.status.as_str()),
            Some("False")
        );
        assert_eq!(w.status.observed_generation, Some(1));
    }
}

#[tokio::test]
async fn an_idle_reconcile_writes_nothing_and_calls_nothing() {
    let mut w = onboard("Dynamic").await;
    let before = w.fake.count();
    w.reconcile()
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    let log = w.fake.log();
    assert!(
        log[before..].iter().all(|e| e.starts_with("read ")),
        "{:?}",
        &log[before..]
    );
}

/// Secrets written before the deregistration finalizer existed get it once (docs/reliability.md,
/// "Deletion"), with the content they hold; then an idle reconcile writes nothing again.
#[tokio::test]
async fn secrets_written_without_the_deregistration_finalizer_get_it_once() {
    let mut w = onboard("Dynamic").await;
    let held = |w: &World, name: &str| {
        w.fake
            .secret(name)
            .and_then(|s| s.metadata.finalizers)
            .is_some_and(|f| f.iter().any(|f| f == crate::store::layout::FINALIZER))
    };
    let rat = w
        .fake
        .data("payments-registration", "registration_access_token");
    w.fake.strip_finalizers();
    let before = w.fake.count();
    w.reconcile()
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    let log = w.fake.log()[before..].to_vec();
    let writes: Vec<&String> = log.iter().filter(|e| e.starts_with("write")).collect();
    assert_eq!(
        writes,
        [
            "write Secret/payments-keys",
            "write Secret/payments-registration"
        ],
        "{log:?}"
    );
    assert!(held(&w, "payments-keys") && held(&w, "payments-registration"));
    assert_eq!(
        w.fake
            .data("payments-registration", "registration_access_token"),
        rat,
        "the same content"
    );
    let before = w.fake.count();
    w.reconcile()
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    assert!(
        w.fake.log()[before..]
            .iter()
            .all(|e| e.starts_with("read ")),
        "once"
    );
}

#[tokio::test]
async fn a_due_token_is_refreshed_with_one_credentials_write_and_no_keys_write() {
    let mut w = onboard("Dynamic").await;
    let old = w.credential("accounts.access_token");
    w.clock.advance(SignedDuration::from_secs(590));
    let before = w.fake.count();
    w.reconcile()
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    let log = w.fake.log()[before..].to_vec();
    let writes: Vec<&String> = log.iter().filter(|e| e.starts_with("write")).collect();
    assert_eq!(writes, ["write Secret/payments-credentials"], "{log:?}");
    assert_ne!(w.credential("accounts.access_token"), old);
    assert!(w.ready());
}

#[tokio::test]
async fn a_refresh_read_from_the_secret_cache_writes_back_every_key_the_cache_does_not_keep() {
    // The fake answers reads as the Secret cache does, without `store::cache::REBUILT`: a
    // server-side apply built from that copy would delete each of them.
    let mut w = onboard("Dynamic").await;
    let kept = |w: &World| {
        crate::store::cache::REBUILT
            .iter()
            .map(|k| (*k, w.credential(k)))
            .collect::<Vec<_>>()
    };
    let before = kept(&w);
    // (No CA bundle in this world, no signing key asked for: `ca.crt` is empty, `signing.key`
    // absent, and stay so.)
    for (key, value) in &before {
        let present = value.as_deref().is_some_and(|v| !v.is_empty());
        let expected = !["signing.key", "ca.crt"].contains(key);
        assert_eq!(present, expected, "{key} after onboarding");
    }
    let old = w.credential("accounts.access_token");
    w.clock.advance(SignedDuration::from_secs(590));
    w.reconcile()
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    assert_ne!(w.credential("accounts.access_token"), old, "refreshed");
    assert_eq!(kept(&w), before, "rebuilt, with the same values");
}

#[tokio::test]
async fn every_due_token_is_refreshed_in_one_write() {
    let tokens = serde_json::json!({"tokens": [
        {"name": "accounts", "scope": "accounts"}, {"name": "payments", "scope": "payments"}]});
    let mut w = World::new("Dynamic", tokens);
    w.until_ready().await.unwrap_or_else(|e| panic!("{e}"));
    w.clock.advance(SignedDuration::from_secs(599));
    let before = w.fake.count();
    w.reconcile()
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    let log = w.fake.log()[before..].to_vec();
    assert_eq!(log.iter().filter(|e| e.starts_with("token")).count(), 2);
    assert_eq!(
        log.iter().filter(|e| e.starts_with("write")).count(),
        1,
        "{log:?}"
    );
}

#[tokio::test]
async fn a_manual_renew_tokens_request_is_acted_on_once() {
    let mut w = onboard("Dynamic").await;
    w.annotate(crate::crd::annotations::RENEW_TOKENS, "now");
    let issued = w.fake.tokens_issued();
    w.reconcile()
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    assert_eq!(w.fake.tokens_issued(), issued + 1);
    w.reconcile()
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    assert_eq!(w.fake.tokens_issued(), issued + 1, "handled once");
}

#[tokio::test]
async fn a_renewed_certificate_is_written_together_with_tokens_bound_to_it() {
    let mut w = onboard("Dynamic").await;
    let old_cert = w.credential("tls.crt");
    w.annotate(crate::crd::annotations::RENEW_CERTIFICATE, "now");
    w.reconcile()
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    assert_ne!(w.credential("tls.crt"), old_cert);
    assert!(
        w.events
            .iter()
            .any(|(r, _)| *r == Reason::CertificateRotated)
    );
    w.check_consistent("Dynamic");
}

#[tokio::test]
async fn a_hub_is_onboarded_again_before_tokens_for_a_renewed_certificate() {
    let mut w = onboard("HubOnboarding").await;
    w.annotate(crate::crd::annotations::RENEW_CERTIFICATE, "now");
    let before = w.fake.count();
    w.reconcile()
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    let log = w.fake.log()[before..].to_vec();
    let onboard = log.iter().position(|e| e == "onboard");
    let token = log.iter().position(|e| e.starts_with("token"));
    assert!(onboard.is_some() && onboard < token, "{log:?}");
    assert_eq!(w.fake.onboardings(), 2);
    w.check_consistent("HubOnboarding");
}

#[tokio::test]
async fn a_manual_key_rotation_activates_the_new_key_after_propagation_and_removes_the_old() {
    let mut w = onboard("Dynamic").await;
    let first = w.credential("signing.kid");
    w.annotate(crate::crd::annotations::ROTATE_KEYS, "now");
    let plan = w
        .reconcile()
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    assert_eq!(w.credential("signing.kid"), first, "not before propagation");
    assert_eq!(w.status.signing_keys.len(), 2);
    let mut wake = plan.and_then(|p| p.next_wakeup);
    for _ in 0..5 {
        if w.credential("signing.kid") != first {
            break;
        }
        w.clock.set(wake.unwrap_or(at(0)).max(w.clock.now()));
        wake = w
            .reconcile()
            .await
            .unwrap_or_else(|e| panic!("{}", e.chain()))
            .and_then(|p| p.next_wakeup);
    }
    assert_ne!(w.credential("signing.kid"), first, "the new key is mounted");
    assert!(
        w.clock.now() >= at(20 * 60),
        "not before the propagation delay"
    );
    assert!(w.events.iter().any(|(r, _)| *r == Reason::KeyRotated));
    w.clock.advance(SignedDuration::from_hours(1));
    w.reconcile()
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    assert_eq!(
        w.status.signing_keys.len(),
        1,
        "the old key is gone after retireAfter"
    );
    w.check_consistent("Dynamic");
}

#[tokio::test]
async fn inline_publication_updates_the_registration_and_persists_each_rotated_token() {
    // Dynamic without a served jwks_uri publishes inline (RFC 7592 PUT).
    let mut w = World::new("Dynamic", serde_json::json!({}));
    w.until_ready().await.unwrap_or_else(|e| panic!("{e}"));
    let policy = super::policy::rotation_policy(&w.client, "uid-1");
    if policy.publication != rotation::Publication::Immediate {
        return;
    }
    w.annotate(crate::crd::annotations::ROTATE_KEYS, "now");
    w.reconcile()
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    let log = w.fake.log();
    let update = log.iter().rposition(|e| e == "update registration");
    let saved = log
        .iter()
        .rposition(|e| e == "write Secret/payments-registration");
    assert!(update.is_some() && saved > update, "{log:?}");
    let rat = w
        .fake
        .data("payments-registration", "registration_access_token");
    assert!(
        rat.is_some_and(|r| r.ends_with('+')),
        "the rotated RAT is persisted"
    );
}

#[tokio::test]
async fn a_key_activation_while_tokens_cannot_follow_a_new_certificate_keeps_them_beside_theirs() {
    // tls_client_auth: the key signs no token request, so it is activated without a self-test
    // (with private_key_jwt the activation itself waits for the token endpoint).
    let mut w = World::new(
        "Dynamic",
        serde_json::json!({"authentication": {"method": "tls_client_auth"}}),
    );
    w.until_ready().await.unwrap_or_else(|e| panic!("{e}"));
    let old_cert = w.credential("tls.crt");
    let old_token = w.credential("accounts.access_token");
    let old_kid = w.credential("signing.kid");
    w.annotate(crate::crd::annotations::RENEW_CERTIFICATE, "now");
    w.annotate(crate::crd::annotations::ROTATE_KEYS, "now");
    for _ in 0..20 {
        w.fake.fail_next(
            Call::Token,
            OauthError::Unavailable {
                step: Step::Token,
                status: 503,
                retry_after: None,
                interaction_id: "i".into(),
            },
        );
    }
    // The token endpoint is down across the key's propagation delay: the new key is activated
    // (and mounted) while no token bound to the new certificate can be had.
    for _ in 0..6 {
        let _ = w.reconcile().await;
        w.clock.advance(SignedDuration::from_mins(5));
    }
    assert_ne!(
        w.credential("signing.kid"),
        old_kid,
        "the new key is mounted"
    );
    assert_eq!(w.credential("accounts.access_token"), old_token);
    assert_eq!(
        w.credential("tls.crt"),
        old_cert,
        "the old token stays beside the certificate it is bound to"
    );
}

/// The thumbprint of the certificate in the credentials Secret.
fn mounted_x5t(w: &World) -> String {
    let pem = w.credential("tls.crt").unwrap_or_default();
    crate::identity::cert::parse_pem(&pem)
        .map(|i| i.x5t_s256)
        .unwrap_or_default()
}

/// The thumbprint of the current certificate in `<name>-keys`.
fn current_x5t(w: &World) -> String {
    let state = w
        .fake
        .data("payments-keys", "state.json")
        .unwrap_or_default();
    let state: crate::store::state::KeysState =
        serde_json::from_str(&state).unwrap_or_else(|e| panic!("keys state: {e}"));
    state
        .certificate
        .map(|c| c.record.x5t_s256)
        .unwrap_or_default()
}

#[tokio::test]
async fn a_certificate_the_as_refuses_is_not_switched_to_and_the_old_one_keeps_refreshing() {
    let mut w = onboard("Dynamic").await;
    let old_x5t = mounted_x5t(&w);
    w.annotate(crate::crd::annotations::RENEW_CERTIFICATE, "now");
    // Renew, and learn the new certificate's thumbprint from the first (refused) switch.
    w.fake.fail_next(Call::Token, refused_token());
    let _ = w.reconcile().await;
    let new_x5t = current_x5t(&w);
    assert_ne!(new_x5t, old_x5t, "renewed");
    w.fake.refuse_tokens_for(&new_x5t);
    w.clock.advance(SignedDuration::from_secs(1));
    w.reconcile()
        .await
        .unwrap_or_else(|e| panic!("a refusal is no failure: {e}"));
    assert_eq!(
        mounted_x5t(&w),
        old_x5t,
        "the credentials keep the old certificate"
    );
    assert_eq!(
        w.reason(types::TRANSPORT_CERTIFICATE_READY).as_deref(),
        Some("SelfTestRefused")
    );
    assert!(w.events.iter().any(|(r, _)| *r == Reason::SelfTestRefused));
    // The old token reaches its refresh point: it is refreshed with the old certificate.
    let before = w.fake.token_material().len();
    let old_token = w.credential("accounts.access_token");
    w.clock.advance(SignedDuration::from_mins(8));
    w.reconcile().await.unwrap_or_else(|e| panic!("{e}"));
    let calls = w.fake.token_material();
    assert!(
        calls[before..].iter().any(|(x5t, _)| *x5t == old_x5t),
        "a refresh with the old certificate: {calls:?}"
    );
    assert_ne!(
        w.credential("accounts.access_token"),
        old_token,
        "refreshed"
    );
    assert_eq!(mounted_x5t(&w), old_x5t);
    // Once the AS accepts the new certificate, the next self-test switches to it.
    w.fake.accept_tokens_for(&new_x5t);
    w.clock.advance(SignedDuration::from_mins(2));
    w.reconcile().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(mounted_x5t(&w), new_x5t, "switched");
    assert_eq!(
        w.reason(types::TRANSPORT_CERTIFICATE_READY).as_deref(),
        Some("CertificateIssued")
    );
    w.check_consistent("Dynamic");
}

#[tokio::test]
async fn a_signing_key_the_as_refuses_is_not_activated_and_the_old_one_keeps_signing() {
    let mut w = onboard("Dynamic").await;
    let old_kid = w.credential("signing.kid").unwrap_or_default();
    w.annotate(crate::crd::annotations::ROTATE_KEYS, "now");
    w.reconcile().await.unwrap_or_else(|e| panic!("{e}"));
    let state: crate::store::state::KeysState = serde_json::from_str(
        &w.fake
            .data("payments-keys", "state.json")
            .unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let new_kid = state
        .keys
        .iter()
        .map(|k| k.record.kid.clone())
        .find(|kid| *kid != old_kid)
        .unwrap_or_else(|| panic!("a new key"));
    w.fake.refuse_tokens_for(&new_kid);
    // The propagation delay passes: the self-test is refused, the old key stays active.
    w.clock.advance(SignedDuration::from_mins(21));
    w.reconcile()
        .await
        .unwrap_or_else(|e| panic!("a refusal is no failure: {e}"));
    assert_eq!(w.credential("signing.kid"), Some(old_kid.clone()));
    assert_eq!(
        w.reason(types::SIGNING_KEY_READY).as_deref(),
        Some("SelfTestRefused")
    );
    assert!(w.ready(), "the old key works: still Ready");
    let calls = w.fake.token_material();
    assert!(
        calls
            .iter()
            .any(|(_, kid)| kid.as_deref() == Some(new_kid.as_str())),
        "a self-test with the new key: {calls:?}"
    );
    // Tokens keep being refreshed with the old key meanwhile.
    let before = calls.len();
    w.clock.advance(SignedDuration::from_mins(8));
    w.reconcile().await.unwrap_or_else(|e| panic!("{e}"));
    let calls = w.fake.token_material();
    assert!(
        calls[before..]
            .iter()
            .any(|(_, kid)| kid.as_deref() == Some(old_kid.as_str())),
        "a refresh signed with the old key: {calls:?}"
    );
    // Accepted: the next self-test activates the new key.
    w.fake.accept_tokens_for(&new_kid);
    w.clock.advance(SignedDuration::from_mins(2));
    w.reconcile().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(w.credential("signing.kid"), Some(new_kid));
    assert_eq!(
        w.reason(types::SIGNING_KEY_READY).as_deref(),
        Some("KeyActive")
    );
}

fn refused_token() -> OauthError {
    OauthError::from_status(
        Step::Token,
        401,
        None,
        br#"{"error":"invalid_client"}"#,
        "i",
        at(0),
    )
}

fn refused_put() -> OauthError {
    super::fake::refused(Step::UpdateRegistration, at(0))
}

/// A Dynamic client onboarded with `spec`, whose key rotation is published by RFC 7592 PUT.
async fn onboard_immediate(spec: serde_json::Value) -> World {
    let mut w = World::new("Dynamic", spec);
    w.until_ready().await.unwrap_or_else(|e| panic!("{e}"));
    let policy = super::policy::rotation_policy(&w.client, "uid-1");
    assert_eq!(policy.publication, rotation::Publication::Immediate);
    w
}

#[tokio::test]
async fn one_refused_rfc7592_put_is_tried_again_not_taken_for_a_lost_client() {
    let mut w = onboard_immediate(serde_json::json!({})).await;
    w.fake.fail_next(Call::Update, refused_put());
    w.annotate(crate::crd::annotations::ROTATE_KEYS, "now");
    w.until_ready().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(w.fake.clients(), ["client-1"], "no second client");
    assert!(!w.events.iter().any(|(r, _)| *r == Reason::RegistrationLost));
    assert!(
        !w.fake.log().iter().any(|e| e == "read registration"),
        "the retry succeeded: no GET needed"
    );
}

#[tokio::test]
async fn a_rat_received_after_the_reconcile_deadline_passed_is_still_persisted() {
    let mut w = onboard_immediate(serde_json::json!({})).await;
    // The PUT starts within milliseconds (ES256 keys); its answer, with a rotated RAT, comes
    // long after the deadline.
    w.fake
        .delay_next(Call::Update, std::time::Duration::from_secs(2));
    w.annotate(crate::crd::annotations::ROTATE_KEYS, "now");
    // The deadline passes while the PUT's answer is on its way (whether the reconcile then
    // ends at the deadline or at its last step does not matter here).
    let _ = super::deadline::run(std::time::Duration::from_millis(500), w.reconcile()).await;
    assert!(
        w.fake.log().iter().any(|e| e == "update registration"),
        "the PUT started before the deadline"
    );
    assert_eq!(
        w.fake
            .data("payments-registration", "registration_access_token")
            .as_deref(),
        Some("rat-1-0+"),
        "the rotated RAT the AS answered with was written"
    );
    // And the next reconcile uses it: no refusal, no second client.
    w.until_ready().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(w.fake.clients(), ["client-1"]);
}

#[tokio::test]
async fn the_deadline_lets_a_registration_in_flight_persist_its_answer_and_starts_no_new_step() {
    let mut w = World::new("Dynamic", serde_json::json!({}));
    w.fake
        .delay_next(Call::Register, std::time::Duration::from_secs(2));
    let result = super::deadline::run(std::time::Duration::from_millis(500), async {
        let mut s = Session::load(&w.ctx, &w.fake, &w.client, NS.into(), server()).await?;
        let policy = super::policy::rotation_policy(&w.client, "uid-1");
        let first = rotation::plan(&policy, &s.observed(), w.clock.now());
        super::client::drive(&mut s, &policy, first).await.1
    })
    .await;
    assert!(
        matches!(result, Ok(Err(Error::ReconcileTimeout(_)))),
        "{result:?}"
    );
    assert_eq!(
        w.fake.data("payments-registration", "client_id").as_deref(),
        Some("client-1"),
        "the answer received after the deadline was persisted"
    );
    assert_eq!(
        w.fake.tokens_issued(),
        0,
        "no token request after the deadline"
    );
    w.until_ready().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(w.fake.clients(), ["client-1"], "no second registration");
}

#[tokio::test]
async fn a_put_refused_after_retries_but_a_get_accepted_keeps_the_client() {
    let mut w = onboard_immediate(serde_json::json!({})).await;
    for _ in 0..3 {
        w.fake.fail_next(Call::Update, refused_put());
    }
    w.annotate(crate::crd::annotations::ROTATE_KEYS, "now");
    let err = w.reconcile().await.err();
    assert_eq!(err.map(|e| e.reason()), Some(Reason::RegistrationRejected));
    let puts = w
        .fake
        .log()
        .iter()
        .filter(|e| *e == "update registration")
        .count();
    assert_eq!(puts, 3, "the PUT is tried three times");
    assert!(w.fake.log().iter().any(|e| e == "read registration"));
    let registration = w
        .fake
        .data("payments-registration", "access_token_refused_at");
    assert_eq!(registration, None, "the token works: not lost");
    assert_eq!(w.fake.clients(), ["client-1"]);
}

#[tokio::test]
async fn an_edited_client_id_is_corrupt_state_not_used_nor_registered_anew() {
    let mut w = onboard_immediate(serde_json::json!({})).await;
    // What the AS answered (it echoes the client id, RFC 7591 § 3.2.1), then the edit.
    w.fake.edit_secret(
        "payments-registration",
        "response.json",
        Some(r#"{"client_id":"client-1"}"#),
    );
    w.fake
        .edit_secret("payments-registration", "client_id", Some("tenant-garbage"));
    w.annotate(crate::crd::annotations::RENEW_TOKENS, "now");
    let issued = w.fake.tokens_issued();
    let err = w
        .reconcile()
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("payments-registration") && err.contains("client-1"),
        "{err}"
    );
    assert_eq!(w.fake.clients(), ["client-1"], "no new registration");
    assert_eq!(
        w.fake.tokens_issued(),
        issued,
        "no token for an edited client id"
    );
    // Put back, the client carries on.
    w.fake
        .edit_secret("payments-registration", "client_id", Some("client-1"));
    w.until_ready().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(w.fake.clients(), ["client-1"]);
}

#[tokio::test]
async fn a_client_id_removed_from_the_registration_secret_halts_for_good_not_registers_anew() {
    let mut w = onboard_immediate(serde_json::json!({})).await;
    w.fake.edit_secret(
        "payments-registration",
        "response.json",
        Some(r#"{"client_id":"client-1"}"#),
    );
    w.client.status = Some(w.status.clone());
    w.fake
        .edit_secret("payments-registration", "client_id", None);
    for _ in 0..3 {
        let _ = w.reconcile().await;
        // The next reconcile reads the status the last one wrote.
        w.client.status = Some(w.status.clone());
        w.clock.advance(SignedDuration::from_secs(2));
    }
    assert_eq!(w.fake.clients(), ["client-1"], "no new registration");
    assert_eq!(
        w.reason(types::REGISTERED).as_deref(),
        Some("RegistrationSecretLost")
    );
    let message = crate::crd::condition::find(&w.status.conditions, types::REGISTERED)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("client-1"), "{message}");
}

#[tokio::test]
async fn a_deleted_registration_secret_halts_for_good_and_the_status_keeps_the_client_id() {
    let mut w = onboard_immediate(serde_json::json!({})).await;
    w.client.status = Some(w.status.clone());
    w.fake.delete_secret("payments-registration");
    for _ in 0..3 {
        let _ = w.reconcile().await;
        // The next reconcile reads the status the last one wrote.
        w.client.status = Some(w.status.clone());
        w.clock.advance(SignedDuration::from_secs(2));
    }
    assert_eq!(w.fake.clients(), ["client-1"], "no new registration");
    assert_eq!(
        w.reason(types::REGISTERED).as_deref(),
        Some("RegistrationSecretLost")
    );
    assert_eq!(w.status.client_id.as_deref(), Some("client-1"));
}

#[tokio::test]
async fn a_lost_registration_access_token_fails_by_default_and_names_the_client_left_at_the_as() {
    let mut w = onboard_immediate(serde_json::json!({})).await;
    w.fake.revoke_registration_tokens();
    w.annotate(crate::crd::annotations::ROTATE_KEYS, "now");
    let err = w.until_ready().await.err().unwrap_or_default();
    assert!(err.contains("permanent"), "{err}");
    assert_eq!(w.fake.clients(), ["client-1"], "no new registration");
    assert_eq!(
        w.reason(types::REGISTERED).as_deref(),
        Some("RegistrationAccessTokenLost")
    );
    assert_eq!(
        w.reason(types::STALLED).as_deref(),
        Some("RegistrationAccessTokenLost")
    );
    let message = crate::crd::condition::find(&w.status.conditions, types::REGISTERED)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("client-1"), "{message}");
    assert!(
        w.fake
            .data("payments-registration", "access_token_refused_at")
            .is_some(),
        "the refusal is persisted"
    );
    // No further RFC 7592 call with the refused token.
    let before = w.fake.log().len();
    let _ = w.reconcile().await;
    assert!(
        !w.fake.log()[before..]
            .iter()
            .any(|e| e == "update registration" || e == "read registration"),
        "{:?}",
        &w.fake.log()[before..]
    );
}

#[tokio::test]
async fn an_overwritten_registration_access_token_is_reported_at_once_and_never_sent() {
    let mut w = onboard_immediate(serde_json::json!({})).await;
    let rat = w
        .fake
        .data("payments-registration", "registration_access_token")
        .unwrap_or_default();
    assert_eq!(
        w.fake
            .data("payments-registration", "registration_access_token.sha256")
            .as_deref(),
        Some(crate::store::state::access_token_digest(&rat).as_str()),
        "the digest is written with the token"
    );
    w.fake.edit_secret(
        "payments-registration",
        "registration_access_token",
        Some("tenant-garbage-registration-access-token"),
    );
    // A key rotation would PUT the new key with the token; a token refresh is asked for too.
    w.annotate(crate::crd::annotations::ROTATE_KEYS, "now");
    w.annotate(crate::crd::annotations::RENEW_TOKENS, "now");
    let before = w.fake.log().len();
    let issued = w.fake.tokens_issued();
    let err = w
        .reconcile()
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("payments-registration") && err.contains("client-1"),
        "reported at once, naming the Secret and the client: {err}"
    );
    assert_eq!(
        w.reason(types::REGISTERED).as_deref(),
        Some("RegistrationAccessTokenOverwritten")
    );
    assert!(w.fake.tokens_issued() > issued, "tokens keep coming");
    let calls = &w.fake.log()[before..];
    assert!(
        !calls.iter().any(|e| e == "update registration"
            || e == "read registration"
            || e == "delete registration"
            || e == "register"),
        "no RFC 7592 call, nothing registered: {calls:?}"
    );
    assert_eq!(w.fake.clients(), ["client-1"]);
    // At deletion, no DELETE with it either.
    let s = Session::load(&w.ctx, &w.fake, &w.client, NS.into(), w.server.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let refused = super::register::deregister(&s)
        .await
        .err()
        .map(|e| e.reason().as_str());
    assert_eq!(refused, Some("RegistrationAccessTokenOverwritten"));
    assert!(!w.fake.log().iter().any(|e| e == "delete registration"));
    // Put back: it clears, and the rotation publishes with the operator's token.
    w.fake.edit_secret(
        "payments-registration",
        "registration_access_token",
        Some(&rat),
    );
    w.until_ready().await.unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(
        w.reason(types::REGISTERED).as_deref(),
        Some("RegistrationAccessTokenOverwritten")
    );
    assert!(
        w.fake.log()[before..]
            .iter()
            .any(|e| e == "update registration"),
        "the held-back publication goes out once the token is ours again"
    );
    // The rotated token's digest came with it.
    let rotated = w
        .fake
        .data("payments-registration", "registration_access_token")
        .unwrap_or_default();
    assert_ne!(rotated, rat);
    assert_eq!(
        w.fake
            .data("payments-registration", "registration_access_token.sha256")
            .as_deref(),
        Some(crate::store::state::access_token_digest(&rotated).as_str())
    );
}

#[tokio::test]
async fn a_registration_access_token_without_a_digest_is_adopted_and_its_digest_written() {
    let mut w = onboard_immediate(serde_json::json!({})).await;
    let rat = w
        .fake
        .data("payments-registration", "registration_access_token")
        .unwrap_or_default();
    // As written by an operator before digests existed.
    w.fake.edit_secret(
        "payments-registration",
        "registration_access_token.sha256",
        None,
    );
    let before = w.fake.log().len();
    w.reconcile().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        w.fake
            .data("payments-registration", "registration_access_token.sha256")
            .as_deref(),
        Some(crate::store::state::access_token_digest(&rat).as_str()),
        "adopted without an AS call"
    );
    assert!(
        !w.fake.log()[before..]
            .iter()
            .any(|e| e == "update registration" || e == "read registration"),
        "{:?}",
        &w.fake.log()[before..]
    );
    // From then on an overwrite is found.
    w.fake.edit_secret(
        "payments-registration",
        "registration_access_token",
        Some("tenant-garbage-registration-access-token"),
    );
    let _ = w.reconcile().await;
    assert_eq!(
        w.reason(types::REGISTERED).as_deref(),
        Some("RegistrationAccessTokenOverwritten")
    );
}

#[tokio::test]
async fn with_on_lost_register_a_lost_token_registers_a_new_client_and_names_the_old_one() {
    let mut w = onboard_immediate(serde_json::json!({"registration": {
        "mode": "Dynamic", "onLost": "Register"}}))
    .await;
    w.fake.revoke_registration_tokens();
    w.annotate(crate::crd::annotations::ROTATE_KEYS, "now");
    w.until_ready().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(w.fake.clients().len(), 2);
    assert!(
        w.events
            .iter()
            .any(|(r, note)| *r == Reason::RegistrationLost && note.contains("client-1")),
        "{:?}",
        w.events
    );
    assert_eq!(w.credential("client_id").as_deref(), Some("client-2"));
    w.check_consistent("Dynamic");
}

#[tokio::test]
async fn a_delete_answered_401_is_refused_not_deleted() {
    let w = onboard_immediate(serde_json::json!({})).await;
    w.fake.revoke_registration_tokens();
    let s = Session::load(&w.ctx, &w.fake, &w.client, NS.into(), server())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let outcome = super::register::deregister(&s).await.ok();
    assert_eq!(outcome, Some(crate::oauth::DeleteOutcome::Refused));
    assert_eq!(w.fake.clients(), ["client-1"], "still at the AS");
}

fn two_tokens() -> serde_json::Value {
    serde_json::json!({"tokens": [
        {"name": "accounts", "scope": "accounts"},
        {"name": "payments", "scope": "payments"},
    ]})
}

#[tokio::test]
async fn deletion_revokes_every_access_token_while_the_client_can_still_authenticate() {
    let w = onboard_immediate(two_tokens()).await;
    let held: Vec<String> = ["accounts", "payments"]
        .iter()
        .filter_map(|t| w.credential(&format!("{t}.access_token")))
        .collect();
    assert_eq!(held.len(), 2);
    let s = Session::load(&w.ctx, &w.fake, &w.client, NS.into(), server())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let failures = super::register::revoke_tokens(&s).await;
    assert_eq!(failures, []);
    assert_eq!(w.fake.revoked(), held);
}

#[tokio::test]
async fn a_refused_revocation_is_reported_by_name_and_the_other_tokens_are_still_revoked() {
    let w = onboard_immediate(two_tokens()).await;
    w.fake.fail_next(
        Call::Revoke,
        OauthError::Unavailable {
            step: Step::Revocation,
            status: 503,
            retry_after: None,
            interaction_id: "i".into(),
        },
    );
    let s = Session::load(&w.ctx, &w.fake, &w.client, NS.into(), server())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let failures = super::register::revoke_tokens(&s).await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].0, "accounts");
    assert_eq!(
        w.fake.revoked().len(),
        1,
        "payments is revoked all the same"
    );
}

#[tokio::test]
async fn nothing_is_revoked_at_an_authorization_server_without_a_revocation_endpoint() {
    let w = onboard_immediate(two_tokens()).await;
    let base = server();
    let mut meta = (*base.meta).clone();
    meta.revocation_endpoint = None;
    let server = Arc::new(ResolvedServer {
        spec: base.spec.clone(),
        as_key: base.as_key.clone(),
        ca_pem: base.ca_pem.clone(),
        transport: TransportConfig::new(Vec::new()),
        meta: Arc::new(meta),
    });
    let s = Session::load(&w.ctx, &w.fake, &w.client, NS.into(), server)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(super::register::revoke_tokens(&s).await, []);
    assert_eq!(w.fake.revoked(), Vec::<String>::new());
}

fn unavailable_register() -> OauthError {
    OauthError::Unavailable {
        step: Step::Register,
        status: 503,
        retry_after: None,
        interaction_id: "i".into(),
    }
}

fn registrations(w: &World) -> usize {
    w.fake.log().iter().filter(|e| *e == "register").count()
}

#[tokio::test]
async fn an_attempt_of_unknown_outcome_is_retried_once_then_registration_halts_until_annotated() {
    let mut w = World::new("Dynamic", serde_json::json!({}));
    for _ in 0..3 {
        w.fake.fail_next(Call::Register, unavailable_register());
    }
    for _ in 0..4 {
        let _ = w.reconcile().await;
        w.clock.advance(SignedDuration::from_secs(60));
    }
    assert_eq!(registrations(&w), 2, "maxUnknownAttempts 1: two requests");
    assert_eq!(
        w.reason(types::REGISTERED).as_deref(),
        Some("RegistrationOutcomeUnknown")
    );
    assert_eq!(
        w.reason(types::STALLED).as_deref(),
        Some("RegistrationOutcomeUnknown")
    );
    let message = crate::crd::condition::find(&w.status.conditions, types::REGISTERED)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("tpp.dev/retry-registration") && message.contains("ns/payments"),
        "{message}"
    );
    assert_eq!(
        w.events
            .iter()
            .filter(|(r, _)| *r == Reason::RegistrationLost)
            .count(),
        1,
        "the retry said a client may remain"
    );
    // A human checked the AS and asks for another round: one more request (still failing),
    // then the next one succeeds.
    w.annotate(crate::crd::annotations::RETRY_REGISTRATION, "1");
    let _ = w.reconcile().await;
    assert_eq!(registrations(&w), 3);
    w.until_ready().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(registrations(&w), 4);
    let keys = w
        .fake
        .data("payments-keys", "state.json")
        .unwrap_or_default();
    assert!(!keys.contains("registrationUnknownAttempts"), "{keys}");
}

#[tokio::test]
async fn a_registration_the_as_answered_with_a_refusal_is_no_attempt_of_unknown_outcome() {
    let mut w = World::new("Dynamic", serde_json::json!({}));
    w.fake.fail_next(
        Call::Register,
        OauthError::from_status(
            Step::Register,
            400,
            None,
            br#"{"error":"invalid_client_metadata"}"#,
            "i",
            at(0),
        ),
    );
    assert!(w.reconcile().await.is_err());
    let keys = w
        .fake
        .data("payments-keys", "state.json")
        .unwrap_or_default();
    assert!(
        !keys.contains("registrationAttemptStartedAt")
            && !keys.contains("registrationUnknownAttempts"),
        "{keys}"
    );
    w.until_ready().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !w.events.iter().any(|(r, _)| *r == Reason::RegistrationLost),
        "no false alarm: {:?}",
        w.events
    );
}

#[tokio::test]
async fn an_unavailable_token_endpoint_is_transient_and_named_on_tokens_ready() {
    let mut w = World::new("Dynamic", serde_json::json!({}));
    w.fake.fail_next(
        Call::Token,
        OauthError::Unavailable {
            step: Step::Token,
            status: 503,
            retry_after: None,
            interaction_id: "i".into(),
        },
    );
    let err = w.reconcile().await.err();
    assert!(err.as_ref().is_some_and(Error::is_transient));
    assert_eq!(
        w.reason(types::TOKENS_READY).as_deref(),
        Some("AuthorizationServerUnavailable")
    );
    assert_eq!(
        w.reason(types::RECONCILING).as_deref(),
        Some("AuthorizationServerUnavailable")
    );
    w.until_ready().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(w.fake.clients().len(), 1, "no second registration");
}

#[tokio::test]
async fn a_rejected_registration_stalls_with_registration_rejected() {
    let mut w = World::new("Dynamic", serde_json::json!({}));
    w.fake.fail_next(
        Call::Register,
        OauthError::from_status(
            Step::Register,
            400,
            None,
            br#"{"error":"invalid_client_metadata"}"#,
            "i",
            at(0),
        ),
    );
    let err = w.reconcile().await.err();
    assert!(err.as_ref().is_some_and(|e| !e.is_transient()));
    assert_eq!(
        w.reason(types::REGISTERED).as_deref(),
        Some("RegistrationRejected")
    );
    assert_eq!(
        w.reason(types::STALLED).as_deref(),
        Some("RegistrationRejected")
    );
    assert_eq!(w.fake.tokens_issued(), 0);
}

#[tokio::test]
async fn a_rejected_hub_onboarding_is_named() {
    let mut w = World::new("HubOnboarding", serde_json::json!({}));
    w.fake.fail_next(
        Call::HubOnboard,
        OauthError::from_status(
            Step::HubOnboarding,
            403,
            None,
            br#"{"Errors":[{"Code":"AccessToken.Unauthorized","Message":"tpp unknown"}]}"#,
            "i",
            at(0),
        ),
    );
    assert!(w.reconcile().await.is_err());
    assert_eq!(
        w.reason(types::REGISTERED).as_deref(),
        Some("HubOnboardingRejected")
    );
    assert_eq!(w.fake.tokens_issued(), 0);
}

#[tokio::test]
async fn a_missing_software_statement_fails_before_anything_is_sent() {
    let mut w = World::new(
        "SignedRequest",
        serde_json::json!({"registration": {"mode": "SignedRequest",
            "softwareStatementRef": {"name": "absent", "key": "k"},
            "metadata": {"softwareId": "s1"}}}),
    );
    let err = w.reconcile().await.err();
    assert_eq!(err.map(|e| e.reason()), Some(Reason::ReferenceNotFound));
    assert!(!w.fake.log().iter().any(|e| e == "register"));
    let keys = w
        .fake
        .data("payments-keys", "state.json")
        .unwrap_or_default();
    assert!(
        !keys.contains("registrationAttemptStartedAt"),
        "no intent is recorded for a request that was never sent"
    );
}

#[tokio::test]
async fn a_token_audience_is_requested_as_the_resource_and_a_token_without_one_asks_for_none() {
    let mut w = World::new(
        "Dynamic",
        serde_json::json!({"tokens": [
            {"name": "accounts", "scope": "accounts", "audience": "https://rs.bank.example/"},
            {"name": "payments", "scope": "payments"},
        ]}),
    );
    w.until_ready()
        .await
        .unwrap_or_else(|e| panic!("ready: {e}"));
    let log = w.fake.log();
    assert!(
        log.iter()
            .any(|e| e == "token accounts for https://rs.bank.example/"),
        "{log:?}"
    );
    assert!(log.iter().any(|e| e == "token payments"), "{log:?}");
}

fn platform_ssa() -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("platform-ssa".into()),
            namespace: Some("platform".into()),
            ..Default::default()
        },
        data: Some(
            [(
                "ssa.jwt".to_owned(),
                ByteString(b"eyJhbGciOiJub25lIn0.eyJzb2Z0d2FyZV9pZCI6InMxIn0.".to_vec()),
            )]
            .into(),
        ),
        ..Default::default()
    }
}

/// A SignedRequest client without its own statement, of a server whose statement is the
/// platform's `platform/platform-ssa`.
fn world_with_platform_statement(kind: &str) -> World {
    let mut w = World::new(
        "SignedRequest",
        serde_json::json!({
            "authorizationServerRef": {"kind": kind, "name": "bank"},
            "registration": {"mode": "SignedRequest", "metadata": {"softwareId": "s1"}},
        }),
    );
    w.server = server_with(serde_json::json!({
        "issuer": "https://as.test",
        "registration": {"softwareStatementRef":
            {"name": "platform-ssa", "key": "ssa.jwt", "namespace": "platform"}},
    }));
    w.fake.put_user_secret(platform_ssa());
    w
}

#[tokio::test]
async fn a_cluster_server_statement_is_read_from_the_namespace_it_names() {
    let mut w = world_with_platform_statement("ClusterAuthorizationServer");
    w.until_ready()
        .await
        .unwrap_or_else(|e| panic!("the platform's statement is read: {e}"));
    assert_eq!(w.fake.clients().len(), 1);
    assert!(w.fake.log().iter().any(|e| e == "read user platform-ssa"));
}

#[tokio::test]
async fn a_namespaced_server_naming_another_namespace_is_refused_before_anything_is_sent() {
    let mut w = world_with_platform_statement("AuthorizationServer");
    let err = w.reconcile().await.err();
    assert_eq!(
        err.map(|e| e.reason()),
        Some(Reason::CrossNamespaceReference)
    );
    assert!(!w.fake.log().iter().any(|e| e == "register"));
}

#[tokio::test]
async fn a_failed_write_is_transient_and_named_write_failed() {
    let mut w = World::new("Dynamic", serde_json::json!({}));
    // Reads (3) and the key generation need no effect; the first write is the keys Secret.
    w.fake.crash_at(3);
    let err = w.reconcile().await.err();
    assert_eq!(err.as_ref().map(|e| e.reason()), Some(Reason::WriteFailed));
    assert!(err.is_some_and(|e| e.is_transient()));
    assert!(
        w.fake.clients().is_empty(),
        "nothing reached the AS before the keys were persisted"
    );
}

/// Effects of a clean onboarding, per mode (reads, writes, AS calls).
async fn clean_effects(mode: &str) -> usize {
    let mut w = World::new(mode, serde_json::json!({}));
    w.until_ready().await.unwrap_or_else(|e| panic!("{e}"));
    w.fake.count()
}

/// Onboarding that dies after `n` effects, then restarts from what was persisted.
async fn crash_after(mode: &str, n: usize) {
    let mut w = World::new(mode, serde_json::json!({}));
    w.fake.crash_at(n);
    for _ in 0..3 {
        let _ = w.reconcile().await;
    }
    let mut w = w.restarted();
    if let Err(e) = w.until_ready().await {
        panic!("{mode}, crash after effect {n}: {e}");
    }
    w.check_consistent(mode);
    match mode {
        "Dynamic" | "SignedRequest" => {
            let lost = w.events.iter().any(|(r, _)| *r == Reason::RegistrationLost);
            let clients = w.fake.clients().len();
            assert!(
                clients == 1 || (clients == 2 && lost),
                "{mode}, crash after effect {n}: {clients} clients at the AS, RegistrationLost said: {lost}"
            );
        }
        "HubOnboarding" => assert!(w.fake.onboardings() >= 1),
        _ => assert!(w.fake.clients().is_empty()),
    }
}

#[tokio::test]
async fn a_clean_onboarding_makes_a_known_number_of_effects() {
    // The crash tests below cover a crash after each of these effects: a change here needs
    // them extended.
    assert_eq!(
        [
            clean_effects("Dynamic").await,
            clean_effects("SignedRequest").await,
            clean_effects("HubOnboarding").await,
            clean_effects("Static").await,
        ],
        [
            CRASH_POINTS_DYNAMIC,
            CRASH_POINTS_SIGNED,
            CRASH_POINTS_HUB,
            CRASH_POINTS_STATIC
        ]
    );
}

const CRASH_POINTS_DYNAMIC: usize = 12;
const CRASH_POINTS_SIGNED: usize = 13;
const CRASH_POINTS_HUB: usize = 12;
const CRASH_POINTS_STATIC: usize = 14;

/// One test per crash point: the process dies after effect `n` of a clean onboarding (reads,
/// writes and AS calls counted alike), restarts, and must end Ready, consistent, and with no
/// second client at the AS unless it said `RegistrationLost`.
macro_rules! crash_points {
    ($mode:literal: $($name:ident = $n:literal),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                crash_after($mode, $n).await;
            }
        )*
    };
}

crash_points!("Dynamic":
    dynamic_onboarding_resumes_after_a_crash_after_effect_0 = 0,
    dynamic_onboarding_resumes_after_a_crash_after_effect_1 = 1,
    dynamic_onboarding_resumes_after_a_crash_after_effect_2 = 2,
    dynamic_onboarding_resumes_after_a_crash_after_effect_3 = 3,
    dynamic_onboarding_resumes_after_a_crash_after_effect_4 = 4,
    dynamic_onboarding_resumes_after_a_crash_after_effect_5 = 5,
    dynamic_onboarding_resumes_after_a_crash_after_effect_6 = 6,
    dynamic_onboarding_resumes_after_a_crash_after_effect_7 = 7,
    dynamic_onboarding_resumes_after_a_crash_after_effect_8 = 8,
    dynamic_onboarding_resumes_after_a_crash_after_effect_9 = 9,
    dynamic_onboarding_resumes_after_a_crash_after_effect_10 = 10,
    dynamic_onboarding_resumes_after_a_crash_after_effect_11 = 11,
    dynamic_onboarding_resumes_after_a_crash_after_effect_12 = 12,
);

crash_points!("SignedRequest":
    signed_request_onboarding_resumes_after_a_crash_after_effect_0 = 0,
    signed_request_onboarding_resumes_after_a_crash_after_effect_1 = 1,
    signed_request_onboarding_resumes_after_a_crash_after_effect_2 = 2,
    signed_request_onboarding_resumes_after_a_crash_after_effect_3 = 3,
    signed_request_onboarding_resumes_after_a_crash_after_effect_4 = 4,
    signed_request_onboarding_resumes_after_a_crash_after_effect_5 = 5,
    signed_request_onboarding_resumes_after_a_crash_after_effect_6 = 6,
    signed_request_onboarding_resumes_after_a_crash_after_effect_7 = 7,
    signed_request_onboarding_resumes_after_a_crash_after_effect_8 = 8,
    signed_request_onboarding_resumes_after_a_crash_after_effect_9 = 9,
    signed_request_onboarding_resumes_after_a_crash_after_effect_10 = 10,
    signed_request_onboarding_resumes_after_a_crash_after_effect_11 = 11,
    signed_request_onboarding_resumes_after_a_crash_after_effect_12 = 12,
    signed_request_onboarding_resumes_after_a_crash_after_effect_13 = 13,
);

crash_points!("HubOnboarding":
    hub_onboarding_resumes_after_a_crash_after_effect_0 = 0,
    hub_onboarding_resumes_after_a_crash_after_effect_1 = 1,
    hub_onboarding_resumes_after_a_crash_after_effect_2 = 2,
    hub_onboarding_resumes_after_a_crash_after_effect_3 = 3,
    hub_onboarding_resumes_after_a_crash_after_effect_4 = 4,
    hub_onboarding_resumes_after_a_crash_after_effect_5 = 5,
    hub_onboarding_resumes_after_a_crash_after_effect_6 = 6,
    hub_onboarding_resumes_after_a_crash_after_effect_7 = 7,
    hub_onboarding_resumes_after_a_crash_after_effect_8 = 8,
    hub_onboarding_resumes_after_a_crash_after_effect_9 = 9,
    hub_onboarding_resumes_after_a_crash_after_effect_10 = 10,
    hub_onboarding_resumes_after_a_crash_after_effect_11 = 11,
);

crash_points!("Static":
    static_onboarding_resumes_after_a_crash_after_effect_0 = 0,
    static_onboarding_resumes_after_a_crash_after_effect_1 = 1,
    static_onboarding_resumes_after_a_crash_after_effect_2 = 2,
    static_onboarding_resumes_after_a_crash_after_effect_3 = 3,
    static_onboarding_resumes_after_a_crash_after_effect_4 = 4,
    static_onboarding_resumes_after_a_crash_after_effect_5 = 5,
    static_onboarding_resumes_after_a_crash_after_effect_6 = 6,
    static_onboarding_resumes_after_a_crash_after_effect_7 = 7,
    static_onboarding_resumes_after_a_crash_after_effect_8 = 8,
    static_onboarding_resumes_after_a_crash_after_effect_9 = 9,
    static_onboarding_resumes_after_a_crash_after_effect_10 = 10,
    static_onboarding_resumes_after_a_crash_after_effect_11 = 11,
    static_onboarding_resumes_after_a_crash_after_effect_12 = 12,
    static_onboarding_resumes_after_a_crash_after_effect_13 = 13,
);

/// The JWKS ConfigMap is what a human uploads to the AS or a directory signs into a software
/// statement: a key it shows must already be in `<name>-keys`, or a crash between the two
/// writes leaves the outside world holding a key the operator regenerates (found by the
/// campaign, docs/reliability.md: `before_add_finalizer=1*return(abort)` on a SignedRequest
/// client, whose statement then named a key that no longer existed).
#[tokio::test]
async fn a_key_is_persisted_before_the_jwks_configmap_publishes_it() {
    for mode in MODES {
        let w = onboard(mode).await;
        let log = w.fake.log();
        let first = |what: &str| log.iter().position(|l| l == what);
        let keys = first("write Secret/payments-keys");
        let jwks = first("write ConfigMap/payments-jwks");
        assert!(
            keys.is_some() && jwks.is_some() && keys < jwks,
            "{mode}: keys written at effect {keys:?}, the JWKS at {jwks:?}: {log:?}"
        );
    }
}

/// The claims of a compact JWS, as JSON.
fn jwt_claims(jwt: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap_or_else(|e| panic!("base64url payload: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("json claims: {e}"))
}

#[tokio::test]
async fn the_authorization_servers_assertion_backdate_sets_iat_of_every_client_assertion() {
    for (backdate, expected) in [(None, 5), (Some("30s"), 30), (Some("0s"), 0)] {
        let mut w = World::new("Dynamic", serde_json::json!({}));
        let mut spec =
            serde_json::json!({"issuer": "https://as.test", "clientAssertion": {"lifetime": "2m"}});
        if let Some(b) = backdate {
            spec["clientAssertion"]["backdate"] = b.into();
        }
        w.server = server_with(spec);
        w.until_ready()
            .await
            .unwrap_or_else(|e| panic!("ready: {e}"));
        let assertions = w.fake.assertions();
        assert!(
            !assertions.is_empty(),
            "the token request carried no assertion"
        );
        let claims = jwt_claims(&assertions[assertions.len() - 1]);
        let now = w.clock.now().as_second();
        let iat = claims["iat"].as_i64().unwrap_or_default();
        let exp = claims["exp"].as_i64().unwrap_or_default();
        assert_eq!(now - iat, expected, "{backdate:?}: {claims}");
        assert_eq!(exp - iat, 120, "exp - iat stays the lifetime: {claims}");
    }
}

#[test]
fn an_assertion_backdate_beyond_its_bounds_is_clamped_to_a_minute_and_half_the_lifetime() {
    let policy = |json: serde_json::Value| -> crate::crd::ClientAssertionPolicy {
        serde_json::from_value(json).unwrap_or_else(|e| panic!("policy: {e}"))
    };
    let secs = std::time::Duration::from_secs;
    assert_eq!(
        super::act::assertion_timing(&policy(serde_json::json!({}))),
        (secs(300), secs(5))
    );
    assert_eq!(
        super::act::assertion_timing(&policy(
            serde_json::json!({"backdate": "5m", "lifetime": "10m"})
        )),
        (secs(600), secs(60))
    );
    assert_eq!(
        super::act::assertion_timing(&policy(
            serde_json::json!({"backdate": "50s", "lifetime": "30s"})
        )),
        (secs(30), secs(15))
    );
    assert_eq!(
        super::act::assertion_timing(&policy(serde_json::json!({"backdate": "1500ms"}))),
        (secs(300), secs(1))
    );
}

#[tokio::test]
async fn a_static_client_with_delete_holds_the_finalizer_before_its_first_token_and_an_orphan_does_not()
 {
    for (policy, expected) in [("Delete", true), ("Orphan", false)] {
        let mut w = World::new(
            "Static",
            serde_json::json!({"registration": {
                "mode": "Static", "clientId": "spec-client", "deletionPolicy": policy,
                "jwksUri": "https://operator.test/jwks/ns/payments",
            }}),
        );
        w.until_ready()
            .await
            .unwrap_or_else(|e| panic!("ready: {e}"));
        assert!(w.fake.tokens_issued() > 0);
        assert_eq!(w.fake.finalizer(), expected, "{policy}");
        if expected {
            let log = w.fake.log();
            let finalizer = log.iter().position(|e| e == "add finalizer");
            let token = log.iter().position(|e| e.starts_with("token "));
            assert!(finalizer.is_some() && finalizer < token, "{log:?}");
        }
    }
}

fn revoke_replaced() -> serde_json::Value {
    serde_json::json!({"tokens": [
        {"name": "accounts", "scope": "accounts", "revokeReplaced": true}]})
}

/// Onboards a Dynamic client with `spec`, then runs the reconcile that refreshes `accounts`;
/// returns the world and the token it replaced.
async fn refreshed(spec: serde_json::Value) -> (World, String) {
    let mut w = World::new("Dynamic", spec);
    w.until_ready().await.unwrap_or_else(|e| panic!("{e}"));
    let old = w.credential("accounts.access_token").unwrap_or_default();
    assert!(!old.is_empty());
    w.clock.advance(SignedDuration::from_secs(590));
    w.reconcile()
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    assert_ne!(w.credential("accounts.access_token"), Some(old.clone()));
    (w, old)
}

#[tokio::test]
async fn a_replaced_token_is_revoked_after_the_credentials_write_when_the_spec_asks() {
    let (w, old) = refreshed(revoke_replaced()).await;
    assert_eq!(w.fake.revoked(), [old]);
    let log = w.fake.log();
    let write = log
        .iter()
        .rposition(|e| e == "write Secret/payments-credentials");
    let revoke = log.iter().position(|e| e == "revoke token");
    assert!(
        write.is_some() && revoke.is_some() && write < revoke,
        "{log:?}"
    );
    assert!(
        !w.fake
            .revoked()
            .contains(&w.credential("accounts.access_token").unwrap_or_default()),
        "the token in the Secret is never revoked"
    );
    assert!(w.ready());
}

#[tokio::test]
async fn a_replaced_token_is_not_revoked_by_default() {
    let (w, _) = refreshed(serde_json::json!({})).await;
    assert_eq!(w.fake.revoked(), Vec::<String>::new());
}

#[tokio::test]
async fn a_failed_revocation_of_a_replaced_token_is_a_warning_and_the_refresh_stands() {
    let mut w = World::new("Dynamic", revoke_replaced());
    w.until_ready().await.unwrap_or_else(|e| panic!("{e}"));
    let old = w.credential("accounts.access_token").unwrap_or_default();
    w.fake.fail_next(
        Call::Revoke,
        OauthError::Unavailable {
            step: Step::Revocation,
            status: 503,
            retry_after: None,
            interaction_id: "i".into(),
        },
    );
    w.clock.advance(SignedDuration::from_secs(590));
    w.reconcile()
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    let new = w.credential("accounts.access_token").unwrap_or_default();
    assert_ne!(new, old, "the refresh stands");
    assert!(w.ready(), "{:?}", w.status.conditions);
    let warnings: Vec<&String> = w
        .events
        .iter()
        .filter(|(r, _)| *r == Reason::RevocationFailed)
        .map(|(_, m)| m)
        .collect();
    assert_eq!(warnings.len(), 1, "{:?}", w.events);
    assert!(warnings[0].contains("accounts"), "{}", warnings[0]);
    assert!(!warnings[0].contains(&old) && !warnings[0].contains(&new));
    // Not retried: the next refresh revokes only what it replaces.
    w.clock.advance(SignedDuration::from_secs(590));
    w.reconcile()
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    assert_eq!(w.fake.revoked(), [new]);
}

#[tokio::test]
async fn no_replaced_token_is_revoked_unless_the_credentials_secret_holds_its_successor() {
    let mut revoked_once = false;
    for n in 0..24 {
        let mut w = World::new("Dynamic", revoke_replaced());
        w.until_ready().await.unwrap_or_else(|e| panic!("{e}"));
        let old = w.credential("accounts.access_token").unwrap_or_default();
        w.clock.advance(SignedDuration::from_secs(590));
        w.fake.crash_at(w.fake.count() + n);
        let _ = w.reconcile().await;
        if w.fake.revoked().contains(&old) {
            revoked_once = true;
            assert_ne!(
                w.credential("accounts.access_token"),
                Some(old.clone()),
                "crash at effect {n}: the revoked token is still in the Secret"
            );
        }
        assert!(
            !w.fake
                .revoked()
                .contains(&w.credential("accounts.access_token").unwrap_or_default()),
            "crash at effect {n}"
        );
    }
    assert!(revoked_once, "some crash point comes after the revocation");
}
