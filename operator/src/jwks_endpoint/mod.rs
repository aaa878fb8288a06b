//! `/jwks/{namespace}/{name}`: the public JWK set of every TppClient, usable as its
//! `jwks_uri`, on a listener of its own (the public one, docs/operations.md "Ports").
//!
//! The set is computed from the persisted key state (`state.json` of the `<name>-keys`
//! Secret), never from the `<name>-jwks` ConfigMap, which anyone allowed to write ConfigMaps
//! in the namespace could change (docs/security.md, "JWKS from the operator's own state"). A
//! watch of the `<name>-keys` Secrets ([`watch`]) keeps the public sets in memory
//! ([`cache::ServedJwks`]), so a request costs no API call; answers carry an ETag and
//! `Cache-Control`, and a per-process token bucket bounds how many are served per second
//! ([`http`]). Every replica (the leader and the standbys) runs the watch and serves.

pub mod cache;
pub mod http;
pub mod watch;

pub use cache::{Lookup, ServedJwks};
