//! RFC 7592 management with a rotating registration access token (RAT), and what happens when
//! persisting a registration fails.
//!
//! What the oauth layer guarantees and what it cannot: every new RAT goes through the
//! persister before the call returns, and a failed write fails the call
//! (`PersistRegistration`, transient). It cannot resurrect a RAT that was never stored: after
//! a registration whose write failed, the client exists at the AS but the operator has no RAT
//! for it; after a rotation whose write failed, the old RAT is already dead. Recovery belongs to
//! the layers around it: a persister that retries its store before giving up (then nothing is
//! lost), and, once a RAT is lost, re-registration by the reconciler (leaving the orphan).

use std::sync::Arc;

use secrecy::ExposeSecret as _;
use serde_json::json;
use tpp_operator::oauth::management::{read_client, update_client};
use tpp_operator::oauth::registration::register_dynamic;
use tpp_operator::oauth::{AsClient, AudiencePolicy, Registration};

use super::persist::{Persister, Store};
use super::support::{Harness, Tpp};

async fn registered(
    h: &Harness,
    tpp: &Tpp,
    client: &AsClient,
    store: &Arc<Store>,
) -> anyhow::Result<Registration> {
    let persister = Persister::new(store.clone(), h.rec.clone());
    h.expect_ok(
        register_dynamic(
            client,
            h.registration_endpoint(),
            None,
            &tpp.metadata()?,
            &persister,
        )
        .await,
    )
}

