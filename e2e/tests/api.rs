//! The tpp.dev/v1alpha1 API on a real kube-apiserver: CRDs install and become Established,
//! valid examples round-trip through server-side apply with defaults, every CEL rule refuses its
//! bad example with its own message, printer columns show in table output, and status is
//! written only through the status subresource.

use anyhow::{Context, Result, bail, ensure};
use e2e::{TestContext, control_plane::repo_root, with_namespace};
use kube::{
    Api,
    api::{DynamicObject, Patch, PatchParams, PostParams},
    core::{ApiResource, GroupVersionKind},
};
use serde_json::{Value, json};

fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("tpp.dev", "v1alpha1", kind))
}

fn api_for(ctx: &TestContext, kind: &str) -> Api<DynamicObject> {
    if kind == "ClusterAuthorizationServer" {
        Api::all_with(ctx.client.clone(), &resource(kind))
    } else {
        Api::namespaced_with(ctx.client.clone(), &ctx.namespace, &resource(kind))
    }
}

fn example(file: &str) -> Value {
    let text =
        std::fs::read_to_string(repo_root().join("examples").join(file)).expect("read example");
    serde_yaml::from_str(&text).expect("parse example")
}

fn minimal_client() -> Value {
    json!({
        "apiVersion": "tpp.dev/v1alpha1",
        "kind": "TppClient",
        "metadata": {"name": "c"},
        "spec": {
            "authorizationServerRef": {"name": "as"},
            "registration": {"mode": "Dynamic"},
            "tokens": [{"name": "accounts"}]
        }
    })
}

fn minimal_server() -> Value {
    json!({
        "apiVersion": "tpp.dev/v1alpha1",
        "kind": "AuthorizationServer",
        "metadata": {"name": "as"},
        "spec": {"issuer": "https://as.example.com", "caBundle": "pem"}
    })
}

/// The first path at which `want` is not contained in `got` (objects may gain fields).
fn first_difference(want: &Value, got: &Value, path: &str) -> Option<String> {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => w.iter().find_map(|(k, v)| {
            first_difference(v, g.get(k).unwrap_or(&Value::Null), &format!("{path}.{k}"))
        }),
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => w
            .iter()
            .zip(g)
            .enumerate()
            .find_map(|(i, (a, b))| first_difference(a, b, &format!("{path}[{i}]"))),
        _ if want == got => None,
        _ => Some(path.to_owned()),
    }
}

/// Set `value` at the slash-separated `path` (creating objects on the way).
fn set(obj: &mut Value, path: &str, value: Value) {
    let mut cur = obj;
    let parts: Vec<&str> = path.split('/').collect();
    for (i, p) in parts.iter().enumerate() {
        if i == parts.len() - 1 {
            cur[*p] = value;
            return;
        }
        if cur.get(*p).is_none() {
            cur[*p] = json!({});
        }
        cur = cur.get_mut(*p).expect("just inserted");
    }
}

async fn create(
    ctx: &TestContext,
    obj: &Value,
    dry_run: bool,
) -> Result<DynamicObject, kube::Error> {
    let kind = obj["kind"].as_str().unwrap_or_default().to_owned();
    let obj: DynamicObject = serde_json::from_value(obj.clone()).expect("dynamic object");
    let pp = PostParams {
        dry_run,
        ..Default::default()
    };
    api_for(ctx, &kind).create(&pp, &obj).await
}

/// Create `obj` (dry run) and require a 422 whose message contains `message`.
async fn expect_rejected(ctx: &TestContext, obj: Value, message: &str) -> Result<()> {
    match create(ctx, &obj, true).await {
        Ok(_) => bail!("the apiserver accepted an object that should be refused with {message:?}"),
        Err(kube::Error::Api(status)) => {
            if status.code != 422 || !status.message.contains(message) {
                bail!(
                    "expected 422 containing {message:?}, got {}: {}",
                    status.code,
                    status.message
                );
            }
            Ok(())
        }
        Err(e) => bail!("unexpected error: {e}"),
    }
}

macro_rules! rejects {
    ($name:ident, $base:expr, [$(($path:expr, $value:expr)),* $(,)?], $message:expr) => {
        #[tokio::test]
        async fn $name() {
            with_namespace("cel", |ctx| async move {
                let mut obj = $base;
                $( set(&mut obj, $path, $value); )*
                // The unmodified base must be valid, or the test proves nothing.
                create(&ctx, &$base, true).await.context("the base object must be accepted")?;
                expect_rejected(&ctx, obj, $message).await
            })
            .await;
        }
    };
}

