//! Configuration of the sandbox authorization server: plain data, no I/O.
//!
//! Clock-skew decision (docs/protocol.md §4.1 leaves 10..60 s open): an `iat`/`nbf` up to 10 s
//! ahead is always accepted and one 60 s or more ahead is always rejected; in between,
//! [`AudPolicy::Strict`] rejects and [`AudPolicy::Lenient`] accepts.

use std::{path::PathBuf, time::Duration};

use secrecy::SecretString;

/// How strictly the client-assertion `aud` (and the clock gap) is checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AudPolicy {
    /// Only the exact issuer string (no array), as oidc-provider under FAPI 2.0.
    Strict,
    /// Issuer, token URL or PAR URL (string or array containing one), docs/protocol.md Q2.
    #[default]
    Lenient,
}

/// Everything [`super::start`] needs.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// TCP port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Directory for `ca.pem` (created when missing).
    pub state_dir: PathBuf,
    /// `expires_in` of issued access tokens.
    pub token_lifetime: Duration,
    /// Issue a new registration access token on every RFC 7592 GET/PUT (old one dies at once).
    pub rotate_rat: bool,
    /// How long a fetched `jwks_uri` document is used before it is fetched again.
    pub jwks_cache_ttl: Duration,
    /// Assertion `aud` policy.
    pub aud_policy: AudPolicy,
    /// Longest accepted `exp - iat` of a client assertion; `None` = 300 s strict, 600 s lenient.
    pub max_assertion_lifetime: Option<Duration>,
    /// Bearer token required at the registration endpoint for RFC 7591 registration.
    pub initial_access_token: Option<SecretString>,
    /// PEM CA bundle that `tls_client_auth` certificates must chain to.
    pub client_ca_pem: Option<String>,
    /// Directory JWKS (JSON) verifying software statements of signed registrations.
    pub directory_jwks: Option<serde_json::Value>,
    /// Extra PEM roots trusted when fetching an `https` `jwks_uri` (the sandbox CA and the
    /// client CA are always trusted).
    pub jwks_uri_ca_pem: Option<String>,
    /// RFC 7396 JSON merge patch applied to the served discovery document (after the host
    /// rewrite), e.g. `{"pushed_authorization_request_endpoint": null}`.
    pub discovery_patch: Option<serde_json::Value>,
    /// Signed registrations as a strict OBIE-style AS checks them: `iss` required (the
    /// statement's `software_id` when it has one), and the client's keys are the software
    /// statement's: a `jwks` in the request must hold exactly the `software_jwks` keys, a
    /// `jwks_uri` is refused. Off: `iss` is checked only when present, any `jwks`/`jwks_uri`.
    pub strict_signed_registration: bool,
    /// Hub onboarding bound to the presented certificate: a client provisioned out of band
    /// with `"hub_onboarding": true` gets tokens only over a certificate that was onboarded
    /// (`POST /tpp-registration {}` over mTLS with it). Off: any certificate.
    pub bind_onboarding: bool,
}

impl SandboxConfig {
    /// Defaults from the task: free port, 600 s tokens, RAT rotation, 15 min JWKS cache,
    /// lenient `aud`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            port: 0,
            state_dir: state_dir.into(),
            token_lifetime: Duration::from_secs(600),
            rotate_rat: true,
            jwks_cache_ttl: Duration::from_secs(15 * 60),
            aud_policy: AudPolicy::Lenient,
            max_assertion_lifetime: None,
            initial_access_token: None,
            client_ca_pem: None,
            directory_jwks: None,
            jwks_uri_ca_pem: None,
            discovery_patch: None,
            strict_signed_registration: false,
            bind_onboarding: false,
        }
    }

    /// The assertion lifetime bound in force.
    pub fn effective_max_assertion_lifetime(&self) -> Duration {
        self.max_assertion_lifetime
            .unwrap_or(match self.aud_policy {
                AudPolicy::Strict => Duration::from_secs(300),
                AudPolicy::Lenient => Duration::from_secs(600),
            })
    }

    /// How far ahead an `iat`/`nbf` may be (exclusive upper bound, seconds).
    pub fn max_clock_ahead_secs(&self) -> f64 {
        match self.aud_policy {
            AudPolicy::Strict => 10.0,
            AudPolicy::Lenient => 60.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assertion_lifetime_defaults_follow_the_policy() {
        let mut cfg = SandboxConfig::new("/tmp/x");
        assert_eq!(
            cfg.effective_max_assertion_lifetime(),
            Duration::from_secs(600)
        );
        cfg.aud_policy = AudPolicy::Strict;
        assert_eq!(
            cfg.effective_max_assertion_lifetime(),
            Duration::from_secs(300)
        );
        cfg.max_assertion_lifetime = Some(Duration::from_secs(42));
        assert_eq!(
            cfg.effective_max_assertion_lifetime(),
            Duration::from_secs(42)
        );
    }
}
