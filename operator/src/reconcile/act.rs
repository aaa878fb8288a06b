//! Carrying out the planner's actions, one at a time, each ending in the write that makes it
//! durable (keys before any AS call uses them; the registration answer before anything else;
//! certificate and the tokens bound to it in one apply). Kubernetes, network and CPU I/O.

use std::{collections::BTreeSet, sync::Arc};

use secrecy::{ExposeSecret, SecretString};

use kube::ResourceExt;

use super::{register, session::Session};
use crate::{
    crd::AuthMethod,
    error::{Error, Stage},
    identity::{
        PrivateKey,
        cert::{CertificateProfile, SubjectAltName, self_signed},
    },
    oauth::{AccessToken, ClientAuth, ClientAuthn, ClientIdentity, OauthError, SignerMinter},
    reason::Reason,
    redact::Sensitive,
    rotation::{
        self, Action, CertRecord, KeyState, KeyUse, Outcome, Publication, TokenCertificate,
        TokenDue, TokenRecord,
    },
    store::{
        layout::FINALIZER,
        state::{StoredCertificate, StoredKey, StoredToken},
    },
};

/// Carry out one action: its effects, then its state transition ([`Session::apply`], the
/// planner's own), then the effects that must follow the transition.
pub async fn execute(
    s: &mut Session<'_>,
    action: &Action,
    policy: &rotation::Policy,
) -> Result<(), Error> {
    let publication = policy.publication;
    match action {
        Action::GenerateKey { use_, .. } => {
            let alg = match use_ {
                KeyUse::Sig => super::policy::signing_algorithm(s.client),
                KeyUse::Enc => super::policy::encryption_algorithm(s.client),
            };
            let key = s
                .ctx
                .cpu(move || PrivateKey::generate(alg))
                .await?
                .map_err(|source| Error::Identity {
                    stage: Stage::GenerateKey,
                    source,
                })?;
            let jwk = key
                .to_private_jwk_json()
                .map_err(|source| Error::Identity {
                    stage: Stage::ExportKey,
                    source,
                })?;
            let kid = key.kid().to_owned();
            let next = s.apply(policy, action, Outcome::KeyGenerated { kid: kid.clone() })?;
            let Some(record) = next.keys.into_iter().find(|k| k.kid == kid) else {
                return Err(Error::CorruptState {
                    what: "the planner's key records".into(),
                    message: format!("generated key {kid} has no record"),
                });
            };
            // Persisted before any AS call can use it (see `Session::persist_keys`).
            s.keys.keys.push(StoredKey {
                record,
                alg: match use_ {
                    KeyUse::Enc => "RSA-OAEP-256".into(),
                    KeyUse::Sig => key.algorithm().jws_alg().into(),
                },
                private_jwk: Sensitive::new(jwk.expose_secret().to_owned()),
            });
            Ok(())
        }
        Action::PublishKeys { kids, .. } => {
            let kids: BTreeSet<String> = kids.iter().cloned().collect();
            let outcome = publish(s, &kids, publication).await?;
            s.apply(policy, action, outcome)?;
            Ok(())
        }
        Action::AwaitApproval { .. } => Ok(()),
        Action::HaltRegistration { reason } => Err(register::halted(s, *reason)),
        Action::ActivateKey {
            kid,
            retire,
            self_test,
            ..
        } => {
            if *self_test && let Some(refusal) = self_test_key(s, kid).await? {
                s.apply(policy, action, Outcome::SelfTestRefused)?;
                s.events.push((
                    Reason::SelfTestRefused,
                    format!(
                        "the AS refused a token minted with the new signing key {kid} ({}); {} stays active and the switch is tried again after a backoff",
                        refusal.reason(),
                        retire.join(", ")
                    ),
                ));
                return Ok(());
            }
            s.apply(policy, action, Outcome::Done)?;
            if !retire.is_empty() {
                s.events.push((
                    Reason::KeyRotated,
                    format!(
                        "signing key {kid} is active; retiring {}",
                        retire.join(", ")
                    ),
                ));
            }
            // Workloads mount the active signing key beside the certificate.
            s.save_credentials().await
        }
        Action::RetireKey { .. } | Action::AcknowledgeTrigger { .. } => {
            s.apply(policy, action, Outcome::Done)?;
            Ok(())
        }
        Action::RemoveKey { kid, .. } => {
            let mut remaining = s.visible_kids();
            remaining.remove(kid);
            let outcome = publish(s, &remaining, publication).await?;
            s.apply(policy, action, outcome)?;
            Ok(())
        }
        Action::Register { .. } => {
            ensure_finalizer(s).await?;
            register::register(s).await
        }
        Action::RenewCertificate { .. } => renew_certificate(s, policy, action).await,
        Action::RefreshTokens {
            tokens,
            certificate,
        } => refresh_tokens(s, policy, action, tokens, *certificate).await,
    }
}

