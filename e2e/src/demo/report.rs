//! What the demo prints: the credentials Secret's data keys (never values), token expiry
//! times, the sandbox's introspection of a token, one line per observed refresh, and how to
//! poke at the running demo. Pure formatting, no I/O.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;
use tpp_operator::crd::annotations;

/// The data keys of a Secret, sorted (values are never read here).
pub fn data_keys(secret: &Secret) -> Vec<String> {
    secret
        .data
        .as_ref()
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default()
}

/// `token name -> expires_at text` for every `<token>.expires_at` key of the credentials Secret.
pub fn token_expiries(secret: &Secret) -> BTreeMap<String, String> {
    let Some(data) = secret.data.as_ref() else {
        return BTreeMap::new();
    };
    data.iter()
        .filter_map(|(k, v)| {
            Some((
                k.strip_suffix(".expires_at")?.to_owned(),
                String::from_utf8_lossy(&v.0).trim().to_owned(),
            ))
        })
        .collect()
}

/// `expires_at` with how far it is from `now` ("in 59 s", "12 s ago"); unparsable text is
/// shown as is.
pub fn expiry(expires_at: &str, now: Timestamp) -> String {
    match expires_at.parse::<Timestamp>() {
        Ok(t) => {
            let secs = t.as_second() - now.as_second();
            if secs >= 0 {
                format!("{expires_at} (in {secs} s)")
            } else {
                format!("{expires_at} ({} s ago)", -secs)
            }
        }
        Err(_) => expires_at.to_owned(),
    }
}

/// The RFC 7662 fields worth showing: `active`, `client_id`, `scope`, `cnf`, `exp`.
pub fn introspection(info: &Value) -> String {
    let mut parts = vec![format!("active={}", info["active"])];
    if let Some(id) = info["client_id"].as_str() {
        parts.push(format!("client_id={id}"));
    }
    if let Some(scope) = info["scope"].as_str() {
        parts.push(format!("scope={scope}"));
    }
    if let Some(x5t) = info["cnf"]["x5t#S256"].as_str() {
        parts.push(format!("cnf.x5t#S256={x5t}"));
    }
    if let Some(exp) = info["exp"]
        .as_i64()
        .and_then(|s| Timestamp::from_second(s).ok())
    {
        parts.push(format!("exp={exp}"));
    }
    parts.join("  ")
}

/// One line for a token whose `expires_at` moved (a refresh), stamped with `now`.
pub fn refresh_line(now: Timestamp, token: &str, expires_at: &str) -> String {
    format!(
        "{}  token {token} refreshed: expires_at {}",
        now.strftime("%H:%M:%S"),
        expiry(expires_at, now)
    )
}

/// What the hints need to name.
#[derive(Clone, Debug)]
pub struct Pointers {
    /// kubectl binary (as the user should type it).
    pub kubectl: String,
    /// The admin kubeconfig (as the user should type it).
    pub kubeconfig: String,
    /// Namespace of the demo objects.
    pub namespace: String,
    /// The TppClient's name.
    pub client: String,
    /// The operator's admin server.
    pub admin_url: String,
    /// The operator's public JWKS server.
    pub jwks_url: String,
    /// The operator's log file.
    pub operator_log: String,
    /// The sandbox CA file.
    pub sandbox_ca: String,
}

