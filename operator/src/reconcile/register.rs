//! Registration per mode (docs/architecture.md, "Registration") in the crash-safe write order:
//! keys and certificate are persisted before the call, an intent is recorded before the
//! request, the AS's answer is persisted before anything else, and every rotated registration
//! access token is persisted (with retries) before the next call. Whether and why to register
//! is the planner's decision ([`crate::rotation::registration_due`]). Kubernetes and network I/O.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::{
    effects::{Effects, RegisterBody, UpdateBody},
    session::{Session, save_registration},
};
use crate::{
    crd::{RegistrationMode, TppClient},
    error::{Error, Stage},
    identity::{
        jwks::JwkSet,
        signed_request::{RegistrationRequest, signed_registration_request},
    },
    oauth::{
        ManagementTarget, OauthError, PersistError, Registration, RegistrationPersister,
        SignedContentType, management,
    },
    reason::Reason,
    redact::Sensitive,
    rotation::{KeyUse, Outcome},
    store::state::RegistrationState,
};

/// The first pause between attempts to persist a registration answer (doubling).
const PERSIST_RETRY_BASE: Duration = if cfg!(test) {
    Duration::from_millis(1)
} else {
    Duration::from_millis(200)
};

/// Writes every registration answer (new RAT included) to `<name>-registration`, retrying a
/// failed write a few times: once a rotated RAT is lost only re-registration recovers.
pub struct SecretPersister<'a> {
    effects: &'a dyn Effects,
    client: &'a TppClient,
    namespace: &'a str,
    base: RegistrationState,
    now: jiff::Timestamp,
}

impl SecretPersister<'_> {
    fn state_for(&self, r: &Registration) -> RegistrationState {
        let mut state = self.base.clone();
        state.client_id = Some(r.client_id.clone());
        if let Some(rat) = &r.registration_access_token {
            state.registration_access_token = Some(Sensitive::new(rat.expose_secret().to_owned()));
        }
        if r.registration_client_uri.is_some() {
            state.registration_client_uri = r.registration_client_uri.clone();
        }
        state.response = serde_json::to_string(&r.metadata).ok();
        state.registered_at.get_or_insert(self.now);
        state.attempt_started_at = None;
        state
    }
}

impl RegistrationPersister for SecretPersister<'_> {
    async fn persist(&self, registration: &Registration) -> Result<(), PersistError> {
        use backon::Retryable as _;
        let state = self.state_for(registration);
        (|| save_registration(self.effects, self.client, self.namespace, &state))
            .retry(persist_backoff())
            .notify(|e, wait| tracing::warn!(error = %e, ?wait, "persisting the registration failed; retrying"))
            .await
            .map_err(|e| PersistError::new(e.to_string()))
    }
}

/// Retries of a failed registration write: 4 after the first attempt, 200 ms doubling, with
/// jitter (about 3 s in all, at most 6 s).
fn persist_backoff() -> backon::ExponentialBuilder {
    backon::ExponentialBuilder::default()
        .with_min_delay(PERSIST_RETRY_BASE)
        .with_factor(2.0)
        .with_max_times(4)
        .with_jitter()
}

fn as_registration(state: &RegistrationState) -> Option<Registration> {
    let client_id = state.client_id.clone()?;
    let metadata = state
        .response
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or_default();
    Some(Registration {
        client_id,
        registration_access_token: state
            .registration_access_token
            .as_ref()
            .map(|t| SecretString::from(t.expose().clone())),
        registration_client_uri: state.registration_client_uri.clone(),
        client_secret: None,
        client_id_issued_at: None,
        metadata,
    })
}

