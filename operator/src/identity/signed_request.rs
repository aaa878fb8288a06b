//! The signed registration request of `SignedRequest` mode (OBIE-style DCR, docs/protocol.md §3.4).
//!
//! Contract: a compact JWS with header `{alg, kid}` only (no `typ`, `x5c` or `x5u`), signed by
//! a cached [`Signer`] (PS256 for the RSA keys the spec requires). Claims: `iss` =
//! software_id, `aud` (the issuer by default, any string on request), `iat` = `now` (integer
//! seconds), `exp` = `iat` + 300, `jti` a fresh UUIDv4, `software_statement`, `software_id`,
//! and the client metadata merged in. [`ClientMetadata`] builds that metadata with the
//! spec's rules (`token_endpoint_auth_signing_alg` only for `private_key_jwt`,
//! `tls_client_auth_subject_dn` iff `tls_client_auth`, `application_type: web`). The metadata
//! may not set the request's own claims. The JWS embeds the software statement, so it is
//! returned as a `SecretString`. `now` is a parameter. CPU only, no I/O.

use jiff::Timestamp;
use josekit::jws::JwsHeader;
use secrecy::SecretString;
use serde_json::{Map, Value, json};

use super::assertion::sign_claims;
use super::error::IdentityError;
use super::signer::Signer;

/// `exp - iat` of a registration request, in seconds.
pub const REQUEST_LIFETIME_SECONDS: i64 = 300;

/// Claims the request sets itself; metadata may not carry them.
const RESERVED: &[&str] = &[
    "iss",
    "aud",
    "iat",
    "exp",
    "jti",
    "software_statement",
    "software_id",
];

/// How the client authenticates at the token endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenEndpointAuth {
    /// `private_key_jwt`, assertions signed with PS256.
    PrivateKeyJwt,
    /// `tls_client_auth`, the client identified by its certificate's subject DN (RFC 4514).
    TlsClientAuth {
        /// The registered `tls_client_auth_subject_dn`.
        subject_dn: String,
    },
}

/// Client metadata for a signed registration request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientMetadata {
    /// `redirect_uris`.
    pub redirect_uris: Vec<String>,
    /// Token endpoint authentication.
    pub auth: TokenEndpointAuth,
    /// `grant_types`, e.g. `client_credentials`.
    pub grant_types: Vec<String>,
    /// `response_types`, e.g. `code`.
    pub response_types: Vec<String>,
    /// Scopes, joined with spaces into `scope`.
    pub scopes: Vec<String>,
}

impl ClientMetadata {
    /// The metadata as JSON members, PS256 everywhere and certificate-bound tokens on.
    pub fn to_map(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("redirect_uris".into(), json!(self.redirect_uris));
        match &self.auth {
            TokenEndpointAuth::PrivateKeyJwt => {
                map.insert(
                    "token_endpoint_auth_method".into(),
                    json!("private_key_jwt"),
                );
                map.insert("token_endpoint_auth_signing_alg".into(), json!("PS256"));
            }
            TokenEndpointAuth::TlsClientAuth { subject_dn } => {
                map.insert(
                    "token_endpoint_auth_method".into(),
                    json!("tls_client_auth"),
                );
                map.insert("tls_client_auth_subject_dn".into(), json!(subject_dn));
            }
        }
        map.insert("grant_types".into(), json!(self.grant_types));
        map.insert("response_types".into(), json!(self.response_types));
        map.insert("scope".into(), json!(self.scopes.join(" ")));
        map.insert("application_type".into(), json!("web"));
        map.insert("id_token_signed_response_alg".into(), json!("PS256"));
        map.insert("request_object_signing_alg".into(), json!("PS256"));
        map.insert(
            "tls_client_certificate_bound_access_tokens".into(),
            json!(true),
        );
        map
    }
}

impl ClientMetadata {
    /// [`ClientMetadata::to_map`] for a client whose signing key is `signing_key`: its JWS
    /// algorithm (`PS256` for RSA, `ES256` for P-256) becomes `token_endpoint_auth_signing_alg`
    /// (private_key_jwt only) and `request_object_signing_alg`. An AS refuses assertions in
    /// another algorithm than the registered one (oidc-provider: "alg mismatch"), so a P-256
    /// key must not be registered with `to_map`'s PS256. id_tokens stay PS256 (the AS signs
    /// them).
    pub fn to_map_for_key(&self, signing_key: crate::identity::KeyAlgorithm) -> Map<String, Value> {
        let alg = json!(signing_key.jws_alg());
        let mut map = self.to_map();
        if map.contains_key("token_endpoint_auth_signing_alg") {
            map.insert("token_endpoint_auth_signing_alg".into(), alg.clone());
        }
        map.insert("request_object_signing_alg".into(), alg);
        map
    }
}