/// Add the deregistration finalizer before the AS holds anything the operator must clean up
/// at deletion ([`super::cleanup::at_deletion`]): before registering (Dynamic/SignedRequest)
/// and before minting a token (every mode with deletionPolicy Delete). External state only.
async fn ensure_finalizer(s: &mut Session<'_>) -> Result<(), Error> {
    let needs = super::cleanup::at_deletion(
        s.client.spec.registration.mode,
        s.client.spec.registration.deletion_policy,
    ) != super::cleanup::AtDeletion::Nothing;
    if !needs || s.finalizer_added || s.client.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    s.effects.add_finalizer(s.client).await?;
    s.finalizer_added = true;
    Ok(())
}

/// Make `kids` the set the AS sees: the served JWKS ConfigMap always; RFC 7592 PUT when the
/// registration carries the keys inline. [`Outcome::RegistrationLost`] when the AS refused the
/// registration access token (the registration is forgotten).
async fn publish(
    s: &mut Session<'_>,
    kids: &BTreeSet<String>,
    publication: Publication,
) -> Result<Outcome, Error> {
    let set = s.jwks_of(kids)?;
    // The ConfigMap is seen outside the cluster (uploaded to the AS, signed into a software
    // statement): a key it shows must survive a crash, so `<name>-keys` goes first.
    s.persist_keys().await?;
    s.save_jwks(&set).await?;
    if publication == Publication::Immediate && s.registered() {
        return register::update_registration(s, Some(&set)).await;
    }
    Ok(Outcome::Done)
}

async fn renew_certificate(
    s: &mut Session<'_>,
    policy: &rotation::Policy,
    action: &Action,
) -> Result<(), Error> {
    let now = s.ctx.clock.now();
    let spec = &s.client.spec.transport_certificate;
    let subject = super::policy::certificate_subject(s.client, &s.namespace, &s.name);
    let duration = policy.certificate.duration.unsigned_abs();
    let mut profile =
        CertificateProfile::new(&subject, duration).map_err(|source| Error::Identity {
            stage: Stage::ReadCertificateSubject,
            source,
        })?;
    profile.subject_alt_names = spec
        .dns_names
        .iter()
        .cloned()
        .map(SubjectAltName::Dns)
        .collect();
    let alg = super::policy::transport_algorithm(s.client);
    let (key, issued) = s
        .ctx
        .cpu(move || -> Result<_, crate::identity::IdentityError> {
            let key = PrivateKey::generate(alg)?;
            let issued = self_signed(&key, &profile, now)?;
            Ok((key, issued))
        })
        .await?
        .map_err(|source| Error::Identity {
            stage: Stage::IssueCertificate,
            source,
        })?;
    let previous = s
        .keys
        .certificate
        .as_ref()
        .map(|c| c.record.x5t_s256.clone());
    let record = CertRecord {
        not_before: issued.info.not_before,
        not_after: issued.info.not_after,
        x5t_s256: issued.info.x5t_s256.clone(),
    };
    let next = s.apply(policy, action, Outcome::CertificateIssued(record))?;
    let Some(record) = next.certificate else {
        return Err(Error::CorruptState {
            what: "the planner's certificate record".into(),
            message: "a renewal left no certificate".into(),
        });
    };
    // The new certificate waits in <name>-keys; workloads get it together with tokens bound
    // to it (the planner refreshes every token next).
    s.keys.certificate = Some(StoredCertificate {
        cert_pem: issued.pem,
        key_pem: Sensitive::new(key.to_pkcs8_pem().expose_secret().to_owned()),
        record,
        subject: issued.info.subject,
    });
    match previous {
        Some(old) => s.events.push((
            Reason::CertificateRotated,
            format!(
                "transport certificate renewed: x5t#S256 {old} -> {}",
                issued.info.x5t_s256
            ),
        )),
        None => s.events.push((
            Reason::CertificateIssued,
            format!(
                "transport certificate issued: x5t#S256 {}",
                issued.info.x5t_s256
            ),
        )),
    }
    Ok(())
}

