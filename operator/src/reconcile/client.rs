//! The TppClient reconcile: observe → plan → act (one step at a time, re-planning after each)
//! → publish → status, then requeue at the planner's next wake-up. Deletion goes to
//! [`super::cleanup`]. Kubernetes, network and CPU I/O.

use std::{sync::Arc, time::Duration};

use kube::{
    Resource, ResourceExt,
    runtime::{
        controller::Action as Requeue,
        events::{Event, EventType},
    },
};

use super::{act, cleanup, context::Context, policy, server, session::Session, status};
use crate::{
    crd::TppClient,
    error::Error,
    reason::Reason,
    rotation::{self, Action, Plan},
};

/// Most steps one reconcile takes before requeueing (each step is persisted).
const MAX_STEPS: usize = 24;
/// The longest one reconcile may take.
const RECONCILE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a client waiting for its AS sleeps at most (it is woken when the AS is Ready).
const WAIT_FOR_SERVER: Duration = Duration::from_secs(60);
/// Requeue bounds.
const MIN_REQUEUE: Duration = Duration::from_secs(1);
const MAX_REQUEUE: Duration = Duration::from_secs(10 * 60);

/// Reconcile one TppClient.
pub async fn reconcile(obj: Arc<TppClient>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let _in_flight = InFlight::new(&ctx);
    let started = std::time::Instant::now();
    // A reconcile that hangs (an API call stuck in a queue) must not hold a concurrency slot
    // forever: give up after a bound and retry with backoff. The bound stops new work; an AS
    // call carrying a registration access token and the write of that token finish first
    // (see `deadline`).
    let asked = std::sync::atomic::AtomicU8::new(NOT_ASKED);
    let result =
        match super::deadline::run(RECONCILE_TIMEOUT, reconcile_inner(&obj, &ctx, &asked)).await {
            Ok(r) => r,
            Err(_) => Err(Error::ReconcileTimeout(RECONCILE_TIMEOUT)),
        };
    // A key-generation slot handed to this client while it was not asking for one (woken, but
    // nothing to generate any more, or it failed earlier) goes to the next queued client. One
    // handed over after this reconcile asked (and was queued) is for the wake-up's reconcile.
    // A client whose turn ended in a failure keeps its turn for its retry.
    match asked.load(std::sync::atomic::Ordering::Relaxed) {
        NOT_ASKED => ctx.keygen.unreserve(&key(&obj), result.is_err()),
        ADMITTED if result.is_err() => ctx.keygen.keep_turn(&key(&obj)),
        _ => {}
    }
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) if e.is_transient() => "transient",
        Err(_) => "permanent",
    };
    ctx.metrics
        .reconciles
        .get_or_create(&crate::metrics::OutcomeLabels {
            outcome: outcome.into(),
        })
        .inc();
    result
}

/// What a reconcile asked of the key-generation admission.
const NOT_ASKED: u8 = 0;
const QUEUED: u8 = 1;
const ADMITTED: u8 = 2;

struct InFlight<'a>(&'a Context);

impl<'a> InFlight<'a> {
    fn new(ctx: &'a Context) -> Self {
        ctx.metrics.reconciles_in_flight.inc();
        Self(ctx)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.metrics.reconciles_in_flight.dec();
    }
}

fn key(obj: &TppClient) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

