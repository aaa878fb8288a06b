//! An in-memory [`Effects`] for unit tests: the objects the reconcile wrote (and reads back), the
//! user's Secrets, a scripted authorization server, an ordered log of effects, and a crash
//! switch (every effect from the `n`th on fails, as if the process had died there).

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex},
};

use jiff::SignedDuration;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use secrecy::SecretString;

use super::{
    effects::{AsTarget, Effect, Effects, RegisterBody, UpdateBody, Write},
    register::SecretPersister,
};
use crate::{
    clock::{Clock, FixedClock},
    crd::TppClient,
    error::Error,
    oauth::{
        AccessToken, ClientAuthn, ManagementTarget, OauthError, Registration,
        RegistrationPersister, management::DeleteOutcome,
    },
    store::apply::WriteError,
};

/// Which AS call a scripted failure answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Token,
    Register,
    HubOnboard,
    Update,
    Read,
    Delete,
    Revoke,
}

#[derive(Default)]
struct State {
    /// Our objects by `kind/name` (one namespace).
    objects: BTreeMap<String, Write>,
    /// The user's Secrets by name.
    user: BTreeMap<String, Secret>,
    /// Every effect, in order (`write Secret/x`, `token accounts`, ...).
    log: Vec<String>,
    /// Effects carried out so far.
    count: usize,
    /// From this effect on, everything fails.
    crash_at: Option<usize>,
    /// Scripted AS failures, answered in order by the first call of their kind.
    failures: VecDeque<(Call, OauthError)>,
    /// Scripted slow answers: the first call of the kind waits this long (real time) after the
    /// AS handled it, before its answer is persisted and returned.
    delays: VecDeque<(Call, std::time::Duration)>,
    /// Client ids the AS holds, with their current registration access token.
    clients: BTreeMap<String, String>,
    issued: u32,
    onboardings: u32,
    tokens: u32,
    finalizer: bool,
    /// Access tokens revoked (RFC 7009), in order.
    revoked: Vec<String>,
    /// Certificate thumbprints and kids whose token requests the AS refuses (`invalid_client`).
    refused_material: std::collections::BTreeSet<String>,
    /// Every token request: the certificate's thumbprint and the assertion's kid.
    token_material: Vec<(String, Option<String>)>,
    /// The client assertions of token requests (`private_key_jwt`), in order.
    assertions: Vec<String>,
}

/// The fake.
pub struct FakeEffects {
    state: Mutex<State>,
    clock: Arc<FixedClock>,
    /// Lifetime of the tokens the AS issues.
    pub token_lifetime: SignedDuration,
}

fn crashed() -> kube::Error {
    kube::Error::Api(
        kube::core::Status {
            code: 503,
            message: "the process died here".into(),
            ..Default::default()
        }
        .boxed(),
    )
}

fn unavailable(step: crate::oauth::Step) -> OauthError {
    OauthError::Unavailable {
        step,
        status: 503,
        retry_after: None,
        interaction_id: "crash".into(),
    }
}

/// The kid in the header of the client assertion `authn` mints, if it mints one.
fn assertion_kid(authn: &ClientAuthn) -> Option<String> {
    use base64::Engine;
    let crate::oauth::ClientAuth::PrivateKeyJwt { minter, .. } = &authn.auth else {
        return None;
    };
    let jwt = minter.mint("https://as.test").ok()?;
    let header = secrecy::ExposeSecret::expose_secret(&jwt)
        .split('.')
        .next()?
        .to_owned();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()?;
    let header: serde_json::Value = serde_json::from_slice(&header).ok()?;
    header.get("kid")?.as_str().map(str::to_owned)
}

