//! Names, labels and data keys of the objects the operator writes (docs/architecture.md, "What the
//! operator writes"). No I/O.

use std::collections::BTreeMap;

use kube::api::ObjectMeta;

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "tpp-operator";
/// The label saying who manages an object.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// `app.kubernetes.io/managed-by` value on everything we write.
pub const MANAGED_BY: &str = "tpp-operator";
/// Label naming the TppClient an object belongs to.
pub const CLIENT_LABEL: &str = "tpp.dev/client";
/// Label saying which of our objects this is (`credentials`, `keys`, `registration`, `jwks`).
pub const COMPONENT_LABEL: &str = "tpp.dev/component";
/// The finalizer, present only while a registration exists at the AS.
pub const FINALIZER: &str = "tpp.dev/deregistration";

/// Key of the public JWK set in the `<name>-jwks` ConfigMap.
pub const JWKS_KEY: &str = "jwks.json";

/// Keys of the `<name>-credentials` Secret (type `kubernetes.io/tls`) that workloads mount.
pub mod credentials {
    /// Transport certificate (PEM).
    pub const TLS_CRT: &str = "tls.crt";
    /// Transport private key (PKCS#8 PEM).
    pub const TLS_KEY: &str = "tls.key";
    /// The AS's CA bundle.
    pub const CA_CRT: &str = "ca.crt";
    /// The client id.
    pub const CLIENT_ID: &str = "client_id";
    /// The issuer.
    pub const ISSUER: &str = "issuer";
    /// The effective (mTLS) token endpoint.
    pub const TOKEN_ENDPOINT: &str = "token_endpoint";
    /// The active signing key (PKCS#8 PEM).
    pub const SIGNING_KEY: &str = "signing.key";
    /// The active signing key's kid.
    pub const SIGNING_KID: &str = "signing.kid";

    /// `<token>.access_token`.
    pub fn access_token(token: &str) -> String {
        format!("{token}.access_token")
    }

    /// `<token>.expires_at` (RFC 3339).
    pub fn expires_at(token: &str) -> String {
        format!("{token}.expires_at")
    }
}

/// `<name>-credentials`.
pub fn credentials_name(client: &str) -> String {
    format!("{client}-credentials")
}

/// `<name>-keys`.
pub fn keys_name(client: &str) -> String {
    format!("{client}-keys")
}

/// `<name>-registration`.
pub fn registration_name(client: &str) -> String {
    format!("{client}-registration")
}

/// `<name>-jwks`.
pub fn jwks_name(client: &str) -> String {
    format!("{client}-jwks")
}

/// Labels on every object written for `client`: ours plus the user's `secretTemplate` labels
/// (ours win).
pub fn labels(
    client: &str,
    component: &str,
    extra: Option<&BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut l = extra.cloned().unwrap_or_default();
    l.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    l.insert(CLIENT_LABEL.into(), client.into());
    l.insert(COMPONENT_LABEL.into(), component.into());
    l
}

/// The label selector matching every object the operator writes.
pub fn managed_selector() -> String {
    format!("app.kubernetes.io/managed-by={MANAGED_BY}")
}

/// Whether an object carries our managed-by label.
pub fn is_managed(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|v| v == MANAGED_BY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_labels_win_over_the_users_template() {
        let user = BTreeMap::from([
            ("tpp.dev/client".to_owned(), "spoof".to_owned()),
            ("team".to_owned(), "pay".to_owned()),
        ]);
        let l = labels("payments", "credentials", Some(&user));
        assert_eq!(l["tpp.dev/client"], "payments");
        assert_eq!(l["team"], "pay");
        assert_eq!(l["app.kubernetes.io/managed-by"], "tpp-operator");
    }

    #[test]
    fn object_names_follow_the_design() {
        assert_eq!(credentials_name("p"), "p-credentials");
        assert_eq!(keys_name("p"), "p-keys");
        assert_eq!(registration_name("p"), "p-registration");
        assert_eq!(jwks_name("p"), "p-jwks");
        assert_eq!(
            credentials::access_token("accounts"),
            "accounts.access_token"
        );
    }
}
