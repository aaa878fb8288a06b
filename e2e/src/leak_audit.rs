//! The leak audit every e2e test passes through when it succeeds (docs/security.md § Leak
//! audit): the secret values the operator holds for the test's clients — access tokens,
//! registration access tokens, initial access tokens, private keys (PEM and JWK) — must not
//! appear, raw or base64-encoded, in the operator's log (at debug level), in the namespace's
//! events, in the statuses of our objects, or in the operator's metrics. A hit names the Secret
//! key and the place, never the value. Does Kubernetes I/O (reads only).

use anyhow::{Result, bail};
use base64::Engine;
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::{
    Api, ResourceExt,
    api::{DynamicObject, ListParams},
    core::{ApiResource, GroupVersionKind},
};

use crate::TestContext;

/// Shorter values are not searched (too likely to occur by chance).
const MIN_LEN: usize = 16;

/// Secret keys whose values are secret (a suffix match on the key).
const SECRET_KEYS: [&str; 7] = [
    ".access_token",
    "registration_access_token",
    "initial_access_token",
    "token",
    "signing.key",
    "tls.key",
    ".key",
];

/// JWK members that are private.
const PRIVATE_JWK_MEMBERS: [&str; 6] = ["d", "p", "q", "dp", "dq", "qi"];

/// One secret value to look for, with where it came from.
#[derive(Debug)]
pub struct Needle {
    /// `<Secret>/<key>` (no value).
    pub origin: String,
    /// What is searched.
    pub forms: Vec<String>,
}

/// The needles of one secret value: raw, and base64 (standard and URL-safe); a PEM is searched
/// by the first line of its base64 body.
fn needle(origin: String, value: &str) -> Option<Needle> {
    let value = value.trim();
    let raw = if value.starts_with("-----BEGIN") {
        // A middle line of the body: the first one is mostly the ASN.1 header and public
        // parameters, common to many keys.
        let body: Vec<&str> = value
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= MIN_LEN)
            .collect();
        (*body.get(body.len() / 2)?).to_owned()
    } else {
        value.to_owned()
    };
    if raw.len() < MIN_LEN {
        return None;
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(raw.as_bytes());
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.as_bytes());
    Some(Needle {
        origin,
        forms: vec![raw, b64, b64url],
    })
}

fn private_jwk_members(v: &serde_json::Value, origin: &str, out: &mut Vec<Needle>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                if let (true, Some(s)) = (PRIVATE_JWK_MEMBERS.contains(&k.as_str()), v.as_str()) {
                    out.extend(needle(format!("{origin} (JWK member {k})"), s));
                } else {
                    private_jwk_members(v, origin, out);
                }
            }
        }
        serde_json::Value::Array(a) => {
            for v in a {
                private_jwk_members(v, origin, out);
            }
        }
        _ => {}
    }
}

/// The secret values held in `secrets`.
pub fn needles(secrets: &[Secret]) -> Vec<Needle> {
    let mut out = vec![];
    for s in secrets {
        for (key, value) in s.data.iter().flatten() {
            let origin = format!("Secret {}/{key}", s.name_any());
            let text = String::from_utf8_lossy(&value.0);
            if SECRET_KEYS.iter().any(|k| key.ends_with(k)) {
                out.extend(needle(origin.clone(), &text));
            }
            if key.ends_with(".json")
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            {
                private_jwk_members(&v, &origin, &mut out);
                if let Some(rat) = v["registration_access_token"].as_str() {
                    out.extend(needle(format!("{origin} (registration_access_token)"), rat));
                }
            }
        }
    }
    out
}

/// Where a needle was found: `(origin, place)`.
pub fn hits<'a>(needles: &'a [Needle], places: &[(String, String)]) -> Vec<(&'a str, String)> {
    let mut out = vec![];
    for n in needles {
        for (place, text) in places {
            if n.forms.iter().any(|f| text.contains(f.as_str())) {
                out.push((n.origin.as_str(), place.clone()));
            }
        }
    }
    out
}