/// How this client authenticates at the AS's endpoints now.
pub fn client_authn(s: &Session<'_>, client_id: &str) -> Result<ClientAuthn, Error> {
    client_authn_with(s, client_id, None)
}

/// How this client authenticates with `signing` (a key not active yet, for its self-test)
/// instead of the active signing key.
fn client_authn_with(
    s: &Session<'_>,
    client_id: &str,
    signing: Option<PrivateKey>,
) -> Result<ClientAuthn, Error> {
    let now = s.ctx.clock.now();
    let window = super::policy::propagation_window(&s.server.spec);
    let recent =
        |t: Option<jiff::Timestamp>| t.is_some_and(|t| now < t.saturating_add(window).unwrap_or(t));
    let within = recent(s.registration.registered_at)
        || s.keys
            .keys
            .iter()
            .any(|k| k.record.state == KeyState::Active && recent(k.record.activated_at));
    let auth = match s.client.spec.authentication.method {
        AuthMethod::TlsClientAuth => ClientAuth::TlsClientAuth,
        AuthMethod::PrivateKeyJwt => {
            let key = match signing {
                Some(key) => Some(key),
                None => s.active_key(KeyUse::Sig)?,
            };
            let key = key.ok_or_else(|| Error::InvalidSpec {
                reason: Reason::Pending,
                message: "no active signing key yet".into(),
            })?;
            let signer = key.signer().map_err(|source| Error::Identity {
                stage: Stage::LoadSigningKey,
                source,
            })?;
            let (lifetime, backdate) = assertion_timing(&s.server.spec.client_assertion);
            let minter = SignerMinter::new(signer, client_id)
                .with_lifetime(lifetime)
                .with_backdate(backdate)
                .with_clock(s.ctx.clock.clone());
            ClientAuth::PrivateKeyJwt {
                minter: Arc::new(minter),
                audience: super::policy::audience_policy(&s.server.spec),
            }
        }
    };
    Ok(ClientAuthn {
        client_id: client_id.to_owned(),
        auth,
        within_jwks_propagation: within,
    })
}

/// The lifetime and `iat` backdate of client assertions from the AS's `clientAssertion`: the
/// lifetime at most [`MAX_LIFETIME`](crate::identity::assertion::MAX_LIFETIME) (zero: the
/// default), the backdate in whole seconds, at most
/// [`MAX_BACKDATE`](crate::identity::assertion::MAX_BACKDATE) and half the lifetime (the CRD
/// refuses more; an object stored under an older schema is clamped, not failed).
pub fn assertion_timing(
    policy: &crate::crd::ClientAssertionPolicy,
) -> (std::time::Duration, std::time::Duration) {
    use crate::identity::assertion::{DEFAULT_LIFETIME, MAX_BACKDATE, MAX_LIFETIME};
    let lifetime = policy.lifetime.std().min(MAX_LIFETIME);
    let lifetime = if lifetime.is_zero() {
        DEFAULT_LIFETIME
    } else {
        lifetime
    };
    let backdate = std::time::Duration::from_secs(
        policy
            .backdate
            .as_secs()
            .min(MAX_BACKDATE.as_secs())
            .min(lifetime.as_secs() / 2),
    );
    (lifetime, backdate)
}

