//! The persisted state of one TppClient, as read from and written to its Secrets.
//!
//! - `<name>-keys`: every key with its lifecycle record and private JWK, the generated transport
//!   certificate and key, and the manual triggers already handled (`state.json`).
//! - `<name>-registration`: the AS's answer (client id, registration access token, management
//!   URI, raw response without secrets), written immediately after registration and after every
//!   RAT rotation.
//! - `<name>-credentials`: what workloads mount; tokens are read back from it.
//!
//! Pure conversions between Secrets and these types; no I/O.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::{ByteString, api::core::v1::Secret};
use serde::{Deserialize, Serialize};

use super::layout::credentials as ck;
use crate::{
    error::Stage,
    identity::{
        KeyAlgorithm, PrivateKey,
        jwk::KeyUse as JwkUse,
        jwks::{JwkSet, PublishedAlg, PublishedKey, build_jwks},
    },
    redact::Sensitive,
    rotation::{CertRecord, KeyRecord, KeyState, KeyUse, SelfTestRefusal, TokenRecord},
};

/// Key of the JSON document in `<name>-keys`.
pub const KEYS_STATE_KEY: &str = "state.json";

/// One key with its private JWK.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredKey {
    /// Lifecycle record (kid, use, state, times).
    #[serde(flatten)]
    pub record: KeyRecord,
    /// `PS256`, `ES256` or `RSA-OAEP-256`.
    pub alg: String,
    /// The private JWK (JSON text).
    pub private_jwk: Sensitive<String>,
}

/// A transport certificate the operator generated, with its key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredCertificate {
    /// PEM certificate.
    pub cert_pem: String,
    /// PKCS#8 PEM private key.
    pub key_pem: Sensitive<String>,
    /// Validity and thumbprint.
    #[serde(flatten)]
    pub record: CertRecord,
    /// RFC 4514 subject.
    pub subject: String,
}

/// The content of `<name>-keys`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeysState {
    /// Every key (signing and encryption), in creation order.
    #[serde(default)]
    pub keys: Vec<StoredKey>,
    /// The generated transport certificate (source SelfSigned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<StoredCertificate>,
    /// Manual trigger values already acted on, by verb (`rotate-keys`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub handled: BTreeMap<String, String>,
    /// When each of those values was acted on, by verb (the floor on verb annotations,
    /// `rotation::floors::MIN_TRIGGER_INTERVAL`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub handled_at: BTreeMap<String, Timestamp>,
    /// The registration intent: when a registration request was about to go out. Written
    /// with the keys the request carries (one write); it matters only while no registration
    /// is persisted (a request whose answer was lost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_attempt_started_at: Option<Timestamp>,
    /// Registration requests sent since the last persisted answer whose outcome is unknown,
    /// the one of `registration_attempt_started_at` included (written with each intent).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub registration_unknown_attempts: u32,
    /// Self-tests of new material the AS refused, by kid or certificate thumbprint: the
    /// switch to it waits for the next self-test (docs/reliability.md, "Self-test before a
    /// switch").
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub self_test_refusals: BTreeMap<String, SelfTestRefusal>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl KeysState {
    /// Parse from the Secret (a missing Secret or key is an empty state).
    pub fn from_secret(secret: Option<&Secret>) -> Result<Self, serde_json::Error> {
        match secret
            .and_then(|s| s.data.as_ref())
            .and_then(|d| d.get(KEYS_STATE_KEY))
        {
            Some(bytes) => serde_json::from_slice(&bytes.0),
            None => Ok(Self::default()),
        }
    }

    /// The Secret data.
    pub fn to_data(&self) -> BTreeMap<String, ByteString> {
        let json = serde_json::to_vec(self).unwrap_or_default();
        BTreeMap::from([(KEYS_STATE_KEY.to_owned(), ByteString(json))])
    }

    /// Lifecycle records, for the planner.
    pub fn records(&self) -> Vec<KeyRecord> {
        self.keys.iter().map(|k| k.record.clone()).collect()
    }

    /// The key of `kid`.
    pub fn key(&self, kid: &str) -> Option<&StoredKey> {
        self.keys.iter().find(|k| k.record.kid == kid)
    }

    /// Every kid the AS should see (all but Pending keys).
    pub fn visible_kids(&self) -> BTreeSet<String> {
        self.keys
            .iter()
            .filter(|k| k.record.state != KeyState::Pending)
            .map(|k| k.record.kid.clone())
            .collect()
    }

    /// The public JWK set of `kids` (deterministic order, never a private member): what the
    /// `<name>-jwks` ConfigMap and `/jwks/{namespace}/{name}` publish. The error names the
    /// step that failed.
    pub fn public_jwks(
        &self,
        kids: &BTreeSet<String>,
    ) -> Result<JwkSet, (Stage, crate::identity::IdentityError)> {
        let mut published = vec![];
        for k in self.keys.iter().filter(|k| kids.contains(&k.record.kid)) {
            let key = PrivateKey::from_private_jwk_json(k.private_jwk.expose())
                .map_err(|e| (Stage::ReadKeyToPublish, e))?;
            let (key_use, alg) = match (k.record.use_, key.algorithm()) {
                (KeyUse::Enc, _) => (JwkUse::Enc, PublishedAlg::RsaOaep256),
                (KeyUse::Sig, KeyAlgorithm::EcP256) => (JwkUse::Sig, PublishedAlg::Es256),
                (KeyUse::Sig, _) => (JwkUse::Sig, PublishedAlg::Ps256),
            };
            published.push(PublishedKey {
                jwk: key.public_jwk(),
                key_use,
                alg,
                certificate_chain: vec![],
            });
        }
        build_jwks(published).map_err(|e| (Stage::BuildJwks, e))
    }

    /// The key of `kid`, mutable.
    pub fn key_mut(&mut self, kid: &str) -> Option<&mut StoredKey> {
        self.keys.iter_mut().find(|k| k.record.kid == kid)
    }
}

