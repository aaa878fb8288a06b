//! The TppClient's status from what a reconcile saw and did: conditions keyed by type with
//! reasons a user can act on, the key/certificate/token summary, and no per-refresh data, so a
//! token refresh does not cost a status write. Pure builders; `publish` writes only on change.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::session::Session;
use crate::{
    crd::{
        CertificateStatus, HistoryEntry, KeyStatus, TokenStatus, TppClient, TppClientStatus,
        condition::{self, reasons, types},
    },
    error::Error,
    rotation::{KeyState, KeyUse, Plan},
};

/// A status time with whole seconds: the API server keeps no more, so finer times would make
/// every reconcile look like a change and cost a status write.
fn second(t: Timestamp) -> Time {
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}

/// What went wrong in this reconcile, and at which condition it shows.
pub struct Failure<'e> {
    /// The condition type the failure belongs to.
    pub condition: &'static str,
    /// The error.
    pub error: &'e Error,
}

/// Which condition a failure belongs to, from its reason.
pub fn condition_for(error: &Error) -> &'static str {
    match error {
        Error::RegisterClient(_) | Error::UpdateRegistration(_) => types::REGISTERED,
        Error::FetchToken(_) => types::TOKENS_READY,
        Error::Identity { step, .. } if step.contains("certificate") => {
            types::TRANSPORT_CERTIFICATE_READY
        }
        _ => types::READY,
    }
}

/// Status after a reconcile that got as far as loading the client's material.
pub fn from_session(
    s: &Session<'_>,
    old: &TppClientStatus,
    plan: Option<&Plan>,
    failure: Option<Failure<'_>>,
    now: Timestamp,
) -> TppClientStatus {
    let generation = s.client.metadata.generation;
    let mut st = old.clone();
    st.observed_generation = generation;
    st.client_id = s.client_id().filter(|_| s.registered());
    // Keys.
    st.signing_keys = s
        .keys
        .keys
        .iter()
        .map(|k| KeyStatus {
            kid: k.record.kid.clone(),
            use_: match k.record.use_ {
                KeyUse::Sig => "sig".into(),
                KeyUse::Enc => "enc".into(),
            },
            state: format!("{:?}", k.record.state),
            created_at: Some(second(k.record.created_at)),
            activate_at: k.record.activated_at.map(second),
            retire_at: k.record.retiring_at.map(second),
        })
        .collect();
    let transport = s.transport();
    st.certificate = transport.as_ref().map(|t| CertificateStatus {
        not_after: Some(second(t.record.not_after)),
        renewal_time: t
            .record
            .not_after
            .checked_sub(s.client.spec.transport_certificate.renew_before.signed())
            .ok()
            .map(second),
        x5t_s256: Some(t.record.x5t_s256.clone()),
        subject: Some(t.subject.clone()),
    });
    st.tokens = s
        .client
        .spec
        .tokens
        .iter()
        .filter_map(|t| {
            s.credentials.tokens.get(&t.name).map(|held| TokenStatus {
                name: t.name.clone(),
                scope: held.scope.clone(),
            })
        })
        .collect();

    let c = &mut st.conditions;
    let failed = |ty: &str| {
        failure
            .as_ref()
            .filter(|f| f.condition == ty)
            .map(|f| f.error)
    };
    // Registered.
    match (failed(types::REGISTERED), s.registered()) {
        (Some(e), _) => condition::upsert(
            c,
            types::REGISTERED,
            Some(false),
            e.reason(),
            &e.chain(),
            generation,
            now,
        ),
        (None, true) => condition::upsert(
            c,
            types::REGISTERED,
            Some(true),
            reasons::REGISTERED,
            &registered_message(s),
            generation,
            now,
        ),
        (None, false) => condition::upsert(
            c,
            types::REGISTERED,
            Some(false),
            reasons::PENDING,
            "registration has not completed yet",
            generation,
            now,
        ),
    };
    // Signing key.
    let active = s
        .keys
        .keys
        .iter()
        .find(|k| k.record.use_ == KeyUse::Sig && k.record.state == KeyState::Active);
    let awaiting = plan.and_then(|p| {
        p.actions.iter().find_map(|a| match a {
            crate::rotation::Action::AwaitApproval { kid } => Some(kid.clone()),
            _ => None,
        })
    });
    match (active, awaiting) {
        (Some(k), None) => condition::upsert(
            c,
            types::SIGNING_KEY_READY,
            Some(true),
            reasons::KEY_ACTIVE,
            &format!("signing key {} is active", k.record.kid),
            generation,
            now,
        ),
        (Some(k), Some(kid)) => condition::upsert(
            c,
            types::SIGNING_KEY_READY,
            Some(true),
            reasons::AWAITING_KEY_APPROVAL,
            &format!(
                "signing key {} is active; new key {kid} awaits approval: upload it to the AS, then add it to the tpp.dev/approved-kids annotation",
                k.record.kid
            ),
            generation,
            now,
        ),
        (None, Some(kid)) => condition::upsert(
            c,
            types::SIGNING_KEY_READY,
            Some(false),
            reasons::AWAITING_KEY_APPROVAL,
            &format!(
                "key {kid} awaits approval: upload the JWKS (served at /jwks/{}/{}) to the AS, then add {kid} to the tpp.dev/approved-kids annotation",
                s.namespace, s.name
            ),
            generation,
            now,
        ),
        (None, None) => condition::upsert(
            c,
            types::SIGNING_KEY_READY,
            Some(false),
            reasons::PENDING,
            "no active signing key yet",
            generation,
            now,
        ),
    };
    // Certificate.
    match (failed(types::TRANSPORT_CERTIFICATE_READY), &transport) {
        (Some(e), _) => condition::upsert(
            c,
            types::TRANSPORT_CERTIFICATE_READY,
            Some(false),
            e.reason(),
            &e.chain(),
            generation,
            now,
        ),
        (None, Some(t)) if t.record.not_after > now => condition::upsert(
            c,
            types::TRANSPORT_CERTIFICATE_READY,
            Some(true),
            reasons::CERTIFICATE_ISSUED,
            &format!("valid until {}", t.record.not_after),
            generation,
            now,
        ),
        (None, Some(_)) => condition::upsert(
            c,
            types::TRANSPORT_CERTIFICATE_READY,
            Some(false),
            reasons::CERTIFICATE_INVALID,
            "the transport certificate has expired",
            generation,
            now,
        ),
        (None, None) => condition::upsert(
            c,
            types::TRANSPORT_CERTIFICATE_READY,
            Some(false),
            reasons::PENDING,
            "no transport certificate yet",
            generation,
            now,
        ),
    };
    // Tokens (no expiry times in the message: a refresh must not change status).
    let missing: Vec<&str> = s
        .client
        .spec
        .tokens
        .iter()
        .filter(|t| {
            s.credentials
                .tokens
                .get(&t.name)
                .is_none_or(|held| held.record.expires_at <= now)
        })
        .map(|t| t.name.as_str())
        .collect();
    match failed(types::TOKENS_READY) {
        Some(e) => condition::upsert(
            c,
            types::TOKENS_READY,
            Some(false),
            e.reason(),
            &e.chain(),
            generation,
            now,
        ),
        None if missing.is_empty() => condition::upsert(
            c,
            types::TOKENS_READY,
            Some(true),
            reasons::TOKENS_ISSUED,
            &format!(
                "{} token(s) in Secret {}-credentials",
                s.client.spec.tokens.len(),
                s.name
            ),
            generation,
            now,
        ),
        None => condition::upsert(
            c,
            types::TOKENS_READY,
            Some(false),
            reasons::PENDING,
            &format!("waiting for token(s): {}", missing.join(", ")),
            generation,
            now,
        ),
    };
    ready(
        &mut st,
        failure
            .as_ref()
            .filter(|f| f.condition == types::READY)
            .map(|f| f.error),
        generation,
        now,
    );
    st
}