/// The AS's answer to a registration access token it does not accept.
pub fn refused(step: crate::oauth::Step, now: jiff::Timestamp) -> OauthError {
    OauthError::from_status(step, 401, None, br#"{"error":"invalid_token"}"#, "i", now)
}

impl FakeEffects {
    pub fn new(clock: Arc<FixedClock>) -> Self {
        Self {
            state: Mutex::default(),
            clock,
            token_lifetime: SignedDuration::from_secs(600),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count one effect; `false` when the process is "dead".
    fn step(&self, what: String) -> bool {
        let mut s = self.lock();
        if s.crash_at.is_some_and(|n| s.count >= n) {
            return false;
        }
        s.count += 1;
        s.log.push(what);
        true
    }

    fn scripted(&self, call: Call) -> Option<OauthError> {
        let mut s = self.lock();
        let at = s.failures.iter().position(|(c, _)| *c == call)?;
        s.failures.remove(at).map(|(_, e)| e)
    }

    /// Every effect from the `n`th (0-based) on fails.
    pub fn crash_at(&self, n: usize) {
        self.lock().crash_at = Some(n);
    }

    /// The process restarted: effects work again (what was written stays).
    pub fn restart(&self) {
        self.lock().crash_at = None;
    }

    /// The next `call` is answered `delay` late (after the AS handled it).
    pub fn delay_next(&self, call: Call, delay: std::time::Duration) {
        self.lock().delays.push_back((call, delay));
    }

    async fn delay(&self, call: Call) {
        let delay = {
            let mut s = self.lock();
            s.delays
                .iter()
                .position(|(c, _)| *c == call)
                .and_then(|at| s.delays.remove(at))
                .map(|(_, d)| d)
        };
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
    }

    /// The next `call` fails with `error`.
    pub fn fail_next(&self, call: Call, error: OauthError) {
        self.lock().failures.push_back((call, error));
    }

    /// A user Secret.
    pub fn put_user_secret(&self, secret: Secret) {
        self.lock().user.insert(secret.name_any(), secret);
    }

    /// Forget the registration access tokens the AS issued (as if it rotated one whose answer
    /// never reached us).
    pub fn revoke_registration_tokens(&self) {
        for rat in self.lock().clients.values_mut() {
            *rat = "revoked".into();
        }
    }

    /// The effects carried out, in order.
    pub fn log(&self) -> Vec<String> {
        self.lock().log.clone()
    }

    /// How many effects were carried out.
    pub fn count(&self) -> usize {
        self.lock().count
    }

    /// Clients the AS holds.
    pub fn clients(&self) -> Vec<String> {
        self.lock().clients.keys().cloned().collect()
    }

    /// Onboardings at the hub.
    pub fn onboardings(&self) -> u32 {
        self.lock().onboardings
    }

    /// From now on the AS refuses token requests over the certificate of this thumbprint or
    /// with an assertion signed by the key of this kid (`invalid_client`).
    pub fn refuse_tokens_for(&self, material: &str) {
        self.lock().refused_material.insert(material.to_owned());
    }

    /// From now on the AS accepts that material again.
    pub fn accept_tokens_for(&self, material: &str) {
        self.lock().refused_material.remove(material);
    }

    /// Every token request so far: the certificate's thumbprint and the assertion's kid.
    pub fn token_material(&self) -> Vec<(String, Option<String>)> {
        self.lock().token_material.clone()
    }

    /// Tokens issued.
    pub fn tokens_issued(&self) -> u32 {
        self.lock().tokens
    }

    /// The client assertions token requests carried (`private_key_jwt`), in order.
    pub fn assertions(&self) -> Vec<String> {
        self.lock().assertions.clone()
    }

    /// The access tokens revoked at the AS, in order.
    pub fn revoked(&self) -> Vec<String> {
        self.lock().revoked.clone()
    }

    /// Whether the finalizer was added.
    pub fn finalizer(&self) -> bool {
        self.lock().finalizer
    }

    /// One of our Secrets, as last written.
    pub fn secret(&self, name: &str) -> Option<Secret> {
        match self.lock().objects.get(&format!("Secret/{name}")) {
            Some(Write::Secret(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// Our Secrets as a version without the deregistration finalizer wrote them.
    pub fn strip_finalizers(&self) {
        for object in self.lock().objects.values_mut() {
            if let Write::Secret(s) = object {
                s.metadata.finalizers = None;
            }
        }
    }

    /// Someone deletes one of our Secrets (its finalizer removed too).
    pub fn delete_secret(&self, name: &str) {
        self.lock().objects.remove(&format!("Secret/{name}"));
    }

    /// Someone edits a data key of one of our Secrets (`None` removes it).
    pub fn edit_secret(&self, name: &str, key: &str, value: Option<&str>) {
        if let Some(Write::Secret(s)) = self.lock().objects.get_mut(&format!("Secret/{name}")) {
            let data = s.data.get_or_insert_with(Default::default);
            match value {
                Some(v) => {
                    data.insert(
                        key.to_owned(),
                        k8s_openapi::ByteString(v.as_bytes().to_vec()),
                    );
                }
                None => {
                    data.remove(key);
                }
            }
        }
    }

    /// A data key of one of our Secrets, as text.
    pub fn data(&self, secret: &str, key: &str) -> Option<String> {
        self.secret(secret)?
            .data?
            .get(key)
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
    }

    fn registration(&self, client_id: String, rat: String) -> Registration {
        Registration {
            registration_client_uri: Some(format!("https://as.test/register/{client_id}")),
            client_id,
            registration_access_token: Some(SecretString::from(rat)),
            client_secret: None,
            client_id_issued_at: None,
            metadata: Default::default(),
        }
    }
}

impl Effects for FakeEffects {
    fn own_secret<'a>(
        &'a self,
        _namespace: &'a str,
        name: &'a str,
    ) -> Effect<'a, Result<Option<Secret>, kube::Error>> {
        Box::pin(async move {
            if !self.step(format!("read {name}")) {
                return Err(crashed());
            }
            // As the Secret cache answers: without the keys every write rebuilds.
            let mut secret = self.secret(name);
            if name.ends_with("-credentials")
                && let Some(data) = secret.as_mut().and_then(|s| s.data.as_mut())
            {
                for key in crate::store::cache::REBUILT {
                    data.remove(key);
                }
            }
            Ok(secret)
        })
    }

    fn user_secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> Effect<'a, Result<Option<Secret>, kube::Error>> {
        Box::pin(async move {
            if !self.step(format!("read user {name}")) {
                return Err(crashed());
            }
            // A Secret put with a namespace is found in that namespace only; a GET finds our
            // own Secrets too, whole.
            let user = self
                .lock()
                .user
                .get(name)
                .filter(|s| {
                    s.metadata
                        .namespace
                        .as_deref()
                        .is_none_or(|ns| ns == namespace)
                })
                .cloned();
            Ok(user.or_else(|| self.secret(name)))
        })
    }

    fn write<'a>(
        &'a self,
        _namespace: &'a str,
        object: Write,
    ) -> Effect<'a, Result<(), WriteError>> {
        Box::pin(async move {
            let key = match &object {
                Write::Secret(s) => format!("Secret/{}", s.name_any()),
                Write::ConfigMap(c) => format!("ConfigMap/{}", c.name_any()),
            };
            if !self.step(format!("write {key}")) {
                return Err(crashed().into());
            }
            self.lock().objects.insert(key, object);
            Ok(())
        })
    }

    fn add_finalizer<'a>(&'a self, _client: &'a TppClient) -> Effect<'a, Result<(), Error>> {
        Box::pin(async move {
            if !self.step("add finalizer".into()) {
                return Err(Error::ApplyObject {
                    what: "finalizer".into(),
                    source: crashed(),
                });
            }
            self.lock().finalizer = true;
            Ok(())
        })
    }

    fn token<'a>(
        &'a self,
        to: AsTarget<'a>,
        authn: &'a ClientAuthn,
        scope: &'a str,
        resource: Option<&'a str>,
    ) -> Effect<'a, Result<AccessToken, OauthError>> {
        Box::pin(async move {
            let step = match resource {
                Some(resource) => format!("token {scope} for {resource}"),
                None => format!("token {scope}"),
            };
            if !self.step(step) {
                return Err(unavailable(crate::oauth::Step::Token));
            }
            if let Some(e) = self.scripted(Call::Token) {
                return Err(e);
            }
            // The assertion the request would carry, minted as the real client mints it.
            if let crate::oauth::ClientAuth::PrivateKeyJwt { minter, .. } = &authn.auth
                && let Ok(assertion) = minter.mint("https://as.test")
            {
                self.lock()
                    .assertions
                    .push(secrecy::ExposeSecret::expose_secret(&assertion).to_owned());
            }
            let x5t = to
                .identity
                .map(|i| i.x5t_s256().to_owned())
                .unwrap_or_default();
            let kid = assertion_kid(authn);
            let refused = {
                let mut s = self.lock();
                s.token_material.push((x5t.clone(), kid.clone()));
                s.refused_material.contains(&x5t)
                    || kid.is_some_and(|kid| s.refused_material.contains(&kid))
            };
            if refused {
                return Err(OauthError::from_status(
                    crate::oauth::Step::Token,
                    401,
                    None,
                    br#"{"error":"invalid_client"}"#,
                    "i",
                    self.clock.now(),
                ));
            }
            let n = {
                let mut s = self.lock();
                s.tokens += 1;
                s.tokens
            };
            let now = self.clock.now();
            Ok(AccessToken {
                access_token: SecretString::from(format!("token-{n}")),
                token_type: "Bearer".into(),
                scope: Some(scope.to_owned()),
                expires_in: self.token_lifetime.unsigned_abs(),
                received_at: now,
                expires_at: now
                    .checked_add(self.token_lifetime)
                    .unwrap_or(jiff::Timestamp::MAX),
                bound_x5t_s256: None,
            })
        })
    }

    fn register<'a>(
        &'a self,
        _to: AsTarget<'a>,
        _endpoint: &'a str,
        _body: RegisterBody<'a>,
        persister: &'a SecretPersister<'a>,
    ) -> Effect<'a, Result<Registration, OauthError>> {
        Box::pin(async move {
            // As `AsClient::send_after`: the intent is recorded right before the request.
            persister
                .record_intent()
                .await
                .map_err(|source| OauthError::PersistRegistration { source })?;
            if !self.step("register".into()) {
                return Err(unavailable(crate::oauth::Step::Register));
            }
            if let Some(e) = self.scripted(Call::Register) {
                return Err(e);
            }
            let (id, rat) = {
                let mut s = self.lock();
                s.issued += 1;
                let id = format!("client-{}", s.issued);
                let rat = format!("rat-{}-0", s.issued);
                s.clients.insert(id.clone(), rat.clone());
                (id, rat)
            };
            self.delay(Call::Register).await;
            let registration = self.registration(id, rat);
            persister
                .persist(&registration)
                .await
                .map_err(|source| OauthError::PersistRegistration { source })?;
            Ok(registration)
        })
    }

    fn hub_onboard<'a>(
        &'a self,
        _to: AsTarget<'a>,
        _endpoint: &'a str,
    ) -> Effect<'a, Result<(), OauthError>> {
        Box::pin(async move {
            if !self.step("onboard".into()) {
                return Err(unavailable(crate::oauth::Step::HubOnboarding));
            }
            if let Some(e) = self.scripted(Call::HubOnboard) {
                return Err(e);
            }
            self.lock().onboardings += 1;
            Ok(())
        })
    }

    fn update_registration<'a>(
        &'a self,
        _to: AsTarget<'a>,
        _target: ManagementTarget<'a>,
        current: &'a Registration,
        _body: UpdateBody<'a>,
        persister: &'a SecretPersister<'a>,
    ) -> Effect<'a, Result<Registration, OauthError>> {
        Box::pin(async move {
            if !self.step("update registration".into()) {
                return Err(unavailable(crate::oauth::Step::UpdateRegistration));
            }
            if let Some(e) = self.scripted(Call::Update) {
                return Err(e);
            }
            let presented = current
                .registration_access_token
                .as_ref()
                .map(|t| secrecy::ExposeSecret::expose_secret(t).to_owned());
            let rotated = {
                let mut s = self.lock();
                match s.clients.get_mut(&current.client_id) {
                    Some(rat) if Some(rat.as_str()) == presented.as_deref() => {
                        // Rotate on every PUT, as oidc-provider does.
                        let next = format!("{rat}+");
                        *rat = next.clone();
                        Some(next)
                    }
                    _ => None,
                }
            };
            let Some(rat) = rotated else {
                return Err(refused(
                    crate::oauth::Step::UpdateRegistration,
                    self.clock.now(),
                ));
            };
            self.delay(Call::Update).await;
            let registration = self.registration(current.client_id.clone(), rat);
            persister
                .persist(&registration)
                .await
                .map_err(|source| OauthError::PersistRegistration { source })?;
            Ok(registration)
        })
    }

    fn read_registration<'a>(
        &'a self,
        _to: AsTarget<'a>,
        _target: ManagementTarget<'a>,
        current: &'a Registration,
        _persister: &'a SecretPersister<'a>,
    ) -> Effect<'a, Result<Registration, OauthError>> {
        Box::pin(async move {
            if !self.step("read registration".into()) {
                return Err(unavailable(crate::oauth::Step::ReadRegistration));
            }
            if let Some(e) = self.scripted(Call::Read) {
                return Err(e);
            }
            let presented = current
                .registration_access_token
                .as_ref()
                .map(|t| secrecy::ExposeSecret::expose_secret(t).to_owned());
            let accepted = self
                .lock()
                .clients
                .get(&current.client_id)
                .is_some_and(|rat| Some(rat.as_str()) == presented.as_deref());
            if !accepted {
                return Err(refused(
                    crate::oauth::Step::ReadRegistration,
                    self.clock.now(),
                ));
            }
            Ok(current.clone())
        })
    }

    fn delete_registration<'a>(
        &'a self,
        _to: AsTarget<'a>,
        _target: ManagementTarget<'a>,
        current: &'a Registration,
    ) -> Effect<'a, Result<DeleteOutcome, OauthError>> {
        Box::pin(async move {
            if !self.step("delete registration".into()) {
                return Err(unavailable(crate::oauth::Step::DeleteRegistration));
            }
            if let Some(e) = self.scripted(Call::Delete) {
                return Err(e);
            }
            let presented = current
                .registration_access_token
                .as_ref()
                .map(|t| secrecy::ExposeSecret::expose_secret(t).to_owned());
            let mut s = self.lock();
            Ok(match s.clients.get(&current.client_id) {
                Some(rat) if Some(rat.as_str()) == presented.as_deref() => {
                    s.clients.remove(&current.client_id);
                    DeleteOutcome::Deleted
                }
                Some(_) => DeleteOutcome::Refused,
                None => DeleteOutcome::AlreadyGone,
            })
        })
    }

    fn revoke_token<'a>(
        &'a self,
        _to: AsTarget<'a>,
        _authn: &'a ClientAuthn,
        token: &'a SecretString,
    ) -> Effect<'a, Result<(), OauthError>> {
        Box::pin(async move {
            if !self.step("revoke token".into()) {
                return Err(unavailable(crate::oauth::Step::Revocation));
            }
            if let Some(e) = self.scripted(Call::Revoke) {
                return Err(e);
            }
            let token = secrecy::ExposeSecret::expose_secret(token).to_owned();
            self.lock().revoked.push(token);
            Ok(())
        })
    }
}
