//! One reconcile's working state: the client, its resolved AS, everything loaded from its
//! Secrets, and the persistence steps that keep the crash-safe write order
//! (docs/architecture.md, "Write order"). Each `save_*` is one server-side apply; the in-memory
//! state is the truth between them. Unsaved key changes are found by comparing `<name>-keys`
//! with the snapshot last loaded or written, not by marking them.

use std::collections::BTreeSet;

use kube::ResourceExt;
use secrecy::SecretString;

use super::{
    context::Context,
    effects::{AsTarget, Effects, Write},
    server::ResolvedServer,
};
use crate::{
    crd::{CertificateSource, RegistrationMode, TppClient, annotations},
    error::{Error, Stage},
    identity::{self, PrivateKey, jwks::JwkSet},
    oauth::ClientIdentity,
    redact::Sensitive,
    rotation::{self, CertRecord, KeyState, KeyUse, Observed, Trigger, TriggerKind, Triggers},
    store::{
        build::{self, CredentialsContent},
        layout,
        state::{Credentials, KeysState, RegistrationState},
    },
};

/// The key of `KeysState::handled` under which the last acted-on
/// `tpp.dev/retry-registration` value is kept.
pub const RETRY_REGISTRATION_HANDLED: &str = "retry-registration";

/// A transport certificate with its key, wherever it comes from.
#[derive(Clone, Debug)]
pub struct TransportMaterial {
    /// PEM certificate.
    pub cert_pem: String,
    /// PEM key.
    pub key_pem: Sensitive<String>,
    /// Validity and thumbprint.
    pub record: CertRecord,
    /// Subject DN.
    pub subject: String,
}

impl TransportMaterial {
    /// Its mTLS identity.
    pub fn identity(&self) -> Result<Option<ClientIdentity>, Error> {
        ClientIdentity::from_pem(
            self.cert_pem.as_bytes(),
            SecretString::from(self.key_pem.expose().clone()),
        )
        .map(Some)
        .map_err(Error::FetchToken)
    }
}

/// The working state of one reconcile.
pub struct Session<'a> {
    /// Shared context (clock, metrics, the crypto pool).
    pub ctx: &'a Context,
    /// Every read, write and AS call goes through here.
    pub effects: &'a dyn Effects,
    /// The object.
    pub client: &'a TppClient,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The resolved authorization server (as its controller published it).
    pub server: std::sync::Arc<ResolvedServer>,
    /// `<name>-keys`.
    pub keys: KeysState,
    /// `<name>-registration`.
    pub registration: RegistrationState,
    /// `<name>-credentials`.
    pub credentials: Credentials,
    /// The user's certificate (source SecretRef).
    pub external_cert: Option<TransportMaterial>,
    /// Normal events to publish after the reconcile (reason, note).
    pub events: Vec<(crate::reason::Reason, String)>,
    /// Do not call the AS before this instant (the backoff of the last failure).
    pub backoff_until: Option<jiff::Timestamp>,
    /// This reconcile added the deregistration finalizer (the loaded object does not show it).
    pub finalizer_added: bool,
    /// The last key parsed from its private JWK (kid, key): a refresh parses the active key
    /// once, for the assertion and the credentials Secret alike.
    parsed: std::sync::Mutex<Option<(String, PrivateKey)>>,
    /// `<name>-keys` as last loaded or written: `keys` differs from it when it has unsaved
    /// changes.
    keys_saved: KeysState,
    /// `<name>-keys` or `<name>-registration` exists without the deregistration finalizer it
    /// should keep (written before the finalizer existed): see [`Self::keep_secrets`].
    unkept_secrets: bool,
    /// `<name>-registration` holds a registration access token without its digest: adopted in
    /// memory, written by [`Self::keep_secrets`].
    unsealed_token: bool,
}

/// Whether `secret` exists, is not being deleted, and lacks the deregistration finalizer.
fn unkept(secret: Option<&k8s_openapi::api::core::v1::Secret>) -> bool {
    secret.is_some_and(|s| {
        s.metadata.deletion_timestamp.is_none()
            && !s
                .metadata
                .finalizers
                .iter()
                .flatten()
                .any(|f| f == layout::FINALIZER)
    })
}