/// Audit the test's namespace against `logs` (operator log files) and `metrics` texts.
/// Returns the number of values checked.
pub async fn audit(
    ctx: &TestContext,
    logs: &[std::path::PathBuf],
    metrics: &[String],
) -> Result<usize> {
    let secrets = ctx
        .api::<Secret>()
        .list(&ListParams::default())
        .await?
        .items;
    let needles = needles(&secrets);
    let mut places: Vec<(String, String)> = vec![];
    for log in logs {
        places.push((
            format!("operator log {}", log.display()),
            std::fs::read_to_string(log).unwrap_or_default(),
        ));
    }
    for (i, m) in metrics.iter().enumerate() {
        places.push((format!("metrics #{i}"), m.clone()));
    }
    let events = ctx.api::<Event>().list(&ListParams::default()).await?;
    let text: Vec<String> = events
        .items
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e.message.clone().unwrap_or_default(),
                e.reason.clone().unwrap_or_default()
            )
        })
        .collect();
    places.push(("events".into(), text.join("\n")));
    for kind in ["TppClient", "AuthorizationServer"] {
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("tpp.dev", "v1alpha1", kind));
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ctx.namespace, &ar);
        if let Ok(list) = api.list(&ListParams::default()).await {
            for o in list {
                places.push((
                    format!("{kind}/{} status", o.name_any()),
                    o.data["status"].to_string(),
                ));
            }
        }
    }
    let found = hits(&needles, &places);
    if !found.is_empty() {
        let lines: Vec<String> = found
            .iter()
            .map(|(origin, place)| format!("{origin} appears in {place}"))
            .collect();
        bail!("leak audit: {}", lines.join("; "));
    }
    Ok(needles.len())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;

    use super::*;

    fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some(name.into());
        s.data = Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        );
        s
    }

    #[test]
    fn a_token_in_a_log_raw_or_base64_is_a_hit_named_without_its_value() {
        let token = "eyJhbGciOiJQUzI1NiJ9.secret-token-body";
        let n = needles(&[secret(
            "c-credentials",
            &[
                ("accounts.access_token", token),
                ("client_id", "public-client-id-1234"),
            ],
        )]);
        assert_eq!(n.len(), 1, "only the token is a secret: {n:?}");
        let b64 = base64::engine::general_purpose::STANDARD.encode(token);
        let places = vec![
            (
                "log".to_owned(),
                format!("sent Authorization: DPoP {token}"),
            ),
            ("events".to_owned(), format!("value {b64}")),
            ("status".to_owned(), "public-client-id-1234".to_owned()),
        ];
        let h = hits(&n, &places);
        assert_eq!(h.len(), 2);
        assert!(h.iter().all(|(origin, _)| !origin.contains(token)));
    }

    #[test]
    fn private_jwk_members_and_pem_bodies_are_searched() {
        let state = r#"{"keys":[{"jwk":{"kty":"RSA","n":"public-modulus-abcdefgh","d":"private-exponent-abcdefgh"}}]}"#;
        let pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nPRIVATEPARTPRIVATEPARTPRIVATE00\nAB==\n-----END PRIVATE KEY-----\n";
        let n = needles(&[
            secret("c-keys", &[("state.json", state)]),
            secret("c-credentials", &[("tls.key", pem)]),
        ]);
        let origins: Vec<&str> = n.iter().map(|n| n.origin.as_str()).collect();
        assert_eq!(origins.len(), 2, "{origins:?}");
        let places = vec![(
            "log".to_owned(),
            "... PRIVATEPARTPRIVATEPARTPRIVATE00 ...".to_owned(),
        )];
        assert_eq!(hits(&n, &places).len(), 1);
        let places = vec![("log".to_owned(), "n=public-modulus-abcdefgh".to_owned())];
        assert!(
            hits(&n, &places).is_empty(),
            "public members are not secrets"
        );
    }
}