async fn reconcile_inner(
    obj: &TppClient,
    ctx: &Context,
    asked: &std::sync::atomic::AtomicU8,
) -> Result<Requeue, Error> {
    let namespace = obj.namespace().unwrap_or_default();
    if obj.meta().deletion_timestamp.is_some() {
        return cleanup::run(obj, ctx).await;
    }
    let now = ctx.clock.now();
    let old = obj.status.clone().unwrap_or_default();
    if obj.spec.suspend {
        status::publish(ctx, obj, &old, &status::suspended(obj, &old, now)).await?;
        return Ok(Requeue::await_change());
    }
    let early = async {
        policy::check_spec(obj, &namespace)?;
        server::resolve(obj, &namespace, ctx).await
    }
    .await;
    let resolved = match early {
        Ok(server::Lookup::Ready(r)) => r,
        Ok(server::Lookup::Waiting(message)) => {
            // Woken when the AS is published Ready; the requeue is only a safety net.
            let st = status::waiting(
                obj,
                &old,
                Reason::AuthorizationServerNotReady,
                &message,
                now,
            );
            status::publish(ctx, obj, &old, &st).await?;
            return Ok(Requeue::requeue(WAIT_FOR_SERVER));
        }
        Err(e) => {
            let st = status::early_failure(obj, &old, &e, now);
            status::publish(ctx, obj, &old, &st).await?;
            return Err(e);
        }
    };
    // Nothing is done for a client one of whose Secret names belongs to someone else: what the
    // cache knows is checked now (no request), the rest once the client is admitted.
    let claim = match NameClaim::from_cache(ctx, obj, &namespace) {
        Ok(c) => c,
        Err(e) => {
            status::publish(ctx, obj, &old, &status::early_failure(obj, &old, &e, now)).await?;
            return Err(e);
        }
    };
    let effects = super::effects::KubeEffects::new(ctx);
    let mut session = match Session::load(ctx, &effects, obj, namespace.clone(), resolved).await {
        Ok(s) => s,
        Err(e) => {
            status::publish(ctx, obj, &old, &status::early_failure(obj, &old, &e, now)).await?;
            return Err(e);
        }
    };
    // Key generation waits for a slot without holding a controller slot (see `admission`):
    // nothing was done yet, so nothing but the status of a client that is not Ready is
    // written, and the name claim's GETs wait for the client's turn.
    let client_key = key(obj);
    session.backoff_until = ctx.backoff_until(&client_key);
    let uid = obj.uid().unwrap_or_default();
    let rotation_policy = policy::rotation_policy(obj, &uid);
    let first = rotation::plan(&rotation_policy, &session.observed(), ctx.clock.now());
    let _keygen = if generates_keys(&first) {
        asked.store(QUEUED, std::sync::atomic::Ordering::Relaxed);
        match ctx.keygen.admit(&client_key) {
            Ok(permit) => {
                asked.store(ADMITTED, std::sync::atomic::Ordering::Relaxed);
                Some(permit)
            }
            Err(wait) => {
                tracing::debug!(client = %client_key, backlog = ctx.keygen.backlog(), ?wait, "key generation queued");
                if let Some(st) = status::queued(obj, &old, now) {
                    status::publish(ctx, obj, &old, &st).await?;
                }
                // Woken when its turn comes; the requeue is a safety net past it.
                return Ok(Requeue::requeue(wait));
            }
        }
    } else {
        ctx.keygen.not_waiting(&client_key);
        None
    };
    if let Err(e) = claim.by_get(ctx, &namespace).await {
        status::publish(ctx, obj, &old, &status::early_failure(obj, &old, &e, now)).await?;
        return Err(e);
    }
    let (plan, result) = drive(&mut session, &rotation_policy, first).await;
    // A halted registration is reported like a permanent failure (conditions, a Warning event)
    // but does not fail the reconcile: a client left at the AS keeps its client id, and its
    // tokens are refreshed at the planner's instants, not after the permanent-failure pause.
    let (result, halted) = match result {
        Err(e @ Error::RegistrationHalted { .. }) => (Ok(()), Some(e)),
        other => (other, None),
    };
    if let Some(e) = &halted {
        session.events.push((e.reason(), e.to_string()));
    }
    for (trigger, at) in plan.iter().flat_map(|p| &p.deferred) {
        session
            .events
            .push((Reason::TriggerDeferred, deferred_note(*trigger, *at)));
    }
    // The ConfigMap copy of the published keys, if someone else changed it.
    let result = match result {
        Ok(()) => super::jwks_copy::restore(&mut session).await,
        failed => failed,
    };
    let now = ctx.clock.now();
    let mut st = status::from_session(
        &session,
        &old,
        plan.as_ref(),
        result.as_ref().err().or(halted.as_ref()),
        now,
    );
    for (reason, note) in &session.events {
        if matches!(
            reason,
            Reason::KeyRotated
                | Reason::CertificateRotated
                | Reason::Registered
                | Reason::RegistrationLost
        ) {
            status::push_history(&mut st, *reason, note, now);
        }
    }
    st.consecutive_failures = if result.is_ok() {
        0
    } else {
        ctx.failures(&client_key).saturating_add(1)
    };
    publish_events(ctx, obj, &session.events).await;
    record_metrics(ctx, &session);
    status::publish(ctx, obj, &old, &st).await?;
    // Workloads that read the credentials only at start (spec.consumers.restartTargets).
    let consumers_wake = crate::consumers::restart_targets(ctx, obj).await;
    result?;
    ctx.reset_failures(&client_key);
    // Wake at (not before) the planner's instant: a wake-up truncated to whole seconds would
    // find nothing due yet and wait another MIN_REQUEUE, late by up to a second.
    let wake = plan.and_then(|p| p.next_wakeup).map(|at| {
        let ms = (at - now)
            .total(jiff::Unit::Millisecond)
            .unwrap_or(0.0)
            .max(0.0)
            .ceil() as u64;
        Duration::from_millis(ms)
    });
    let wake = match (wake, consumers_wake) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(Requeue::requeue(
        wake.unwrap_or(MAX_REQUEUE).clamp(MIN_REQUEUE, MAX_REQUEUE),
    ))
}

