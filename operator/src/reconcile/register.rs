//! Registration per mode (docs/architecture.md, "Registration"; docs/reliability.md) in the
//! crash-safe write order: keys and certificate are persisted before the call, an intent is
//! recorded immediately before the request is sent (after the AS's rate limiter, counting the
//! attempts of unknown outcome), the AS's answer is persisted before anything else, and every
//! rotated registration access token is persisted (with retries) before the next call; the
//! reconcile's deadline does not cut a call that may return a token, nor the write of it. A
//! 401 on an RFC 7592 call is evidence of a lost token only after retries and a GET with the
//! stored token are refused too. Whether and why to register, and what a lost answer or token
//! leads to, is the planner's decision ([`crate::rotation::registration_due`],
//! [`crate::rotation::registration_halted`]). Kubernetes and network I/O.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use secrecy::{ExposeSecret, SecretString};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use super::{
    deadline::shielded,
    effects::{Effects, RegisterBody, UpdateBody, Write},
    session::{RETRY_REGISTRATION_HANDLED, Session, save_registration},
};
use crate::{
    crd::{AuthorizationServerKind, RegistrationMode, TppClient},
    error::{Error, Stage},
    identity::{
        jwks::JwkSet,
        signed_request::{RegistrationRequest, signed_registration_request},
    },
    oauth::{
        ClientAuthn, ClientIdentity, ManagementTarget, OauthError, PersistError, Registration,
        RegistrationPersister, SignedContentType, management,
    },
    reason::Reason,
    rotation::{KeyUse, Outcome},
    store::{build, layout, state::RegistrationState},
};

/// The first pause between attempts to persist a registration answer (doubling).
const PERSIST_RETRY_BASE: Duration = if cfg!(test) {
    Duration::from_millis(1)
} else {
    Duration::from_millis(200)
};

/// The first pause before an RFC 7592 call answered 401 is tried again (doubling).
const REFUSED_RETRY_BASE: Duration = if cfg!(test) {
    Duration::from_millis(1)
} else {
    Duration::from_secs(1)
};

/// How often an RFC 7592 call answered 401 is tried again before a GET with the stored token
/// decides whether the token is lost.
const REFUSED_RETRIES: u32 = 2;

/// Writes every registration answer (new RAT included) to `<name>-registration`, retrying a
/// failed write a few times: once a rotated RAT is lost only re-registration recovers. For a
/// registration, it also writes the intent (`<name>-keys` with the attempt) when the request
/// is about to be sent.
pub struct SecretPersister<'a> {
    effects: &'a dyn Effects,
    client: &'a TppClient,
    namespace: &'a str,
    base: RegistrationState,
    now: jiff::Timestamp,
    /// The `<name>-keys` Secret recording the intent, for a registration.
    intent: Option<Secret>,
    intent_recorded: AtomicBool,
}

impl<'a> SecretPersister<'a> {
    fn new(s: &'a Session<'_>, base: RegistrationState, now: jiff::Timestamp) -> Self {
        Self {
            effects: s.effects,
            client: s.client,
            namespace: &s.namespace,
            base,
            now,
            intent: None,
            intent_recorded: AtomicBool::new(false),
        }
    }

    /// Whether the intent was written (the request may have been sent).
    fn intent_recorded(&self) -> bool {
        self.intent_recorded.load(Ordering::SeqCst)
    }
}

