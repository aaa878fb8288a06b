//! The FAPI 2.0 preflight against the peer's real discovery document.

use super::*;

#[tokio::test]
async fn the_default_peer_passes_the_fapi2_preflight() -> Result<()> {
    let peer = peer().await?;
    let meta = discover(&peer).await?;
    for auth_method in ["private_key_jwt", "tls_client_auth"] {
        let needs = ClientNeeds {
            auth_method: auth_method.into(),
            registration_endpoint: true,
            ..ClientNeeds::default()
        };
        assert_eq!(preflight(&meta, &needs), [], "{auth_method}");
    }
    Ok(())
}

#[tokio::test]
async fn preflight_names_a_peer_without_par() -> Result<()> {
    let peer = OidcPeer::start(PeerOptions {
        par: Par::Off,
        ..PeerOptions::default()
    })
    .await?;
    let findings = preflight(&discover(&peer).await?, &ClientNeeds::default());
    assert_eq!(
        findings,
        [Finding::ParEndpointMissing, Finding::ParNotRequired]
    );
    Ok(())
}

#[tokio::test]
async fn preflight_names_a_peer_advertising_only_rs256_assertions() -> Result<()> {
    let peer = OidcPeer::start(PeerOptions {
        client_auth_algs: vec!["RS256".into()],
        ..PeerOptions::default()
    })
    .await?;
    let findings = preflight(&discover(&peer).await?, &ClientNeeds::default());
    assert_eq!(
        findings,
        [Finding::AlgNotSupported {
            alg: "PS256".into()
        }]
    );
    assert!(findings[0].to_string().contains("PS256"));
    Ok(())
}
