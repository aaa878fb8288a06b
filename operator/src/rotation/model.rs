//! The planner's input: the rotation policy (from the `TppClient` spec) and the observed state
//! (from the persisted Secrets and annotations).
//!
//! Contract: plain data, decoupled from the CRD; the reconciler maps its objects into these
//! types. The records (`KeyRecord`, `CertRecord`, `TokenRecord`, `Trigger`) serialize as
//! camelCase JSON so the reconciler can persist them. No I/O.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// How credentials of one client rotate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Signing keys (`use=sig`).
    pub signing: KeyPolicy,
    /// Encryption keys (`use=enc`); `None` means the client has none, and any left are retired.
    pub encryption: Option<KeyPolicy>,
    /// The mTLS transport certificate.
    pub certificate: CertPolicy,
    /// The access tokens to keep fresh, by name.
    pub tokens: Vec<TokenPolicy>,
    /// How the authorization server learns the client's JWKS.
    pub publication: Publication,
    /// Seed of the deterministic token-refresh jitter, e.g. a hash of namespace/name/uid.
    pub jitter_seed: u64,
    /// How the client becomes known to the AS.
    pub registration: RegistrationKind,
    /// [`RegistrationKind::Answered`]: how many registration requests of unknown outcome are
    /// retried before the planner stops (`spec.registration.maxUnknownAttempts`).
    pub max_unknown_attempts: u32,
    /// [`RegistrationKind::Answered`]: what a registration access token refused on evidence
    /// leads to (`spec.registration.onLost`).
    pub on_lost: OnLost,
}

/// What a registration access token refused on evidence leads to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum OnLost {
    /// Stop managing the registration; a permanent condition names the client at the AS.
    #[default]
    Fail,
    /// Register a new client; the old one is named in a Warning event.
    Register,
}

/// How the client becomes known to the AS (from `spec.registration.mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum RegistrationKind {
    /// The AS already knows the client (`Static`): never registered by the operator.
    #[default]
    Static,
    /// The operator registers the client and keeps the AS's answer (`Dynamic`,
    /// `SignedRequest`): registered once, again only when the registration is lost.
    Answered,
    /// The hub is told the current transport certificate (`HubOnboarding`): onboarded again
    /// after every certificate change.
    Onboarded,
}

/// Lifecycle timings of one kind of key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPolicy {
    /// Start a rotation once the active key is this old (from `createdAt`); `None` never
    /// rotates automatically.
    pub every: Option<SignedDuration>,
    /// How long a key must be published before it is used; at least the AS's JWKS cache TTL.
    pub propagation_delay: SignedDuration,
    /// How long a retired key stays published after it stopped being used.
    pub retire_after: SignedDuration,
}

/// Renewal of the transport certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertPolicy {
    /// Validity of a certificate we issue.
    pub duration: SignedDuration,
    /// Renew this long before `notAfter`; a value outside `(0, lifetime)` means a third of the
    /// certificate's lifetime, and it is at most half of it.
    pub renew_before: SignedDuration,
    /// `false` when the user supplies the certificate (a Secret reference): we never renew it,
    /// but tokens still follow its thumbprint.
    pub managed: bool,
}

/// Refresh of one named access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPolicy {
    /// Token name (the key prefix in the credentials Secret).
    pub name: String,
    /// Refresh this long before expiry; `None` (or a value outside `(0, lifetime)`) means a
    /// third of the token's lifetime, and it is at most half of it.
    pub refresh_before: Option<SignedDuration>,
    /// Revoke (RFC 7009) the token a refresh replaces, once the new one is in the credentials
    /// Secret (`spec.tokens[].revokeReplaced`).
    pub revoke_replaced: bool,
}

/// How the authorization server learns the client's JWKS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Publication {
    /// RFC 7592 PUT with an inline `jwks`: effective at once (an AS call), but the
    /// propagation delay is still honoured.
    Immediate,
    /// The AS fetches our served `jwks_uri` and caches it; publishing is a local write.
    JwksUri,
    /// A human uploads the JWKS; a kid may be activated only once it is approved.
    ApprovalGate,
}