fn read_err(what: String) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::ReadObject { what, source }
}

impl<'a> Session<'a> {
    /// Load everything the client's Secrets hold (three GETs, four with a SecretRef certificate).
    pub async fn load(
        ctx: &'a Context,
        effects: &'a dyn Effects,
        client: &'a TppClient,
        namespace: String,
        server: std::sync::Arc<ResolvedServer>,
    ) -> Result<Self, Error> {
        let name = client.name_any();
        let store = effects;
        let keys_secret = store
            .own_secret(&namespace, &layout::keys_name(&name))
            .await
            .map_err(read_err(layout::keys_name(&name)))?;
        let keys =
            KeysState::from_secret(keys_secret.as_ref()).map_err(|e| Error::CorruptState {
                what: layout::keys_name(&name),
                message: e.to_string(),
            })?;
        let reg_secret = store
            .own_secret(&namespace, &layout::registration_name(&name))
            .await
            .map_err(read_err(layout::registration_name(&name)))?;
        let mut registration = RegistrationState::from_secret(reg_secret.as_ref());
        // A token without its digest (a Secret written before digests existed, or the digest
        // removed by hand to accept a token put there on purpose) is adopted: its digest is
        // written at the end of this reconcile ([`Self::keep_secrets`]).
        let unsealed_token = registration.unsealed_access_token();
        if unsealed_token && let Some(token) = registration.registration_access_token.clone() {
            registration.set_access_token(token.expose());
        }
        // An edited client id is not ours to use (tokens would be asked for another client) nor
        // to replace by a new registration (the issued client would stay at the AS unmanaged).
        if matches!(
            client.spec.registration.mode,
            RegistrationMode::Dynamic | RegistrationMode::SignedRequest
        ) && let Some(issued) = registration.edited_client_id()
        {
            return Err(Error::CorruptState {
                what: layout::registration_name(&name),
                message: format!(
                    "its client_id was edited: the AS issued {issued:?} (response.json beside it); \
                     put client_id back, or restore the Secret from a backup"
                ),
            });
        }
        let unkept_secrets = build::keeps_for_deregistration(client)
            && (unkept(keys_secret.as_ref()) || unkept(reg_secret.as_ref()));
        let cred_secret = store
            .own_secret(&namespace, &layout::credentials_name(&name))
            .await
            .map_err(read_err(layout::credentials_name(&name)))?;
        let names: Vec<String> = client.spec.tokens.iter().map(|t| t.name.clone()).collect();
        let credentials = Credentials::from_secret(cred_secret.as_ref(), &names, |pem| {
            identity::cert::parse_pem(pem).ok().map(|i| i.x5t_s256)
        });
        let external_cert = match (
            &client.spec.transport_certificate.source,
            &client.spec.transport_certificate.secret_ref,
        ) {
            (CertificateSource::SecretRef, Some(r)) => {
                let s = store
                    .user_secret(&namespace, &r.name)
                    .await
                    .map_err(read_err(format!("Secret {}", r.name)))?
                    .ok_or_else(|| {
                        Error::ReferenceNotFound(format!(
                            "transportCertificate.secretRef: Secret {:?} not found",
                            r.name
                        ))
                    })?;
                Some(external_material(&s, &r.name)?)
            }
            _ => None,
        };
        Ok(Self {
            ctx,
            effects,
            client,
            namespace,
            name,
            server,
            keys_saved: keys.clone(),
            keys,
            registration,
            credentials,
            external_cert,
            events: vec![],
            backoff_until: None,
            finalizer_added: false,
            parsed: Default::default(),
            unkept_secrets,
            unsealed_token,
        })
    }

    /// The transport certificate in force (generated, or the user's).
    pub fn transport(&self) -> Option<TransportMaterial> {
        if let Some(ext) = &self.external_cert {
            return Some(ext.clone());
        }
        self.keys.certificate.as_ref().map(|c| TransportMaterial {
            cert_pem: c.cert_pem.clone(),
            key_pem: c.key_pem.clone(),
            record: c.record.clone(),
            subject: c.subject.clone(),
        })
    }

    /// The mTLS identity of the transport certificate.
    pub fn identity(&self) -> Result<Option<ClientIdentity>, Error> {
        match self.transport() {
            Some(t) => t.identity(),
            None => Ok(None),
        }
    }