fn registered_message(s: &Session<'_>) -> String {
    match s.client_id() {
        Some(id) => format!("client {id} ({:?})", s.client.spec.registration.mode),
        None => "registered".into(),
    }
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
    ready(&mut st, Some(error), client.metadata.generation, now);
    st
}

/// Status of a suspended client.
pub fn suspended(client: &TppClient, old: &TppClientStatus, now: Timestamp) -> TppClientStatus {
    let mut st = old.clone();
    st.observed_generation = client.metadata.generation;
    condition::upsert(
        &mut st.conditions,
        types::READY,
        Some(false),
        reasons::SUSPENDED,
        "spec.suspend is true: no calls to the AS; material kept",
        client.metadata.generation,
        now,
    );
    st
}

fn ready(st: &mut TppClientStatus, error: Option<&Error>, generation: Option<i64>, now: Timestamp) {
    if let Some(e) = error {
        condition::upsert(
            &mut st.conditions,
            types::READY,
            Some(false),
            e.reason(),
            &e.chain(),
            generation,
            now,
        );
        return;
    }
    let parts = [
        types::REGISTERED,
        types::SIGNING_KEY_READY,
        types::TRANSPORT_CERTIFICATE_READY,
        types::TOKENS_READY,
    ];
    let not_ready: Vec<&str> = parts
        .iter()
        .copied()
        .filter(|t| !condition::is_true(&st.conditions, t))
        .collect();
    if not_ready.is_empty() {
        condition::upsert(
            &mut st.conditions,
            types::READY,
            Some(true),
            reasons::RECONCILED,
            "registered, keyed, certified and tokened",
            generation,
            now,
        );
    } else {
        let first = condition::find(&st.conditions, not_ready[0])
            .map(|c| c.reason.clone())
            .unwrap_or_else(|| reasons::PENDING.to_owned());
        condition::upsert(
            &mut st.conditions,
            types::READY,
            Some(false),
            &first,
            &format!("not ready: {}", not_ready.join(", ")),
            generation,
            now,
        );
    }
}

/// Record a rotation in the bounded history (newest first, at most 10).
pub fn push_history(st: &mut TppClientStatus, reason: &str, message: &str, now: Timestamp) {
    st.history.insert(
        0,
        HistoryEntry {
            time: second(now),
            reason: reason.to_owned(),
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
        (!client.spec.suspend).then(|| condition::is_true(&new.conditions, types::READY)),
    );
    if old == new {
        return Ok(());
    }
    let patch =
        serde_json::json!({"apiVersion": "tpp.dev/v1alpha1", "kind": "TppClient", "status": new});
    let ns = client.namespace().unwrap_or_default();
    ctx.metrics.status_writes.inc();
    ctx.store
        .apply_status::<TppClient>(&ns, &client.name_any(), &patch)
        .await
        .map_err(|source| Error::ApplyObject {
            what: format!("TppClient {} status", client.name_any()),
            source,
        })?;
    Ok(())
}
