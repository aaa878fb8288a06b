//! The TppClient's status as a pure function of (material, last plan, last outcome): conditions
//! keyed by type with [`Reason`]s a user can act on, the key/certificate/token summary, the
//! kstatus conditions (`Reconciling`, `Stalled`) and `observedGeneration`, and no per-refresh
//! data, so a token refresh does not cost a status write. [`compute`] is pure; `publish`
//! writes only on change.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::session::Session;
use crate::{
    crd::{
        CertificateStatus, HistoryEntry, KeyStatus, TokenStatus, TppClient, TppClientStatus,
        condition::{Conditions, types},
    },
    error::Error,
    reason::Reason,
    rotation::{Action, CertRecord, KeyRecord, KeyState, KeyUse, Plan, SelfTestRefusal},
    store::state::StoredToken,
};

/// A status time with whole seconds: the API server keeps no more, so finer times would make
/// every reconcile look like a change and cost a status write.
fn second(t: Timestamp) -> Time {
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}

/// What the status is computed from: the client's material as the reconcile left it.
pub struct Material<'a> {
    /// The object.
    pub client: &'a TppClient,
    /// The client id, once the AS knows the client.
    pub client_id: Option<String>,
    /// Whether the AS knows the client.
    pub registered: bool,
    /// Every key record.
    pub keys: Vec<KeyRecord>,
    /// The certificate in force and its subject.
    pub certificate: Option<(CertRecord, String)>,
    /// The tokens in the credentials Secret, by name.
    pub tokens: &'a BTreeMap<String, StoredToken>,
    /// Self-tests of new material the AS refused, by kid or certificate thumbprint.
    pub self_test_refusals: BTreeMap<String, SelfTestRefusal>,
}

impl<'a> Material<'a> {
    /// The material a session holds.
    pub fn of(s: &'a Session<'_>) -> Self {
        Self {
            client: s.client,
            // A registration whose Secret is gone keeps naming its client: the halt that stops
            // a second registration reads it from here (docs/reliability.md,
            // RegistrationSecretLost).
            client_id: s
                .client_id()
                .filter(|_| s.registered())
                .or_else(|| s.forgotten_client_id()),
            registered: s.registered(),
            keys: s.keys.records(),
            certificate: s.transport().map(|t| (t.record, t.subject)),
            tokens: &s.credentials.tokens,
            self_test_refusals: s.keys.self_test_refusals.clone(),
        }
    }
}

