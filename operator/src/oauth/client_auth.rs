//! Client authentication at the token, PAR, introspection and revocation endpoints
//! (docs/protocol.md §4): `private_key_jwt` with an assertion minted per attempt by an
//! [`AssertionMinter`], or `tls_client_auth` (the mTLS handshake is the credential).
//! Pure apart from calling the minter; no network I/O.

use secrecy::{ExposeSecret, SecretString};

use super::error::OauthError;

/// `client_assertion_type` for `private_key_jwt` (RFC 7523).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Why an assertion could not be minted. Holds a description only, never key material.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct MintError {
    message: String,
    transient: bool,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl MintError {
    /// A permanent minting failure (no active key, unusable key).
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            transient: false,
            source: None,
        }
    }

    /// A minting failure that may pass on retry (e.g. the key is being loaded).
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            transient: true,
            source: None,
        }
    }

    /// Attaches the underlying cause (must not carry key material in its Display).
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// True when retrying may succeed.
    pub fn is_transient(&self) -> bool {
        self.transient
    }
}

/// Mints a fresh client assertion (compact JWS) for `audience`. Called once per HTTP attempt,
/// retries included; never cache its output.
pub trait AssertionMinter: Send + Sync {
    /// A new assertion with a fresh `jti`, `iat` = now, `aud` = `audience`.
    fn mint(&self, audience: &str) -> Result<SecretString, MintError>;
}

/// Which `aud` the client assertion carries (docs/protocol.md §4.1, Q2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AudiencePolicy {
    /// The discovery document's `issuer`, as a plain string (default; FAPI 2.0).
    #[default]
    Issuer,
    /// The URL of the endpoint being called (the effective, aliased one).
    TokenEndpoint,
    /// A fixed value.
    Literal(String),
}

impl AudiencePolicy {
    /// The audience for a call to `endpoint` at an AS whose issuer is `issuer`.
    pub fn audience<'a>(&'a self, issuer: &'a str, endpoint: &'a str) -> &'a str {
        match self {
            AudiencePolicy::Issuer => issuer,
            AudiencePolicy::TokenEndpoint => endpoint,
            AudiencePolicy::Literal(aud) => aud,
        }
    }
}

/// How the client proves its identity at the AS's endpoints.
pub enum ClientAuth {
    /// `private_key_jwt`: a fresh assertion per attempt.
    PrivateKeyJwt {
        /// Signs the assertion.
        minter: std::sync::Arc<dyn AssertionMinter>,
        /// Which `aud` to use.
        audience: AudiencePolicy,
    },
    /// `tls_client_auth`: no assertion; the client certificate authenticates.
    TlsClientAuth,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientAuth::PrivateKeyJwt { audience, .. } => f
                .debug_struct("PrivateKeyJwt")
                .field("audience", audience)
                .finish_non_exhaustive(),
            ClientAuth::TlsClientAuth => f.write_str("TlsClientAuth"),
        }
    }
}

/// A client's identity for one call: its id, how it authenticates, and whether a key or
/// registration change may still be propagating (making `invalid_client` transient).
#[derive(Debug)]
pub struct ClientAuthn {
    /// The registered `client_id`.
    pub client_id: String,
    /// `private_key_jwt` or `tls_client_auth`.
    pub auth: ClientAuth,
    /// True inside the JWKS propagation window after a key or registration change.
    pub within_jwks_propagation: bool,
}

/// One form field; the value is a secret when it is an assertion or a token.
pub(crate) enum FormValue {
    Plain(String),
    Secret(SecretString),
}

/// An `application/x-www-form-urlencoded` body being built; secrets stay wrapped until
/// [`Form::encode`].
#[derive(Default)]
pub(crate) struct Form {
    fields: Vec<(&'static str, FormValue)>,
}

impl Form {
    pub(crate) fn plain(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.fields.push((key, FormValue::Plain(value.into())));
        self
    }

    pub(crate) fn secret(mut self, key: &'static str, value: SecretString) -> Self {
        self.fields.push((key, FormValue::Secret(value)));
        self
    }

    /// Inserts `client_id` right after a leading `grant_type` (docs/protocol.md §5.2 order), else
    /// first.
    fn with_client_id(mut self, client_id: &str) -> Self {
        let at = usize::from(self.fields.first().is_some_and(|(k, _)| *k == "grant_type"));
        self.fields
            .insert(at, ("client_id", FormValue::Plain(client_id.to_owned())));
        self
    }