/// Mint one token named `name` (its spec's scope and resource) over mTLS with `identity`,
/// authenticated by `authn`; counted in the call and refresh metrics.
async fn mint(
    s: &Session<'_>,
    identity: Option<&ClientIdentity>,
    authn: &ClientAuthn,
    name: &str,
) -> Result<(AccessToken, String), OauthError> {
    let spec = s.client.spec.tokens.iter().find(|t| t.name == name);
    let scope = spec.map(|t| t.scope.clone()).unwrap_or_default();
    let resource = spec.and_then(|t| t.audience.clone());
    let started = std::time::Instant::now();
    let result = s
        .effects
        .token(s.target(identity), authn, &scope, resource.as_deref())
        .await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) if e.is_transient() => "transient",
        Err(_) => "permanent",
    };
    s.ctx.metrics.observe_call(
        &s.client.spec.authorization_server_ref.name,
        "token",
        outcome,
        started.elapsed().as_secs_f64(),
    );
    s.ctx
        .metrics
        .token_refreshes
        .get_or_create(&crate::metrics::OutcomeLabels {
            outcome: outcome.into(),
        })
        .inc();
    result.map(|t| (t, scope))
}

/// The self-test of signing key `kid` before it becomes active: one token minted with an
/// assertion it signs, over the certificate the tokens are bound to now. `Some(refusal)` when
/// the AS refused it; a transient failure is an error (the usual backoff). The token is
/// discarded: the key's switch does not fall on the tokens' refresh points, and keeping the
/// credentials Secret's tokens the token planner's alone keeps one write order (one extra
/// token per key rotation).
async fn self_test_key(s: &mut Session<'_>, kid: &str) -> Result<Option<Error>, Error> {
    let client_id = s.client_id().ok_or_else(|| Error::InvalidSpec {
        reason: Reason::Pending,
        message: "no client id yet".into(),
    })?;
    let stored = s.keys.key(kid).ok_or_else(|| Error::CorruptState {
        what: "the planner's key records".into(),
        message: format!("key {kid} to activate has no material"),
    })?;
    let key = PrivateKey::from_private_jwk_json(stored.private_jwk.expose()).map_err(|source| {
        Error::Identity {
            stage: Stage::ReadActiveKey,
            source,
        }
    })?;
    let previous = token_certificate_is_previous(s);
    let transport = s.token_transport(previous).await?;
    let identity = transport.identity()?;
    // A refusal is the answer the self-test asks for, not a propagation delay to retry within.
    let mut authn = client_authn_with(s, &client_id, Some(key))?;
    authn.within_jwks_propagation = false;
    let Some(first) = s.client.spec.tokens.first() else {
        return Ok(None);
    };
    match mint(s, identity.as_ref(), &authn, &first.name).await {
        Ok(_) => Ok(None),
        Err(e) if e.is_transient() => Err(Error::FetchToken(e)),
        Err(e) => Ok(Some(Error::FetchToken(e))),
    }
}

/// Whether the tokens in the credentials Secret are bound to a certificate other than the
/// current one (the planner's [`rotation::credentials_certificate`]).
fn token_certificate_is_previous(s: &Session<'_>) -> bool {
    let seen = s.observed();
    let wanted = rotation::credentials_certificate(&seen);
    wanted.is_some() && wanted != seen.certificate.as_ref().map(|c| c.x5t_s256.as_str())
}