/// What the reconciler observed, as of one reconcile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Whether the client is registered at the AS (Static: always; Answered: an answer is
    /// persisted; Onboarded: onboarded with some certificate). Before registration there is
    /// nothing to propagate: the first keys become active at once and registration carries them.
    pub registered: bool,
    /// [`RegistrationKind::Onboarded`]: the thumbprint of the certificate the hub last saw.
    pub onboarded_x5t_s256: Option<String>,
    /// A registration request went out and no answer was persisted (the process died in
    /// between): the AS may hold a client we cannot manage.
    pub registration_unanswered: bool,
    /// Registration requests sent since the last persisted answer whose outcome is unknown
    /// (counted when each intent is recorded, the current one included).
    pub registration_unknown_attempts: u32,
    /// A human asked for another attempt after the planner stopped (the
    /// `tpp.dev/retry-registration` annotation carries a value not acted on yet).
    pub registration_retry_requested: bool,
    /// The AS refused the registration access token on evidence (an RFC 7592 PUT and a GET
    /// with the stored token both refused, after backoff): the registration cannot be managed.
    pub registration_access_token_lost: bool,
    /// The registration access token in `<name>-registration` is not the one the operator
    /// received (its digest, written in the same apply, names another value): someone else
    /// wrote it. No RFC 7592 call may carry it, and nothing is registered in its place.
    pub registration_access_token_foreign: bool,
    /// The TppClient's status names a client id that no persisted answer holds any more:
    /// `<name>-registration` was deleted (or lost) after a registration. The client is still at
    /// the AS; registering again would leave it unmanaged (docs/reliability.md § Control-plane
    /// and AS faults).
    pub registration_forgotten: bool,
    /// Every key persisted in `<name>-keys`.
    pub keys: Vec<KeyRecord>,
    /// The current transport certificate, if any.
    pub certificate: Option<CertRecord>,
    /// The tokens in `<name>-credentials`.
    pub tokens: Vec<TokenRecord>,
    /// Kids a human approved (for [`Publication::ApprovalGate`]).
    pub approved_kids: BTreeSet<String>,
    /// Manual verb annotations.
    pub triggers: Triggers,
    /// Do not call the AS before this instant: the backoff after a failure, at least the
    /// AS's `Retry-After` (see [`super::retry_delay`]).
    pub backoff_until: Option<Timestamp>,
    /// Tokens need an active signing key (`private_key_jwt`): no token is planned before one
    /// is active (e.g. while a Static client's first key propagates to the AS).
    pub tokens_need_signing_key: bool,
    /// Self-tests the AS refused, by material: the kid of a signing key not yet active, or the
    /// `x5t#S256` of a certificate tokens are not yet bound to (see [`SelfTestRefusal`]).
    pub self_test_refusals: BTreeMap<String, SelfTestRefusal>,
}

/// A self-test the AS refused: before new material (a signing key, a transport certificate)
/// becomes what tokens are minted with, one token is minted with it; the AS refused the last
/// one. The switch waits, the old material stays in use, and the next self-test comes after
/// [`super::retry_delay`] of `attempts` (docs/reliability.md, "Self-test before a switch").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SelfTestRefusal {
    /// When the AS refused the last self-test.
    pub at: Timestamp,
    /// Self-tests of this material refused in a row.
    pub attempts: u32,
}

/// What a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyUse {
    /// Signing (`use=sig`): client assertions, request objects.
    Sig,
    /// Encryption (`use=enc`): encrypted responses.
    Enc,
}

/// Where a key is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum KeyState {
    /// Persisted, not yet visible to the AS.
    Pending,
    /// Visible to the AS, not yet used.
    Published,
    /// In use (still published).
    Active,
    /// No longer used, still published until `retireAfter` has elapsed.
    Retiring,
}

/// One persisted key (public metadata only: the private JWK lives beside it in the Secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRecord {
    /// Key id.
    pub kid: String,
    /// What the key is for.
    #[serde(rename = "use")]
    pub use_: KeyUse,
    /// Lifecycle state.
    pub state: KeyState,
    /// When the key was generated.
    pub created_at: Timestamp,
    /// When the key was first published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_at: Option<Timestamp>,
    /// When the key became active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<Timestamp>,
    /// When the key stopped being used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retiring_at: Option<Timestamp>,
}

/// The current transport certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertRecord {
    /// Start of validity.
    pub not_before: Timestamp,
    /// End of validity.
    pub not_after: Timestamp,
    /// `x5t#S256` thumbprint, base64url.
    pub x5t_s256: String,
}

/// One access token (metadata only: the token itself never enters the planner).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRecord {
    /// Token name, as in [`TokenPolicy::name`].
    pub name: String,
    /// When the token was issued.
    pub issued_at: Timestamp,
    /// When the token expires.
    pub expires_at: Timestamp,
    /// Thumbprint of the certificate the token is bound to (`cnf.x5t#S256`).
    pub cert_x5t_s256: String,
}

/// The manual verb annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Triggers {
    /// `rotate-keys`: start a key rotation (signing and encryption).
    #[serde(default)]
    pub rotate_keys: Trigger,
    /// `renew-certificate`: renew the managed transport certificate.
    #[serde(default)]
    pub renew_certificate: Trigger,
    /// `renew-tokens`: refresh every token.
    #[serde(default)]
    pub renew_tokens: Trigger,
}

/// One manual trigger: the value a user requested and the last value the operator handled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    /// The annotation's current value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested: Option<String>,
    /// The last value acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled: Option<String>,
    /// When the last value was acted on (for the floor, [`super::floors::MIN_TRIGGER_INTERVAL`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_at: Option<Timestamp>,
}

impl Trigger {
    /// The requested value, when it has not been handled yet.
    pub fn pending(&self) -> Option<&str> {
        match (&self.requested, &self.handled) {
            (Some(requested), handled) if handled.as_ref() != Some(requested) => {
                Some(requested.as_str())
            }
            _ => None,
        }
    }
}

impl Triggers {
    /// The trigger of `kind`, to change.
    pub fn get_mut(&mut self, kind: super::TriggerKind) -> &mut Trigger {
        match kind {
            super::TriggerKind::RotateKeys => &mut self.rotate_keys,
            super::TriggerKind::RenewCertificate => &mut self.renew_certificate,
            super::TriggerKind::RenewTokens => &mut self.renew_tokens,
        }
    }

    /// The trigger of `kind`.
    pub fn get(&self, kind: super::TriggerKind) -> &Trigger {
        match kind {
            super::TriggerKind::RotateKeys => &self.rotate_keys,
            super::TriggerKind::RenewCertificate => &self.renew_certificate,
            super::TriggerKind::RenewTokens => &self.renew_tokens,
        }
    }
}
