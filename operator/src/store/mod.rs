//! What the operator persists in the cluster (docs/architecture.md, "What the operator writes" and
//! "Write order"): Secret and ConfigMap layouts, the pure builders of each object, the persisted
//! state types, and server-side apply under one field manager. Builders and state are pure; `apply`
//! does Kubernetes I/O.

pub mod apply;
pub mod build;
pub mod cache;
pub mod layout;
pub mod ownership;
pub mod pack;
pub mod state;

pub use apply::Store;