    /// Adds `client_id` and, for `private_key_jwt`, a freshly minted assertion for the call to
    /// `endpoint`.
    pub(crate) fn authenticate(
        self,
        authn: &ClientAuthn,
        issuer: &str,
        endpoint: &str,
    ) -> Result<Self, OauthError> {
        let form = self.with_client_id(&authn.client_id);
        match &authn.auth {
            ClientAuth::TlsClientAuth => Ok(form),
            ClientAuth::PrivateKeyJwt { minter, audience } => {
                let assertion = minter
                    .mint(audience.audience(issuer, endpoint))
                    .map_err(|source| OauthError::MintAssertion { source })?;
                Ok(form
                    .plain("client_assertion_type", JWT_BEARER)
                    .secret("client_assertion", assertion))
            }
        }
    }

    /// The encoded body. The result holds secrets: it goes straight into the request.
    pub(crate) fn encode(&self) -> SecretString {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in &self.fields {
            match value {
                FormValue::Plain(v) => ser.append_pair(key, v),
                FormValue::Secret(v) => ser.append_pair(key, v.expose_secret()),
            };
        }
        SecretString::from(ser.finish())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    struct Recording(Mutex<Vec<String>>);

    impl AssertionMinter for Recording {
        fn mint(&self, audience: &str) -> Result<SecretString, MintError> {
            let mut seen = self
                .0
                .lock()
                .map_err(|_| MintError::permanent("poisoned"))?;
            seen.push(audience.to_owned());
            Ok(SecretString::from(format!("assertion-{}", seen.len())))
        }
    }

    fn authn(audience: AudiencePolicy, minter: Arc<Recording>) -> ClientAuthn {
        ClientAuthn {
            client_id: "c1".into(),
            auth: ClientAuth::PrivateKeyJwt { minter, audience },
            within_jwks_propagation: false,
        }
    }

    #[test]
    fn private_key_jwt_adds_a_fresh_assertion_per_form() {
        let minter = Arc::new(Recording(Mutex::new(Vec::new())));
        let a = authn(AudiencePolicy::Issuer, minter.clone());
        let first = Form::default().authenticate(&a, "https://iss", "https://as/token");
        let second = Form::default().authenticate(&a, "https://iss", "https://as/token");
        let bodies: Vec<String> = [first, second]
            .into_iter()
            .flatten()
            .map(|f| f.encode().expose_secret().to_owned())
            .collect();
        assert_eq!(
            bodies,
            [
                "client_id=c1&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=assertion-1",
                "client_id=c1&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=assertion-2",
            ]
        );
    }

    #[test]
    fn audience_policy_picks_issuer_endpoint_or_literal() {
        let minter = Arc::new(Recording(Mutex::new(Vec::new())));
        for policy in [
            AudiencePolicy::Issuer,
            AudiencePolicy::TokenEndpoint,
            AudiencePolicy::Literal("org-1".into()),
        ] {
            let _ = Form::default().authenticate(
                &authn(policy, minter.clone()),
                "https://iss",
                "https://as/token",
            );
        }
        let seen = minter.0.lock().map(|v| v.clone()).unwrap_or_default();
        assert_eq!(seen, ["https://iss", "https://as/token", "org-1"]);
    }

    #[test]
    fn tls_client_auth_sends_only_the_client_id() {
        let a = ClientAuthn {
            client_id: "c 1".into(),
            auth: ClientAuth::TlsClientAuth,
            within_jwks_propagation: false,
        };
        let body = Form::default()
            .authenticate(&a, "https://iss", "https://as/token")
            .map(|f| f.encode());
        assert_eq!(
            body.ok().map(|b| b.expose_secret().to_owned()).as_deref(),
            Some("client_id=c+1")
        );
    }

    #[test]
    fn mint_failure_becomes_a_client_assertion_error() {
        struct Failing;
        impl AssertionMinter for Failing {
            fn mint(&self, _: &str) -> Result<SecretString, MintError> {
                Err(MintError::permanent("no active signing key"))
            }
        }
        let a = ClientAuthn {
            client_id: "c1".into(),
            auth: ClientAuth::PrivateKeyJwt {
                minter: Arc::new(Failing),
                audience: AudiencePolicy::Issuer,
            },
            within_jwks_propagation: false,
        };
        let err = Form::default().authenticate(&a, "i", "e").err();
        assert_eq!(
            err.as_ref().map(|e| e.reason().as_str()),
            Some("ClientAssertionFailed")
        );
        assert!(err.is_some_and(|e| !e.is_transient()));
    }
}
