//! The end-to-end harness of tpp-operator: a real etcd + kube-apiserver built from Go modules
//! ([`control_plane`]), a throw-away PKI ([`pki`]), child processes that die with the test
//! binary ([`process`]), per-test namespaces with failure dumps ([`context`]), the operator as a
//! process under the chart's RBAC ([`operator`]), the Open Finance sandbox AS emulator
//! ([`sandbox`], re-exported from the `sandbox-as` crate), oidc-provider as a real third-party
//! AS peer ([`peer`]), `make demo` built from them ([`demo`]), the scale benchmark behind
//! `make bench-scale` ([`scale`]), the Argo CD health checks and kstatus rules run on our objects
//! ([`gitops`]), helm ([`helm`]), and a real two-node cluster (kubelet, containerd,
//! kube-controller-manager, kube-scheduler) for the node tier that installs the chart with Helm
//! ([`node`]).

pub mod context;
pub mod control_plane;
pub mod demo;
pub mod fixtures;
pub mod gitops;
pub mod helm;
pub mod leak_audit;
pub mod node;
pub mod operator;
pub mod peer;
pub mod pki;
pub mod process;
pub mod scale;

pub use context::{TestContext, with_namespace, with_namespace_on};
pub use control_plane::{ControlPlane, shared};
/// The sandbox AS, its own crate (`sandbox/`, no dependency on the operator).
pub use sandbox_as as sandbox;
