//! An Open Finance sandbox authorization server emulator for tests and `make demo`: follows
//! `docs/protocol.md` over real TLS on loopback, plus a test-only admin API. Everything is in
//! memory except `<state_dir>/ca.pem`.
//!
//! Issuer `https://localhost:PORT`; mTLS endpoints on `https://127.0.0.1:PORT` (same port; the
//! serving certificate has `DNS:localhost`, `IP:127.0.0.1`, `IP:::1`). Client certificates are
//! requested, never required by TLS; any well-formed one (self-signed included) reaches the
//! handlers, which decide.
//!
//! | Route | Behaviour |
//! |---|---|
//! | `GET /.well-known/openid-configuration` | recorded OFM document, hosts rewritten, optional merge patch |
//! | `POST /tpp-registration` | `{}` → hub onboarding 204 (mTLS); JSON metadata → RFC 7591 201 (initial access token when configured); `application/jwt`/`jose` → signed registration 201 (`iss` required and `jwks` = the statement's `software_jwks` with `strict_signed_registration`) |
//! | `GET/PUT/DELETE /tpp-registration/{id}` | RFC 7592 with `Bearer <RAT>`, RAT rotated on GET/PUT when configured |
//! | `POST /token` | mTLS; `private_key_jwt` or `tls_client_auth` (a `"hub_onboarding": true` client only over an onboarded certificate with `bind_onboarding`); client_credentials, authorization_code, refresh_token; UUID tokens bound to `x5t#S256` |
//! | `POST /introspection`, `POST /token/revoke` | RFC 7662 / RFC 7009 with the same client auth |
//! | `POST /par`, `GET /auth` | RFC 9126 (PS256 request object, PKCE S256) and an auto-approving 303 |
//! | `GET/POST /userinfo` | 200 only for a live token presented with its bound certificate, else 401 `invalid_token` |
//! | `GET /jwks` | the AS's own key set (empty: the sandbox signs nothing) |
//! | `/_sandbox/...` | admin: `POST clients`, `GET/DELETE clients/{id}`, `POST introspect`, `POST/DELETE faults`, `POST refused-material`, `DELETE refused-material/{material}`, `GET/DELETE counters`, `GET onboardings`, `DELETE jwks-cache` |
//!
//! Clock rule: `iat`/`nbf` ≤ 10 s ahead accepted, ≥ 60 s refused; between, strict refuses and
//! lenient accepts (see [`config`]).

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
