//! The sandbox AS emulator over real TLS on loopback, driven with reqwest (aws-lc-rs), client
//! certificates from rcgen and assertions signed with josekit.

#[path = "sandbox_as/support.rs"]
mod support;

#[path = "sandbox_as/client_auth.rs"]
mod client_auth;
#[path = "sandbox_as/consent.rs"]
mod consent;
#[path = "sandbox_as/operations.rs"]
mod operations;
#[path = "sandbox_as/registration.rs"]
mod registration;
