//! An Open Finance sandbox authorization server emulator for tests and `make demo`: follows
//! `wire-spec.md` (discovery, hub onboarding, RFC 7591/7592 and signed registration,
//! `private_key_jwt` and `tls_client_auth`, certificate-bound client-credentials tokens,
//! introspection, revocation, PAR with an auto-approving authorization endpoint and PKCE,
//! refresh tokens, the userinfo binding check) over real TLS on loopback, plus
//! a test-only admin API (`/_sandbox/`) for provisioning, faults and counters.
//! Everything is in memory except `<state_dir>/ca.pem`.

pub mod admin;
pub mod authorize;
pub mod client_auth;
pub mod config;
pub mod counters;
pub mod discovery;
pub mod dn;
pub mod faults;
pub mod jwks;
pub mod jws;
pub mod metadata;
pub mod oauth;
pub mod pki;
pub mod registration;
pub mod reply;
pub mod server;
pub mod signed;
pub mod state;
pub mod tls;

pub use config::{AudPolicy, SandboxConfig};
pub use counters::{CountersSnapshot, Endpoint};
pub use faults::{Fault, FaultKind, FaultTarget};
pub use server::{RunningSandbox, start};
