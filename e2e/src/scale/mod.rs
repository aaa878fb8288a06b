//! The scale benchmark behind `make bench-scale N=…` (issue 7): N TppClients against the real
//! control plane, the operator binary as a process and the sandbox AS, measured from outside
//! (`/proc/<pid>`, kube-apiserver `/metrics`, watches, the sandbox's counters) and set beside
//! floors measured in the same run.
//!
//! - [`floor`]: key generation and refresh path floors (CPU only).
//! - [`probe`]: `/proc` and Prometheus readings.
//! - [`watch`]: what the Secret and TppClient watches see.
//! - [`report`]: figures, targets, Markdown.
//! - [`run`]: the phases (process, network and Kubernetes I/O).

pub mod floor;
pub mod probe;
pub mod report;
pub mod run;
pub mod watch;