fn rat(r: &Registration) -> String {
    r.registration_access_token
        .as_ref()
        .map(|t| t.expose_secret().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn rfc7592_get_rotates_the_rat_persists_it_first_and_the_old_one_is_refused()
-> anyhow::Result<()> {
    let h = Harness::start(|cfg| cfg.rotate_rat = true).await?;
    let tpp = Tpp::generate("tpp-get", &h.rec)?;
    let client = tpp.client(&h)?;
    let store = Arc::new(Store::default());
    let first = registered(&h, &tpp, &client, &store).await?;
    let persister = Persister::new(store.clone(), h.rec.clone());

    let second = h.expect_ok(read_client(&client, h.target(), &first, &persister).await)?;
    assert_ne!(rat(&second), rat(&first), "GET returned a new RAT");
    assert_eq!(
        store.rats().last(),
        Some(&rat(&second)),
        "persisted before returning"
    );
    assert_eq!(store.rats().len(), 2);

    let third = h.expect_ok(read_client(&client, h.target(), &second, &persister).await)?;
    assert_eq!(
        store.rats().last(),
        Some(&rat(&third)),
        "the new RAT worked"
    );

    let stale = h.expect_err(read_client(&client, h.target(), &first, &persister).await)?;
    assert_eq!(stale.status(), Some(401));
    assert_eq!(stale.reason(), "RegistrationRejected");
    assert_eq!(stale.oauth_error(), Some("invalid_token"));
    assert!(!stale.is_transient());
    assert_eq!(store.rats().len(), 3, "a refused call persists nothing");
    h.finish();
    Ok(())
}

#[tokio::test]
async fn rfc7592_put_rotates_the_rat_persists_it_first_and_the_old_one_is_refused()
-> anyhow::Result<()> {
    let h = Harness::start(|cfg| cfg.rotate_rat = true).await?;
    let tpp = Tpp::generate("tpp-put", &h.rec)?;
    let client = tpp.client(&h)?;
    let store = Arc::new(Store::default());
    let first = registered(&h, &tpp, &client, &store).await?;
    let persister = Persister::new(store.clone(), h.rec.clone());
    let mut desired = tpp.metadata()?;
    desired.insert("client_name".into(), json!("renamed tpp"));

    let second =
        h.expect_ok(update_client(&client, h.target(), &first, &desired, &persister).await)?;
    assert_ne!(rat(&second), rat(&first), "PUT returned a new RAT");
    assert_eq!(
        store.rats().last(),
        Some(&rat(&second)),
        "persisted before returning"
    );
    assert_eq!(
        second.metadata.get("client_name"),
        Some(&json!("renamed tpp"))
    );

    desired.insert("client_name".into(), json!("renamed again"));
    let third =
        h.expect_ok(update_client(&client, h.target(), &second, &desired, &persister).await)?;
    assert_eq!(
        third.metadata.get("client_name"),
        Some(&json!("renamed again"))
    );
    assert_eq!(store.rats().last(), Some(&rat(&third)));

    let stale =
        h.expect_err(update_client(&client, h.target(), &first, &desired, &persister).await)?;
    assert_eq!(stale.status(), Some(401));
    assert_eq!(stale.reason(), "RegistrationRejected");
    assert!(!stale.is_transient());

    // The client still authenticates with its key after the updates.
    let authn = tpp.authn(&third.client_id, &h.rec, AudiencePolicy::Issuer);
    let token = h.expect_ok(h.token(&client, &authn).await)?;
    h.assert_bound(&token, tpp.x5t()).await?;
    h.finish();
    Ok(())
}

#[tokio::test]
async fn a_failed_write_after_registration_fails_the_call_and_leaves_an_orphan_at_the_as()
-> anyhow::Result<()> {
    let h = Harness::start(|_| {}).await?;
    let tpp = Tpp::generate("tpp-crash", &h.rec)?;
    let client = tpp.client(&h)?;
    // The write fails once: as if the process died between the AS's answer and the write.
    let store = Arc::new(Store::failing_first(1));
    let persister = Persister::new(store.clone(), h.rec.clone());
    let err = h.expect_err(
        register_dynamic(
            &client,
            h.registration_endpoint(),
            None,
            &tpp.metadata()?,
            &persister,
        )
        .await,
    )?;
    assert!(matches!(
        err,
        tpp_operator::oauth::OauthError::PersistRegistration { .. }
    ));
    assert_eq!(err.reason(), "PersistRegistrationFailed");
    assert!(err.is_transient(), "the reconciler retries");
    assert!(store.rats().is_empty(), "nothing was stored");
    assert_eq!(
        h.sandbox.counters().registrations_created,
        1,
        "the client exists at the AS, but its RAT is gone"
    );

    // The oauth layer cannot recover that RAT: the retry is a second registration, and the
    // first client is orphaned at the AS.
    let again = h.expect_ok(
        register_dynamic(
            &client,
            h.registration_endpoint(),
            None,
            &tpp.metadata()?,
            &persister,
        )
        .await,
    )?;
    assert_eq!(h.sandbox.counters().registrations_created, 2);
    assert_eq!(store.rats(), vec![rat(&again)]);
    h.finish();
    Ok(())
}

#[tokio::test]
async fn a_persister_that_retries_its_store_survives_a_failed_write_without_a_second_registration()
-> anyhow::Result<()> {
    let h = Harness::start(|_| {}).await?;
    let tpp = Tpp::generate("tpp-retry", &h.rec)?;
    let client = tpp.client(&h)?;
    let store = Arc::new(Store::failing_first(1));
    let persister = Persister::retrying(store.clone(), 2, h.rec.clone());
    let registration = h.expect_ok(
        register_dynamic(
            &client,
            h.registration_endpoint(),
            None,
            &tpp.metadata()?,
            &persister,
        )
        .await,
    )?;
    assert_eq!(store.attempts.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(store.rats(), vec![rat(&registration)]);
    assert_eq!(h.sandbox.counters().registrations_created, 1);
    // The stored RAT is the live one.
    let stored = store
        .last()
        .ok_or_else(|| anyhow::anyhow!("nothing stored"))?;
    h.expect_ok(read_client(&client, h.target(), &stored, &persister).await)?;
    h.finish();
    Ok(())
}

#[tokio::test]
async fn a_rotated_rat_lost_before_persistence_leaves_the_client_usable_but_unmanageable()
-> anyhow::Result<()> {
    let h = Harness::start(|cfg| cfg.rotate_rat = true).await?;
    let tpp = Tpp::generate("tpp-lost-rat", &h.rec)?;
    let client = tpp.client(&h)?;
    let store = Arc::new(Store::default());
    let first = registered(&h, &tpp, &client, &store).await?;

    let failing = Persister::new(Arc::new(Store::failing_first(1)), h.rec.clone());
    let err = h.expect_err(read_client(&client, h.target(), &first, &failing).await)?;
    assert_eq!(err.reason(), "PersistRegistrationFailed");

    // The AS rotated anyway: the stored (old) RAT is dead, and the new one was never kept.
    let persister = Persister::new(store.clone(), h.rec.clone());
    let stale = h.expect_err(read_client(&client, h.target(), &first, &persister).await)?;
    assert_eq!(stale.status(), Some(401));
    // Tokens do not need the RAT: the client keeps working until it is re-registered.
    let authn = tpp.authn(&first.client_id, &h.rec, AudiencePolicy::Issuer);
    let token = h.expect_ok(h.token(&client, &authn).await)?;
    h.assert_bound(&token, tpp.x5t()).await?;
    h.finish();
    Ok(())
}