async fn secret_value(
    s: &Session<'_>,
    r: &crate::crd::SecretKeyRef,
) -> Result<SecretString, Error> {
    let secret = s
        .effects
        .user_secret(&s.namespace, &r.name)
        .await
        .map_err(|source| Error::ReadObject {
            what: format!("Secret {}", r.name),
            source,
        })?
        .ok_or_else(|| Error::ReferenceNotFound(format!("Secret {:?} not found", r.name)))?;
    let value = secret
        .data
        .and_then(|mut d| d.remove(&r.key))
        .ok_or_else(|| {
            Error::ReferenceNotFound(format!("Secret {:?} has no key {:?}", r.name, r.key))
        })?;
    Ok(SecretString::from(
        String::from_utf8_lossy(&value.0).trim().to_owned(),
    ))
}

fn endpoint(s: &Session<'_>) -> Result<String, Error> {
    s.server.registration_endpoint().map(str::to_owned).ok_or_else(|| {
        Error::Preflight("the authorization server advertises no registration_endpoint and none is configured".into())
    })
}

/// Register (or onboard) the client.
pub async fn register(s: &mut Session<'_>) -> Result<(), Error> {
    let now = s.ctx.clock.now();
    let identity = s.identity()?;
    let endpoint = endpoint(s)?;
    let started = std::time::Instant::now();
    let mode = s.client.spec.registration.mode;
    if mode == RegistrationMode::HubOnboarding {
        // The hub sees the certificate: it is persisted first.
        s.persist_keys().await?;
        let result = s
            .effects
            .hub_onboard(s.target(identity.as_ref()), &endpoint)
            .await;
        observe(s, &result, started);
        result.map_err(Error::RegisterClient)?;
        s.registration.client_id = s.client.spec.registration.client_id.clone();
        s.registration.onboarded_x5t = s.transport().map(|t| t.record.x5t_s256);
        s.registration.registered_at = Some(now);
        s.save_registration().await?;
        s.events.push((
            Reason::Registered,
            "onboarded at the hub with the current transport certificate".into(),
        ));
        return Ok(());
    }
    // (`attempt_started_at` in the registration Secret is where earlier versions kept it.)
    if let Some(at) = s
        .keys
        .registration_attempt_started_at
        .or(s.registration.attempt_started_at)
    {
        // A request went out and no answer was persisted (the process died in between): the AS
        // may hold a client we cannot manage. Say so, then register again.
        s.events.push((
            Reason::RegistrationLost,
            format!("a registration attempt at {at} left no persisted answer; a client may remain at the AS unmanaged"),
        ));
    }
    // Everything the request needs is gathered first (a missing Secret fails here, before
    // anything is recorded or sent).
    let jwks = s.jwks_of(&s.visible_kids())?;
    let metadata =
        super::policy::registration_metadata(s.client, &s.namespace, &s.name, Some(&jwks));
    enum Body {
        Json(Option<SecretString>),
        Signed(SecretString),
    }
    let body = match mode {
        RegistrationMode::Dynamic => Body::Json(initial_access_token(s).await?),
        _ => Body::Signed(signed_request(s, &metadata).await?),
    };
    // Intent before the request, in the same write as the keys and certificate it carries.
    s.keys.registration_attempt_started_at = Some(now);
    s.persist_keys().await?;
    let persister = SecretPersister {
        effects: s.effects,
        client: s.client,
        namespace: &s.namespace,
        base: s.registration.clone(),
        now,
    };
    let body = match &body {
        Body::Json(iat) => RegisterBody::Json {
            initial_access_token: iat.as_ref(),
            metadata: &metadata,
        },
        Body::Signed(jws) => RegisterBody::Signed {
            jws: jws.clone(),
            content_type: content_type(s),
        },
    };
    let result = s
        .effects
        .register(s.target(identity.as_ref()), &endpoint, body, &persister)
        .await;
    observe(s, &result, started);
    let registration = result.map_err(Error::RegisterClient)?;
    s.registration = persister.state_for(&registration);
    // The intent is moot once the answer is persisted; it leaves the keys Secret with its next
    // write (no write of its own).
    s.keys.registration_attempt_started_at = None;
    s.events.push((
        Reason::Registered,
        format!(
            "registered at the authorization server as client {}",
            registration.client_id
        ),
    ));
    Ok(())
}