    /// The certificate to mint tokens with: the current one, or (`previous`) the one the
    /// credentials Secret holds, which its tokens are bound to, while the switch to the current
    /// one waits after a refused self-test.
    pub async fn token_transport(&mut self, previous: bool) -> Result<TransportMaterial, Error> {
        let current = self.transport().ok_or_else(|| Error::InvalidSpec {
            reason: crate::reason::Reason::Pending,
            message: "no transport certificate yet".into(),
        })?;
        if !previous {
            return Ok(current);
        }
        let (Some(cert_pem), Some(key_pem)) = self.held_certificate().await? else {
            return Err(Error::CorruptState {
                what: layout::credentials_name(&self.name),
                message: "the certificate its tokens are bound to is missing".into(),
            });
        };
        let info = identity::cert::parse_pem(&cert_pem).map_err(|source| Error::Identity {
            stage: Stage::ReadTransportCertificate,
            source,
        })?;
        Ok(TransportMaterial {
            cert_pem,
            key_pem,
            record: CertRecord {
                not_before: info.not_before,
                not_after: info.not_after,
                x5t_s256: info.x5t_s256,
            },
            subject: info.subject,
        })
    }

    /// The certificate and key the credentials Secret holds. The Secret cache keeps no
    /// `tls.key` (every write rebuilds it from `<name>-keys`, `store::cache`): when the Secret
    /// must keep its certificate (its tokens are bound to it, not to the current one), the key
    /// is read once from the API server.
    async fn held_certificate(
        &mut self,
    ) -> Result<(Option<String>, Option<Sensitive<String>>), Error> {
        if self.credentials.key_pem.is_none() && self.credentials.cert_pem.is_some() {
            let name = layout::credentials_name(&self.name);
            let secret = self
                .effects
                .user_secret(&self.namespace, &name)
                .await
                .map_err(read_err(name))?;
            let text = |key: &str| {
                secret
                    .as_ref()
                    .and_then(|s| s.data.as_ref())
                    .and_then(|d| d.get(key))
                    .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            };
            // Only the key of the certificate the session holds (a write in between changed
            // both).
            if text(layout::credentials::TLS_CRT) == self.credentials.cert_pem {
                self.credentials.key_pem = text(layout::credentials::TLS_KEY).map(Sensitive::new);
            }
        }
        Ok((
            self.credentials.cert_pem.clone(),
            self.credentials.key_pem.clone(),
        ))
    }

    /// The AS to call, with `identity` for mTLS.
    pub fn target<'s>(&'s self, identity: Option<&'s ClientIdentity>) -> AsTarget<'s> {
        AsTarget {
            server: &self.server,
            identity,
        }
    }

    /// The client id: the spec's (Static, HubOnboarding) or the AS's.
    pub fn client_id(&self) -> Option<String> {
        match self.client.spec.registration.mode {
            RegistrationMode::Static | RegistrationMode::HubOnboarding => {
                self.client.spec.registration.client_id.clone()
            }
            RegistrationMode::Dynamic | RegistrationMode::SignedRequest => {
                self.registration.client_id.clone()
            }
        }
    }

    /// Whether the AS knows the client (for the planner).
    pub fn registered(&self) -> bool {
        match self.client.spec.registration.mode {
            RegistrationMode::Static => true,
            RegistrationMode::HubOnboarding => self.registration.onboarded_x5t.is_some(),
            RegistrationMode::Dynamic | RegistrationMode::SignedRequest => {
                self.registration.is_registered()
            }
        }
    }

    /// The client id the TppClient's status names when no persisted answer holds one any more
    /// (`<name>-registration` deleted after a registration; Dynamic and SignedRequest only).
    /// The answer is always written before the status names its client id.
    pub fn forgotten_client_id(&self) -> Option<String> {
        let answered = matches!(
            self.client.spec.registration.mode,
            RegistrationMode::Dynamic | RegistrationMode::SignedRequest
        );
        if !answered || self.registration.is_registered() {
            return None;
        }
        // The status loses the id with the first status written after the loss; the answer
        // beside a removed `client_id` key keeps naming it, so the halt holds.
        self.client
            .status
            .as_ref()
            .and_then(|st| st.client_id.clone())
            .filter(|id| !id.is_empty())
            .or_else(|| self.registration.answered_client_id())
    }