/// The content of `<name>-registration`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RegistrationState {
    /// The client id at the AS.
    pub client_id: Option<String>,
    /// RFC 7592 registration access token.
    pub registration_access_token: Option<Sensitive<String>>,
    /// Hex SHA-256 of the registration access token the operator received from the AS,
    /// written in the same apply as the token (`registration_access_token.sha256`): a token in
    /// the Secret that does not match it was written by someone else
    /// ([`Self::foreign_access_token`]).
    pub registration_access_token_sha256: Option<String>,
    /// RFC 7592 management URI.
    pub registration_client_uri: Option<String>,
    /// The registration response with secrets removed (JSON).
    pub response: Option<String>,
    /// When the client was registered.
    pub registered_at: Option<Timestamp>,
    /// HubOnboarding: thumbprint of the certificate last onboarded.
    pub onboarded_x5t: Option<String>,
    /// A registration request was sent at this time and no answer was persisted yet: after a
    /// crash, a client may have been created at the AS that we do not know.
    pub attempt_started_at: Option<Timestamp>,
    /// When the AS refused the registration access token on evidence (an RFC 7592 call and a
    /// GET with this token both refused): the client id still works for tokens, but the
    /// registration can no longer be managed.
    pub access_token_refused_at: Option<Timestamp>,
}

/// Keys of `<name>-registration`.
pub(crate) mod rk {
    pub const CLIENT_ID: &str = "client_id";
    pub const RAT: &str = "registration_access_token";
    pub const RAT_SHA256: &str = "registration_access_token.sha256";
    pub const URI: &str = "registration_client_uri";
    pub const RESPONSE: &str = "response.json";
    pub const REGISTERED_AT: &str = "registered_at";
    pub const ONBOARDED_X5T: &str = "onboarded_x5t";
    pub const ATTEMPT: &str = "attempt_started_at";
    pub const REFUSED: &str = "access_token_refused_at";
}

fn text(data: &BTreeMap<String, ByteString>, key: &str) -> Option<String> {
    data.get(key)
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .filter(|s| !s.is_empty())
}

