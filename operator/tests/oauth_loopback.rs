//! Tier 2 (loopback): the operator's real OAuth client, `tpp_operator::oauth`, with keys,
//! certificates and client assertions from `tpp_operator::identity`, against the in-process
//! sandbox AS on 127.0.0.1 over real mTLS (rustls, aws-lc-rs). Every registration mode, RFC 7592
//! RAT rotation and lost writes, token failures, transport failures, the shared rate limiter,
//! PAR; and in every test the redaction check: no error, `Debug` output or captured `tracing`
//! line carries a token, RAT, assertion or private-key text the test handled.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure with a location

#[path = "oauth_loopback/capture.rs"]
mod capture;
#[path = "oauth_loopback/fake.rs"]
mod fake;
#[path = "oauth_loopback/persist.rs"]
mod persist;
#[path = "oauth_loopback/support.rs"]
mod support;

#[path = "oauth_loopback/failures.rs"]
mod failures;
#[path = "oauth_loopback/management.rs"]
mod management;
#[path = "oauth_loopback/par.rs"]
mod par;
#[path = "oauth_loopback/ratelimit.rs"]
mod ratelimit;
#[path = "oauth_loopback/registration.rs"]
mod registration;
#[path = "oauth_loopback/token.rs"]
mod token;
