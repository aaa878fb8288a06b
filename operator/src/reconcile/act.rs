//! Carrying out the planner's actions, one at a time, each ending in the write that makes it
//! durable (keys before any AS call uses them; the registration answer before anything else;
//! certificate and the tokens bound to it in one apply). Kubernetes, network and CPU I/O.

use std::{collections::BTreeSet, sync::Arc};

use secrecy::ExposeSecret;

use super::{register, session::Session};
use crate::{
    crd::{AuthMethod, condition::reasons},
    error::Error,
    identity::{
        PrivateKey,
        cert::{CertificateProfile, SubjectAltName, self_signed},
    },
    oauth::{ClientAuth, ClientAuthn, SignerMinter, token},
    redact::Sensitive,
    rotation::{Action, CertRecord, KeyRecord, KeyState, KeyUse, Publication, TokenRecord},
    store::state::{StoredCertificate, StoredKey, StoredToken},
};

/// Execute one action (`RefreshToken` actions come batched: see [`refresh_tokens`]).
pub async fn execute(
    s: &mut Session<'_>,
    action: &Action,
    publication: Publication,
) -> Result<(), Error> {
    let now = s.ctx.clock.now();
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
                    step: "generating a key",
                    source,
                })?;
            let jwk = key
                .to_private_jwk_json()
                .map_err(|source| Error::Identity {
                    step: "exporting a key",
                    source,
                })?;
            s.keys.keys.push(StoredKey {
                record: KeyRecord {
                    kid: key.kid().to_owned(),
                    use_: *use_,
                    state: KeyState::Pending,
                    created_at: now,
                    published_at: None,
                    activated_at: None,
                    retiring_at: None,
                },
                alg: match use_ {
                    KeyUse::Enc => "RSA-OAEP-256".into(),
                    KeyUse::Sig => key.algorithm().jws_alg().into(),
                },
                private_jwk: Sensitive::new(jwk.expose_secret().to_owned()),
            });
            // Persisted before any AS call can use it (see `Session::keys_changed`).
            s.keys_changed();
            Ok(())
        }
        Action::PublishKeys { kids, .. } => {
            let kids: BTreeSet<String> = kids.iter().cloned().collect();
            publish(s, &kids, publication).await?;
            for k in s
                .keys
                .keys
                .iter_mut()
                .filter(|k| kids.contains(&k.record.kid) && k.record.state == KeyState::Pending)
            {
                k.record.state = KeyState::Published;
                k.record.published_at = Some(now);
            }
            s.keys_changed();
            Ok(())
        }
        Action::AwaitApproval { .. } => Ok(()),
        Action::ActivateKey { kid, retire, .. } => {
            for k in s.keys.keys.iter_mut() {
                if &k.record.kid == kid {
                    k.record.state = KeyState::Active;
                    k.record.activated_at = Some(now);
                } else if retire.contains(&k.record.kid) {
                    k.record.state = KeyState::Retiring;
                    k.record.retiring_at = Some(now);
                }
            }
            s.keys_changed();
            if !retire.is_empty() {
                s.events.push((
                    reasons::KEY_ROTATED,
                    format!(
                        "signing key {kid} is active; retiring {}",
                        retire.join(", ")
                    ),
                ));
            }
            // Workloads mount the active signing key beside the certificate.
            s.save_credentials().await
        }
        Action::RetireKey { kid, .. } => {
            if let Some(k) = s.keys.key_mut(kid) {
                k.record.state = KeyState::Retiring;
                k.record.retiring_at = Some(now);
            }
            s.keys_changed();
            Ok(())
        }
        Action::RemoveKey { kid, .. } => {
            let mut remaining = s.visible_kids();
            remaining.remove(kid);
            publish(s, &remaining, publication).await?;
            s.keys.keys.retain(|k| &k.record.kid != kid);
            s.keys_changed();
            Ok(())
        }
        Action::RenewCertificate { .. } => renew_certificate(s).await,
        Action::RefreshToken { name, .. } => refresh_tokens(s, std::slice::from_ref(name)).await,
        Action::AcknowledgeTrigger { trigger, value } => {
            s.keys
                .handled
                .insert(trigger.as_str().to_owned(), value.clone());
            s.keys_changed();
            Ok(())
        }
    }
}

/// Make `kids` the set the AS sees: the served JWKS ConfigMap always; RFC 7592 PUT when the
/// registration carries the keys inline.
async fn publish(
    s: &mut Session<'_>,
    kids: &BTreeSet<String>,
    publication: Publication,
) -> Result<(), Error> {
    let set = s.jwks_of(kids)?;
    s.save_jwks(&set).await?;
    if publication == Publication::Immediate && s.registered() {
        register::update_registration(s, Some(&set)).await?;
    }
    Ok(())
}