/// Status after a reconcile that got as far as loading the client's material; `failure` is the
/// last outcome when it failed.
pub fn compute(
    m: &Material<'_>,
    old: &TppClientStatus,
    plan: Option<&Plan>,
    failure: Option<&Error>,
    now: Timestamp,
) -> TppClientStatus {
    let generation = m.client.metadata.generation;
    let name = m.client.name_any();
    let namespace = m.client.namespace().unwrap_or_default();
    let mut st = old.clone();
    st.observed_generation = generation;
    st.client_id = m.client_id.clone();
    st.signing_keys = m
        .keys
        .iter()
        .map(|k| KeyStatus {
            kid: k.kid.clone(),
            use_: match k.use_ {
                KeyUse::Sig => "sig".into(),
                KeyUse::Enc => "enc".into(),
            },
            state: format!("{:?}", k.state),
            created_at: Some(second(k.created_at)),
            activate_at: k.activated_at.map(second),
            retire_at: k.retiring_at.map(second),
        })
        .collect();
    st.certificate = m
        .certificate
        .as_ref()
        .map(|(record, subject)| CertificateStatus {
            not_after: Some(second(record.not_after)),
            renewal_time: record
                .not_after
                .checked_sub(m.client.spec.transport_certificate.renew_before.signed())
                .ok()
                .map(second),
            x5t_s256: Some(record.x5t_s256.clone()),
            subject: Some(subject.clone()),
        });
    st.tokens = m
        .client
        .spec
        .tokens
        .iter()
        .filter_map(|t| {
            m.tokens.get(&t.name).map(|held| TokenStatus {
                name: t.name.clone(),
                scope: held.scope.clone(),
            })
        })
        .collect();

    let failed = |ty: &str| failure.filter(|e| e.condition() == ty);
    let mut c = Conditions::new(&mut st.conditions, generation, now);
    // Registered.
    match (failed(types::REGISTERED), m.registered) {
        (Some(e), _) => c.set(types::REGISTERED, false, e.reason(), &e.chain()),
        (None, true) => c.set(
            types::REGISTERED,
            true,
            Reason::Registered,
            &match &m.client_id {
                Some(id) => format!("client {id} ({:?})", m.client.spec.registration.mode),
                None => "registered".into(),
            },
        ),
        (None, false) => c.set(
            types::REGISTERED,
            false,
            Reason::Pending,
            "registration has not completed yet",
        ),
    };
    // Signing key.
    let active = m
        .keys
        .iter()
        .find(|k| k.use_ == KeyUse::Sig && k.state == KeyState::Active);
    let awaiting = plan.and_then(|p| {
        p.actions.iter().find_map(|a| match a {
            Action::AwaitApproval { kid } => Some(kid.clone()),
            _ => None,
        })
    });
    let refused_key = m
        .keys
        .iter()
        .filter(|k| k.use_ == KeyUse::Sig && m.self_test_refusals.contains_key(&k.kid))
        .find(|k| matches!(k.state, KeyState::Pending | KeyState::Published));
    match (failed(types::SIGNING_KEY_READY), active, awaiting) {
        (Some(e), _, _) => c.set(types::SIGNING_KEY_READY, false, e.reason(), &e.chain()),
        (None, Some(k), None) if let Some(new) = refused_key => c.set(
            types::SIGNING_KEY_READY,
            true,
            Reason::SelfTestRefused,
            &format!(
                "signing key {} is active; the AS refused a token signed with the new key {}: the switch is tried again after a backoff",
                k.kid, new.kid
            ),
        ),
        (None, Some(k), None) => c.set(
            types::SIGNING_KEY_READY,
            true,
            Reason::KeyActive,
            &format!("signing key {} is active", k.kid),
        ),
        (None, Some(k), Some(kid)) => c.set(
            types::SIGNING_KEY_READY,
            true,
            Reason::AwaitingKeyApproval,
            &format!(
                "signing key {} is active; new key {kid} awaits approval: upload it to the AS, then add it to the tpp.dev/approved-kids annotation",
                k.kid
            ),
        ),
        (None, None, Some(kid)) => c.set(
            types::SIGNING_KEY_READY,
            false,
            Reason::AwaitingKeyApproval,
            &format!(
                "key {kid} awaits approval: upload the JWKS (served at /jwks/{namespace}/{name}) to the AS, then add {kid} to the tpp.dev/approved-kids annotation"
            ),
        ),
        (None, None, None) => c.set(
            types::SIGNING_KEY_READY,
            false,
            Reason::Pending,
            "no active signing key yet",
        ),
    };
    // Certificate.
    match (failed(types::TRANSPORT_CERTIFICATE_READY), &m.certificate) {
        (Some(e), _) => c.set(
            types::TRANSPORT_CERTIFICATE_READY,
            false,
            e.reason(),
            &e.chain(),
        ),
        (None, Some((record, _)))
            if record.not_after > now && m.self_test_refusals.contains_key(&record.x5t_s256) =>
        {
            c.set(
                types::TRANSPORT_CERTIFICATE_READY,
                true,
                Reason::SelfTestRefused,
                &format!(
                    "the AS refused a token minted with the new certificate {}: the credentials keep the previous certificate and its tokens; the switch is tried again after a backoff",
                    record.x5t_s256
                ),
            )
        }
        (None, Some((record, _))) if record.not_after > now => c.set(
            types::TRANSPORT_CERTIFICATE_READY,
            true,
            Reason::CertificateIssued,
            &format!("valid until {}", record.not_after),
        ),
        (None, Some(_)) => c.set(
            types::TRANSPORT_CERTIFICATE_READY,
            false,
            Reason::CertificateInvalid,
            "the transport certificate has expired",
        ),
        (None, None) => c.set(
            types::TRANSPORT_CERTIFICATE_READY,
            false,
            Reason::Pending,
            "no transport certificate yet",
        ),
    };
    // Tokens (no expiry times in the message: a refresh must not change status).
    let missing: Vec<&str> = m
        .client
        .spec
        .tokens
        .iter()
        .filter(|t| {
            m.tokens
                .get(&t.name)
                .is_none_or(|held| held.record.expires_at <= now)
        })
        .map(|t| t.name.as_str())
        .collect();
    match failed(types::TOKENS_READY) {
        Some(e) => c.set(types::TOKENS_READY, false, e.reason(), &e.chain()),
        None if missing.is_empty() => c.set(
            types::TOKENS_READY,
            true,
            Reason::TokensIssued,
            &format!(
                "{} token(s) in Secret {name}-credentials",
                m.client.spec.tokens.len()
            ),
        ),
        None => c.set(
            types::TOKENS_READY,
            false,
            Reason::Pending,
            &format!("waiting for token(s): {}", missing.join(", ")),
        ),
    };
    ready(&mut st, failed(types::READY), failure, generation, now);
    st
}

