//! What the operator persists in the cluster (design §3, §4): Secret and ConfigMap layouts, the
//! pure builders of each object, and server-side apply under one field manager in the
//! crash-safe order. Builders are pure; `apply` does Kubernetes I/O.

pub mod layout;
