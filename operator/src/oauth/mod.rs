//! The HTTP client of the authorization server (AS): discovery, transport, registration,
//! tokens, PAR, introspection and revocation. Network I/O lives in [`discovery`],
//! [`transport`], [`pool`], [`registration`], [`management`], [`token`] and [`endpoints`];
//! [`metadata`], [`minter`], [`preflight`](mod@preflight), [`error`], [`wire`],
//! [`client_auth`], [`clock`], [`tls`] and [`ratelimit`] do no network I/O.
//!
//! This module never retries: every function makes at most one HTTP attempt and classifies its
//! failure ([`OauthError::is_transient`], [`OauthError::retry_after`]); the caller backs off.
//! Client assertions come from an [`AssertionMinter`] called once per attempt, so a retry by the
//! caller always carries a fresh assertion. Secrets (tokens, registration access tokens,
//! assertions, keys) are held in [`secrecy`] types and never appear in errors or logs.

pub mod client_auth;
pub mod clock;
pub mod discovery;
pub mod egress;
pub mod endpoints;
pub mod error;
pub mod management;
pub mod metadata;
pub mod minter;
pub mod pool;
pub mod preflight;
pub mod ratelimit;
pub mod registration;
pub mod session_store;
pub mod tls;
pub mod token;
pub mod transport;
pub mod wire;

pub use client_auth::{AssertionMinter, AudiencePolicy, ClientAuth, ClientAuthn, MintError};
pub use clock::{Clock, SystemClock};
pub use discovery::{Discovery, discovery_url};
pub use egress::EgressPolicy;
pub use endpoints::{Introspection, PushedRequest};
pub use error::{OauthError, Step};
pub use management::{DeleteOutcome, ManagementTarget};
pub use metadata::{EndpointKind, ProviderMetadata};
pub use minter::SignerMinter;
pub use pool::{ClientPool, PoolConfig};
pub use preflight::{ClientNeeds, Finding, Severity, preflight};
pub use ratelimit::{AsLimiters, Limiter, RateLimit};
pub use registration::{PersistError, Registration, RegistrationPersister, SignedContentType};
pub use tls::{ClientIdentity, DEFAULT_BODY_LIMIT, TransportConfig};
pub use token::AccessToken;
pub use transport::{AsClient, AsRequest, AsResponse, RequestBody};
