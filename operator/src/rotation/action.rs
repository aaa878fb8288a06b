//! The planner's output: the actions to take now, in a safe order, and when to look again.
//!
//! Contract: plain data. [`Action::phase`] orders actions so that executing them one at a time
//! is always safe: persist (generate) before publish before activate before register before
//! remove. No I/O.

use std::fmt;

use jiff::Timestamp;

use super::model::KeyUse;

/// What the reconciler should do, in order, and when to plan again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Actions to take now, in execution order.
    pub actions: Vec<Action>,
    /// Actions that are due but held back because the AS may not be called before
    /// `Observed::backoff_until`; they come back once it has passed.
    pub withheld: Vec<Action>,
    /// When to plan again: `now` when the actions above change the state (plan again once they
    /// are done), otherwise the earliest future instant at which the plan would change. Never
    /// before `now`; `None` only when nothing will ever be due without an outside change.
    pub next_wakeup: Option<Timestamp>,
    /// Verb annotations with a value not acted on yet because the last value of the same verb
    /// was acted on less than [`super::floors::MIN_TRIGGER_INTERVAL`] ago, each with the
    /// instant it will be (a wake-up is planned for it).
    pub deferred: Vec<(TriggerKind, Timestamp)>,
}

impl Plan {
    /// Whether there is nothing to do now.
    pub fn is_idle(&self) -> bool {
        self.actions.is_empty()
    }
}

/// One step for the reconciler.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Generate a key and persist it as `Pending` in `<name>-keys` (local only).
    GenerateKey { use_: KeyUse, reason: Reason },
    /// Publish exactly these kids (every Pending, Published, Active and Retiring key, all uses)
    /// and mark the Pending ones `Published` at this instant. An AS call only with
    /// [`Publication::Immediate`](super::Publication::Immediate) once registered.
    PublishKeys { kids: Vec<String>, reason: Reason },
    /// The kid is published but a human has not approved it yet: surface that, do nothing else.
    AwaitApproval { kid: String },
    /// Registration cannot go on without a human (`reason`:
    /// [`Reason::RegistrationOutcomeUnknown`], [`Reason::RegistrationAccessTokenLost`],
    /// [`Reason::RegistrationSecretLost`] or [`Reason::RegistrationAccessTokenOverwritten`]):
    /// the reconciler reports it as a permanent failure, after the rest of the plan.
    HaltRegistration { reason: Reason },
    /// Start using `kid`; the keys in `retire` become `Retiring` in the same step. Local only,
    /// unless `self_test`: a token is minted first with an assertion signed by `kid` (an AS
    /// call), and a refusal keeps the current key active
    /// ([`Outcome::SelfTestRefused`](super::Outcome::SelfTestRefused)).
    ActivateKey {
        kid: String,
        retire: Vec<String>,
        reason: Reason,
        self_test: bool,
    },
    /// Stop using `kid` without a successor; it stays published until retired (local only).
    RetireKey { kid: String, reason: Reason },
    /// Unpublish `kid` (publish the remaining set) and delete it from `<name>-keys`.
    RemoveKey { kid: String, reason: Reason },
    /// Make the client known to the AS with the persisted keys and certificate: register it
    /// (`Answered`) or onboard the current certificate at the hub (`Onboarded`). Planned alone
    /// with what precedes it: everything after it is planned again once the answer is persisted.
    Register { reason: Reason },
    /// Issue a new transport key and certificate; tokens follow it in the next action.
    RenewCertificate { reason: Reason },
    /// Mint these tokens with `certificate`, all in one credentials write.
    RefreshTokens {
        tokens: Vec<TokenDue>,
        certificate: TokenCertificate,
    },
    /// Record `value` as the handled value of the trigger (after the actions it asked for).
    AcknowledgeTrigger { trigger: TriggerKind, value: String },
}

/// The certificate tokens are minted with (and bound to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TokenCertificate {
    /// The current certificate, which the tokens already are bound to (or there are none yet).
    Current,
    /// The current certificate, while the tokens are bound to an older one: the switch to it,
    /// and its self-test. The certificate enters the credentials Secret with these tokens; a
    /// refusal by the AS is recorded ([`Outcome::SelfTestRefused`](super::Outcome)) and the
    /// older certificate stays in use.
    Switch,
    /// The certificate the tokens are bound to now, older than the current one: the switch to
    /// the current one waits after a refused self-test, and tokens keep being refreshed with
    /// the certificate that works.
    Previous,
}

/// One token due for refresh, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenDue {
    /// Token name.
    pub name: String,
    /// The first check that fired.
    pub reason: Reason,
    /// Revoke the token this refresh replaces once the new one is in the credentials Secret:
    /// the token's policy asks for it and the replaced token has not expired yet (an expired
    /// token needs no revocation).
    pub revoke_replaced: bool,
}

impl Action {
    /// Execution order: persist, publish, activate, register, remove, then certificate and
    /// tokens, then acknowledgements (so a crash before one repeats the work rather than
    /// losing it).
    pub fn phase(&self) -> u8 {
        match self {
            Action::GenerateKey { .. } => 0,
            Action::PublishKeys { .. } => 1,
            Action::AwaitApproval { .. } => 2,
            Action::ActivateKey { .. } | Action::RetireKey { .. } => 3,
            Action::Register { .. } => 4,
            Action::RemoveKey { .. } => 5,
            Action::RenewCertificate { .. } => 6,
            Action::RefreshTokens { .. } => 7,
            Action::AcknowledgeTrigger { .. } => 8,
            Action::HaltRegistration { .. } => 9,
        }
    }

