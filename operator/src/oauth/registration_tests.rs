//! Pure tests of registration parsing and the registration_client_uri origin check.

use secrecy::ExposeSecret;
use serde_json::json;

use super::*;

const RAT: &str = "a655a16b-8a92-4210-87b5-7e1cd9ad49c8";

fn v11() -> Value {
    json!({
        "client_id": "1c5a9aeb-8236-40db-8690-80541d08ae7f",
        "client_secret": "s3cr3t-client-secret",
        "client_id_issued_at": 1598013607665u64,
        "client_secret_expires_at": 0,
        "tls_client_auth_subject_dn": "C=GB,O=OpenBanking,OU=0015800001041RHAAY,CN=5aRav7KBdrEqqs1e1fwNgk",
        "registration_access_token": RAT,
        "scope": "openid accounts"
    })
}

#[test]
fn parses_the_obie_response_and_reads_large_issued_at_as_milliseconds() {
    let reg = parse_registration(Step::Register, v11());
    let reg = reg.ok();
    let reg = reg.as_ref();
    assert_eq!(
        reg.map(|r| r.client_id.as_str()),
        Some("1c5a9aeb-8236-40db-8690-80541d08ae7f")
    );
    assert_eq!(
        reg.and_then(|r| r.client_id_issued_at)
            .map(|t| t.as_millisecond()),
        Some(1_598_013_607_665)
    );
    assert_eq!(
        reg.and_then(|r| r.registration_access_token.as_ref())
            .map(|t| t.expose_secret().to_owned())
            .as_deref(),
        Some(RAT)
    );
    assert_eq!(
        reg.and_then(|r| r.metadata.get("scope")),
        Some(&json!("openid accounts"))
    );
}

#[test]
fn reads_small_issued_at_as_seconds_and_accepts_fractions() {
    assert_eq!(
        numeric_date(&json!(1598013607)).map(|t| t.as_second()),
        Some(1_598_013_607)
    );
    assert_eq!(
        numeric_date(&json!(1769766702.739)).map(|t| t.as_millisecond()),
        Some(1_769_766_702_739)
    );
    assert_eq!(numeric_date(&json!("1598013607")), None);
}

#[test]
fn kept_metadata_and_debug_hold_no_secret() {
    let reg = parse_registration(Step::Register, v11()).ok();
    let text = format!(
        "{reg:?} {}",
        reg.as_ref()
            .map(|r| Value::Object(r.metadata.clone()))
            .unwrap_or_default()
    );
    assert!(!text.contains(RAT));
    assert!(!text.contains("s3cr3t-client-secret"));
    assert!(text.contains("1c5a9aeb"));
}

#[test]
fn a_response_without_client_id_is_invalid() {
    let err = parse_registration(Step::Register, json!({"registration_access_token": RAT})).err();
    assert!(
        err.as_ref()
            .is_some_and(|e| e.to_string().contains("no client_id"))
    );
    assert!(!format!("{err:?}").contains(RAT));
    assert!(parse_registration(Step::Register, json!(["x"])).is_err());
}

#[test]
fn registration_uri_on_the_endpoint_or_issuer_origin_is_accepted() {
    let endpoint = "https://rs1.example:8443/tpp-registration";
    let issuer = "https://auth1.example";
    for ok in [
        "https://rs1.example:8443/tpp-registration/abc",
        "https://auth1.example/reg/abc",
        "https://auth1.example:443/x",
    ] {
        assert!(check_registration_uri(ok, endpoint, issuer).is_ok(), "{ok}");
    }
}

#[test]
fn registration_uri_on_another_origin_is_refused() {
    let endpoint = "https://rs1.example:8443/tpp-registration";
    let issuer = "https://auth1.example";
    for bad in [
        "https://evil.example/reg/abc",
        "http://rs1.example:8443/tpp-registration/abc",
        "https://rs1.example/tpp-registration/abc",
        "https://rs1.example:9443/tpp-registration/abc",
        "https://auth1.example.evil.example/reg",
    ] {
        let err = check_registration_uri(bad, endpoint, issuer).err();
        assert_eq!(
            err.as_ref().map(|e| e.reason().as_str()),
            Some("ForeignRegistrationUri"),
            "{bad}"
        );
        assert!(err.is_some_and(|e| !e.is_transient()));
    }
}

#[test]
fn static_registration_sends_nothing_and_keeps_the_client_id() {
    let reg = register_static("55aa605c-89ef-4473-aa88-47709f0ff383");
    assert_eq!(reg.client_id, "55aa605c-89ef-4473-aa88-47709f0ff383");
    assert!(reg.registration_access_token.is_none());
}
