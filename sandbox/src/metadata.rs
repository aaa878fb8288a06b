//! Client metadata validation (docs/protocol.md §3.3) shared by RFC 7591 registration, signed
//! registration, RFC 7592 updates and admin provisioning: PS256 only,
//! `token_endpoint_auth_signing_alg` only with `private_key_jwt`, exactly one subject field for
//! `tls_client_auth`, `jwks` xor `jwks_uri`, certificate-bound tokens. Pure; no I/O.

use serde_json::{Map, Value, json};

use super::{
    dn, jws,
    state::{AuthMethod, Client, KeySource, Origin, SubjectMatch},
};

/// Fields a client may never send (RFC 7592 §2.2).
pub const SERVER_OWNED: [&str; 4] = [
    "registration_access_token",
    "registration_client_uri",
    "client_id_issued_at",
    "client_secret_expires_at",
];

const SUBJECT_FIELDS: [&str; 5] = [
    "tls_client_auth_subject_dn",
    "tls_client_auth_san_dns",
    "tls_client_auth_san_uri",
    "tls_client_auth_san_ip",
    "tls_client_auth_san_email",
];

/// Validates `metadata` and builds a client with `client_id`. Returns the description of the
/// first violation.
pub fn build_client(
    client_id: &str,
    mut metadata: Map<String, Value>,
    origin: Origin,
) -> Result<Client, String> {
    for field in SERVER_OWNED {
        metadata.remove(field);
    }
    let auth = match metadata
        .get("token_endpoint_auth_method")
        .map(|v| {
            v.as_str()
                .ok_or("token_endpoint_auth_method must be a string")
        })
        .transpose()?
        .unwrap_or("private_key_jwt")
    {
        "private_key_jwt" => AuthMethod::PrivateKeyJwt,
        "tls_client_auth" => AuthMethod::TlsClientAuth,
        other => {
            return Err(format!(
                "token_endpoint_auth_method {other} is not supported"
            ));
        }
    };
    metadata.insert(
        "token_endpoint_auth_method".into(),
        json!(match auth {
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::TlsClientAuth => "tls_client_auth",
        }),
    );

    match (auth, metadata.get("token_endpoint_auth_signing_alg")) {
        (AuthMethod::TlsClientAuth, Some(_)) => {
            return Err(
                "token_endpoint_auth_signing_alg must not be provided with tls_client_auth".into(),
            );
        }
        (AuthMethod::PrivateKeyJwt, Some(alg)) if alg != "PS256" => {
            return Err("token_endpoint_auth_signing_alg must be PS256".into());
        }
        (AuthMethod::PrivateKeyJwt, None) => {
            metadata.insert("token_endpoint_auth_signing_alg".into(), json!("PS256"));
        }
        _ => {}
    }
    for field in [
        "id_token_signed_response_alg",
        "request_object_signing_alg",
        "userinfo_signed_response_alg",
        "authorization_signed_response_alg",
        "introspection_signed_response_alg",
    ] {
        if let Some(alg) = metadata.get(field)
            && alg != "PS256"
        {
            return Err(format!("{field} must be PS256"));
        }
    }

    match metadata.get("tls_client_certificate_bound_access_tokens") {
        None => {
            metadata.insert(
                "tls_client_certificate_bound_access_tokens".into(),
                json!(true),
            );
        }
        Some(Value::Bool(true)) => {}
        Some(_) => return Err("tls_client_certificate_bound_access_tokens must be true".into()),
    }

    let subject = subject_match(&metadata, auth)?;
    let keys = key_source(&metadata)?;
    if auth == AuthMethod::PrivateKeyJwt && matches!(keys, KeySource::None) {
        return Err("private_key_jwt needs jwks or jwks_uri".into());
    }

    let scopes: Vec<String> = match metadata.get("scope") {
        None => {
            metadata.insert("scope".into(), json!("accounts"));
            vec!["accounts".into()]
        }
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        Some(_) => return Err("scope must be a space-delimited string".into()),
    };
    let grant_types = string_list(&metadata, "grant_types")?.unwrap_or_else(|| {
        metadata.insert("grant_types".into(), json!(["client_credentials"]));
        vec!["client_credentials".into()]
    });
    if let Some(uris) = string_list(&metadata, "redirect_uris")?
        && uris.iter().any(|u| url::Url::parse(u).is_err())
    {
        return Err("redirect_uris must be absolute urls".into());
    }
    string_list(&metadata, "response_types")?;

    metadata.insert("client_id".into(), json!(client_id));
    Ok(Client {
        client_id: client_id.to_string(),
        metadata,
        auth,
        keys,
        subject,
        scopes,
        grant_types,
        rat: None,
        origin,
    })
}