#[tokio::test]
async fn crds_are_established_on_a_real_apiserver_of_the_pinned_version() {
    with_namespace("crds", |ctx| async move {
        let info = ctx.client.apiserver_version().await?;
        eprintln!("e2e: talking to kube-apiserver {} ({})", info.git_version, ctx.cp.version);
        assert_eq!(info.git_version, e2e::control_plane::expected_kube_version());
        let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
            Api::all(ctx.client.clone());
        for name in ["tppclients.tpp.dev", "authorizationservers.tpp.dev", "clusterauthorizationservers.tpp.dev"] {
            let crd = crds.get(name).await?;
            let established = crd.status.and_then(|s| s.conditions).unwrap_or_default();
            assert!(established.iter().any(|c| c.type_ == "Established" && c.status == "True"), "{name}");
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn every_example_is_accepted_and_round_trips_through_server_side_apply_with_defaults() {
    with_namespace("examples", |ctx| async move {
        for file in [
            "authorization-server.yaml",
            "cluster-authorization-server.yaml",
            "tppclient-static.yaml",
            "tppclient-dynamic.yaml",
            "tppclient-hub-onboarding.yaml",
            "tppclient-signed-request.yaml",
        ] {
            let mut obj = example(file);
            let kind = obj["kind"].as_str().unwrap_or_default().to_owned();
            if kind == "ClusterAuthorizationServer" {
                obj["metadata"]["name"] = json!(format!("{}-{}", ctx.namespace, "cas"));
            }
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let dynamic: DynamicObject = serde_json::from_value(obj.clone())?;
            let api = api_for(&ctx, &kind);
            api.patch(
                &name,
                &PatchParams::apply("e2e-test"),
                &Patch::Apply(&dynamic),
            )
            .await
            .with_context(|| format!("apply {file}"))?;
            let got = api.get(&name).await?;
            let spec = &got.data["spec"];
            // Every field the example sets comes back unchanged (defaults may be added).
            if let Some(path) = first_difference(&obj["spec"], spec, "spec") {
                panic!(
                    "{file}: {path} changed in the round trip: {}",
                    serde_json::to_string(spec)?
                );
            }
            // Defaults were applied by the apiserver from the schema.
            if kind == "TppClient" {
                assert_eq!(spec["signingKey"]["algorithm"], "PS256", "{file}");
                assert!(
                    spec["transportCertificate"]["duration"].is_string(),
                    "{file}"
                );
                assert_eq!(spec["suspend"], false, "{file}");
                assert!(spec["registration"]["deletionPolicy"].is_string(), "{file}");
            } else {
                assert!(spec["jwksCacheTtl"].is_string(), "{file}");
                assert_eq!(spec["profile"], "FAPI2", "{file}");
            }
            // A second apply of the same manifest is a no-op for the user's fields.
            let again = api
                .patch(
                    &name,
                    &PatchParams::apply("e2e-test"),
                    &Patch::Apply(&dynamic),
                )
                .await?;
            assert_eq!(
                again.metadata.generation, got.metadata.generation,
                "{file}: re-apply bumped the generation"
            );
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn status_is_written_only_through_the_status_subresource() {
    with_namespace("status", |ctx| async move {
        let mut obj = minimal_client();
        obj["status"] = json!({"clientId": "sneaky"});
        let created = create(&ctx, &obj, false).await?;
        assert!(created.data.get("status").and_then(|s| s.get("clientId")).is_none(), "status set through the main resource");
        let api = api_for(&ctx, "TppClient");
        let patch = json!({"apiVersion": "tpp.dev/v1alpha1", "kind": "TppClient", "status": {"clientId": "abc"}});
        api.patch_status("c", &PatchParams::apply("e2e-test").force(), &Patch::Apply(&patch)).await?;
        let got = api.get("c").await?;
        assert_eq!(got.data["status"]["clientId"], "abc");
        // A spec change through the status subresource is ignored.
        let patch = json!({"apiVersion": "tpp.dev/v1alpha1", "kind": "TppClient", "spec": {"suspend": true}});
        api.patch_status("c", &PatchParams::default(), &Patch::Merge(&patch)).await?;
        assert_eq!(api.get("c").await?.data["spec"]["suspend"], false);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn printer_columns_show_ready_client_id_cert_expiry_and_age_in_table_output() {
    with_namespace("columns", |ctx| async move {
        create(&ctx, &minimal_client(), false).await?;
        let status = json!({"apiVersion": "tpp.dev/v1alpha1", "kind": "TppClient", "status": {
            "clientId": "client-123",
            "certificate": {"notAfter": "2027-11-26T00:00:00Z"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "Reconciled", "message": "all good",
                            "lastTransitionTime": "2026-11-26T00:00:00Z"}]
        }});
        api_for(&ctx, "TppClient").patch_status("c", &PatchParams::apply("e2e-test").force(), &Patch::Apply(&status)).await?;
        let req = http::Request::get(format!("/apis/tpp.dev/v1alpha1/namespaces/{}/tppclients?includeObject=None", ctx.namespace))
            .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
            .body(Vec::new())?;
        let table: Value = ctx.client.request(req).await?;
        let columns: Vec<&str> = table["columnDefinitions"].as_array().expect("columns").iter().filter_map(|c| c["name"].as_str()).collect();
        assert_eq!(columns, ["Name", "Ready", "Client ID", "Cert Expiry", "Age", "Reason", "Message"]);
        let wide: Vec<i64> = table["columnDefinitions"].as_array().expect("columns").iter().map(|c| c["priority"].as_i64().unwrap_or(0)).collect();
        assert_eq!(wide, [0, 0, 0, 0, 0, 1, 1], "Reason and Message only in -o wide");
        let row = &table["rows"][0]["cells"];
        assert_eq!(row[0], "c");
        assert_eq!(row[1], "True");
        assert_eq!(row[2], "client-123");
        assert!(row[3].as_str().is_some_and(|s| !s.is_empty() && s != "<none>"), "cert expiry cell: {}", row[3]);
        assert_eq!(row[5], "Reconciled");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn immutable_fields_refuse_changes_with_their_message() {
    with_namespace("immutable", |ctx| async move {
        create(&ctx, &minimal_client(), false).await?;
        let api = api_for(&ctx, "TppClient");
        for (patch, message) in [
            (
                json!({"spec": {"authorizationServerRef": {"name": "other"}}}),
                "authorizationServerRef is immutable",
            ),
            (
                json!({"spec": {"registration": {"mode": "SignedRequest"}}}),
                "registration.mode is immutable",
            ),
        ] {
            match api
                .patch("c", &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains(message) => {}
                other => bail!("expected 422 {message:?}, got {other:?}"),
            }
        }
        Ok(())
    })
    .await;
}

// ---- TppClient rules: one test per rule, asserting its message ----

rejects!(
    static_registration_requires_a_client_id,
    minimal_client(),
    [("spec/registration/mode", json!("Static"))],
    "Static and HubOnboarding registration require clientId"
);
rejects!(
    hub_onboarding_requires_a_client_id,
    minimal_client(),
    [("spec/registration/mode", json!("HubOnboarding"))],
    "Static and HubOnboarding registration require clientId"
);
rejects!(
    dynamic_registration_forbids_a_client_id,
    minimal_client(),
    [("spec/registration/clientId", json!("abc"))],
    "clientId must not be set for Dynamic or SignedRequest registration"
);
rejects!(
    signed_request_registration_forbids_a_client_id,
    minimal_client(),
    [
        ("spec/registration/mode", json!("SignedRequest")),
        ("spec/registration/clientId", json!("abc"))
    ],
    "clientId must not be set for Dynamic or SignedRequest registration"
);
rejects!(
    client_id_must_not_be_empty,
    minimal_client(),
    [
        ("spec/registration/mode", json!("Static")),
        ("spec/registration/clientId", json!(""))
    ],
    "clientId must not be empty"
);
rejects!(
    initial_access_token_applies_to_dynamic_only,
    minimal_client(),
    [
        ("spec/registration/mode", json!("SignedRequest")),
        (
            "spec/registration/initialAccessTokenRef",
            json!({"name": "s", "key": "k"})
        )
    ],
    "initialAccessTokenRef applies to Dynamic registration only"
);
rejects!(
    software_statement_applies_to_signed_request_only,
    minimal_client(),
    [(
        "spec/registration/softwareStatementRef",
        json!({"name": "s", "key": "k"})
    )],
    "softwareStatementRef applies to SignedRequest registration only"
);
rejects!(
    jwks_uri_must_be_an_https_url,
    minimal_client(),
    [("spec/registration/jwksUri", json!("ftp://example.com/jwks"))],
    "jwksUri must be an https:// URL"
);
rejects!(
    jwks_uri_over_plain_http_is_refused_for_a_remote_host,
    minimal_client(),
    [(
        "spec/registration/jwksUri",
        json!("http://jwks.example.com/jwks/ns/c")
    )],
    "jwksUri must be an https:// URL"
);
rejects!(
    jwks_uri_over_plain_http_is_refused_for_a_host_that_only_starts_like_loopback,
    minimal_client(),
    [(
        "spec/registration/jwksUri",
        json!("http://127.0.0.1.evil.example/jwks")
    )],
    "jwksUri must be an https:// URL"
);

#[tokio::test]
async fn jwks_uri_over_plain_http_is_accepted_on_loopback_only() {
    with_namespace("cel-jwks", |ctx| async move {
        for uri in [
            "https://jwks.example.com/jwks/ns/c",
            "http://127.0.0.1:8080/jwks/ns/c",
            "http://localhost/jwks/ns/c",
        ] {
            let mut obj = minimal_client();
            set(&mut obj, "spec/registration/jwksUri", json!(uri));
            create(&ctx, &obj, true)
                .await
                .with_context(|| uri.to_owned())?;
        }
        Ok(())
    })
    .await;
}
rejects!(
    tls_client_auth_requires_a_subject_dn,
    minimal_client(),
    [
        ("spec/authentication/method", json!("tls_client_auth")),
        (
            "spec/transportCertificate",
            json!({"source": "SecretRef", "secretRef": {"name": "tls"}})
        )
    ],
    "tls_client_auth requires authentication.subjectDn"
);
rejects!(
    tls_client_auth_requires_a_ca_issued_certificate,
    minimal_client(),
    [(
        "spec/authentication",
        json!({"method": "tls_client_auth", "subjectDn": "CN=app"})
    )],
    "tls_client_auth requires transportCertificate.source SecretRef"
);
rejects!(
    rsa_signing_keys_below_2048_bits_are_refused,
    minimal_client(),
    [("spec/signingKey/size", json!(1024))],
    "signingKey.size must be 2048, 3072 or 4096"
);
rejects!(
    es256_signing_keys_take_no_size,
    minimal_client(),
    [
        ("spec/signingKey/algorithm", json!("ES256")),
        ("spec/signingKey/size", json!(2048))
    ],
    "signingKey.size applies to RSA (PS256) keys only"
);
rejects!(
    encryption_key_size_must_be_a_supported_rsa_size,
    minimal_client(),
    [("spec/encryptionKey/size", json!(1000))],
    "encryptionKey.size must be 2048, 3072 or 4096"
);
rejects!(
    retire_after_must_be_greater_than_zero,
    minimal_client(),
    [("spec/signingKey/rotation/retireAfter", json!("0s"))],
    "rotation.retireAfter must be greater than 0"
);
rejects!(
    negative_propagation_delay_is_refused_as_a_malformed_duration,
    minimal_client(),
    [("spec/signingKey/rotation/propagationDelay", json!("-5m"))],
    "must be a duration like 90d, 1h30m"
);
rejects!(
    durations_must_use_kubernetes_style_units,
    minimal_client(),
    [("spec/transportCertificate/duration", json!("1 year"))],
    "must be a duration like 90d, 1h30m"
);
rejects!(
    secret_ref_source_requires_the_reference,
    minimal_client(),
    [("spec/transportCertificate/source", json!("SecretRef"))],
    "transportCertificate.source SecretRef requires transportCertificate.secretRef"
);
rejects!(
    secret_ref_is_only_used_with_the_secret_ref_source,
    minimal_client(),
    [(
        "spec/transportCertificate/secretRef",
        json!({"name": "tls"})
    )],
    "transportCertificate.secretRef is only used with source: SecretRef"
);
rejects!(
    renew_before_must_be_at_most_half_the_duration,
    minimal_client(),
    [
        ("spec/transportCertificate/duration", json!("30d")),
        ("spec/transportCertificate/renewBefore", json!("361h"))
    ],
    "transportCertificate.renewBefore must be at most half of transportCertificate.duration"
);
rejects!(
    a_two_minute_certificate_renewed_every_second_is_refused,
    minimal_client(),
    [
        ("spec/transportCertificate/duration", json!("2m")),
        ("spec/transportCertificate/renewBefore", json!("119s"))
    ],
    "transportCertificate.duration must be at least 1h"
);
rejects!(
    a_key_rotation_period_under_an_hour_is_refused,
    minimal_client(),
    [("spec/signingKey/rotation/every", json!("59m59s"))],
    "rotation.every must be at least 1h"
);
rejects!(
    an_encryption_key_rotation_period_of_one_second_is_refused,
    minimal_client(),
    [("spec/encryptionKey", json!({"rotation": {"every": "1s"}}))],
    "rotation.every must be at least 1h"
);
rejects!(
    a_zero_propagation_delay_is_refused,
    minimal_client(),
    [("spec/signingKey/rotation/propagationDelay", json!("0s"))],
    "rotation.propagationDelay must be at least 1s"
);
rejects!(
    a_token_audience_must_be_an_absolute_uri_for_the_rfc_8707_resource,
    minimal_client(),
    [(
        "spec/tokens",
        json!([{"name": "accounts", "audience": "accounts-api"}])
    )],
    "tokens[].audience must be an absolute URI without a fragment"
);
rejects!(
    a_token_audience_with_a_fragment_is_refused,
    minimal_client(),
    [(
        "spec/tokens",
        json!([{"name": "accounts", "audience": "https://rs.bank.example/#x"}])
    )],
    "tokens[].audience must be an absolute URI without a fragment"
);
rejects!(
    a_token_refresh_margin_under_a_second_is_refused,
    minimal_client(),
    [(
        "spec/tokens",
        json!([{"name": "accounts", "refreshBefore": "500ms"}])
    )],
    "tokens[].refreshBefore must be at least 1s"
);
rejects!(
    token_names_must_be_dns_labels,
    minimal_client(),
    [("spec/tokens", json!([{"name": "Accounts_Token"}]))],
    "token name must be a DNS label"
);
rejects!(
    token_names_must_be_unique,
    minimal_client(),
    [(
        "spec/tokens",
        json!([{"name": "accounts"}, {"name": "accounts", "scope": "profile"}])
    )],
    "token names must be unique within tokens[]"
);
rejects!(
    authorization_server_name_must_not_be_empty,
    minimal_client(),
    [("spec/authorizationServerRef/name", json!(""))],
    "authorizationServerRef.name must not be empty"
);

// ---- AuthorizationServer rules ----

rejects!(
    issuer_must_be_https,
    minimal_server(),
    [("spec/issuer", json!("http://as.example.com"))],
    "issuer must be an https:// URL"
);
rejects!(
    discovery_url_must_be_https,
    minimal_server(),
    [(
        "spec/discoveryUrl",
        json!("http://as.example.com/.well-known/openid-configuration")
    )],
    "discoveryUrl must be an https:// URL"
);
rejects!(
    ca_bundle_and_ca_bundle_ref_are_exclusive,
    minimal_server(),
    [("spec/caBundleRef", json!({"name": "ca", "key": "ca.crt"}))],
    "set caBundle or caBundleRef, not both"
);
rejects!(
    cluster_server_also_refuses_both_ca_bundle_forms,
    {
        let mut s = minimal_server();
        s["kind"] = json!("ClusterAuthorizationServer");
        s["metadata"]["name"] = json!(format!("cas-{:08x}", rand::random::<u32>()));
        s
    },
    [(
        "spec/caBundleRef",
        json!({"name": "ca", "key": "ca.crt", "namespace": "x"})
    )],
    "set caBundle or caBundleRef, not both"
);
rejects!(
    registration_endpoint_must_be_https,
    minimal_server(),
    [(
        "spec/registration/endpoint",
        json!("http://as.example.com/register")
    )],
    "registration.endpoint must be an https:// URL"
);
rejects!(
    signed_request_content_type_must_be_jwt_or_jose,
    minimal_server(),
    [(
        "spec/registration/signedRequestContentType",
        json!("application/json")
    )],
    "signedRequestContentType must be application/jwt or application/jose"
);
rejects!(
    assertion_audience_must_not_be_empty,
    minimal_server(),
    [("spec/clientAssertion/audience", json!(""))],
    "clientAssertion.audience must not be empty"
);
rejects!(
    rate_limit_requests_per_second_must_be_positive,
    minimal_server(),
    [("spec/rateLimit/requestsPerSecond", json!(0))],
    "rateLimit.requestsPerSecond must be at least 1"
);
rejects!(
    rate_limit_burst_must_be_positive,
    minimal_server(),
    [("spec/rateLimit/burst", json!(0))],
    "rateLimit.burst must be at least 1"
);
// An integer the Rust type cannot hold (u32) would pass a schema without `maximum` (the API
// server does not enforce `format: uint32`) and leave an object the operator cannot decode.
rejects!(
    a_rate_limit_beyond_what_the_operator_decodes_is_refused,
    minimal_server(),
    [("spec/rateLimit/burst", json!(4_294_967_296_u64))],
    "less than or equal to 10000"
);
rejects!(
    jwks_cache_ttl_must_be_a_duration,
    minimal_server(),
    [("spec/jwksCacheTtl", json!("fifteen minutes"))],
    "must be a duration like 90d, 1h30m"
);

// ---- bounds: what the API server accepts, the operator decodes (issue 13, item 1) ----

rejects!(
    a_duration_component_too_large_to_decode_is_refused,
    minimal_server(),
    [("spec/jwksCacheTtl", json!("99999999999999999999s"))],
    "at most 5 digits per unit"
);
rejects!(
    a_token_refresh_window_too_large_to_decode_is_refused,
    minimal_client(),
    [(
        "spec/tokens",
        json!([{"name": "accounts", "refreshBefore": "100000s"}])
    )],
    "at most 5 digits per unit"
);
rejects!(
    more_than_sixteen_redirect_uris_are_refused,
    minimal_client(),
    [(
        "spec/registration/metadata/redirectUris",
        json!(
            (0..17)
                .map(|i| format!("https://app.example.com/cb{i}"))
                .collect::<Vec<_>>()
        )
    )],
    "Too many"
);
rejects!(
    a_redirect_uri_longer_than_2048_characters_is_refused,
    minimal_client(),
    [(
        "spec/registration/metadata/redirectUris",
        json!([format!("https://app.example.com/{}", "a".repeat(2048))])
    )],
    "Too long"
);
rejects!(
    more_than_32_dns_names_are_refused,
    minimal_client(),
    [(
        "spec/transportCertificate/dnsNames",
        json!(
            (0..33)
                .map(|i| format!("h{i}.example.com"))
                .collect::<Vec<_>>()
        )
    )],
    "Too many"
);
rejects!(
    more_than_32_secret_template_labels_are_refused,
    minimal_client(),
    [(
        "spec/secretTemplate/labels",
        Value::Object((0..33).map(|i| (format!("l{i}"), json!("v"))).collect())
    )],
    "Too many"
);
rejects!(
    an_issuer_longer_than_2048_characters_is_refused,
    minimal_server(),
    [(
        "spec/issuer",
        json!(format!("https://as.example.com/{}", "a".repeat(2048)))
    )],
    "Too long"
);
rejects!(
    a_token_scope_longer_than_2048_characters_is_refused,
    minimal_client(),
    [(
        "spec/tokens",
        json!([{"name": "accounts", "scope": "a".repeat(2049)}])
    )],
    "Too long"
);

#[tokio::test]
async fn the_largest_schema_valid_durations_pass_every_cel_rule() {
    // The CEL rules run duration() over the part after the days (64-bit nanoseconds): the
    // digit bound keeps the longest value the pattern and maxLength allow inside its range, so
    // such a value is accepted (and decoded by the operator: duration.rs proptest).
    with_namespace("cel-max", |ctx| async move {
        let largest = "99999d99999h99999h99999h99999h";
        assert!(largest.len() <= 32);
        let mut obj = minimal_client();
        set(
            &mut obj,
            "spec/transportCertificate/duration",
            json!(largest),
        );
        set(
            &mut obj,
            "spec/transportCertificate/renewBefore",
            json!("99999h"),
        );
        set(
            &mut obj,
            "spec/signingKey/rotation/retireAfter",
            json!(largest),
        );
        create(&ctx, &obj, true)
            .await
            .context("largest durations")?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn renew_before_rule_compares_mixed_units_correctly() {
    // 15d and 360h are half of 30d, 12h half of 1d, 45m half of 90m, and 1h is the shortest
    // duration: all fine; this proves the CEL duration arithmetic, not just the refusal.
    with_namespace("cel-units", |ctx| async move {
        for (duration, renew) in [
            ("30d", "15d"),
            ("30d", "360h"),
            ("1d", "12h"),
            ("90m", "45m"),
            ("1h", "1800s"),
        ] {
            let mut obj = minimal_client();
            set(
                &mut obj,
                "spec/transportCertificate/duration",
                json!(duration),
            );
            set(
                &mut obj,
                "spec/transportCertificate/renewBefore",
                json!(renew),
            );
            create(&ctx, &obj, true)
                .await
                .with_context(|| format!("duration {duration} renewBefore {renew}"))?;
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn the_shortest_schedules_the_floors_allow_are_accepted() {
    // The floors of docs/security.md ("Rate of work per client"), each at its minimum: the
    // schedules the e2e suites use (propagationDelay 2s, retireAfter 2s) stay valid. (And an
    // absolute-URI audience passes its rule.)
    with_namespace("cel-floors", |ctx| async move {
        let mut obj = minimal_client();
        set(
            &mut obj,
            "spec/signingKey/rotation",
            json!({"every": "1h", "propagationDelay": "1s", "retireAfter": "1s"}),
        );
        set(
            &mut obj,
            "spec/transportCertificate",
            json!({"duration": "1h", "renewBefore": "30m"}),
        );
        set(
            &mut obj,
            "spec/tokens",
            json!([{"name": "accounts", "refreshBefore": "1s",
                    "audience": "https://rs.bank.example/open-banking"}]),
        );
        create(&ctx, &obj, true).await.context("the floors")?;
        Ok(())
    })
    .await;
}

rejects!(
    an_assertion_backdate_over_a_minute_is_refused,
    minimal_server(),
    [(
        "spec/clientAssertion",
        json!({"backdate": "61s", "lifetime": "10m"})
    )],
    "clientAssertion.backdate must be at most 60s"
);
rejects!(
    an_assertion_backdate_over_half_the_lifetime_is_refused,
    minimal_server(),
    [(
        "spec/clientAssertion",
        json!({"backdate": "31s", "lifetime": "1m"})
    )],
    "clientAssertion.backdate must be at most half of clientAssertion.lifetime"
);

#[tokio::test]
async fn an_assertion_backdate_of_a_minute_and_of_zero_is_accepted() {
    with_namespace("cel-backdate", |ctx| async move {
        for (i, assertion) in [
            json!({"backdate": "60s", "lifetime": "2m"}),
            json!({"backdate": "0s"}),
        ]
        .into_iter()
        .enumerate()
        {
            let mut obj = minimal_server();
            set(&mut obj, "metadata/name", json!(format!("as-{i}")));
            set(&mut obj, "spec/clientAssertion", assertion.clone());
            create(&ctx, &obj, true)
                .await
                .with_context(|| format!("{assertion}"))?;
        }
        Ok(())
    })
    .await;
}

// ---- spec.consumers: bounds and rules ----

rejects!(
    restart_targets_must_not_name_a_workload_twice,
    minimal_client(),
    [(
        "spec/consumers",
        json!({"restartTargets": [
            {"kind": "Deployment", "name": "api"},
            {"kind": "StatefulSet", "name": "api"},
            {"kind": "Deployment", "name": "api"},
        ]})
    )],
    "restartTargets must not name the same workload twice"
);
rejects!(
    restart_target_names_must_be_object_names,
    minimal_client(),
    [(
        "spec/consumers",
        json!({"restartTargets": [{"kind": "Deployment", "name": "Payments_API"}]})
    )],
    "restartTargets[].name must be a Kubernetes object name"
);
rejects!(
    restart_targets_are_only_apps_workloads,
    minimal_client(),
    [(
        "spec/consumers",
        json!({"restartTargets": [{"kind": "CronJob", "name": "api"}]})
    )],
    "Unsupported value: \"CronJob\""
);
rejects!(
    restart_targets_are_at_most_sixteen,
    minimal_client(),
    [(
        "spec/consumers",
        json!({"restartTargets": (0..17)
            .map(|i| json!({"kind": "Deployment", "name": format!("api-{i}")}))
            .collect::<Vec<_>>()})
    )],
    "must have at most 16 items"
);
rejects!(
    restart_on_must_not_repeat_a_value,
    minimal_client(),
    [(
        "spec/consumers",
        json!({"restartOn": ["Certificate", "Certificate"]})
    )],
    "restartOn must not repeat a value"
);
rejects!(
    min_restart_interval_is_a_duration,
    minimal_client(),
    [("spec/consumers", json!({"minRestartInterval": "a minute"}))],
    "must be a duration like"
);

/// `kubectl` of the pinned version against the test's control plane, as the admin.
fn kubectl(ctx: &TestContext, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(e2e::control_plane::binaries_dir().join("kubectl"))
        .arg("--kubeconfig")
        .arg(&ctx.cp.admin_kubeconfig_path)
        .args(args)
        .output()
        .context("running kubectl")?;
    if !out.status.success() {
        bail!("kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test]
async fn kubectl_get_tpp_lists_every_kind_and_explain_opens_with_a_written_description() {
    with_namespace("category", |ctx| async move {
        let cas = format!("{}-cas", ctx.namespace);
        for (file, name) in [
            ("authorization-server.yaml", None),
            ("cluster-authorization-server.yaml", Some(cas.clone())),
            ("tppclient-static.yaml", None),
        ] {
            let mut obj = example(file);
            if let Some(name) = name {
                obj["metadata"]["name"] = json!(name);
            }
            let kind = obj["kind"].as_str().unwrap_or_default().to_owned();
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let dynamic: DynamicObject = serde_json::from_value(obj)?;
            api_for(&ctx, &kind)
                .patch(
                    &name,
                    &PatchParams::apply("e2e-test"),
                    &Patch::Apply(&dynamic),
                )
                .await
                .with_context(|| format!("apply {file}"))?;
        }
        let listed = kubectl(&ctx, &["get", "tpp", "-n", &ctx.namespace, "-o", "name"])?;
        for wanted in [
            "authorizationserver.tpp.dev/ofm-sandbox".to_owned(),
            format!("clusterauthorizationserver.tpp.dev/{cas}"),
            "tppclient.tpp.dev/payments".to_owned(),
        ] {
            assert!(
                listed.lines().any(|l| l == wanted),
                "`kubectl get tpp` lists {wanted}:\n{listed}"
            );
        }
        let explained = kubectl(&ctx, &["explain", "tppclient"])?;
        assert!(
            explained.contains("An OAuth client of one Open Finance authorization server")
                && !explained.contains("Auto-generated"),
            "{explained}"
        );
        api_for(&ctx, "ClusterAuthorizationServer")
            .delete(&cas, &Default::default())
            .await?;
        Ok(())
    })
    .await;
}

/// References that have no `namespace` field (`authorizationServerRef`,
/// `transportCertificate.secretRef`, `consumers.restartTargets[]`) cannot be pointed at another
/// namespace at all. Server-side apply refuses the undeclared field; a create with strict field
/// validation (kubectl's default) refuses it naming the field; any other create has it pruned by
/// the structural schema, so the stored object, the only thing the operator reads, names no
/// namespace (docs/security.md § References across namespaces).
#[tokio::test]
async fn a_namespace_on_a_reference_without_one_is_refused_at_apply_or_pruned() {
    with_namespace("cel-xns", |ctx| async move {
        let cases = [
            (
                "spec/authorizationServerRef",
                json!({"name": "as", "namespace": "victim"}),
                "spec.authorizationServerRef.namespace",
            ),
            (
                "spec/transportCertificate",
                json!({"source": "SecretRef", "secretRef": {"name": "tls", "namespace": "victim"}}),
                "spec.transportCertificate.secretRef.namespace",
            ),
            (
                "spec/consumers",
                json!({"restartTargets": [{"kind": "Deployment", "name": "app", "namespace": "victim"}]}),
                "spec.consumers.restartTargets[0].namespace",
            ),
        ];
        let api = api_for(&ctx, "TppClient");
        for (i, (path, value, field)) in cases.into_iter().enumerate() {
            let name = format!("xns-{i}");
            let mut obj = minimal_client();
            obj["metadata"]["name"] = json!(name);
            set(&mut obj, path, value);
            // Server-side apply: the field is not in the schema.
            let dynamic: DynamicObject = serde_json::from_value(obj.clone())?;
            match api
                .patch(&name, &PatchParams::apply("api-test"), &Patch::Apply(&dynamic))
                .await
            {
                Ok(_) => bail!("server-side apply accepted {field}"),
                Err(kube::Error::Api(status)) => ensure!(
                    status.message.contains("field not declared in schema")
                        && status.message.contains(field.split('[').next().unwrap_or(field)),
                    "server-side apply of {field}: {} {}",
                    status.code,
                    status.message
                ),
                Err(e) => bail!("unexpected error for {field}: {e}"),
            }
            // A create with strict field validation: refused, naming the field.
            let url = format!(
                "/apis/tpp.dev/v1alpha1/namespaces/{}/tppclients?fieldValidation=Strict&dryRun=All",
                ctx.namespace
            );
            let request = http::Request::post(url)
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&obj)?)?;
            match ctx.client.request::<Value>(request).await {
                Ok(_) => bail!("strict field validation accepted {field}"),
                Err(kube::Error::Api(status)) => ensure!(
                    status.message.contains(&format!("unknown field \"{field}\"")),
                    "strict field validation of {field}: {} {}",
                    status.code,
                    status.message
                ),
                Err(e) => bail!("unexpected error for {field}: {e}"),
            }
            // Any other create: stored without the field.
            let stored = create(&ctx, &obj, false)
                .await
                .with_context(|| format!("create with {field}"))?;
            ensure!(
                !serde_json::to_string(&stored.data["spec"])?.contains("victim"),
                "{field} was stored"
            );
            let read = api.get(&name).await?;
            ensure!(
                !serde_json::to_string(&read.data["spec"])?.contains("victim"),
                "{field} was stored"
            );
        }
        Ok(())
    })
    .await;
}
