//! `spec.consumers` of a TppClient: workloads that read the credentials Secret only when they
//! start, and so must be restarted when what they read changes (as Vault Secrets Operator's
//! `rolloutRestartTargets`). No I/O.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

/// Workloads that consume `<name>-credentials`.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Consumers {
    /// Deployments, StatefulSets and DaemonSets in the TppClient's namespace restarted (a pod
    /// template annotation `restart.tpp.dev/<client>`, as `kubectl rollout restart` does) when
    /// what `restartOn` names changes in the credentials Secret. Workloads that mount the Secret
    /// as a volume and re-read it need no restart; list here those that read it once at start.
    /// A target without the annotation yet is restarted once, so that it runs with the current
    /// credentials.
    #[serde(default)]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.all(t, self.exists_one(u, u.kind == t.kind && u.name == t.name))").message("restartTargets must not name the same workload twice"))]
    pub restart_targets: Vec<RestartTarget>,

    /// What changes restart the targets: `Certificate` (tls.crt and tls.key), `SigningKey`
    /// (signing.key and signing.kid), `Tokens` (every token refresh: only for workloads that
    /// read the token once at start). Default `[Certificate, SigningKey]`.
    #[serde(default = "default_restart_on")]
    #[schemars(length(min = 1, max = 3))]
    #[x_kube(validation = Rule::new("self.all(a, self.exists_one(b, b == a))").message("restartOn must not repeat a value"))]
    pub restart_on: Vec<RestartOn>,

    /// Debounce: the least time between two restarts of one target for this TppClient. Changes
    /// inside it (a certificate renewal soon followed by a key rotation) are folded into one
    /// restart at its end. Default `1m`.
    #[serde(default = "default_min_restart_interval")]
    pub min_restart_interval: Duration,
}

/// One workload to restart.
#[derive(KubeSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartTarget {
    /// `Deployment`, `StatefulSet` or `DaemonSet` (group `apps`).
    pub kind: RestartKind,
    /// Name of the workload, in the TppClient's namespace.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')").message("restartTargets[].name must be a Kubernetes object name (DNS subdomain)"))]
    pub name: String,
}

/// Kinds of workload that can be restarted.
#[derive(
    schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum RestartKind {
    /// `apps/v1` Deployment.
    Deployment,
    /// `apps/v1` StatefulSet.
    StatefulSet,
    /// `apps/v1` DaemonSet.
    DaemonSet,
}

/// A part of the credentials Secret whose change restarts the targets.
#[derive(
    schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum RestartOn {
    /// The transport certificate and its key (`tls.crt`, `tls.key`).
    Certificate,
    /// The active signing key (`signing.key`, `signing.kid`).
    SigningKey,
    /// The access tokens (`<token>.access_token`), on every refresh.
    Tokens,
}

fn default_restart_on() -> Vec<RestartOn> {
    vec![RestartOn::Certificate, RestartOn::SigningKey]
}

fn default_min_restart_interval() -> Duration {
    Duration::from_mins(1)
}