async fn renew_certificate(s: &mut Session<'_>) -> Result<(), Error> {
    let now = s.ctx.clock.now();
    let spec = &s.client.spec.transport_certificate;
    let subject = super::policy::certificate_subject(s.client, &s.namespace, &s.name);
    let mut profile = CertificateProfile::new(&subject, spec.duration.std()).map_err(|source| {
        Error::Identity {
            step: "reading transportCertificate.subject",
            source,
        }
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
            step: "issuing the transport certificate",
            source,
        })?;
    let previous = s
        .keys
        .certificate
        .as_ref()
        .map(|c| c.record.x5t_s256.clone());
    s.keys.certificate = Some(StoredCertificate {
        cert_pem: issued.pem,
        key_pem: Sensitive::new(key.to_pkcs8_pem().expose_secret().to_owned()),
        record: CertRecord {
            not_before: issued.info.not_before,
            not_after: issued.info.not_after,
            x5t_s256: issued.info.x5t_s256.clone(),
        },
        subject: issued.info.subject,
    });
    // The new certificate waits in <name>-keys; workloads get it together with tokens bound
    // to it (the planner refreshes every token next).
    s.keys_changed();
    match previous {
        Some(old) => s.events.push((
            reasons::CERTIFICATE_ROTATED,
            format!(
                "transport certificate renewed: x5t#S256 {old} -> {}",
                issued.info.x5t_s256
            ),
        )),
        None => s.events.push((
            reasons::CERTIFICATE_ISSUED,
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
            let key = s
                .active_key(KeyUse::Sig)?
                .ok_or_else(|| Error::InvalidSpec {
                    reason: reasons::PENDING,
                    message: "no active signing key yet".into(),
                })?;
            let signer = key.signer().map_err(|source| Error::Identity {
                step: "loading the signing key",
                source,
            })?;
            let lifetime = s
                .server
                .spec
                .client_assertion
                .lifetime
                .std()
                .min(crate::identity::assertion::MAX_LIFETIME);
            let lifetime = if lifetime.is_zero() {
                crate::identity::assertion::DEFAULT_LIFETIME
            } else {
                lifetime
            };
            let minter = SignerMinter::new(signer, client_id)
                .with_lifetime(lifetime)
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

/// Mint `names` with the certificate in force and write certificate, key and tokens in ONE
/// apply. When the certificate changed, tokens bound to the old one are dropped from the Secret
/// only together with the old certificate (the planner refreshes all of them then).
pub async fn refresh_tokens(s: &mut Session<'_>, names: &[String]) -> Result<(), Error> {
    // The key signing the assertion and the certificate the tokens are bound to are persisted
    // before the AS sees them.
    s.persist_keys().await?;
    let client_id = s.client_id().ok_or_else(|| Error::InvalidSpec {
        reason: reasons::PENDING,
        message: "no client id yet".into(),
    })?;
    let transport = s.transport().ok_or_else(|| Error::InvalidSpec {
        reason: reasons::PENDING,
        message: "no transport certificate yet".into(),
    })?;
    let identity = s.identity()?;
    let http = s
        .server
        .http(s.ctx, identity.as_ref())
        .map_err(Error::FetchToken)?;
    let authn = client_authn(s, &client_id)?;
    let mut tokens =
        if s.credentials.cert_x5t.as_deref() == Some(transport.record.x5t_s256.as_str()) {
            s.credentials.tokens.clone()
        } else {
            Default::default()
        };
    for name in names {
        let scope = s
            .client
            .spec
            .tokens
            .iter()
            .find(|t| &t.name == name)
            .map(|t| t.scope.clone())
            .unwrap_or_default();
        let started = std::time::Instant::now();
        let result = token::client_credentials(&http, &s.server.meta, &authn, &scope).await;
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
        let t = result.map_err(Error::FetchToken)?;
        tokens.insert(
            name.clone(),
            StoredToken {
                record: TokenRecord {
                    name: name.clone(),
                    issued_at: t.received_at,
                    expires_at: t.expires_at,
                    cert_x5t_s256: transport.record.x5t_s256.clone(),
                },
                access_token: Sensitive::new(t.access_token.expose_secret().to_owned()),
                scope: t.scope.unwrap_or(scope),
            },
        );
    }
    // Only configured tokens stay.
    tokens.retain(|n, _| s.client.spec.tokens.iter().any(|t| &t.name == n));
    s.credentials.tokens = tokens;
    s.credentials.cert_pem = Some(transport.cert_pem.clone());
    s.credentials.cert_x5t = Some(transport.record.x5t_s256.clone());
    s.save_credentials().await?;
    Ok(())
}