fn observe<T>(s: &Session<'_>, result: &Result<T, OauthError>, started: std::time::Instant) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(e) if e.is_transient() => "transient",
        Err(_) => "permanent",
    };
    s.ctx.metrics.observe_call(
        &s.client.spec.authorization_server_ref.name,
        "registration",
        outcome,
        started.elapsed().as_secs_f64(),
    );
}

async fn initial_access_token(s: &Session<'_>) -> Result<Option<SecretString>, Error> {
    let r = s
        .client
        .spec
        .registration
        .initial_access_token_ref
        .clone()
        .or_else(|| {
            s.server
                .spec
                .registration
                .as_ref()
                .and_then(|r| r.initial_access_token_ref.clone())
        });
    match r {
        Some(r) => secret_value(s, &r).await.map(Some),
        None => Ok(None),
    }
}

fn content_type(s: &Session<'_>) -> SignedContentType {
    match s
        .server
        .spec
        .registration
        .as_ref()
        .and_then(|r| r.signed_request_content_type.as_deref())
    {
        Some("application/jose") => SignedContentType::Jose,
        _ => SignedContentType::Jwt,
    }
}

async fn signed_request(
    s: &Session<'_>,
    metadata: &serde_json::Map<String, serde_json::Value>,
) -> Result<SecretString, Error> {
    let r = s
        .client
        .spec
        .registration
        .software_statement_ref
        .clone()
        .or_else(|| s.server.spec.registration.as_ref().and_then(|r| r.software_statement_ref.clone()))
        .ok_or_else(|| Error::InvalidSpec {
            reason: Reason::InvalidSpec,
            message: "SignedRequest registration needs a software statement: set registration.softwareStatementRef (or the AuthorizationServer's)".into(),
        })?;
    let statement = secret_value(s, &r).await?;
    let software_id = match &s.client.spec.registration.metadata.software_id {
        Some(id) => id.clone(),
        None => crate::identity::jwt::decode_unverified(statement.expose_secret())
            .ok()
            .and_then(|j| j.str_claim("software_id").map(str::to_owned))
            .ok_or_else(|| Error::InvalidSpec {
                reason: Reason::InvalidSpec,
                message: "the software statement carries no software_id; set registration.metadata.softwareId".into(),
            })?,
    };
    let key = s
        .active_key(KeyUse::Sig)?
        .ok_or_else(|| Error::InvalidSpec {
            reason: Reason::Pending,
            message: "no active signing key yet".into(),
        })?;
    let signer = key.signer().map_err(|source| Error::Identity {
        stage: Stage::LoadSigningKey,
        source,
    })?;
    let mut metadata = metadata.clone();
    metadata.remove("software_id");
    metadata.remove("client_name");
    let request = RegistrationRequest {
        software_id: &software_id,
        software_statement: statement.expose_secret(),
        audience: &s.server.meta.issuer,
        metadata: &metadata,
    };
    signed_registration_request(&signer, request, s.ctx.clock.now()).map_err(|source| {
        Error::Identity {
            stage: Stage::SignRegistrationRequest,
            source,
        }
    })
}