    /// The planner's view.
    pub fn observed(&self) -> Observed {
        let ann = self.client.annotations();
        let trig = |kind: TriggerKind, ann_key: &str| Trigger {
            requested: ann.get(ann_key).cloned().filter(|v| !v.is_empty()),
            handled: self.keys.handled.get(kind.as_str()).cloned(),
            handled_at: self.keys.handled_at.get(kind.as_str()).copied(),
        };
        Observed {
            registered: self.registered(),
            keys: self.keys.records(),
            certificate: self.transport().map(|t| t.record),
            // Tokens are bound to the certificate beside them in the credentials Secret.
            tokens: self
                .credentials
                .tokens
                .values()
                .map(|t| t.record.clone())
                .collect(),
            approved_kids: ann
                .get(annotations::APPROVED_KIDS)
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            triggers: Triggers {
                rotate_keys: trig(TriggerKind::RotateKeys, annotations::ROTATE_KEYS),
                renew_certificate: trig(
                    TriggerKind::RenewCertificate,
                    annotations::RENEW_CERTIFICATE,
                ),
                renew_tokens: trig(TriggerKind::RenewTokens, annotations::RENEW_TOKENS),
            },
            onboarded_x5t_s256: self.registration.onboarded_x5t.clone(),
            registration_unanswered: self
                .keys
                .registration_attempt_started_at
                .or(self.registration.attempt_started_at)
                .is_some(),
            registration_unknown_attempts: self.keys.registration_unknown_attempts,
            registration_retry_requested: self.retry_registration_requested().is_some(),
            registration_access_token_lost: self.registration.access_token_refused_at.is_some(),
            registration_access_token_foreign: self.registration.is_registered()
                && self.registration.foreign_access_token(),
            registration_forgotten: self.forgotten_client_id().is_some(),
            backoff_until: self.backoff_until,
            tokens_need_signing_key: self.client.spec.authentication.method
                == crate::crd::AuthMethod::PrivateKeyJwt,
            self_test_refusals: self.keys.self_test_refusals.clone(),
        }
    }

    /// The value of the `tpp.dev/retry-registration` annotation when it asks for an attempt
    /// not made yet (it is recorded as handled with the next registration intent).
    pub fn retry_registration_requested(&self) -> Option<String> {
        self.client
            .annotations()
            .get(annotations::RETRY_REGISTRATION)
            .filter(|v| !v.is_empty())
            .filter(|v| self.keys.handled.get(RETRY_REGISTRATION_HANDLED) != Some(*v))
            .cloned()
    }

    /// The active key of `use_`, parsed.
    pub fn active_key(&self, use_: KeyUse) -> Result<Option<PrivateKey>, Error> {
        let Some(k) = self
            .keys
            .keys
            .iter()
            .find(|k| k.record.use_ == use_ && k.record.state == KeyState::Active)
        else {
            return Ok(None);
        };
        let mut parsed = self.parsed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((kid, key)) = parsed.as_ref()
            && *kid == k.record.kid
        {
            return Ok(Some(key.clone()));
        }
        let key = PrivateKey::from_private_jwk_json(k.private_jwk.expose()).map_err(|source| {
            Error::Identity {
                stage: Stage::ReadActiveKey,
                source,
            }
        })?;
        *parsed = Some((k.record.kid.clone(), key.clone()));
        Ok(Some(key))
    }

    /// The public JWK set of `kids` (deterministic order): [`KeysState::public_jwks`], the
    /// same set `/jwks/{namespace}/{name}` serves from the persisted state.
    pub fn jwks_of(&self, kids: &BTreeSet<String>) -> Result<JwkSet, Error> {
        self.keys
            .public_jwks(kids)
            .map_err(|(stage, source)| Error::Identity { stage, source })
    }

    /// Every kid the AS should see now (all but Pending).
    pub fn visible_kids(&self) -> BTreeSet<String> {
        self.keys.visible_kids()
    }

    /// `keys` as persisted by a write made outside [`Self::persist_keys`] (a registration
    /// intent).
    pub fn keys_written(&mut self, keys: KeysState) {
        self.keys = keys.clone();
        self.keys_saved = keys;
    }