fn time(data: &BTreeMap<String, ByteString>, key: &str) -> Option<Timestamp> {
    text(data, key).and_then(|s| s.parse().ok())
}

impl RegistrationState {
    /// Parse from the Secret.
    pub fn from_secret(secret: Option<&Secret>) -> Self {
        let Some(data) = secret.and_then(|s| s.data.as_ref()) else {
            return Self::default();
        };
        Self {
            client_id: text(data, rk::CLIENT_ID),
            registration_access_token: text(data, rk::RAT).map(Sensitive::new),
            registration_access_token_sha256: text(data, rk::RAT_SHA256),
            registration_client_uri: text(data, rk::URI),
            response: text(data, rk::RESPONSE),
            registered_at: time(data, rk::REGISTERED_AT),
            onboarded_x5t: text(data, rk::ONBOARDED_X5T),
            attempt_started_at: time(data, rk::ATTEMPT),
            access_token_refused_at: time(data, rk::REFUSED),
        }
    }

    /// The Secret data.
    pub fn to_data(&self) -> BTreeMap<String, ByteString> {
        let mut d = BTreeMap::new();
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                d.insert(k.to_owned(), ByteString(v.into_bytes()));
            }
        };
        put(rk::CLIENT_ID, self.client_id.clone());
        put(
            rk::RAT,
            self.registration_access_token
                .as_ref()
                .map(|t| t.expose().clone()),
        );
        put(
            rk::RAT_SHA256,
            self.registration_access_token_sha256.clone(),
        );
        put(rk::URI, self.registration_client_uri.clone());
        put(rk::RESPONSE, self.response.clone());
        put(rk::REGISTERED_AT, self.registered_at.map(|t| t.to_string()));
        put(rk::ONBOARDED_X5T, self.onboarded_x5t.clone());
        put(rk::ATTEMPT, self.attempt_started_at.map(|t| t.to_string()));
        put(
            rk::REFUSED,
            self.access_token_refused_at.map(|t| t.to_string()),
        );
        d
    }

    /// Set the registration access token the AS issued, with its digest (both go into the
    /// Secret in one apply, so no crash or stale cache can separate them).
    pub fn set_access_token(&mut self, token: &str) {
        self.registration_access_token = Some(Sensitive::new(token.to_owned()));
        self.registration_access_token_sha256 = Some(access_token_digest(token));
    }

    /// Whether the registration access token in the Secret is not the one the operator
    /// received: the digest stored with it names another value, or the token was removed while
    /// its digest stayed. `false` without a digest (a Secret written before digests existed;
    /// [`Self::unsealed_access_token`]). An edit of the Secret by hand or by a tenant
    /// (docs/security.md § A hostile tenant): no RFC 7592 call may carry it.
    pub fn foreign_access_token(&self) -> bool {
        let Some(digest) = self.registration_access_token_sha256.as_deref() else {
            return false;
        };
        match &self.registration_access_token {
            Some(token) => access_token_digest(token.expose()) != digest,
            None => true,
        }
    }

    /// Whether the Secret holds a registration access token without a digest (written before
    /// digests existed, or the digest key removed by hand to accept a token put there on
    /// purpose): the token is adopted and its digest written.
    pub fn unsealed_access_token(&self) -> bool {
        self.registration_access_token.is_some() && self.registration_access_token_sha256.is_none()
    }

    /// Whether the AS knows this client (a client id was issued and persisted).
    pub fn is_registered(&self) -> bool {
        self.client_id.is_some()
    }

    /// The client id the AS issued, when `client_id` says otherwise: both are written together
    /// from one answer, so a difference is an edit of the Secret by hand (docs/security.md §
    /// Hostile-tenant suite). `None` when they agree, or when the stored answer names no client
    /// id (a removed `client_id` is a lost registration, not an edit).
    pub fn edited_client_id(&self) -> Option<String> {
        let current = self.client_id.as_deref()?;
        let issued = self.answered_client_id()?;
        (issued != current).then_some(issued)
    }

    /// The client id in the stored registration answer (`response.json`), if it names one.
    pub fn answered_client_id(&self) -> Option<String> {
        let answer: serde_json::Value = serde_json::from_str(self.response.as_deref()?).ok()?;
        Some(answer.get("client_id")?.as_str()?.to_owned()).filter(|id| !id.is_empty())
    }
}

