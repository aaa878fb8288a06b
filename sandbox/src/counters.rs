//! Request, handshake and rejection counters of the sandbox, and the serialisable snapshot the
//! admin endpoint and [`super::RunningSandbox::counters`] return. In memory; no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Seconds of per-second token history kept.
const HISTOGRAM_SECONDS: usize = 3600;

/// Which endpoint a request hit (by path).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `/.well-known/openid-configuration`
    Discovery,
    /// `/tpp-registration` and `/tpp-registration/{id}`
    Registration,
    /// `/token`
    Token,
    /// `/introspection`
    Introspection,
    /// `/token/revoke`
    Revocation,
    /// `/par`
    Par,
    /// `/userinfo`
    Userinfo,
    /// `/auth`
    Auth,
    /// `/jwks`
    Jwks,
    /// `/_sandbox/...`
    Admin,
    /// Anything else.
    Other,
}

impl Endpoint {
    /// Classifies a request path.
    pub fn classify(path: &str) -> Self {
        match path {
            "/.well-known/openid-configuration" => Self::Discovery,
            "/token" => Self::Token,
            "/introspection" => Self::Introspection,
            "/token/revoke" => Self::Revocation,
            "/par" => Self::Par,
            "/userinfo" => Self::Userinfo,
            "/auth" => Self::Auth,
            "/jwks" => Self::Jwks,
            p if p == "/tpp-registration" || p.starts_with("/tpp-registration/") => {
                Self::Registration
            }
            p if p.starts_with("/_sandbox/") => Self::Admin,
            _ => Self::Other,
        }
    }

    /// The snake_case name used in snapshots.
    pub fn name(self) -> &'static str {
        match self {
            Self::Discovery => "discovery",
            Self::Registration => "registration",
            Self::Token => "token",
            Self::Introspection => "introspection",
            Self::Revocation => "revocation",
            Self::Par => "par",
            Self::Userinfo => "userinfo",
            Self::Auth => "auth",
            Self::Jwks => "jwks",
            Self::Admin => "admin",
            Self::Other => "other",
        }
    }
}

/// TLS handshake counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handshakes {
    /// Full handshakes.
    pub full: u64,
    /// Resumed handshakes.
    pub resumed: u64,
    /// Handshakes that failed or timed out.
    pub failed: u64,
}

/// A point-in-time copy of all counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountersSnapshot {
    /// endpoint name → HTTP status (as a string, or `dropped`) → count.
    pub requests: BTreeMap<String, BTreeMap<String, u64>>,
    /// TLS handshakes.
    pub handshakes: Handshakes,
    /// Rejection reason (e.g. `jti_replay`, `unknown_kid`) → count.
    pub rejects: BTreeMap<String, u64>,
    /// Clients created through the registration endpoint (Dynamic and SignedRequest).
    pub registrations_created: u64,
    /// Hub onboardings (`{}` bodies) accepted.
    pub onboardings: u64,
    /// Unix second → requests to `/token` in that second (last hour).
    pub token_requests_per_second: BTreeMap<u64, u64>,
}

impl CountersSnapshot {
    /// Requests to `endpoint` answered with `status` (e.g. "200", "429", "dropped").
    pub fn requests_with(&self, endpoint: Endpoint, status: &str) -> u64 {
        self.requests
            .get(endpoint.name())
            .and_then(|m| m.get(status))
            .copied()
            .unwrap_or(0)
    }

    /// All requests to `endpoint`, whatever the outcome.
    pub fn requests_to(&self, endpoint: Endpoint) -> u64 {
        self.requests
            .get(endpoint.name())
            .map(|m| m.values().sum())
            .unwrap_or(0)
    }

    /// Rejections counted for `reason`.
    pub fn rejects_for(&self, reason: &str) -> u64 {
        self.rejects.get(reason).copied().unwrap_or(0)
    }

    /// Highest number of token requests seen in any one second.
    pub fn peak_token_requests_per_second(&self) -> u64 {
        self.token_requests_per_second
            .values()
            .copied()
            .max()
            .unwrap_or(0)
    }
}

/// The live counters (behind the state's mutex).
#[derive(Debug, Default)]
pub struct Counters {
    snapshot: CountersSnapshot,
}

impl Counters {
    /// Counts one answered (or dropped) request.
    pub fn request(&mut self, endpoint: Endpoint, status: &str, unix_second: u64) {
        *self
            .snapshot
            .requests
            .entry(endpoint.name().to_string())
            .or_default()
            .entry(status.to_string())
            .or_default() += 1;
        if endpoint == Endpoint::Token {
            let hist = &mut self.snapshot.token_requests_per_second;
            *hist.entry(unix_second).or_default() += 1;
            while hist.len() > HISTOGRAM_SECONDS {
                hist.pop_first();
            }
        }
    }

    /// Counts one rejection.
    pub fn reject(&mut self, reason: &str) {
        *self.snapshot.rejects.entry(reason.to_string()).or_default() += 1;
    }

    /// Counts a handshake.
    pub fn handshake(&mut self, resumed: bool) {
        if resumed {
            self.snapshot.handshakes.resumed += 1;
        } else {
            self.snapshot.handshakes.full += 1;
        }
    }

    /// Counts a failed handshake.
    pub fn handshake_failed(&mut self) {
        self.snapshot.handshakes.failed += 1;
    }

    /// Counts a created registration.
    pub fn registration_created(&mut self) {
        self.snapshot.registrations_created += 1;
    }

    /// Counts an accepted hub onboarding.
    pub fn onboarded(&mut self) {
        self.snapshot.onboardings += 1;
    }

    /// A copy of everything.
    pub fn snapshot(&self) -> CountersSnapshot {
        self.snapshot.clone()
    }

    /// Resets everything to zero.
    pub fn reset(&mut self) {
        self.snapshot = CountersSnapshot::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_histogram_counts_requests_per_second() {
        let mut c = Counters::default();
        c.request(Endpoint::Token, "200", 10);
        c.request(Endpoint::Token, "429", 10);
        c.request(Endpoint::Token, "200", 11);
        c.request(Endpoint::Discovery, "200", 11);
        let s = c.snapshot();
        assert_eq!(s.token_requests_per_second.get(&10), Some(&2));
        assert_eq!(s.peak_token_requests_per_second(), 2);
        assert_eq!(s.requests_to(Endpoint::Token), 3);
        assert_eq!(s.requests_with(Endpoint::Token, "429"), 1);
    }

    #[test]
    fn paths_are_classified_by_endpoint() {
        assert_eq!(
            Endpoint::classify("/tpp-registration/abc"),
            Endpoint::Registration
        );
        assert_eq!(Endpoint::classify("/token/revoke"), Endpoint::Revocation);
        assert_eq!(Endpoint::classify("/_sandbox/counters"), Endpoint::Admin);
        assert_eq!(Endpoint::classify("/nope"), Endpoint::Other);
    }
}