/// Status after a reconcile that got as far as loading the client's material.
pub fn from_session(
    s: &Session<'_>,
    old: &TppClientStatus,
    plan: Option<&Plan>,
    failure: Option<&Error>,
    now: Timestamp,
) -> TppClientStatus {
    compute(&Material::of(s), old, plan, failure, now)
}

/// Status when the reconcile stopped before loading material (AS missing, preflight failed...).
pub fn early_failure(
    client: &TppClient,
    old: &TppClientStatus,
    error: &Error,
    now: Timestamp,
) -> TppClientStatus {
    let mut st = old.clone();
    st.observed_generation = client.metadata.generation;
    ready(
        &mut st,
        Some(error),
        Some(error),
        client.metadata.generation,
        now,
    );
    st
}

/// Status while the client waits for something outside it (its AuthorizationServer to become
/// Ready): not ready, reconciling, not stalled.
pub fn waiting(
    client: &TppClient,
    old: &TppClientStatus,
    reason: Reason,
    message: &str,
    now: Timestamp,
) -> TppClientStatus {
    let mut st = old.clone();
    st.observed_generation = client.metadata.generation;
    let generation = client.metadata.generation;
    let mut c = Conditions::new(&mut st.conditions, generation, now);
    c.set(types::READY, false, reason, message);
    c.set(types::RECONCILING, true, reason, message);
    c.set(types::STALLED, false, reason, message);
    st
}

/// What a client whose key generation was deferred (reconcile/admission.rs) shows: when it is
/// not Ready, `Ready=False`/`Reconciling=True` with reason `Pending` and a message that says it
/// is queued — not the reason of an earlier wait that no longer holds (a client deferred at
/// start-up kept "waiting for AuthorizationServer … to be resolved" until its turn came:
/// BENCHMARKS.md, issue 16). `None` for a Ready client (a deferred rotation: its material keeps
/// working) and when the status says so already. The message carries no per-attempt value, so
/// a retry writes nothing.
pub fn queued(
    client: &TppClient,
    old: &TppClientStatus,
    now: Timestamp,
) -> Option<TppClientStatus> {
    let ready = old
        .conditions
        .iter()
        .any(|c| c.type_ == types::READY && c.status == "True");
    if ready {
        return None;
    }
    let st = waiting(client, old, Reason::Pending, QUEUED, now);
    (st != *old).then_some(st)
}

/// The message of [`queued`].
pub const QUEUED: &str = "queued for key generation: new clients are admitted a few at a time so that running clients keep their token refreshes (docs/operations.md, Onboarding many clients)";

/// Status of a suspended client: not ready, and neither reconciling nor stalled (kstatus
/// reports it Current: nothing is in progress by design).
pub fn suspended(client: &TppClient, old: &TppClientStatus, now: Timestamp) -> TppClientStatus {
    let mut st = old.clone();
    st.observed_generation = client.metadata.generation;
    let message = "spec.suspend is true: no calls to the AS; material kept";
    let mut c = Conditions::new(&mut st.conditions, client.metadata.generation, now);
    c.set(types::READY, false, Reason::Suspended, message);
    c.set(types::RECONCILING, false, Reason::Suspended, message);
    c.set(types::STALLED, false, Reason::Suspended, message);
    st
}