impl SecretPersister<'_> {
    fn state_for(&self, r: &Registration) -> RegistrationState {
        let mut state = self.base.clone();
        state.client_id = Some(r.client_id.clone());
        if let Some(rat) = &r.registration_access_token {
            state.set_access_token(rat.expose_secret());
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

    async fn record_intent(&self) -> Result<(), PersistError> {
        let Some(intent) = &self.intent else {
            return Ok(());
        };
        self.effects
            .write(self.namespace, Write::Secret(intent.clone()))
            .await
            .map_err(|e| {
                PersistError::new(format!(
                    "recording the registration intent in {} failed",
                    layout::keys_name(&self.client.name_any())
                ))
                .with_source(e)
            })?;
        self.intent_recorded.store(true, Ordering::SeqCst);
        Ok(())
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

/// Who holds a Secret reference used at registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefHolder {
    /// The TppClient itself (other namespaces are refused by `policy::check_spec`).
    Client,
    /// A namespaced AuthorizationServer: it reads only its own namespace (the client's).
    Server,
    /// A ClusterAuthorizationServer: the reference's `namespace` when set, else the client's.
    ClusterServer,
}

/// The namespace a Secret reference held by `holder` is read from, for a client in
/// `client_namespace`. Pure.
pub fn secret_ref_namespace<'a>(
    r: &'a crate::crd::SecretKeyRef,
    holder: RefHolder,
    client_namespace: &'a str,
) -> Result<&'a str, Error> {
    match (holder, r.namespace.as_deref()) {
        (RefHolder::ClusterServer, Some(ns)) => Ok(ns),
        (_, Some(ns)) if ns != client_namespace => Err(Error::InvalidSpec {
            reason: Reason::CrossNamespaceReference,
            message: format!(
                "Secret reference {:?} names namespace {ns:?}; only a ClusterAuthorizationServer may read another namespace",
                r.name
            ),
        }),
        _ => Ok(client_namespace),
    }
}

/// The Secret reference the client sets, else its server's, with who holds it.
fn registration_ref(
    s: &Session<'_>,
    of_client: Option<&crate::crd::SecretKeyRef>,
    of_server: impl Fn(&crate::crd::AsRegistration) -> Option<&crate::crd::SecretKeyRef>,
) -> Option<(crate::crd::SecretKeyRef, RefHolder)> {
    if let Some(r) = of_client {
        return Some((r.clone(), RefHolder::Client));
    }
    let holder = match s.client.spec.authorization_server_ref.kind {
        AuthorizationServerKind::AuthorizationServer => RefHolder::Server,
        AuthorizationServerKind::ClusterAuthorizationServer => RefHolder::ClusterServer,
    };
    s.server
        .spec
        .registration
        .as_ref()
        .and_then(of_server)
        .map(|r| (r.clone(), holder))
}

