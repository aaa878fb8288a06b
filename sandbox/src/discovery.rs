//! The discovery document: the recorded OFM sandbox document (`discovery.json`) with hosts
//! rewritten to loopback, keeping its paths and its "issuer host differs from token host"
//! property (issuer `https://localhost:P`, mTLS endpoints `https://127.0.0.1:P`), then an
//! optional RFC 7396 merge patch. Pure; no I/O.

use serde_json::{Map, Value};

use super::state::Urls;

const RECORDED: &str = include_str!("discovery.json");
const ISSUER_HOST: &str = "auth1.sandbox.mya.ozoneapi.io";

/// Builds the served document.
pub fn document(urls: &Urls, patch: Option<&Value>) -> anyhow::Result<Value> {
    let mut doc: Value = serde_json::from_str(RECORDED)?;
    rewrite(&mut doc, urls);
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("issuer".into(), Value::String(urls.issuer.clone()));
        obj.insert(
            "jwks_uri".into(),
            Value::String(format!("{}/jwks", urls.issuer)),
        );
    }
    if let Some(patch) = patch {
        merge_patch(&mut doc, patch);
    }
    Ok(doc)
}

fn rewrite(value: &mut Value, urls: &Urls) {
    match value {
        Value::Object(map) => map.values_mut().for_each(|v| rewrite(v, urls)),
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite(v, urls)),
        Value::String(s) => {
            if let Ok(url) = url::Url::parse(s)
                && url.scheme() == "https"
            {
                let base = if url.host_str() == Some(ISSUER_HOST) {
                    &urls.issuer
                } else {
                    &urls.mtls_base
                };
                *s = format!("{base}{}", url.path());
            }
        }
        _ => {}
    }
}

/// RFC 7396 JSON merge patch: objects merge recursively, `null` removes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target_map) = target {
        for (key, value) in patch_map {
            if value.is_null() {
                target_map.remove(key);
            } else {
                merge_patch(target_map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hosts_are_rewritten_to_loopback_keeping_paths() -> anyhow::Result<()> {
        let doc = document(&Urls::new(8443), None)?;
        assert_eq!(doc["issuer"], "https://localhost:8443");
        assert_eq!(doc["token_endpoint"], "https://127.0.0.1:8443/token");
        assert_eq!(doc["authorization_endpoint"], "https://localhost:8443/auth");
        assert_eq!(
            doc["registration_endpoint"],
            "https://127.0.0.1:8443/tpp-registration"
        );
        assert_eq!(
            doc["mtls_endpoint_aliases"]["revocation_endpoint"],
            "https://127.0.0.1:8443/token/revoke"
        );
        assert_eq!(doc["jwks_uri"], "https://localhost:8443/jwks");
        assert!(!doc.to_string().contains("ozoneapi"));
        Ok(())
    }

    #[test]
    fn a_patch_can_drop_par_and_advertise_rs256() -> anyhow::Result<()> {
        let patch = json!({
            "pushed_authorization_request_endpoint": null,
            "mtls_endpoint_aliases": {"pushed_authorization_request_endpoint": null},
            "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
        });
        let doc = document(&Urls::new(1), Some(&patch))?;
        assert!(doc.get("pushed_authorization_request_endpoint").is_none());
        assert!(
            doc["mtls_endpoint_aliases"]
                .get("pushed_authorization_request_endpoint")
                .is_none()
        );
        assert_eq!(
            doc["mtls_endpoint_aliases"]["token_endpoint"],
            "https://127.0.0.1:1/token"
        );
        assert_eq!(
            doc["token_endpoint_auth_signing_alg_values_supported"],
            json!(["RS256"])
        );
        Ok(())
    }
}