/// `Ready` from the parts (or `error` when it belongs to no part), then the kstatus
/// conditions: `Stalled` on a permanent `failure`, else `Reconciling` until Ready.
fn ready(
    st: &mut TppClientStatus,
    error: Option<&Error>,
    failure: Option<&Error>,
    generation: Option<i64>,
    now: Timestamp,
) {
    let mut c = Conditions::new(&mut st.conditions, generation, now);
    let (ok, reason, message) = match error {
        Some(e) => (false, e.reason(), e.chain()),
        None => {
            let parts = [
                types::REGISTERED,
                types::SIGNING_KEY_READY,
                types::TRANSPORT_CERTIFICATE_READY,
                types::TOKENS_READY,
            ];
            let not_ready: Vec<&str> = parts.iter().copied().filter(|t| !c.is_true(t)).collect();
            match not_ready.first() {
                None => (
                    true,
                    Reason::Reconciled,
                    "registered, keyed, certified and tokened".to_owned(),
                ),
                Some(first) => {
                    let reason = c
                        .get(first)
                        .and_then(|cond| reason_named(&cond.reason))
                        .unwrap_or(Reason::Pending);
                    (
                        false,
                        reason,
                        format!("not ready: {}", not_ready.join(", ")),
                    )
                }
            }
        }
    };
    c.set(types::READY, ok, reason, &message);
    let stalled = failure.filter(|e| !e.is_transient());
    match stalled {
        Some(e) => {
            c.set(types::STALLED, true, e.reason(), &e.chain());
            c.set(
                types::RECONCILING,
                false,
                e.reason(),
                "stalled: a change is needed to go on",
            );
        }
        None => {
            c.set(types::STALLED, false, reason, "no permanent error");
            if ok {
                c.set(types::RECONCILING, false, reason, "ready");
            } else {
                c.set(types::RECONCILING, true, reason, &message);
            }
        }
    }
}

/// The reason a condition carries, read back.
fn reason_named(name: &str) -> Option<Reason> {
    Reason::ALL.into_iter().find(|r| r.as_str() == name)
}

/// Record a rotation in the bounded history (newest first, at most 10).
pub fn push_history(st: &mut TppClientStatus, reason: Reason, message: &str, now: Timestamp) {
    st.history.insert(
        0,
        HistoryEntry {
            time: second(now),
            reason: reason.as_str().to_owned(),
            message: message.to_owned(),
        },
    );
    st.history.truncate(10);
}

/// Write the status if anything a user reads changed.
pub async fn publish(
    ctx: &super::context::Context,
    client: &TppClient,
    old: &TppClientStatus,
    new: &TppClientStatus,
) -> Result<(), Error> {
    // The client's ready series (absent while suspended: nothing to alert on).
    ctx.metrics.set_ready(
        &client.namespace().unwrap_or_default(),
        &client.name_any(),
        &client.spec.authorization_server_ref.name,
        (!client.spec.suspend)
            .then(|| crate::crd::condition::is_true(&new.conditions, types::READY)),
    );
    let ns = client.namespace().unwrap_or_default();
    let key = format!("{ns}/{}", client.name_any());
    let uid = client.uid().unwrap_or_default();
    // `old` is the cached object's status, which may not show this process's last write yet
    // (see `status_ledger`).
    if !ctx.statuses.must_write(&key, &uid, old, new) {
        return Ok(());
    }
    let patch =
        serde_json::json!({"apiVersion": "tpp.dev/v1alpha1", "kind": "TppClient", "status": new});
    let failed = |source| Error::ApplyObject {
        what: format!("TppClient {} status", client.name_any()),
        source,
    };
    super::effects::injected(crate::failpoints::Side::Before, "apply_status")
        .await
        .map_err(failed)?;
    ctx.metrics.status_writes.inc();
    ctx.store
        .apply_status::<TppClient>(&ns, &client.name_any(), &patch)
        .await
        .map_err(failed)?;
    ctx.statuses.wrote(&key, &uid, new);
    super::effects::injected(crate::failpoints::Side::After, "apply_status")
        .await
        .map_err(failed)
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