    /// Whether carrying out the action changes the observed state (and so calls for a re-plan).
    pub fn changes_state(&self) -> bool {
        !matches!(
            self,
            Action::AwaitApproval { .. } | Action::HaltRegistration { .. }
        )
    }

    /// The reason of the action, for conditions and events.
    pub fn reason(&self) -> Reason {
        match self {
            Action::GenerateKey { reason, .. }
            | Action::PublishKeys { reason, .. }
            | Action::ActivateKey { reason, .. }
            | Action::RetireKey { reason, .. }
            | Action::RemoveKey { reason, .. }
            | Action::Register { reason }
            | Action::HaltRegistration { reason }
            | Action::RenewCertificate { reason } => *reason,
            Action::RefreshTokens { tokens, .. } => tokens
                .first()
                .map_or(Reason::RefreshDue, |token| token.reason),
            Action::AwaitApproval { .. } => Reason::AwaitingApproval,
            Action::AcknowledgeTrigger { .. } => Reason::ManualTrigger,
        }
    }
}

/// A manual verb annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TriggerKind {
    /// Start a key rotation.
    RotateKeys,
    /// Renew the transport certificate.
    RenewCertificate,
    /// Refresh every token.
    RenewTokens,
}

impl TriggerKind {
    /// Every verb.
    pub const ALL: [TriggerKind; 3] = [
        TriggerKind::RotateKeys,
        TriggerKind::RenewCertificate,
        TriggerKind::RenewTokens,
    ];

    /// The verb, as used in the annotation name.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::RotateKeys => "rotate-keys",
            TriggerKind::RenewCertificate => "renew-certificate",
            TriggerKind::RenewTokens => "renew-tokens",
        }
    }
}

/// Why an action is planned; PascalCase for conditions and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// There is no usable key of this use.
    NoKey,
    /// The active key reached the rotation age.
    RotationDue,
    /// A manual trigger asked for it.
    ManualTrigger,
    /// A persisted key is not yet published.
    KeyUnpublished,
    /// The new key has been published for the propagation delay.
    PropagationElapsed,
    /// Not registered yet: registration carries the key, nothing to propagate.
    Bootstrap,
    /// The new key waits for a human's approval.
    AwaitingApproval,
    /// The retired key has stayed published long enough.
    RetireElapsed,
    /// Another new key of the same use is further along; this one is dropped.
    Superseded,
    /// More than one key of a use was active; only the newest stays active.
    DuplicateActive,
    /// The policy no longer asks for keys of this use.
    KeyUseDisabled,
    /// There is no transport certificate.
    CertificateMissing,
    /// The certificate's notAfter has passed.
    CertificateExpired,
    /// The certificate is inside its renew-before window.
    InsideRenewBefore,
    /// The token does not exist yet.
    TokenMissing,
    /// The token has expired.
    TokenExpired,
    /// The token reached its (jittered) refresh point.
    RefreshDue,
    /// The token is bound to a certificate other than the current (or the one being issued);
    /// or the hub was onboarded with another certificate than the current one.
    CertificateChanged,
    /// The client is not registered at the AS yet.
    NotRegistered,
    /// A registration request left no persisted answer: the client is registered again.
    RegistrationUnanswered,
    /// More registration requests of unknown outcome than `maxUnknownAttempts` allows: no
    /// further attempt until a human checked the AS and asked for one.
    RegistrationOutcomeUnknown,
    /// The AS refused the registration access token on evidence.
    RegistrationAccessTokenLost,
    /// `<name>-registration` is gone while the status names a registered client.
    RegistrationSecretLost,
    /// The registration access token in `<name>-registration` is not the one the operator
    /// received (it does not match the digest written with it).
    RegistrationAccessTokenOverwritten,
}

impl Reason {
    /// The PascalCase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoKey => "NoKey",
            Reason::RotationDue => "RotationDue",
            Reason::ManualTrigger => "ManualTrigger",
            Reason::KeyUnpublished => "KeyUnpublished",
            Reason::PropagationElapsed => "PropagationElapsed",
            Reason::Bootstrap => "Bootstrap",
            Reason::AwaitingApproval => "AwaitingApproval",
            Reason::RetireElapsed => "RetireElapsed",
            Reason::Superseded => "Superseded",
            Reason::DuplicateActive => "DuplicateActive",
            Reason::KeyUseDisabled => "KeyUseDisabled",
            Reason::CertificateMissing => "CertificateMissing",
            Reason::CertificateExpired => "CertificateExpired",
            Reason::InsideRenewBefore => "InsideRenewBefore",
            Reason::TokenMissing => "TokenMissing",
            Reason::TokenExpired => "TokenExpired",
            Reason::RefreshDue => "RefreshDue",
            Reason::CertificateChanged => "CertificateChanged",
            Reason::NotRegistered => "NotRegistered",
            Reason::RegistrationUnanswered => "RegistrationUnanswered",
            Reason::RegistrationOutcomeUnknown => "RegistrationOutcomeUnknown",
            Reason::RegistrationAccessTokenLost => "RegistrationAccessTokenLost",
            Reason::RegistrationSecretLost => "RegistrationSecretLost",
            Reason::RegistrationAccessTokenOverwritten => "RegistrationAccessTokenOverwritten",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
