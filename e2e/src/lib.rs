//! The end-to-end harness of tpp-operator: a real etcd + kube-apiserver built from Go modules
//! ([`control_plane`]), a throw-away PKI ([`pki`]), child processes that die with the test
//! binary ([`process`]), and per-test namespaces with failure dumps ([`context`]).

pub mod context;
pub mod control_plane;
pub mod operator;
pub mod pki;
pub mod process;

pub use context::{TestContext, with_namespace};
pub use control_plane::{ControlPlane, shared};
