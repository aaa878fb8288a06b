//! The state transitions: what carrying out one action does to the observed state. The
//! reconciler applies each action's outcome to its records with [`apply`] (and keeps the
//! private material beside them); the simulator in `tests/simulation` applies the same
//! function, so the planner is tested against the transitions the operator really makes.
//!
//! Contract: pure; `now` is the instant the action was carried out. An outcome that does not
//! fit the action, or an action naming a kid the state does not hold, is an [`ApplyError`]
//! (a planner or reconciler bug, never a user error).

use jiff::Timestamp;

use super::action::{Action, TokenCertificate, TokenDue};
use super::model::{
    CertRecord, KeyRecord, KeyState, Observed, Policy, RegistrationKind, SelfTestRefusal,
    TokenRecord,
};
use super::self_test;

/// What carrying out an action produced that the plan could not know in advance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done; nothing new to record beyond the action itself.
    Done,
    /// [`Action::GenerateKey`]: the new key's id.
    KeyGenerated {
        /// The new kid.
        kid: String,
    },
    /// [`Action::RenewCertificate`]: the new certificate.
    CertificateIssued(CertRecord),
    /// [`Action::RefreshTokens`]: the minted tokens.
    TokensMinted(Vec<TokenRecord>),
    /// [`Action::PublishKeys`] or [`Action::RemoveKey`] with inline publication: the AS
    /// refused the registration access token on evidence (the call and a GET with the stored
    /// token, after backoff). Nothing changed at the AS: the keys are not published (or
    /// removed) there; the client id and its tokens stay, and what follows is the policy's
    /// ([`super::OnLost`]).
    RegistrationLost,
    /// [`Action::ActivateKey`] with a self-test, or [`Action::RefreshTokens`] switching to a
    /// new certificate: the AS refused the token minted with the new material. Nothing
    /// switches; the refusal is recorded and the next self-test waits for its backoff.
    SelfTestRefused,
}

/// Why an outcome could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The action names a key the state does not hold.
    #[error("the action names key {0}, which the state does not hold")]
    UnknownKid(String),
    /// The outcome does not belong to the action.
    #[error("outcome {outcome} does not fit action {action}")]
    Mismatch {
        /// The action's variant.
        action: &'static str,
        /// The outcome's variant.
        outcome: &'static str,
    },
}

/// The state after `action` was carried out at `now` with `outcome`.
pub fn apply(
    policy: &Policy,
    seen: &Observed,
    action: &Action,
    outcome: Outcome,
    now: Timestamp,
) -> Result<Observed, ApplyError> {
    let mut next = seen.clone();
    match (action, outcome) {
        (Action::GenerateKey { use_, .. }, Outcome::KeyGenerated { kid }) => {
            next.keys.push(KeyRecord {
                kid,
                use_: *use_,
                state: KeyState::Pending,
                created_at: now,
                published_at: None,
                activated_at: None,
                retiring_at: None,
            });
        }
        (Action::PublishKeys { .. } | Action::RemoveKey { .. }, Outcome::RegistrationLost) => {
            next.registration_access_token_lost = true;
        }
        (Action::PublishKeys { kids, .. }, Outcome::Done) => {
            for kid in kids {
                let key = key_mut(&mut next, kid)?;
                // A Published record without its instant is published again, not trusted.
                if key.state == KeyState::Pending || key.published_at.is_none() {
                    key.published_at = Some(now);
                }
                if key.state == KeyState::Pending {
                    key.state = KeyState::Published;
                }
            }
        }
        (Action::AwaitApproval { .. } | Action::HaltRegistration { .. }, Outcome::Done) => {}
        (
            Action::ActivateKey {
                kid,
                self_test: true,
                ..
            },
            Outcome::SelfTestRefused,
        ) => {
            key_mut(&mut next, kid)?;
            refused(&mut next, kid, now);
        }
        (
            Action::RefreshTokens {
                certificate: TokenCertificate::Switch,
                ..
            },
            Outcome::SelfTestRefused,
        ) => {
            if let Some(cert) = seen.certificate.as_ref() {
                refused(&mut next, &cert.x5t_s256.clone(), now);
            }
        }
        (Action::ActivateKey { kid, retire, .. }, Outcome::Done) => {
            for old in retire {
                key_mut(&mut next, old)?;
            }
            let key = key_mut(&mut next, kid)?;
            key.state = KeyState::Active;
            key.activated_at = Some(now);
            key.published_at.get_or_insert(now);
            for old in retire {
                let old = key_mut(&mut next, old)?;
                old.state = KeyState::Retiring;
                old.retiring_at = Some(now);
            }
        }
        (Action::RetireKey { kid, .. }, Outcome::Done) => {
            let key = key_mut(&mut next, kid)?;
            key.state = KeyState::Retiring;
            key.retiring_at = Some(now);
        }
        (Action::RemoveKey { kid, .. }, Outcome::Done) => {
            key_mut(&mut next, kid)?;
            next.keys.retain(|k| &k.kid != kid);
        }
        (Action::Register { .. }, Outcome::Done) => {
            if seen.registration_access_token_lost || seen.registration_forgotten {
                // A new client: the tokens of the old one go with it.
                next.tokens.clear();
            }
            next.registered = true;
            next.registration_unanswered = false;
            next.registration_unknown_attempts = 0;
            next.registration_retry_requested = false;
            next.registration_access_token_lost = false;
            next.registration_forgotten = false;
            if policy.registration == RegistrationKind::Onboarded {
                next.onboarded_x5t_s256 = next.certificate.as_ref().map(|c| c.x5t_s256.clone());
            }
        }
        (Action::RenewCertificate { .. }, Outcome::CertificateIssued(cert)) => {
            next.certificate = Some(cert);
        }
        (Action::RefreshTokens { tokens, .. }, Outcome::TokensMinted(minted)) => {
            next.tokens = refreshed(policy, seen, tokens, minted);
        }
        (Action::AcknowledgeTrigger { trigger, value }, Outcome::Done) => {
            let acted = next.triggers.get_mut(*trigger);
            acted.handled = Some(value.clone());
            acted.handled_at = Some(now);
        }
        (action, outcome) => {
            return Err(ApplyError::Mismatch {
                action: action_name(action),
                outcome: outcome_name(&outcome),
            });
        }
    }
    self_test::prune(&mut next);
    Ok(next)
}