/// How to look around and how to stop.
pub fn hints(p: &Pointers) -> String {
    let c = &p.client;
    let mut lines = vec![
        "Poke at it from another terminal, in the repository root:".to_owned(),
        format!(
            "  K=\"{} --kubeconfig {} -n {}\"",
            p.kubectl, p.kubeconfig, p.namespace
        ),
        "  $K get tppclients -o wide".to_owned(),
        format!("  $K describe tppclient {c}"),
        format!(
            "  $K get secret {c}-credentials -o jsonpath='{{.data.accounts\\.expires_at}}' | base64 -d"
        ),
    ];
    for (annotation, what) in [
        (annotations::RENEW_TOKENS, "refresh the tokens now"),
        (annotations::ROTATE_KEYS, "rotate the signing key"),
        (annotations::RENEW_CERTIFICATE, "new transport certificate"),
    ] {
        lines.push(format!(
            "  $K annotate tppclient {c} --overwrite {annotation}=\"$(date +%s)\"   # {what}"
        ));
    }
    lines.extend([
        format!("  curl -s {}/metrics | grep ^tpp_", p.admin_url),
        format!("  curl -s {}/jwks/{}/{c}", p.jwks_url, p.namespace),
        format!(
            "  tail -f {}   # the operator's log (the sandbox CA is {})",
            p.operator_log, p.sandbox_ca
        ),
        "Stop: Ctrl-C (or SIGTERM) stops the operator, the sandbox AS, kube-apiserver and etcd."
            .to_owned(),
    ]);
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use serde_json::json;

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn data_keys_are_listed_sorted_and_values_left_out() {
        let s = secret(&[
            ("tls.key", "PRIVATE"),
            ("accounts.access_token", "TOKEN"),
            ("client_id", "c"),
        ]);
        let keys = data_keys(&s);
        assert_eq!(keys, ["accounts.access_token", "client_id", "tls.key"]);
        assert!(!keys.concat().contains("PRIVATE") && !keys.concat().contains("TOKEN"));
    }

    #[test]
    fn token_expiries_come_from_the_expires_at_keys_only() {
        let s = secret(&[
            ("accounts.expires_at", "2030-01-01T00:00:00Z\n"),
            ("accounts.access_token", "t"),
            ("payments.expires_at", "x"),
        ]);
        let e = token_expiries(&s);
        assert_eq!(e.len(), 2);
        assert_eq!(e["accounts"], "2030-01-01T00:00:00Z");
        assert_eq!(e["payments"], "x");
    }

    #[test]
    fn expiry_says_how_far_away_it_is() {
        let now: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            expiry("2030-01-01T00:01:00Z", now),
            "2030-01-01T00:01:00Z (in 60 s)"
        );
        assert_eq!(
            expiry("2029-12-31T23:59:50Z", now),
            "2029-12-31T23:59:50Z (10 s ago)"
        );
        assert_eq!(expiry("soon", now), "soon");
    }

    #[test]
    fn introspection_shows_binding_fields_and_a_readable_exp() {
        let info = json!({"active": true, "client_id": "c-1", "scope": "accounts", "exp": 1_893_456_000, "cnf": {"x5t#S256": "abc"}, "iat": 1});
        assert_eq!(
            introspection(&info),
            "active=true  client_id=c-1  scope=accounts  cnf.x5t#S256=abc  exp=2030-01-01T00:00:00Z"
        );
        assert_eq!(introspection(&json!({"active": false})), "active=false");
    }

    #[test]
    fn refresh_line_names_the_token_and_its_new_expiry() {
        let now: Timestamp = "2030-01-01T12:00:00Z".parse().unwrap();
        let line = refresh_line(now, "accounts", "2030-01-01T12:01:00Z");
        assert!(
            line.contains("token accounts refreshed") && line.contains("(in 60 s)"),
            "{line}"
        );
    }

    #[test]
    fn hints_name_every_verb_annotation_and_the_admin_endpoints() {
        let h = hints(&Pointers {
            kubectl: "kubectl".into(),
            kubeconfig: ".demo/kubeconfig".into(),
            namespace: "demo".into(),
            client: "payments".into(),
            admin_url: "http://127.0.0.1:8080".into(),
            jwks_url: "http://127.0.0.1:8081".into(),
            operator_log: ".demo/operator.log".into(),
            sandbox_ca: ".demo/sandbox/ca.pem".into(),
        });
        for needle in [
            "tpp.dev/renew-tokens",
            "tpp.dev/rotate-keys",
            "tpp.dev/renew-certificate",
            "http://127.0.0.1:8080/metrics",
            "http://127.0.0.1:8081/jwks/demo/payments",
            "K=\"kubectl --kubeconfig .demo/kubeconfig -n demo\"",
            "Ctrl-C",
        ] {
            assert!(h.contains(needle), "hints lack {needle}:\n{h}");
        }
    }
}