/// The inputs of one signed registration request.
#[derive(Clone, Copy, Debug)]
pub struct RegistrationRequest<'a> {
    /// `software_id` (also `iss`).
    pub software_id: &'a str,
    /// The directory-signed software statement assertion (a JWT), passed through verbatim.
    pub software_statement: &'a str,
    /// `aud`: the AS issuer by default; some ASes want another value (e.g. an org id).
    pub audience: &'a str,
    /// Client metadata members, e.g. from [`ClientMetadata::to_map`].
    pub metadata: &'a Map<String, Value>,
}

/// Builds and signs a registration request JWS.
pub fn signed_registration_request(
    signer: &Signer,
    request: RegistrationRequest<'_>,
    now: Timestamp,
) -> Result<SecretString, IdentityError> {
    if let Some(clash) = RESERVED
        .iter()
        .find(|name| request.metadata.contains_key(**name))
    {
        return Err(IdentityError::ReservedClaim {
            claim: (*clash).to_owned(),
        });
    }
    let iat = now.as_second();
    let mut claims = request.metadata.clone();
    claims.insert("iss".into(), json!(request.software_id));
    claims.insert("aud".into(), json!(request.audience));
    claims.insert("iat".into(), json!(iat));
    claims.insert(
        "exp".into(),
        json!(iat.saturating_add(REQUEST_LIFETIME_SECONDS)),
    );
    claims.insert("jti".into(), json!(uuid::Uuid::new_v4().to_string()));
    claims.insert(
        "software_statement".into(),
        json!(request.software_statement),
    );
    claims.insert("software_id".into(), json!(request.software_id));
    sign_claims(signer, claims, &JwsHeader::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_p256_signing_key_registers_es256_for_the_clients_own_signatures() {
        use crate::identity::KeyAlgorithm;
        let metadata = |auth| ClientMetadata {
            redirect_uris: Vec::new(),
            auth,
            grant_types: vec!["client_credentials".into()],
            response_types: Vec::new(),
            scopes: vec!["accounts".into()],
        };
        let es = metadata(TokenEndpointAuth::PrivateKeyJwt).to_map_for_key(KeyAlgorithm::EcP256);
        assert_eq!(es["token_endpoint_auth_signing_alg"], "ES256");
        assert_eq!(es["request_object_signing_alg"], "ES256");
        assert_eq!(
            es["id_token_signed_response_alg"], "PS256",
            "the AS's choice, not the key's"
        );
        let rsa = metadata(TokenEndpointAuth::PrivateKeyJwt).to_map_for_key(KeyAlgorithm::Rsa3072);
        assert_eq!(rsa, metadata(TokenEndpointAuth::PrivateKeyJwt).to_map());
        let tls = metadata(TokenEndpointAuth::TlsClientAuth {
            subject_dn: "CN=x".into(),
        })
        .to_map_for_key(KeyAlgorithm::EcP256);
        assert!(!tls.contains_key("token_endpoint_auth_signing_alg"));
        assert_eq!(tls["request_object_signing_alg"], "ES256");
    }

    fn metadata(auth: TokenEndpointAuth) -> Map<String, Value> {
        ClientMetadata {
            redirect_uris: vec!["https://tpp.example/cb".into()],
            auth,
            grant_types: vec!["client_credentials".into(), "authorization_code".into()],
            response_types: vec!["code".into()],
            scopes: vec!["openid".into(), "accounts".into()],
        }
        .to_map()
    }

    #[test]
    fn private_key_jwt_metadata_carries_signing_alg_and_no_subject_dn() {
        let map = metadata(TokenEndpointAuth::PrivateKeyJwt);
        assert_eq!(map["token_endpoint_auth_method"], "private_key_jwt");
        assert_eq!(map["token_endpoint_auth_signing_alg"], "PS256");
        assert!(!map.contains_key("tls_client_auth_subject_dn"));
        assert_eq!(map["scope"], "openid accounts");
        assert_eq!(map["application_type"], "web");
        assert_eq!(map["tls_client_certificate_bound_access_tokens"], true);
    }

    #[test]
    fn tls_client_auth_metadata_carries_subject_dn_and_no_signing_alg() {
        let dn = "C=GB,O=OpenBanking,OU=0015800001041RHAAY,CN=5aRav7KBdrEqqs1e1fwNgk";
        let map = metadata(TokenEndpointAuth::TlsClientAuth {
            subject_dn: dn.into(),
        });
        assert_eq!(map["token_endpoint_auth_method"], "tls_client_auth");
        assert_eq!(map["tls_client_auth_subject_dn"], dn);
        assert!(!map.contains_key("token_endpoint_auth_signing_alg"));
    }
}