/// Record one more refused self-test of `material` at `now`.
fn refused(next: &mut Observed, material: &str, now: Timestamp) {
    let attempts = next
        .self_test_refusals
        .get(material)
        .map_or(0, |r| r.attempts)
        .saturating_add(1);
    next.self_test_refusals
        .insert(material.to_owned(), SelfTestRefusal { at: now, attempts });
}

/// The tokens after a refresh: the minted ones, plus the earlier ones still bound to the
/// certificate the new ones are bound to (tokens of an old certificate leave together with it),
/// of configured names only.
fn refreshed(
    policy: &Policy,
    seen: &Observed,
    due: &[TokenDue],
    minted: Vec<TokenRecord>,
) -> Vec<TokenRecord> {
    let bound_to: Option<&str> = minted
        .first()
        .map(|t| t.cert_x5t_s256.as_str())
        .or(seen.certificate.as_ref().map(|c| c.x5t_s256.as_str()));
    let mut tokens: Vec<TokenRecord> = seen
        .tokens
        .iter()
        .filter(|t| Some(t.cert_x5t_s256.as_str()) == bound_to)
        .filter(|t| !due.iter().any(|d| d.name == t.name))
        .filter(|t| !minted.iter().any(|m| m.name == t.name))
        .cloned()
        .collect();
    tokens.extend(minted);
    tokens.retain(|t| policy.tokens.iter().any(|p| p.name == t.name));
    tokens.sort_by(|a, b| a.name.cmp(&b.name));
    tokens
}

fn key_mut<'a>(seen: &'a mut Observed, kid: &str) -> Result<&'a mut KeyRecord, ApplyError> {
    seen.keys
        .iter_mut()
        .find(|k| k.kid == kid)
        .ok_or_else(|| ApplyError::UnknownKid(kid.to_owned()))
}

fn action_name(action: &Action) -> &'static str {
    match action {
        Action::GenerateKey { .. } => "GenerateKey",
        Action::PublishKeys { .. } => "PublishKeys",
        Action::AwaitApproval { .. } => "AwaitApproval",
        Action::HaltRegistration { .. } => "HaltRegistration",
        Action::ActivateKey { .. } => "ActivateKey",
        Action::RetireKey { .. } => "RetireKey",
        Action::RemoveKey { .. } => "RemoveKey",
        Action::Register { .. } => "Register",
        Action::RenewCertificate { .. } => "RenewCertificate",
        Action::RefreshTokens { .. } => "RefreshTokens",
        Action::AcknowledgeTrigger { .. } => "AcknowledgeTrigger",
    }
}

fn outcome_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Done => "Done",
        Outcome::KeyGenerated { .. } => "KeyGenerated",
        Outcome::CertificateIssued(_) => "CertificateIssued",
        Outcome::TokensMinted(_) => "TokensMinted",
        Outcome::RegistrationLost => "RegistrationLost",
        Outcome::SelfTestRefused => "SelfTestRefused",
    }
}