/// Mint `names` with the certificate the planner names and write certificate, key and tokens
/// in ONE apply. When the certificate changed, tokens bound to the old one are dropped from the
/// Secret only together with the old certificate (the planner refreshes all of them then); a
/// switch the AS refuses ([`TokenCertificate::Switch`]) is recorded, not failed, and the
/// credentials Secret stays as it is.
pub async fn refresh_tokens(
    s: &mut Session<'_>,
    policy: &rotation::Policy,
    action: &Action,
    due: &[TokenDue],
    certificate: TokenCertificate,
) -> Result<(), Error> {
    let names: Vec<&String> = due.iter().map(|t| &t.name).collect();
    // The key signing the assertion and the certificate the tokens are bound to are persisted
    // before the AS sees them. A client the operator does not register (Static, HubOnboarding)
    // gets the finalizer here, before a token exists to revoke at its deletion.
    s.persist_keys().await?;
    if super::cleanup::at_deletion(
        s.client.spec.registration.mode,
        s.client.spec.registration.deletion_policy,
    ) == super::cleanup::AtDeletion::RevokeTokens
    {
        ensure_finalizer(s).await?;
    }
    let client_id = s.client_id().ok_or_else(|| Error::InvalidSpec {
        reason: Reason::Pending,
        message: "no client id yet".into(),
    })?;
    let transport = s
        .token_transport(certificate == TokenCertificate::Previous)
        .await?;
    let identity = transport.identity()?;
    let mut authn = client_authn(s, &client_id)?;
    if certificate == TokenCertificate::Switch {
        // The switch is the certificate's self-test: a refusal is recorded, not retried within
        // the JWKS propagation window.
        authn.within_jwks_propagation = false;
    }
    let mut tokens = s.credentials.tokens.clone();
    // The tokens this refresh replaces, for the revocation the planner asked for.
    let held = s.credentials.tokens.clone();
    let mut minted = Vec::new();
    for name in names {
        let result = mint(s, identity.as_ref(), &authn, name).await;
        let (t, scope) = match result {
            Err(e) if certificate == TokenCertificate::Switch && !e.is_transient() => {
                let held = s.credentials.cert_x5t.clone().unwrap_or_default();
                s.apply(policy, action, Outcome::SelfTestRefused)?;
                s.events.push((
                    Reason::SelfTestRefused,
                    format!(
                        "the AS refused a token minted with the new transport certificate x5t#S256 {} ({}); the credentials keep certificate {held} and its tokens, refreshed with it, and the switch is tried again after a backoff",
                        transport.record.x5t_s256,
                        e.reason()
                    ),
                ));
                return Ok(());
            }
            other => other.map_err(Error::FetchToken)?,
        };
        let record = TokenRecord {
            name: name.clone(),
            issued_at: t.received_at,
            expires_at: t.expires_at,
            cert_x5t_s256: transport.record.x5t_s256.clone(),
        };
        minted.push(record.clone());
        tokens.insert(
            name.clone(),
            StoredToken {
                record,
                access_token: Sensitive::new(t.access_token.expose_secret().to_owned()),
                scope: t.scope.unwrap_or(scope),
            },
        );
    }
    // Which tokens stay (configured ones, bound to this certificate) is the transition's to say.
    let next = s.apply(policy, action, Outcome::TokensMinted(minted))?;
    tokens.retain(|n, t| {
        next.tokens
            .iter()
            .any(|r| &r.name == n && r.cert_x5t_s256 == t.record.cert_x5t_s256)
    });
    s.credentials.tokens = tokens;
    s.credentials.cert_pem = Some(transport.cert_pem.clone());
    s.credentials.key_pem = Some(transport.key_pem.clone());
    s.credentials.cert_x5t = Some(transport.record.x5t_s256.clone());
    s.save_credentials().await?;
    // Only now that the Secret holds the new tokens: revoke what they replaced, never a token
    // the Secret still holds.
    let replaced: Vec<(String, SecretString)> = due
        .iter()
        .filter(|t| t.revoke_replaced)
        .filter_map(|t| held.get(&t.name).map(|old| (t.name.clone(), old)))
        .filter(|(_, old)| {
            !s.credentials
                .tokens
                .values()
                .any(|now| now.access_token == old.access_token)
        })
        .map(|(name, old)| (name, SecretString::from(old.access_token.expose().clone())))
        .collect();
    if !replaced.is_empty() {
        let failures = register::revoke_replaced(s, identity.as_ref(), &authn, &replaced).await;
        s.events.extend(failures);
    }
    Ok(())
}