/// The claim of the client's three Secret names (`<name>-keys`, `-registration`,
/// `-credentials`) against other writers, in two parts: [`Self::from_cache`] before admission
/// (no request), [`Self::by_get`] for the names the cache could not vouch for (none for a
/// running client). The ConfigMap is checked when it is written (before any publication reaches
/// the AS).
struct NameClaim {
    name: String,
    writer: crate::store::ownership::Writer,
    /// Names left for a GET.
    unknown: Vec<String>,
}

impl NameClaim {
    /// [`crate::store::Store::claim_cached`] of the three names.
    fn from_cache(ctx: &Context, obj: &TppClient, namespace: &str) -> Result<Self, Error> {
        use crate::store::{build, layout, ownership::Writer};
        let name = obj.name_any();
        let names = [
            layout::keys_name(&name),
            layout::registration_name(&name),
            layout::credentials_name(&name),
        ];
        let writer = Writer {
            uid: Some(build::owner_ref(obj).uid),
            client: Some(name.clone()),
        };
        let unknown = ctx
            .store
            .claim_cached(namespace, &writer, &names)
            .map_err(|e| claim_error(&name, e))?
            .into_iter()
            .cloned()
            .collect();
        Ok(Self {
            name,
            writer,
            unknown,
        })
    }

    /// [`crate::store::Store::claim_by_get`] of the names the cache could not vouch for.
    async fn by_get(&self, ctx: &Context, namespace: &str) -> Result<(), Error> {
        if self.unknown.is_empty() {
            return Ok(());
        }
        ctx.store
            .claim_by_get(namespace, &self.writer, &self.unknown)
            .await
            .map_err(|e| claim_error(&self.name, e))
    }
}

fn claim_error(name: &str, e: crate::store::apply::WriteError) -> Error {
    match e {
        crate::store::apply::WriteError::Kube(source) => Error::ReadObject {
            what: format!("the Secrets of {name}"),
            source,
        },
        crate::store::apply::WriteError::NameConflict(c) => Error::NameConflict(c),
    }
}

/// The client's per-client metric facts (docs/operations.md § Metrics), from what the session
/// holds after this reconcile, and the registrations it found lost.
fn record_metrics(ctx: &Context, session: &Session<'_>) {
    let server = &session.client.spec.authorization_server_ref.name;
    let key = session.keys.keys.iter().find(|k| {
        k.record.use_ == rotation::KeyUse::Sig && k.record.state == rotation::KeyState::Active
    });
    let activated = key.and_then(|k| k.record.activated_at);
    let every = session.client.spec.signing_key.rotation.every;
    let facts = crate::metrics::ClientFacts {
        tokens: session
            .credentials
            .tokens
            .iter()
            .map(|(n, t)| (n.clone(), t.record.expires_at))
            .collect(),
        certificate_not_after: session.transport().map(|t| t.record.not_after),
        signing_key_activated_at: activated,
        signing_key_expiry: activated
            .zip(every)
            .and_then(|(at, every)| at.checked_add(every.signed()).ok()),
    };
    ctx.metrics
        .record_client(&session.namespace, &session.name, server, facts);
    for (reason, _) in &session.events {
        if *reason == crate::reason::Reason::RegistrationLost {
            ctx.metrics.registration_lost(server);
        }
    }
}

/// Whether `plan` generates a key or a certificate.
fn generates_keys(plan: &Plan) -> bool {
    plan.actions.iter().any(|a| {
        matches!(
            a,
            Action::GenerateKey { .. } | Action::RenewCertificate { .. }
        )
    })
}

/// Plan and act until nothing is due now (or a step fails), then persist the keys if a step
/// changed them and nothing persisted them yet. Returns the last plan.
pub(crate) async fn drive(
    s: &mut Session<'_>,
    policy: &rotation::Policy,
    first: Plan,
) -> (Option<Plan>, Result<(), Error>) {
    let (plan, result) = steps(s, policy, first).await;
    let saved = s.persist_keys().await;
    let kept = s.keep_secrets().await;
    (plan, result.and(saved).and(kept))
}