async fn secret_value(
    s: &Session<'_>,
    r: &crate::crd::SecretKeyRef,
    holder: RefHolder,
) -> Result<SecretString, Error> {
    let ns = secret_ref_namespace(r, holder, &s.namespace)?;
    let secret = s
        .effects
        .user_secret(ns, &r.name)
        .await
        .map_err(|source| Error::ReadObject {
            what: format!("Secret {ns}/{}", r.name),
            source,
        })?
        .ok_or_else(|| Error::ReferenceNotFound(format!("Secret {ns}/{} not found", r.name)))?;
    let value = secret
        .data
        .and_then(|mut d| d.remove(&r.key))
        .ok_or_else(|| {
            Error::ReferenceNotFound(format!("Secret {ns}/{} has no key {:?}", r.name, r.key))
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
    let unanswered = s
        .keys
        .registration_attempt_started_at
        .or(s.registration.attempt_started_at);
    let lost_client = s
        .registration
        .access_token_refused_at
        .and(s.registration.client_id.clone());
    let forgotten_client = s.forgotten_client_id();
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
    if let Some(at) = unanswered {
        // A request went out and no answer was persisted (a crash, a timeout, a reset, a 5xx):
        // the AS may hold a client we cannot manage. Say so; the planner allowed one more.
        s.events.push((
            Reason::RegistrationLost,
            format!(
                "a registration request sent at {at} left no persisted answer; a client may remain at the AS unmanaged (client_name {:?}); registering again ({} request(s) of unknown outcome so far, registration.maxUnknownAttempts {})",
                client_name(s),
                s.keys.registration_unknown_attempts.max(1),
                s.client.spec.registration.max_unknown_attempts,
            ),
        ));
    }
    if let Some(old) = &lost_client {
        // spec.registration.onLost: Register. The old client keeps its place at the AS.
        tracing::warn!(client = %s.name, old_client_id = %old, "registration access token lost; registering a new client");
        s.events.push((
            Reason::RegistrationLost,
            format!("the AS refused the registration access token of client {old}; registering a new client (registration.onLost: Register) — {old} remains at the AS: delete it there"),
        ));
        s.registration = RegistrationState::default();
        s.credentials.tokens.clear();
    }
    if let Some(old) = &forgotten_client {
        // `<name>-registration` is gone; a human asked for a new client (or onLost: Register).
        tracing::warn!(client = %s.name, old_client_id = %old, "registration Secret lost; registering a new client");
        s.events.push((
            Reason::RegistrationLost,
            format!("{} no longer holds client {old} and its registration access token; registering a new client — {old} remains at the AS: delete it there", layout::registration_name(&s.name)),
        ));
        s.credentials.tokens.clear();
    }
    // The intent: written once the AS's rate limiter let the request go, immediately before
    // it is sent (so a crash while waiting raises no false alarm), counting the attempts whose
    // outcome may be unknown; a retry asked for by annotation starts a new count. It is the
    // whole `<name>-keys` as it stands, so the keys and certificate the request carries are
    // persisted by the same write, before it can be sent (one write, not two: a request that
    // never goes leaves them to the reconcile's last write).
    let mut intent = s.keys.clone();
    intent.registration_attempt_started_at = Some(now);
    intent.registration_unknown_attempts = match s.retry_registration_requested() {
        Some(value) => {
            intent
                .handled
                .insert(RETRY_REGISTRATION_HANDLED.to_owned(), value);
            1
        }
        None if unanswered.is_some() => intent.registration_unknown_attempts.saturating_add(1),
        None => 1,
    };
    let mut persister = SecretPersister::new(s, s.registration.clone(), now);
    persister.intent = Some(build::keys_secret(s.client, &intent));
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
    // Not cut by the reconcile's deadline: an answer is persisted once received.
    let result =
        shielded(
            s.effects
                .register(s.target(identity.as_ref()), &endpoint, body, &persister),
        )
        .await;
    observe(s, &result, started);
    let recorded = persister.intent_recorded();
    let registration = match result {
        Ok(registration) => registration,
        Err(e) => {
            if recorded {
                s.keys_written(intent);
                if e.status().is_some_and(|code| (400..500).contains(&code)) {
                    // The AS answered with a refusal: this attempt created no client; earlier
                    // ones of unknown outcome stay counted. Written with the next keys write.
                    let left = s.keys.registration_unknown_attempts.saturating_sub(1);
                    s.keys.registration_unknown_attempts = left;
                    s.keys.registration_attempt_started_at = unanswered.filter(|_| left > 0);
                }
            }
            return Err(Error::RegisterClient(e));
        }
    };
    s.registration = persister.state_for(&registration);
    if recorded {
        s.keys_written(intent);
    }
    // The intent is moot once the answer is persisted; it leaves the keys Secret with its next
    // write (no write of its own).
    s.keys.registration_attempt_started_at = None;
    s.keys.registration_unknown_attempts = 0;
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
    let r = registration_ref(
        s,
        s.client.spec.registration.initial_access_token_ref.as_ref(),
        |r| r.initial_access_token_ref.as_ref(),
    );
    match r {
        Some((r, holder)) => secret_value(s, &r, holder).await.map(Some),
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
    let (r, holder) = registration_ref(
        s,
        s.client.spec.registration.software_statement_ref.as_ref(),
        |r| r.software_statement_ref.as_ref(),
    )
    .ok_or_else(|| Error::InvalidSpec {
            reason: Reason::InvalidSpec,
            message: "SignedRequest registration needs a software statement: set registration.softwareStatementRef (or the AuthorizationServer's)".into(),
        })?;
    let statement = secret_value(s, &r, holder).await?;
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
/// A 401 is tried again after backoff, then checked with a GET using the stored token;
/// [`Outcome::RegistrationLost`] only when that is refused too (the refusal is persisted in
/// `<name>-registration`; what follows is the planner's, by `registration.onLost`).
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
    let issuer = s.server.spec.issuer.clone();
    let target = ManagementTarget {
        registration_endpoint: &endpoint,
        issuer: &issuer,
    };
    let metadata = super::policy::registration_metadata(s.client, &s.namespace, &s.name, jwks);
    let now = s.ctx.clock.now();
    let persister = SecretPersister::new(s, s.registration.clone(), now);
    let mut attempt = 0;
    let result = loop {
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
        // Not cut by the reconcile's deadline: a rotated token is persisted once received.
        let result = shielded(s.effects.update_registration(
            s.target(identity.as_ref()),
            target,
            &current,
            body,
            &persister,
        ))
        .await;
        observe(s, &result, started);
        match result {
            Err(e) if e.status() == Some(401) && attempt < REFUSED_RETRIES => {
                // One 401 is no evidence: an AS restarting, a token rotation still settling.
                let wait = REFUSED_RETRY_BASE * 2u32.pow(attempt);
                tracing::info!(client = %s.name, ?wait, "registration access token refused; trying again");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            other => break other,
        }
    };
    let updated = match result {
        Ok(updated) => updated,
        Err(e) if e.status() == Some(401) => {
            let lost = access_token_refused(s, target, &current, &persister, e).await?;
            s.registration = lost;
            return Ok(Outcome::RegistrationLost);
        }
        Err(e) => return Err(Error::UpdateRegistration(e)),
    };
    s.registration = persister.state_for(&updated);
    Ok(Outcome::Done)
}

/// The PUT was refused after retries: a GET with the stored token decides. Refused too: the
/// token is lost (recorded in `<name>-registration`, [`Outcome::RegistrationLost`]). Accepted:
/// the token is fine and the PUT's refusal is the error (an AS problem, not a lost client).
async fn access_token_refused(
    s: &Session<'_>,
    target: ManagementTarget<'_>,
    current: &crate::oauth::Registration,
    persister: &SecretPersister<'_>,
    put_error: OauthError,
) -> Result<RegistrationState, Error> {
    let identity = s.identity()?;
    let started = std::time::Instant::now();
    let read = shielded(s.effects.read_registration(
        s.target(identity.as_ref()),
        target,
        current,
        persister,
    ))
    .await;
    observe(s, &read, started);
    match read {
        // The stored token works: the PUT's refusal is the AS's problem, not a lost client.
        Ok(_) => Err(Error::UpdateRegistration(put_error)),
        Err(e) if e.status() == Some(401) => {
            let id = current.client_id.clone();
            tracing::warn!(client = %s.name, client_id = %id, "the AS refused the registration access token on PUT and GET");
            let mut lost = s.registration.clone();
            lost.access_token_refused_at = Some(s.ctx.clock.now());
            save_registration(s.effects, s.client, &s.namespace, &lost).await?;
            Ok(lost)
        }
        Err(e) => Err(Error::UpdateRegistration(e)),
    }
}

/// The `client_name` the client registers with (what to look for at the AS).
fn client_name(s: &Session<'_>) -> String {
    s.client
        .spec
        .registration
        .metadata
        .client_name
        .clone()
        .unwrap_or_else(|| format!("{}/{}", s.namespace, s.name))
}

/// The permanent failure a halted registration is reported as: what is left at the AS, what to
/// check there, and how to go on (docs/troubleshooting.md).
pub fn halted(s: &Session<'_>, reason: crate::rotation::Reason) -> Error {
    let client = client_name(s);
    match reason {
        crate::rotation::Reason::RegistrationAccessTokenLost => {
            let id = s.registration.client_id.clone().unwrap_or_default();
            Error::RegistrationHalted {
                reason: Reason::RegistrationAccessTokenLost,
                message: format!(
                    "the AS refused the registration access token of client {id} (RFC 7592 PUT and GET, after retries): {id} remains at the AS and still gets tokens, but its keys can no longer be rotated; ask the AS to delete it or re-issue its token, or set registration.onLost: Register to register a new client"
                ),
            }
        }
        crate::rotation::Reason::RegistrationAccessTokenOverwritten => {
            let id = s.registration.client_id.clone().unwrap_or_default();
            let secret = layout::registration_name(&s.name);
            Error::RegistrationHalted {
                reason: Reason::RegistrationAccessTokenOverwritten,
                message: format!(
                    "Secret {secret} holds a registration_access_token for client {id} that this operator did not write (it does not match registration_access_token.sha256, written with the token the AS issued): no RFC 7592 call is made with it and nothing is registered; {id} keeps getting tokens, but its keys cannot be rotated at the AS; put the token back from a backup, or, if the AS re-issued it and you wrote it on purpose, remove the key registration_access_token.sha256 so that the operator adopts it"
                ),
            }
        }
        crate::rotation::Reason::RegistrationSecretLost => {
            let id = s.forgotten_client_id().unwrap_or_default();
            let secret = layout::registration_name(&s.name);
            Error::RegistrationHalted {
                reason: Reason::RegistrationSecretLost,
                message: format!(
                    "Secret {secret} is gone, and with it the registration access token of client {id}: {id} remains registered at the AS, but this operator can no longer manage it or request tokens for it, and does not register a new client on its own; restore {secret} from a backup, or delete {id} at the AS and set the annotation {} to a new value to register a new client (or set registration.onLost: Register)",
                    crate::crd::annotations::RETRY_REGISTRATION,
                ),
            }
        }
        _ => {
            let n = s.keys.registration_unknown_attempts;
            let since = s
                .keys
                .registration_attempt_started_at
                .map(|t| format!(", the last at {t}"))
                .unwrap_or_default();
            Error::RegistrationHalted {
                reason: Reason::RegistrationOutcomeUnknown,
                message: format!(
                    "{n} registration request(s) got no persisted answer{since} (registration.maxUnknownAttempts {}): each may have created a client at the AS that this operator does not manage; check the AS for clients with client_name {client:?} and delete any, then set the annotation {} to a new value to allow another attempt",
                    s.client.spec.registration.max_unknown_attempts,
                    crate::crd::annotations::RETRY_REGISTRATION,
                ),
            }
        }
    }
}

/// Revokes every access token in the credentials Secret at the AS (RFC 7009, over mTLS), best
/// effort: one attempt per token, each bounded by the transport's timeout; nothing is retried.
/// Returns the failures (token name and reason) for a Warning; nothing when the AS advertises no
/// `revocation_endpoint` (there is nothing to call) or no token was ever issued. Called at
/// deletion before the registration is deleted, while the client can still authenticate.
pub async fn revoke_tokens(s: &Session<'_>) -> Vec<(String, Reason)> {
    let tokens = &s.credentials.tokens;
    let advertised = s
        .server
        .meta
        .effective_endpoint(crate::oauth::EndpointKind::Revocation, true)
        .is_some();
    if tokens.is_empty() || !advertised {
        return Vec::new();
    }
    let failed = |reason| {
        tokens
            .keys()
            .map(|name| (name.clone(), reason))
            .collect::<Vec<_>>()
    };
    let Some(client_id) = s.client_id() else {
        return failed(Reason::Pending);
    };
    let (identity, authn) = match (s.identity(), super::act::client_authn(s, &client_id)) {
        (Ok(identity), Ok(authn)) => (identity, authn),
        (Err(e), _) | (_, Err(e)) => return failed(e.reason()),
    };
    let mut failures = Vec::new();
    for (name, token) in tokens {
        let secret = SecretString::from(token.access_token.expose().clone());
        if let Err(e) = s
            .effects
            .revoke_token(s.target(identity.as_ref()), &authn, &secret)
            .await
        {
            failures.push((name.clone(), e.reason()));
        }
    }
    failures
}

/// Revokes each `(name, token)` a refresh has just replaced (the credentials Secret already
/// holds the new tokens) at the AS (RFC 7009, over mTLS with `identity`), best effort: one
/// attempt each, nothing retried, no error returned. Returns a Warning event
/// `RevocationFailed` per failure naming the token and the reason (never the token), or one
/// when the AS advertises no `revocation_endpoint` (the user asked for something that cannot be
/// done there).
pub async fn revoke_replaced(
    s: &Session<'_>,
    identity: Option<&ClientIdentity>,
    authn: &ClientAuthn,
    replaced: &[(String, SecretString)],
) -> Vec<(Reason, String)> {
    let advertised = s
        .server
        .meta
        .effective_endpoint(crate::oauth::EndpointKind::Revocation, true)
        .is_some();
    if !advertised {
        let names: Vec<&str> = replaced.iter().map(|(n, _)| n.as_str()).collect();
        return vec![(
            Reason::RevocationFailed,
            format!(
                "replaced access token(s) {} not revoked: the authorization server advertises no revocation_endpoint; they stay valid until they expire (tokens[].revokeReplaced)",
                names.join(", ")
            ),
        )];
    }
    let mut events = Vec::new();
    for (name, token) in replaced {
        if let Err(e) = s
            .effects
            .revoke_token(s.target(identity), authn, token)
            .await
        {
            events.push((
                Reason::RevocationFailed,
                format!(
                    "the replaced access token {name} was not revoked at the authorization server ({}); it stays valid until it expires, and refreshes go on",
                    e.reason()
                ),
            ));
        }
    }
    events
}

/// RFC 7592 DELETE; "already gone" counts as done.
pub async fn deregister(s: &Session<'_>) -> Result<management::DeleteOutcome, Error> {
    let Some(current) = as_registration(&s.registration) else {
        return Ok(management::DeleteOutcome::AlreadyGone);
    };
    if current.registration_access_token.is_none() {
        return Ok(management::DeleteOutcome::AlreadyGone);
    }
    if s.registration.foreign_access_token() {
        // Never an RFC 7592 call with a token someone else wrote (the cleanup reports it).
        return Err(halted(
            s,
            crate::rotation::Reason::RegistrationAccessTokenOverwritten,
        ));
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

    fn reference(namespace: Option<&str>) -> crate::crd::SecretKeyRef {
        crate::crd::SecretKeyRef {
            name: "iat".into(),
            key: "token".into(),
            namespace: namespace.map(str::to_owned),
        }
    }

    #[test]
    fn only_a_cluster_server_reference_reads_the_namespace_it_names() {
        let platform = reference(Some("platform"));
        let unset = reference(None);
        let own = reference(Some("team-a"));
        let ns = |r, holder| secret_ref_namespace(r, holder, "team-a").map_err(|e| e.reason());
        assert_eq!(ns(&platform, RefHolder::ClusterServer), Ok("platform"));
        assert_eq!(
            ns(&platform, RefHolder::Server),
            Err(Reason::CrossNamespaceReference)
        );
        assert_eq!(
            ns(&platform, RefHolder::Client),
            Err(Reason::CrossNamespaceReference)
        );
        for holder in [
            RefHolder::Client,
            RefHolder::Server,
            RefHolder::ClusterServer,
        ] {
            assert_eq!(ns(&unset, holder), Ok("team-a"));
            assert_eq!(ns(&own, holder), Ok("team-a"));
        }
    }

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
