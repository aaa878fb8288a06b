//! tpp-operator: turns a `TppClient` manifest into a live, always-renewed OAuth client of an
//! Open Finance authorization server.
//!
//! Modules, in the order a reconcile uses them:
//! - [`crd`]: the `tpp.dev/v1alpha1` API (types, conditions, durations). No I/O.
//! - [`identity`]: keys, JWKs, certificates, client assertions. CPU only, no I/O.
//! - [`rotation`]: the pure planner deciding what to do next and when. No I/O.
//! - [`oauth`]: the HTTP client of the authorization server. Network I/O.
//! - [`store`]: Secret/ConfigMap layouts and server-side apply. Kubernetes I/O.
//! - [`reconcile`]: the controllers tying the above together.
//! - [`consumers`]: restarting workloads that read the credentials only at start.
//! - [`reason`]: the one set of condition, event and metric reasons (every layer uses it).
//!
//! The layers and one reconcile's data flow are described in docs/architecture.md.

pub mod admin;
pub mod allocator;
pub mod clock;
pub mod config;
pub mod consumers;
pub mod crd;
pub mod duration;
pub mod error;
pub mod event_recorder;
pub mod failpoints;
pub mod hex;
pub mod identity;
pub mod jwks_endpoint;
pub mod kube_budget;
pub mod lease;
pub mod metrics;
pub mod metrics_auth;
pub mod oauth;
pub mod reason;
pub mod reconcile;
pub mod redact;
pub mod rotation;
pub mod store;
pub mod telemetry;