/// `first` is the plan made for admission, at the start: it is not made again. Every decision
/// (registration included) is the plan's; this loop only carries plans out, in order, and plans
/// again after each, until nothing is due now.
async fn steps(
    s: &mut Session<'_>,
    policy: &rotation::Policy,
    first: Plan,
) -> (Option<Plan>, Result<(), Error>) {
    let mut last = None;
    let mut first = Some(first);
    for _ in 0..MAX_STEPS {
        let plan = first
            .take()
            .unwrap_or_else(|| rotation::plan(policy, &s.observed(), s.ctx.clock.now()));
        if !plan.actions.iter().any(Action::changes_state) {
            // A halted registration is reported (a permanent failure) once nothing else is due.
            let halted = match plan
                .actions
                .iter()
                .find(|a| matches!(a, Action::HaltRegistration { .. }))
            {
                Some(halt) => act::execute(s, halt, policy).await,
                None => Ok(()),
            };
            return (Some(plan), halted);
        }
        // Carry out the whole plan in its safe order (a trigger's acknowledgement comes after
        // the work it asked for), then plan again.
        for action in &plan.actions {
            if super::deadline::expired() {
                return (Some(plan), Err(Error::ReconcileTimeout(RECONCILE_TIMEOUT)));
            }
            let result = act::execute(s, action, policy).await;
            tracing::debug!(client = %s.name, ?action, ok = result.is_ok(), "step");
            if let Err(e) = result {
                return (Some(plan), Err(e));
            }
        }
        last = Some(plan);
    }
    (last, Ok(()))
}

/// The note of a [`Reason::TriggerDeferred`] event: which annotation, and when it will be acted
/// on (never the value: it is the tenant's text).
fn deferred_note(trigger: rotation::TriggerKind, at: jiff::Timestamp) -> String {
    format!(
        "tpp.dev/{} will be acted on at {at}: a verb annotation is acted on at most once every {:#} ({} per hour)",
        trigger.as_str(),
        rotation::floors::MIN_TRIGGER_INTERVAL,
        rotation::floors::MAX_TRIGGERED_ACTIONS_PER_HOUR,
    )
}

async fn publish_events(ctx: &Context, obj: &TppClient, events: &[(Reason, String)]) {
    let reference = obj.object_ref(&());
    for (reason, note) in events {
        tracing::info!(client = %format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()), reason = %reason, "{note}");
        let type_ = if matches!(
            reason,
            Reason::RegistrationLost
                | Reason::RegistrationOutcomeUnknown
                | Reason::RegistrationAccessTokenLost
                | Reason::RegistrationSecretLost
                | Reason::RegistrationAccessTokenOverwritten
                | Reason::SelfTestRefused
                | Reason::JwksRestored
                | Reason::RevocationFailed
        ) {
            EventType::Warning
        } else {
            EventType::Normal
        };
        let ev = Event {
            type_,
            reason: reason.as_str().to_owned(),
            note: Some(note.clone()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&ev, &reference).await {
            tracing::warn!(error = %e, "publishing an event failed");
        }
    }
}

/// On failure: a Warning event with the cause chain, then retry after the planner's
/// [`rotation::retry_delay`]: backoff (transient, at least `Retry-After`) or a long pause
/// (permanent: a changed spec triggers sooner).
pub fn error_policy(obj: Arc<TppClient>, error: &Error, ctx: Arc<Context>) -> Requeue {
    let n = ctx.record_failure(&key(&obj));
    ctx.metrics
        .reconcile_errors
        .get_or_create(&crate::metrics::ErrorLabels {
            reason: error.reason().as_str().to_owned(),
        })
        .inc();
    let delay = rotation::retry_delay(
        n,
        error.is_transient(),
        error.retry_after(),
        0.8 + rand::random::<f64>() * 0.4,
    );
    // Never past the client's earliest token: a Retry-After is honoured up to its refresh
    // window only.
    let delay = rotation::within_token_life(
        delay,
        error.is_transient(),
        ctx.metrics.earliest_token_expiry(
            obj.namespace().as_deref().unwrap_or_default(),
            &obj.name_any(),
        ),
        ctx.clock.now(),
    );
    // A reconcile triggered before then (a spec or Secret change) plans no call to the AS that
    // failed either.
    if error.from_authorization_server()
        && let Ok(until) = ctx.clock.now().checked_add(delay)
    {
        ctx.set_backoff_until(&key(&obj), until);
    }
    let chain = error.chain();
    tracing::warn!(client = %key(&obj), reason = %error.reason(), transient = error.is_transient(), interaction_id = error.interaction_id(), error = %chain, "reconcile failed");
    let reference = obj.object_ref(&());
    let recorder = ctx.recorder.clone();
    let ev = Event {
        type_: EventType::Warning,
        reason: error.reason().as_str().to_owned(),
        note: Some(chain),
        action: "Reconcile".into(),
        secondary: None,
    };
    tokio::spawn(async move {
        let _ = recorder.publish(&ev, &reference).await;
    });
    Requeue::requeue(delay)
}
