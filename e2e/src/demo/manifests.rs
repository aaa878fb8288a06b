//! The manifests `make demo` applies: the repository's `examples/` adapted to the local sandbox
//! AS (issuer, CA bundle, JWKS cache TTL, the out-of-band client id and `jwks_uri`, demo-sized
//! rotation delays), so that what the demo shows is what a user copies. Pure: no I/O except
//! [`load_example`], which reads one file.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::fixtures::merge;

/// The example an AuthorizationServer is adapted from.
pub const SERVER_EXAMPLE: &str = "authorization-server.yaml";
/// The example the TppClient is adapted from (OFM's default: a Static client).
pub const CLIENT_EXAMPLE: &str = "tppclient-static.yaml";
/// Name of the demo's AuthorizationServer.
pub const SERVER_NAME: &str = "sandbox";
/// How long the sandbox caches a fetched `jwks_uri` and the AuthorizationServer says it may;
/// also the demo's key propagation delay (so the first key is active a few seconds after the
/// client is created instead of the example's 20 minutes).
pub const JWKS_CACHE_TTL: &str = "5s";
/// [`JWKS_CACHE_TTL`] in seconds, for the sandbox's configuration.
pub const JWKS_CACHE_TTL_SECS: u64 = 5;

/// What the local run contributes to the examples.
#[derive(Clone, Debug)]
pub struct Local<'a> {
    /// Namespace the objects go to.
    pub namespace: &'a str,
    /// The sandbox's issuer URL.
    pub issuer: &'a str,
    /// PEM of the CA that signed the sandbox's TLS certificate.
    pub ca_pem: &'a str,
    /// The client id the sandbox issued out of band.
    pub client_id: &'a str,
    /// The operator's `/jwks/{namespace}/{name}` URL the sandbox fetches.
    pub jwks_uri: &'a str,
}

/// Read and parse `examples/<file>` under `repo`.
pub fn load_example(repo: &Path, file: &str) -> Result<Value> {
    let path = repo.join("examples").join(file);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    serde_yaml::from_str(&text).with_context(|| format!("parse {}", path.display()))
}

/// The AuthorizationServer example pointed at the sandbox: its issuer, its CA inline
/// (`caBundle` instead of the example's `caBundleRef`), and the sandbox's JWKS cache TTL.
pub fn authorization_server(example: &Value, local: &Local<'_>) -> Result<Value> {
    ensure_kind(example, "AuthorizationServer")?;
    let mut out = example.clone();
    merge(
        &mut out,
        json!({
            "metadata": {"name": SERVER_NAME, "namespace": local.namespace},
            "spec": {
                "issuer": local.issuer,
                "caBundleRef": null,
                "caBundle": local.ca_pem,
                "jwksCacheTtl": JWKS_CACHE_TTL,
            },
        }),
    );
    Ok(out)
}

/// The Static TppClient example bound to the sandbox: the issued client id, the operator's
/// `jwks_uri`, and a key propagation delay equal to the sandbox's JWKS cache TTL.
pub fn tpp_client(example: &Value, local: &Local<'_>) -> Result<Value> {
    ensure_kind(example, "TppClient")?;
    let mut out = example.clone();
    merge(
        &mut out,
        json!({
            "metadata": {"namespace": local.namespace},
            "spec": {
                "authorizationServerRef": {"name": SERVER_NAME},
                "registration": {"clientId": local.client_id, "jwksUri": local.jwks_uri},
                "signingKey": {"rotation": {"propagationDelay": JWKS_CACHE_TTL, "retireAfter": "1m"}},
            },
        }),
    );
    Ok(out)
}

/// The name in `metadata.name`.
pub fn name(manifest: &Value) -> Result<&str> {
    manifest["metadata"]["name"]
        .as_str()
        .context("manifest without metadata.name")
}

/// YAML for the `.demo/` file, headed by a comment naming the example it was adapted from.
pub fn to_file_yaml(manifest: &Value, example: &str) -> Result<String> {
    Ok(format!(
        "# Applied by `make demo`: examples/{example} adapted to the local sandbox AS.\n{}",
        serde_yaml::to_string(manifest)?
    ))
}

