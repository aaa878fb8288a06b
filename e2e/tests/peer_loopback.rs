//! The operator's oauth client and identity material against oidc-provider 9.13.3, a real
//! third-party FAPI 2.0 authorization server, on loopback over real mTLS: dynamic registration,
//! both client authentication methods, certificate-bound tokens checked by introspection,
//! RFC 7592 rotation, signed (OBIE-style) registration, deletion and the FAPI preflight.
//! Every test starts its own peer (`node`, about half a second) and fails, never skips, when
//! Node.js is missing. One module per concern: tokens, registration refusals and RFC 7592 management, client
//! authentication, signed registration, preflight, PAR.

#[path = "peer_loopback/support.rs"]
mod support;

#[path = "peer_loopback/client_auth.rs"]
mod client_auth;
#[path = "peer_loopback/management.rs"]
mod management_api;
#[path = "peer_loopback/par.rs"]
mod par;
#[path = "peer_loopback/preflight.rs"]
mod preflight;
#[path = "peer_loopback/signed.rs"]
mod signed;
#[path = "peer_loopback/tokens.rs"]
mod tokens;

use anyhow::{Context as _, Result};
use e2e::peer::{OidcPeer, Par, PeerOptions};
use serde_json::{Value, json};
use support::*;
use tpp_operator::identity::signed_request::{
    RegistrationRequest, TokenEndpointAuth, signed_registration_request,
};
use tpp_operator::oauth::endpoints;
use tpp_operator::oauth::management::{self, DeleteOutcome, ManagementTarget};
use tpp_operator::oauth::preflight::{ClientNeeds, Finding, preflight};
use tpp_operator::oauth::registration::{self, Registration, SignedContentType};
use tpp_operator::oauth::{OauthError, ProviderMetadata};

fn target<'a>(peer: &'a OidcPeer, meta: &'a ProviderMetadata) -> ManagementTarget<'a> {
    ManagementTarget {
        registration_endpoint: meta.registration_endpoint.as_deref().unwrap_or_default(),
        issuer: peer.issuer(),
    }
}

/// Registers a `private_key_jwt` client with inline `jwks` through the operator.
async fn register_pkjwt(
    peer: &OidcPeer,
    meta: &ProviderMetadata,
    transport: &Transport,
    jwks: Value,
    persister: &MemoryPersister,
) -> Result<Registration> {
    let client = mtls_client(peer, transport)?;
    let endpoint = meta
        .registration_endpoint
        .clone()
        .context("no registration_endpoint")?;
    with_log(
        peer,
        registration::register_dynamic(
            &client,
            &endpoint,
            Some(peer.initial_access_token()),
            &pkjwt_metadata(jwks),
            persister,
        )
        .await,
    )
}

fn assert_rejected(err: &OauthError, status: u16, code: &str) {
    assert_eq!(err.status(), Some(status), "{err}");
    assert_eq!(err.oauth_error(), Some(code), "{err}");
    assert!(!err.is_transient(), "{err} must be permanent");
}
