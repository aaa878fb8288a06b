//! Injected faults: rules that make the next N requests to an endpoint fail with a status,
//! stall (before or after handling them), or lose their connection; and material the token
//! endpoint refuses (a certificate thumbprint or a signing key's kid), as an AS that has not
//! accepted a new certificate or fetched a new key yet would. In memory; no I/O.

use serde::{Deserialize, Serialize};

use super::counters::Endpoint;

/// Most rules kept at once.
const MAX_RULES: usize = 64;

/// Which endpoint a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultTarget {
    /// `/token`
    Token,
    /// `/tpp-registration` and below
    Registration,
    /// discovery
    Discovery,
    /// `/introspection`
    Introspection,
    /// every endpoint except the admin API
    Any,
}

impl FaultTarget {
    fn matches(self, endpoint: Endpoint) -> bool {
        match self {
            Self::Token => endpoint == Endpoint::Token,
            Self::Registration => endpoint == Endpoint::Registration,
            Self::Discovery => endpoint == Endpoint::Discovery,
            Self::Introspection => endpoint == Endpoint::Introspection,
            Self::Any => endpoint != Endpoint::Admin,
        }
    }
}

/// What the fault does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with this status (and `Retry-After` when given), JSON error body.
    Status {
        /// HTTP status code.
        code: u16,
        /// `Retry-After` seconds.
        #[serde(default)]
        retry_after_secs: Option<u64>,
    },
    /// Wait this long, then handle the request normally.
    Delay {
        /// Milliseconds.
        ms: u64,
    },
    /// Close the connection without an answer.
    Drop,
    /// Handle the request (a registration is created, a token issued, a RAT rotated), then
    /// close the connection without sending the answer: the client cannot tell it happened.
    DropAfterHandling,
    /// Handle the request (the AS did the work), then hold the answer this long and close the
    /// connection without it: an AS that answers after the client's timeout. Counted when
    /// handled, as `held_after_<status>`.
    HoldAfterHandling {
        /// Milliseconds.
        ms: u64,
    },
    /// Answer discovery with this `issuer` instead of the AS's own (an AS whose issuer changed,
    /// or a document the client must refuse). Other endpoints are served normally.
    Issuer {
        /// The `issuer` value served.
        issuer: String,
    },
}

/// One rule: `kind` for the next `count` requests to `endpoint`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// Target endpoint.
    pub endpoint: FaultTarget,
    /// Effect.
    pub kind: FaultKind,
    /// How many requests it applies to.
    pub count: u32,
}

/// The active rules, first match wins.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Vec<Fault>,
    /// Certificate thumbprints (`x5t#S256`) and kids the token endpoint refuses.
    refused: Vec<String>,
}

impl Faults {
    /// Adds a rule; false when the rule table is full.
    pub fn add(&mut self, fault: Fault) -> bool {
        if self.rules.len() >= MAX_RULES {
            return false;
        }
        if fault.count > 0 {
            self.rules.push(fault);
        }
        true
    }

    /// Removes all rules and refused material.
    pub fn clear(&mut self) {
        self.rules.clear();
        self.refused.clear();
    }

    /// From now on the token endpoint refuses (`invalid_client`) a request over the certificate
    /// of this `x5t#S256`, or with a client assertion whose `kid` is this; false when the table
    /// is full.
    pub fn refuse(&mut self, material: &str) -> bool {
        if self.refused.iter().any(|m| m == material) {
            return true;
        }
        if self.refused.len() >= MAX_RULES {
            return false;
        }
        self.refused.push(material.to_owned());
        true
    }

    /// Accepts `material` again.
    pub fn accept(&mut self, material: &str) {
        self.refused.retain(|m| m != material);
    }

    /// Whether `material` is refused.
    pub fn refuses(&self, material: &str) -> bool {
        self.refused.iter().any(|m| m == material)
    }

    /// Takes one use of the first rule matching `endpoint`.
    pub fn take(&mut self, endpoint: Endpoint) -> Option<FaultKind> {
        let index = self
            .rules
            .iter()
            .position(|r| r.endpoint.matches(endpoint))?;
        let rule = &mut self.rules[index];
        let kind = rule.kind.clone();
        rule.count -= 1;
        if rule.count == 0 {
            self.rules.remove(index);
        }
        Some(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_applies_count_times_then_expires() {
        let mut faults = Faults::default();
        let kind = FaultKind::Status {
            code: 429,
            retry_after_secs: Some(1),
        };
        assert!(faults.add(Fault {
            endpoint: FaultTarget::Token,
            kind: kind.clone(),
            count: 2
        }));
        assert_eq!(faults.take(Endpoint::Discovery), None);
        assert_eq!(faults.take(Endpoint::Token), Some(kind.clone()));
        assert_eq!(faults.take(Endpoint::Token), Some(kind));
        assert_eq!(faults.take(Endpoint::Token), None);
    }

    #[test]
    fn fault_wire_shape_is_externally_tagged() -> serde_json::Result<()> {
        let f: Fault = serde_json::from_str(
            r#"{"endpoint":"any","kind":{"status":{"code":503,"retry_after_secs":2}},"count":1}"#,
        )?;
        assert_eq!(
            f.kind,
            FaultKind::Status {
                code: 503,
                retry_after_secs: Some(2)
            }
        );
        let d: Fault = serde_json::from_str(r#"{"endpoint":"token","kind":"drop","count":1}"#)?;
        assert_eq!(d.kind, FaultKind::Drop);
        Ok(())
    }

    #[test]
    fn the_new_kinds_have_a_wire_shape() -> serde_json::Result<()> {
        let d: Fault = serde_json::from_str(
            r#"{"endpoint":"registration","kind":"drop_after_handling","count":1}"#,
        )?;
        assert_eq!(d.kind, FaultKind::DropAfterHandling);
        let h: Fault = serde_json::from_str(
            r#"{"endpoint":"token","kind":{"hold_after_handling":{"ms":5000}},"count":2}"#,
        )?;
        assert_eq!(h.kind, FaultKind::HoldAfterHandling { ms: 5000 });
        let i: Fault = serde_json::from_str(
            r#"{"endpoint":"discovery","kind":{"issuer":{"issuer":"https://x"}},"count":1}"#,
        )?;
        assert_eq!(
            i.kind,
            FaultKind::Issuer {
                issuer: "https://x".into()
            }
        );
        Ok(())
    }

    #[test]
    fn refused_material_stays_refused_until_accepted_or_cleared() {
        let mut faults = Faults::default();
        assert!(faults.refuse("x5t-new"));
        assert!(faults.refuse("kid-2"));
        assert!(faults.refuses("x5t-new") && faults.refuses("kid-2"));
        assert!(!faults.refuses("x5t-old"));
        faults.accept("x5t-new");
        assert!(!faults.refuses("x5t-new"));
        faults.clear();
        assert!(!faults.refuses("kid-2"));
    }

    #[test]
    fn admin_requests_are_never_faulted() {
        let mut faults = Faults::default();
        faults.add(Fault {
            endpoint: FaultTarget::Any,
            kind: FaultKind::Drop,
            count: 1,
        });
        assert_eq!(faults.take(Endpoint::Admin), None);
        assert_eq!(faults.take(Endpoint::Userinfo), Some(FaultKind::Drop));
    }
}