/// YAML for the terminal: as applied, but a PEM `caBundle` is replaced by a pointer to `file`.
pub fn to_echo_yaml(manifest: &Value, file: &str) -> Result<String> {
    let mut shown = manifest.clone();
    if let Some(spec) = shown.get_mut("spec").and_then(Value::as_object_mut)
        && spec.contains_key("caBundle")
    {
        spec.insert(
            "caBundle".into(),
            Value::String(format!("<the sandbox CA, PEM: see {file}>")),
        );
    }
    Ok(serde_yaml::to_string(&shown)?)
}

fn ensure_kind(example: &Value, kind: &str) -> Result<()> {
    anyhow::ensure!(
        example["kind"] == kind,
        "expected an example of kind {kind}, found {}",
        example["kind"]
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control_plane::repo_root;

    fn local() -> Local<'static> {
        Local {
            namespace: "demo",
            issuer: "https://localhost:4443",
            ca_pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            client_id: "c-123",
            jwks_uri: "http://127.0.0.1:8081/jwks/demo/payments",
        }
    }

    #[test]
    fn server_example_points_at_the_sandbox_with_an_inline_ca() {
        let example = load_example(&repo_root(), SERVER_EXAMPLE).unwrap();
        let out = authorization_server(&example, &local()).unwrap();
        assert_eq!(out["spec"]["issuer"], "https://localhost:4443");
        assert_eq!(out["spec"]["caBundle"], local().ca_pem);
        assert!(
            out["spec"].get("caBundleRef").is_none(),
            "caBundleRef and caBundle are exclusive"
        );
        assert_eq!(out["metadata"]["namespace"], "demo");
        // What the demo does not need to change stays as the user will copy it.
        assert_eq!(out["spec"]["rateLimit"], example["spec"]["rateLimit"]);
        assert_eq!(out["spec"]["profile"], example["spec"]["profile"]);
    }

    #[test]
    fn client_example_uses_the_issued_client_id_and_the_operator_jwks_uri() {
        let example = load_example(&repo_root(), CLIENT_EXAMPLE).unwrap();
        let out = tpp_client(&example, &local()).unwrap();
        let spec = &out["spec"];
        assert_eq!(spec["registration"]["mode"], "Static");
        assert_eq!(spec["registration"]["clientId"], "c-123");
        assert_eq!(
            spec["registration"]["jwksUri"],
            "http://127.0.0.1:8081/jwks/demo/payments"
        );
        assert_eq!(spec["authorizationServerRef"]["name"], SERVER_NAME);
        assert_eq!(
            spec["signingKey"]["rotation"]["propagationDelay"],
            JWKS_CACHE_TTL
        );
        assert_eq!(
            spec["signingKey"]["rotation"]["every"],
            example["spec"]["signingKey"]["rotation"]["every"]
        );
        assert_eq!(spec["tokens"], example["spec"]["tokens"]);
    }

    #[test]
    fn the_sandbox_cache_ttl_matches_the_one_the_manifests_declare() {
        let declared: tpp_operator::duration::Duration = JWKS_CACHE_TTL.parse().unwrap();
        assert_eq!(
            declared.std(),
            std::time::Duration::from_secs(JWKS_CACHE_TTL_SECS)
        );
    }

    #[test]
    fn adapting_the_wrong_kind_is_refused() {
        let example = load_example(&repo_root(), SERVER_EXAMPLE).unwrap();
        assert!(tpp_client(&example, &local()).is_err());
    }

    #[test]
    fn echoed_yaml_hides_the_pem_but_the_file_keeps_it() {
        let example = load_example(&repo_root(), SERVER_EXAMPLE).unwrap();
        let out = authorization_server(&example, &local()).unwrap();
        let echo = to_echo_yaml(&out, ".demo/authorization-server.yaml").unwrap();
        assert!(
            !echo.contains("BEGIN CERTIFICATE")
                && echo.contains("see .demo/authorization-server.yaml"),
            "{echo}"
        );
        let file = to_file_yaml(&out, SERVER_EXAMPLE).unwrap();
        assert!(file.contains("BEGIN CERTIFICATE"), "{file}");
        let back: Value = serde_yaml::from_str(&file).unwrap();
        assert_eq!(back, out);
    }
}