/// The hex SHA-256 of a registration access token (not a secret: the token is a random
/// bearer value the AS issued, and a digest cannot be used in its place).
pub fn access_token_digest(token: &str) -> String {
    crate::hex::sha256_hex(token.as_bytes())
}

/// One token as held in `<name>-credentials`.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredToken {
    /// Planner record (bound to the certificate in the same Secret).
    pub record: TokenRecord,
    /// The access token.
    pub access_token: Sensitive<String>,
    /// Scope granted.
    pub scope: String,
}

/// What workloads mount, as the operator last wrote it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Credentials {
    /// PEM certificate (tls.crt).
    pub cert_pem: Option<String>,
    /// PEM key (tls.key).
    pub key_pem: Option<Sensitive<String>>,
    /// Thumbprint of `cert_pem`.
    pub cert_x5t: Option<String>,
    /// The kid of the signing key in `signing.key`.
    pub signing_kid: Option<String>,
    /// Tokens, by name.
    pub tokens: BTreeMap<String, StoredToken>,
}

/// `<token>.issued_at` (RFC 3339), kept beside `expires_at` for refresh planning.
pub fn issued_at_key(token: &str) -> String {
    format!("{token}.issued_at")
}

/// `<token>.scope`.
pub fn scope_key(token: &str) -> String {
    format!("{token}.scope")
}

impl Credentials {
    /// Parse from the Secret, given the token names configured and a thumbprint function for
    /// `tls.crt`. Tokens without a readable expiry are ignored (they will be re-minted).
    pub fn from_secret(
        secret: Option<&Secret>,
        names: &[String],
        x5t_of_pem: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let Some(data) = secret.and_then(|s| s.data.as_ref()) else {
            return Self::default();
        };
        // Tokens someone else wrote are not known to be the AS's, bound to this certificate:
        // read as absent, they are minted again and the forced apply takes the fields back.
        let foreign = secret.is_some_and(|s| overwritten_by_another_manager(s, names));
        let cert_pem = text(data, ck::TLS_CRT);
        let cert_x5t = cert_pem.as_deref().and_then(&x5t_of_pem);
        let mut tokens = BTreeMap::new();
        for name in names.iter().filter(|_| !foreign) {
            let (Some(token), Some(expires_at)) = (
                text(data, &ck::access_token(name)),
                time(data, &ck::expires_at(name)),
            ) else {
                continue;
            };
            let Some(x5t) = cert_x5t.clone() else {
                continue;
            };
            let issued_at = time(data, &issued_at_key(name)).unwrap_or(expires_at);
            tokens.insert(
                name.clone(),
                StoredToken {
                    record: TokenRecord {
                        name: name.clone(),
                        issued_at,
                        expires_at,
                        cert_x5t_s256: x5t,
                    },
                    access_token: Sensitive::new(token),
                    scope: text(data, &scope_key(name)).unwrap_or_default(),
                },
            );
        }
        Self {
            key_pem: text(data, ck::TLS_KEY).map(Sensitive::new),
            cert_pem,
            cert_x5t,
            signing_kid: text(data, ck::SIGNING_KID),
            tokens,
        }
    }
}