/// RFC 7592 PUT of the full metadata with `jwks` (a new RAT is persisted before this returns).
/// [`Outcome::RegistrationLost`] when the AS refused the registration access token: the
/// registration is forgotten and the planner registers the client again.
pub async fn update_registration(
    s: &mut Session<'_>,
    jwks: Option<&JwkSet>,
) -> Result<Outcome, Error> {
    let Some(current) = as_registration(&s.registration) else {
        return Ok(Outcome::Done);
    };
    if current.registration_access_token.is_none() {
        return Err(Error::UpdateRegistration(OauthError::InvalidResponse {
            step: crate::oauth::Step::UpdateRegistration,
            what: "no registration access token was issued, so the registration cannot be updated",
        }));
    }
    // The keys the update carries are persisted before the AS sees them.
    s.persist_keys().await?;
    let identity = s.identity()?;
    let endpoint = endpoint(s)?;
    let target = ManagementTarget {
        registration_endpoint: &endpoint,
        issuer: &s.server.spec.issuer,
    };
    let metadata = super::policy::registration_metadata(s.client, &s.namespace, &s.name, jwks);
    let now = s.ctx.clock.now();
    let persister = SecretPersister {
        effects: s.effects,
        client: s.client,
        namespace: &s.namespace,
        base: s.registration.clone(),
        now,
    };
    let started = std::time::Instant::now();
    let body = match s.client.spec.registration.mode {
        RegistrationMode::SignedRequest => {
            let mut md = metadata.clone();
            md.insert("client_id".into(), current.client_id.clone().into());
            UpdateBody::Signed {
                jws: signed_request(s, &md).await?,
                content_type: content_type(s),
            }
        }
        _ => UpdateBody::Json(&metadata),
    };
    let result = s
        .effects
        .update_registration(
            s.target(identity.as_ref()),
            target,
            &current,
            body,
            &persister,
        )
        .await;
    observe(s, &result, started);
    let updated = match result {
        Ok(updated) => updated,
        Err(e) if e.status() == Some(401) => {
            // The AS no longer accepts our registration access token: it rotated the token in
            // a call whose answer never reached our Secret (a crash in that window), or it was
            // revoked. Only a new registration recovers; say what is left behind.
            let old = s.registration.client_id.clone().unwrap_or_default();
            tracing::warn!(client = %s.name, old_client_id = %old, "registration access token refused; registering a new client");
            s.events.push((
                Reason::RegistrationLost,
                format!("the AS refused the registration access token of client {old} ({e}); registering a new client — {old} may remain at the AS"),
            ));
            s.registration = RegistrationState::default();
            s.save_registration().await?;
            // An old intent must not be mistaken for a lost answer of the next attempt.
            s.keys.registration_attempt_started_at = None;
            // Tokens of the old client go with it: the next step mints new ones.
            s.credentials.tokens.clear();
            return Ok(Outcome::RegistrationLost);
        }
        Err(e) => return Err(Error::UpdateRegistration(e)),
    };
    s.registration = persister.state_for(&updated);
    Ok(Outcome::Done)
}

/// RFC 7592 DELETE; "already gone" counts as done.
pub async fn deregister(s: &Session<'_>) -> Result<management::DeleteOutcome, Error> {
    let Some(current) = as_registration(&s.registration) else {
        return Ok(management::DeleteOutcome::AlreadyGone);
    };
    if current.registration_access_token.is_none() {
        return Ok(management::DeleteOutcome::AlreadyGone);
    }
    let identity = s.identity()?;
    let endpoint = endpoint(s)?;
    let target = ManagementTarget {
        registration_endpoint: &endpoint,
        issuer: &s.server.spec.issuer,
    };
    s.effects
        .delete_registration(s.target(identity.as_ref()), target, &current)
        .await
        .map_err(Error::UpdateRegistration)
}

#[cfg(test)]
mod tests {
    use backon::BackoffBuilder as _;

    use super::*;

    #[test]
    fn a_failed_registration_write_is_retried_four_times_with_growing_waits() {
        let waits: Vec<Duration> = persist_backoff().build().collect();
        assert_eq!(waits.len(), 4, "{waits:?}");
        for (i, w) in waits.iter().enumerate() {
            // The base (200 ms; 1 ms in unit tests) doubling, plus up to the same again as jitter.
            let base = PERSIST_RETRY_BASE * (1 << i);
            assert!(*w >= base && *w <= base * 2, "wait {i}: {w:?}");
        }
        assert!(waits.iter().sum::<Duration>() <= PERSIST_RETRY_BASE * 30);
    }
}