fn subject_match(
    metadata: &Map<String, Value>,
    auth: AuthMethod,
) -> Result<Option<SubjectMatch>, String> {
    let present: Vec<&str> = SUBJECT_FIELDS
        .iter()
        .copied()
        .filter(|f| metadata.contains_key(*f))
        .collect();
    if auth == AuthMethod::PrivateKeyJwt {
        return Ok(None);
    }
    let [field] = present.as_slice() else {
        return Err(
            "tls_client_auth needs exactly one tls_client_auth_subject_dn/_san_* field".into(),
        );
    };
    let value = metadata
        .get(*field)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{field} must be a string"))?
        .to_string();
    Ok(Some(match *field {
        "tls_client_auth_subject_dn" => SubjectMatch::Dn(
            dn::parse_rfc4514(&value).ok_or("tls_client_auth_subject_dn is not an RFC 4514 dn")?,
        ),
        "tls_client_auth_san_dns" => SubjectMatch::SanDns(value),
        "tls_client_auth_san_uri" => SubjectMatch::SanUri(value),
        "tls_client_auth_san_ip" => SubjectMatch::SanIp(value),
        _ => SubjectMatch::SanEmail(value),
    }))
}

fn key_source(metadata: &Map<String, Value>) -> Result<KeySource, String> {
    match (metadata.get("jwks"), metadata.get("jwks_uri")) {
        (Some(_), Some(_)) => Err("jwks and jwks_uri are mutually exclusive".into()),
        (Some(jwks), None) => {
            jws::check_key_set(jwks)?;
            Ok(KeySource::Inline(jwks.clone()))
        }
        (None, Some(uri)) => {
            let uri = uri.as_str().ok_or("jwks_uri must be a string")?;
            url::Url::parse(uri).map_err(|_| "jwks_uri must be an absolute url".to_string())?;
            Ok(KeySource::Uri(uri.to_string()))
        }
        (None, None) => Ok(KeySource::None),
    }
}

fn string_list(metadata: &Map<String, Value>, field: &str) -> Result<Option<Vec<String>>, String> {
    match metadata.get(field) {
        None => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{field} must hold strings"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(format!("{field} must be an array")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn build(v: Value) -> Result<Client, String> {
        build_client("c1", meta(v), Origin::Dynamic)
    }

    #[test]
    fn signing_alg_with_tls_client_auth_is_rejected() {
        let r = build(json!({"token_endpoint_auth_method":"tls_client_auth",
            "token_endpoint_auth_signing_alg":"PS256","tls_client_auth_subject_dn":"CN=x"}));
        assert!(r.is_err_and(|e| e.contains("must not be provided")));
    }

    #[test]
    fn tls_client_auth_needs_exactly_one_subject_field() {
        let none = build(json!({"token_endpoint_auth_method":"tls_client_auth"}));
        let two = build(json!({"token_endpoint_auth_method":"tls_client_auth",
            "tls_client_auth_subject_dn":"CN=x","tls_client_auth_san_dns":"a"}));
        let one = build(
            json!({"token_endpoint_auth_method":"tls_client_auth","tls_client_auth_subject_dn":"CN=x"}),
        );
        assert!(none.is_err() && two.is_err());
        assert!(one.is_ok_and(|c| matches!(c.subject, Some(SubjectMatch::Dn(_)))));
    }

    #[test]
    fn private_key_jwt_needs_keys_and_ps256() {
        assert!(build(json!({"token_endpoint_auth_method":"private_key_jwt"})).is_err());
        assert!(
            build(
                json!({"jwks_uri":"https://127.0.0.1/j","token_endpoint_auth_signing_alg":"RS256"})
            )
            .is_err()
        );
        assert!(
            build(json!({"jwks_uri":"https://127.0.0.1/j","id_token_signed_response_alg":"RS256"}))
                .is_err()
        );
        let ok = build(json!({"jwks_uri":"https://127.0.0.1/j","scope":"accounts profile"}));
        assert!(ok.is_ok_and(|c| c.scopes == ["accounts", "profile"] && c.metadata["client_id"] == "c1"));
    }

    #[test]
    fn unbound_tokens_are_refused() {
        let r = build(
            json!({"jwks_uri":"https://127.0.0.1/j","tls_client_certificate_bound_access_tokens":false}),
        );
        assert!(r.is_err());
    }
}
