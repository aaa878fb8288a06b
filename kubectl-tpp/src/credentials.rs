//! What `kubectl tpp status` takes from the credentials Secret: the names of its keys and the
//! values of the non-secret ones only (`client_id`, `issuer`, `token_endpoint`, `signing.kid`,
//! `<token>.issued_at`, `<token>.expires_at`, `<token>.scope`; docs/operations.md). Private
//! keys, certificates' keys and access tokens are never copied out of the Secret. Pure.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use tpp_operator::store::layout::credentials as keys;

/// Times and scope of one token, as the Secret holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenTimes {
    /// `<token>.issued_at`.
    pub issued_at: Option<Timestamp>,
    /// `<token>.expires_at`.
    pub expires_at: Option<Timestamp>,
    /// `<token>.scope`.
    pub scope: Option<String>,
}

/// The non-secret content of a `<name>-credentials` Secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialsSummary {
    /// The Secret's name.
    pub name: String,
    /// Every data key (names only).
    pub keys: Vec<String>,
    /// `client_id`.
    pub client_id: Option<String>,
    /// `issuer`.
    pub issuer: Option<String>,
    /// `token_endpoint`.
    pub token_endpoint: Option<String>,
    /// `signing.kid`: the kid workloads sign with.
    pub signing_kid: Option<String>,
    /// Per token name.
    pub tokens: BTreeMap<String, TokenTimes>,
}

/// Suffixes of the per-token keys whose values are not secret.
const ISSUED_AT: &str = ".issued_at";
const EXPIRES_AT: &str = ".expires_at";
const SCOPE: &str = ".scope";

impl CredentialsSummary {
    /// Reads only the allowed keys of `secret`.
    pub fn from_secret(secret: &Secret) -> Self {
        let mut out = CredentialsSummary {
            name: secret.name_any(),
            ..Default::default()
        };
        let Some(data) = secret.data.as_ref() else {
            return out;
        };
        let text = |b: &k8s_openapi::ByteString| String::from_utf8_lossy(&b.0).trim().to_owned();
        for (key, value) in data {
            out.keys.push(key.clone());
            match key.as_str() {
                keys::CLIENT_ID => out.client_id = Some(text(value)),
                keys::ISSUER => out.issuer = Some(text(value)),
                keys::TOKEN_ENDPOINT => out.token_endpoint = Some(text(value)),
                keys::SIGNING_KID => out.signing_kid = Some(text(value)),
                _ => {
                    if let Some(token) = key.strip_suffix(ISSUED_AT) {
                        out.tokens.entry(token.to_owned()).or_default().issued_at =
                            text(value).parse().ok();
                    } else if let Some(token) = key.strip_suffix(EXPIRES_AT) {
                        out.tokens.entry(token.to_owned()).or_default().expires_at =
                            text(value).parse().ok();
                    } else if let Some(token) = key.strip_suffix(SCOPE) {
                        out.tokens.entry(token.to_owned()).or_default().scope = Some(text(value));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    /// A credentials Secret whose secret values all contain `SECRET`.
    pub fn secret() -> Secret {
        let data = [
            ("tls.crt", "-----BEGIN CERTIFICATE-----SECRET-CRT"),
            ("tls.key", "-----BEGIN PRIVATE KEY-----SECRET-TLS-KEY"),
            ("ca.crt", "SECRET-CA"),
            ("client_id", "3e5ae210-2591-4a79-a8f0-06e64e2059f2"),
            ("issuer", "https://localhost:8443"),
            ("token_endpoint", "https://127.0.0.1:8443/token"),
            (
                "signing.key",
                "-----BEGIN PRIVATE KEY-----SECRET-SIGNING-KEY",
            ),
            ("signing.kid", "Wq3PiJ3xWjkPo7RrKxWb5rUZ0xkXn3cUvsnzNEnqoSQ"),
            ("accounts.access_token", "SECRET-ACCESS-TOKEN"),
            ("accounts.issued_at", "2026-12-03T09:00:00Z"),
            ("accounts.expires_at", "2026-12-03T09:01:00Z"),
            ("accounts.scope", "accounts"),
        ];
        Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("payments-credentials".into()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn reads_the_non_secret_keys_and_only_them() {
        let s = CredentialsSummary::from_secret(&secret());
        assert_eq!(
            s.client_id.as_deref(),
            Some("3e5ae210-2591-4a79-a8f0-06e64e2059f2")
        );
        assert_eq!(
            s.signing_kid.as_deref(),
            Some("Wq3PiJ3xWjkPo7RrKxWb5rUZ0xkXn3cUvsnzNEnqoSQ")
        );
        let t = &s.tokens["accounts"];
        assert_eq!(t.scope.as_deref(), Some("accounts"));
        assert_eq!(t.expires_at, Some("2026-12-03T09:01:00Z".parse().unwrap()));
        assert_eq!(s.keys.len(), 12);
        assert!(
            !format!("{s:?}").contains("SECRET"),
            "a secret value was copied: {s:?}"
        );
    }
}