    /// Whether `keys` holds changes not yet persisted.
    pub fn keys_unsaved(&self) -> bool {
        self.keys != self.keys_saved
    }

    /// Apply the outcome of `action` to the key records and handled triggers with the
    /// planner's [`rotation::apply`] (the simulator's transition too). Keys the action removes
    /// leave `keys`; the caller adds a generated key (its material beside the record returned).
    pub fn apply(
        &mut self,
        policy: &rotation::Policy,
        action: &rotation::Action,
        outcome: rotation::Outcome,
    ) -> Result<rotation::Observed, Error> {
        let now = self.ctx.clock.now();
        let seen = self.observed();
        let next = rotation::apply(policy, &seen, action, outcome, now).map_err(|e| {
            Error::CorruptState {
                what: layout::keys_name(&self.name),
                message: e.to_string(),
            }
        })?;
        self.keys
            .keys
            .retain(|k| next.keys.iter().any(|r| r.kid == k.record.kid));
        for key in &mut self.keys.keys {
            if let Some(record) = next.keys.iter().find(|r| r.kid == key.record.kid) {
                key.record = record.clone();
            }
        }
        self.keys
            .self_test_refusals
            .clone_from(&next.self_test_refusals);
        for (kind, trigger) in [
            (TriggerKind::RotateKeys, &next.triggers.rotate_keys),
            (
                TriggerKind::RenewCertificate,
                &next.triggers.renew_certificate,
            ),
            (TriggerKind::RenewTokens, &next.triggers.renew_tokens),
        ] {
            if let Some(value) = &trigger.handled {
                self.keys
                    .handled
                    .insert(kind.as_str().to_owned(), value.clone());
            }
            if let Some(at) = trigger.handled_at {
                self.keys.handled_at.insert(kind.as_str().to_owned(), at);
            }
        }
        Ok(next)
    }

    /// Persist `<name>-keys` if it has unsaved changes. Runs before anything outside the
    /// cluster can see or use the keys (an AS call, the credentials Secret) and at the end of
    /// every reconcile: the steps of one pass (two keys, a certificate, their publication and
    /// activation) cost one write, not five.
    pub async fn persist_keys(&mut self) -> Result<(), Error> {
        if !self.keys_unsaved() {
            return Ok(());
        }
        let obj = build::keys_secret(self.client, &self.keys);
        self.effects
            .write(&self.namespace, Write::Secret(obj))
            .await
            .map_err(|e| Error::write(layout::keys_name(&self.name), e))?;
        self.keys_saved = self.keys.clone();
        Ok(())
    }

    /// Write `<name>-keys` (as last saved) and `<name>-registration` again when one of them
    /// lacks the deregistration finalizer it should keep ([`build::keeps_for_deregistration`]):
    /// once per client written before the finalizer existed, so that a namespace deletion finds
    /// the registration access token readable.
    ///
    /// Also writes `<name>-registration` once when its registration access token had no digest
    /// (adopted at load).
    pub async fn keep_secrets(&mut self) -> Result<(), Error> {
        if self.unsealed_token && !self.unkept_secrets {
            self.save_registration().await?;
            self.unsealed_token = false;
        }
        if !self.unkept_secrets {
            return Ok(());
        }
        let obj = build::keys_secret(self.client, &self.keys_saved);
        self.effects
            .write(&self.namespace, Write::Secret(obj))
            .await
            .map_err(|e| Error::write(layout::keys_name(&self.name), e))?;
        self.save_registration().await?;
        self.unkept_secrets = false;
        self.unsealed_token = false;
        Ok(())
    }

    /// Persist `<name>-registration`.
    pub async fn save_registration(&self) -> Result<(), Error> {
        save_registration(
            self.effects,
            self.client,
            &self.namespace,
            &self.registration,
        )
        .await
    }

    /// Write `<name>-jwks` with `set`.
    pub async fn save_jwks(&self, set: &JwkSet) -> Result<(), Error> {
        let json = render_jwks(set);
        let obj = build::jwks_configmap(self.client, json);
        self.effects
            .write(&self.namespace, Write::ConfigMap(obj))
            .await
            .map_err(|e| Error::write(layout::jwks_name(&self.name), e))?;
        Ok(())
    }

