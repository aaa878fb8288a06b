//! References from our objects to Secrets and ConfigMaps. No I/O.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A key in a Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(max = 253))]
    pub name: String,
    /// Key inside the Secret's data.
    #[schemars(length(max = 253))]
    pub key: String,
    /// Namespace of the Secret. Only a ClusterAuthorizationServer may name one; a TppClient or a
    /// namespaced AuthorizationServer always reads from its own namespace and is refused with a
    /// `CrossNamespaceReference` condition if this is set to another namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
}

/// The kind of object a [`KeyRef`] points at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum KeyRefKind {
    /// A ConfigMap (for public material such as CA bundles).
    #[default]
    ConfigMap,
    /// A Secret.
    Secret,
}

/// A key in a ConfigMap or a Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyRef {
    /// `ConfigMap` (default) or `Secret`.
    #[serde(default)]
    pub kind: KeyRefKind,
    /// Name of the object.
    #[schemars(length(max = 253))]
    pub name: String,
    /// Key inside the object's data.
    #[schemars(length(max = 253))]
    pub key: String,
    /// Namespace of the object; only for a ClusterAuthorizationServer (see [`SecretKeyRef`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
}

/// A whole Secret by name, in the referring object's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalSecretRef {
    /// Name of the Secret.
    #[schemars(length(max = 253))]
    pub name: String,
}
