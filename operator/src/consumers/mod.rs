//! Restarting the workloads that read the credentials Secret only at start
//! (`spec.consumers.restartTargets`): [`plan`] decides, purely, whether a target is due;
//! [`restart`] reads and patches the targets. Called once per TppClient reconcile, after the
//! credentials were written (see docs/operations.md, "Consumers").

pub mod plan;
pub mod restart;

pub use restart::restart_targets;