    /// Write `<name>-credentials` from the current certificate, active key and tokens: one apply.
    pub async fn save_credentials(&mut self) -> Result<(), Error> {
        let (Some(t), Some(client_id)) = (self.transport(), self.client_id()) else {
            return Ok(());
        };
        // The certificate beside the tokens is the planner's to say: the one they are bound
        // to, until tokens bound to the current one replace them.
        let seen = self.observed();
        let wanted = rotation::credentials_certificate(&seen).map(str::to_owned);
        let keep = wanted.is_some()
            && wanted != Some(t.record.x5t_s256.clone())
            && self.credentials.cert_x5t == wanted;
        let held = if keep {
            self.held_certificate().await?
        } else {
            (None, None)
        };
        let (cert_pem, key_pem) = match held {
            (Some(cert), Some(key)) => (cert, key.expose().clone()),
            _ => (t.cert_pem.clone(), t.key_pem.expose().clone()),
        };
        // What workloads mount comes from persisted keys only.
        self.persist_keys().await?;
        let token_endpoint = self
            .server
            .meta
            .effective_endpoint(crate::oauth::EndpointKind::Token, true)
            .unwrap_or_default()
            .to_owned();
        let signing = self
            .active_key(KeyUse::Sig)?
            .map(|k| (k.to_pkcs8_pem(), k.kid().to_owned()));
        let signing_pem = signing.as_ref().map(|(pem, kid)| {
            (
                secrecy::ExposeSecret::expose_secret(pem).to_owned(),
                kid.clone(),
            )
        });
        let content = CredentialsContent {
            cert_pem: &cert_pem,
            key_pem: &key_pem,
            ca_pem: &self.server.ca_pem,
            client_id: &client_id,
            issuer: &self.server.spec.issuer,
            token_endpoint: &token_endpoint,
            signing: signing_pem.as_ref().map(|(p, k)| (p.as_str(), k.as_str())),
            tokens: &self.credentials.tokens,
        };
        let obj = build::credentials_secret(self.client, &content);
        self.effects
            .write(&self.namespace, Write::Secret(obj))
            .await
            .map_err(|e| Error::write(layout::credentials_name(&self.name), e))?;
        Ok(())
    }
}

/// The text of `<name>-jwks`'s `jwks.json` for `set`.
pub fn render_jwks(set: &JwkSet) -> String {
    serde_json::to_string_pretty(set).unwrap_or_default()
}

/// Persist a registration state (used by the RAT persister too).
pub async fn save_registration(
    effects: &dyn Effects,
    client: &TppClient,
    namespace: &str,
    state: &RegistrationState,
) -> Result<(), Error> {
    let obj = build::registration_secret(client, state);
    effects
        .write(namespace, Write::Secret(obj))
        .await
        .map_err(|e| Error::write(layout::registration_name(&client.name_any()), e))?;
    Ok(())
}

fn external_material(
    secret: &k8s_openapi::api::core::v1::Secret,
    name: &str,
) -> Result<TransportMaterial, Error> {
    let get = |k: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .ok_or_else(|| {
                Error::ReferenceNotFound(format!(
                    "transportCertificate.secretRef: Secret {name:?} has no {k}"
                ))
            })
    };
    let cert_pem = get("tls.crt")?;
    let key_pem = get("tls.key")?;
    let info = identity::cert::parse_pem(&cert_pem).map_err(|source| Error::Identity {
        stage: Stage::ReadTransportCertificate,
        source,
    })?;
    let matches =
        identity::cert::key_matches_certificate(&key_pem, &cert_pem).map_err(|source| {
            Error::Identity {
                stage: Stage::CheckTransportKey,
                source,
            }
        })?;
    if !matches {
        return Err(Error::InvalidSpec {
            reason: crate::reason::Reason::CertificateInvalid,
            message: format!("Secret {name:?}: tls.key does not belong to tls.crt"),
        });
    }
    Ok(TransportMaterial {
        cert_pem,
        key_pem: Sensitive::new(key_pem),
        record: CertRecord {
            not_before: info.not_before,
            not_after: info.not_after,
            x5t_s256: info.x5t_s256,
        },
        subject: info.subject,
    })
}