/// Whether a field manager other than the operator owns a token or its expiry in
/// `<name>-credentials`, per the Secret's `managedFields`: someone overwrote them (a
/// server-side apply with force, `kubectl edit`), so what is there is not known to be a token
/// the AS issued. The operator's next apply is forced and carries new values for exactly these
/// fields, so it takes each of them back and the check cannot fire twice for one overwrite
/// (docs/reliability.md § Control-plane and AS faults). Other fields (`tls.crt`, labels) may
/// be co-owned with identical values, which no apply ends: they are not looked at.
pub fn overwritten_by_another_manager(secret: &Secret, names: &[String]) -> bool {
    let ours: BTreeSet<String> = names
        .iter()
        .flat_map(|n| [ck::access_token(n), ck::expires_at(n)])
        .map(|k| format!("f:{k}"))
        .collect();
    secret
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.manager.as_deref() != Some(super::layout::FIELD_MANAGER))
        .filter_map(|m| m.fields_v1.as_ref())
        .filter_map(|f| f.0.get("f:data").and_then(serde_json::Value::as_object))
        .any(|data| data.keys().any(|k| ours.contains(k)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rotation::{KeyState, KeyUse};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn a_registration_access_token_that_does_not_match_its_digest_is_foreign() {
        let mut state = RegistrationState {
            client_id: Some("client-1".into()),
            ..Default::default()
        };
        state.set_access_token("rat-issued-by-the-as");
        assert!(!state.foreign_access_token());
        assert!(!state.unsealed_access_token());
        // Written together, read back together.
        let secret = Secret {
            data: Some(state.to_data()),
            ..Default::default()
        };
        let mut read = RegistrationState::from_secret(Some(&secret));
        assert_eq!(read, state);
        assert!(!read.foreign_access_token());
        // Overwritten in the Secret: foreign; removed: foreign too; put back: ours again.
        read.registration_access_token = Some(Sensitive::new("tenant-garbage".into()));
        assert!(read.foreign_access_token());
        read.registration_access_token = None;
        assert!(read.foreign_access_token());
        read.registration_access_token = Some(Sensitive::new("rat-issued-by-the-as".into()));
        assert!(!read.foreign_access_token());
        // No digest (an older Secret): nothing to compare with, so the token is adopted.
        read.registration_access_token_sha256 = None;
        assert!(!read.foreign_access_token());
        assert!(read.unsealed_access_token());
        // The digest is not the token.
        let digest = access_token_digest("rat-issued-by-the-as");
        assert_eq!(digest.len(), 64);
        assert!(!digest.contains("rat-issued"));
    }

    #[test]
    fn a_client_id_that_disagrees_with_the_stored_answer_is_an_edit() {
        let answered = |client_id: Option<&str>, response: Option<&str>| RegistrationState {
            client_id: client_id.map(str::to_owned),
            response: response.map(str::to_owned),
            ..Default::default()
        };
        let response = Some(r#"{"client_id":"issued-1","redirect_uris":[]}"#);
        assert_eq!(
            answered(Some("garbage"), response).edited_client_id(),
            Some("issued-1".to_owned())
        );
        assert_eq!(
            answered(Some("issued-1"), response).edited_client_id(),
            None
        );
        assert_eq!(
            answered(None, response).edited_client_id(),
            None,
            "lost, not edited"
        );
        assert_eq!(answered(Some("issued-1"), None).edited_client_id(), None);
        assert_eq!(
            answered(Some("issued-1"), Some("{}")).edited_client_id(),
            None
        );
        assert_eq!(
            answered(Some("issued-1"), Some("not json")).edited_client_id(),
            None
        );
    }

    #[test]
    fn keys_state_round_trips_through_secret_data() {
        let state = KeysState {
            keys: vec![StoredKey {
                record: KeyRecord {
                    kid: "k1".into(),
                    use_: KeyUse::Sig,
                    state: KeyState::Active,
                    created_at: ts(100),
                    published_at: Some(ts(100)),
                    activated_at: Some(ts(100)),
                    retiring_at: None,
                },
                alg: "PS256".into(),
                private_jwk: Sensitive::new("{\"d\":\"secret\"}".into()),
            }],
            certificate: None,
            handled: BTreeMap::from([("rotate-keys".into(), "1".into())]),
            handled_at: BTreeMap::from([("rotate-keys".into(), ts(110))]),
            registration_attempt_started_at: Some(ts(120)),
            registration_unknown_attempts: 2,
            self_test_refusals: BTreeMap::from([(
                "k2".into(),
                crate::rotation::SelfTestRefusal {
                    at: ts(130),
                    attempts: 3,
                },
            )]),
        };
        let secret = Secret {
            data: Some(state.to_data()),
            ..Default::default()
        };
        assert_eq!(KeysState::from_secret(Some(&secret)).unwrap(), state);
        assert!(
            !format!("{state:?}").contains("secret\""),
            "Debug must not show the private JWK"
        );
    }

    #[test]
    fn registration_state_round_trips_and_hides_the_rat() {
        let r = RegistrationState {
            client_id: Some("c1".into()),
            registration_access_token: Some(Sensitive::new("rat-value".into())),
            registration_client_uri: Some("https://as/reg/c1".into()),
            registered_at: Some(ts(5)),
            ..Default::default()
        };
        let secret = Secret {
            data: Some(r.to_data()),
            ..Default::default()
        };
        assert_eq!(RegistrationState::from_secret(Some(&secret)), r);
        assert!(!format!("{r:?}").contains("rat-value"));
        assert!(RegistrationState::from_secret(None).client_id.is_none());
    }

    #[test]
    fn tokens_are_read_back_bound_to_the_certificate_beside_them() {
        let data = BTreeMap::from([
            ("tls.crt".to_owned(), ByteString(b"PEM".to_vec())),
            (
                "accounts.access_token".to_owned(),
                ByteString(b"tok".to_vec()),
            ),
            (
                "accounts.expires_at".to_owned(),
                ByteString(ts(700).to_string().into_bytes()),
            ),
            (
                "accounts.issued_at".to_owned(),
                ByteString(ts(100).to_string().into_bytes()),
            ),
        ]);
        let secret = Secret {
            data: Some(data),
            ..Default::default()
        };
        let c =
            Credentials::from_secret(Some(&secret), &["accounts".into(), "other".into()], |_| {
                Some("x5t".into())
            });
        let t = &c.tokens["accounts"];
        assert_eq!(t.record.cert_x5t_s256, "x5t");
        assert_eq!(t.record.expires_at, ts(700));
        assert_eq!(t.record.issued_at, ts(100));
        assert!(!c.tokens.contains_key("other"));
    }

    fn managed(manager: &str, fields: serde_json::Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.to_owned()),
            operation: Some("Apply".to_owned()),
            fields_v1: Some(FieldsV1(fields)),
            ..Default::default()
        }
    }

    #[test]
    fn a_token_another_field_manager_wrote_is_read_as_absent() {
        let data = BTreeMap::from([
            ("tls.crt".to_owned(), ByteString(b"PEM".to_vec())),
            (
                "accounts.access_token".to_owned(),
                ByteString(b"not-ours".to_vec()),
            ),
            (
                "accounts.expires_at".to_owned(),
                ByteString(ts(700).to_string().into_bytes()),
            ),
        ]);
        let ours = serde_json::json!({"f:data": {"f:tls.crt": {}, "f:accounts.expires_at": {}}});
        let mut secret = Secret {
            data: Some(data),
            ..Default::default()
        };
        let names = ["accounts".to_owned()];
        let read = |s: &Secret| Credentials::from_secret(Some(s), &names, |_| Some("x5t".into()));
        // The operator's own fields, another manager's label and a co-owned tls.crt: the
        // token is read back.
        secret.metadata.managed_fields = Some(vec![
            managed("tpp-operator", ours.clone()),
            managed(
                "kubectl-label",
                serde_json::json!({"f:metadata": {"f:labels": {"f:x": {}}}, "f:data": {"f:tls.crt": {}}}),
            ),
        ]);
        assert!(read(&secret).tokens.contains_key("accounts"));
        // Another manager took the token field: it is not the operator's token any more.
        secret.metadata.managed_fields = Some(vec![
            managed("tpp-operator", ours),
            managed(
                "intruder",
                serde_json::json!({"f:data": {"f:accounts.access_token": {}}}),
            ),
        ]);
        let c = read(&secret);
        assert!(c.tokens.is_empty(), "{:?}", c.tokens.keys());
        assert_eq!(
            c.cert_x5t.as_deref(),
            Some("x5t"),
            "the rest is read as usual"
        );
    }
}
