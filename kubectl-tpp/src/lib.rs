//! `kubectl tpp`: the kubectl plugin of tpp-operator, in the manner of cert-manager's `cmctl`.
//!
//! - `status [NAME]`: a readable summary per TppClient ([`status`]): conditions, client id,
//!   certificate and key dates, pending kids, the next token refresh as the operator plans it,
//!   recent history. It reads the TppClient and only the non-secret keys of its credentials
//!   Secret ([`credentials`]): no secret value is ever read into the output.
//! - `renew`, `rotate`, `renew-certificate`, `retry-registration`: set the operator's verb
//!   annotations ([`verbs`]).
//! - `approve NAME`: the approval gate: shows the pending kids with their RFC 7638 thumbprints
//!   from the published JWKS, then adds them to `tpp.dev/approved-kids` ([`approve`]).
//! - `jwks NAME`: the client's published JWK set.
//! - `preflight ISSUER --ca FILE`: fetches a discovery document and runs the operator's FAPI
//!   2.0 preflight on it, creating nothing ([`preflight`]).
//!
//! Kubernetes I/O in [`run`]; the renderers are pure functions of the objects and an instant.

pub mod approve;
pub mod cli;
pub mod credentials;
pub mod preflight;
pub mod status;
pub mod time;
pub mod verbs;

use std::io::Write;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{
    Api, Client, Config, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use tpp_operator::crd::{
    AuthorizationServer, AuthorizationServerKind, ClusterAuthorizationServer, TppClient,
    annotations,
};
use tpp_operator::store::layout;

use cli::{Cli, Command};

/// A kube client and the namespace to work in, from `--kubeconfig`/`KUBECONFIG`, `--context`
/// and `-n` (else the context's namespace).
pub async fn connect(cli: &Cli) -> Result<(Client, String)> {
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        ..Default::default()
    };
    let config = match &cli.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .with_context(|| format!("read kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &options).await?
        }
        None if cli.context.is_some() => Config::from_kubeconfig(&options).await?,
        None => Config::infer().await.context("no kubeconfig found")?,
    };
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    Ok((Client::try_from(config)?, namespace))
}

/// Run one command, writing to `out`. Returns the process exit code.
pub async fn run(cli: Cli, out: &mut impl Write) -> Result<u8> {
    if let Command::Preflight(args) = &cli.command {
        return preflight::run(args, out).await;
    }
    let (client, namespace) = connect(&cli).await?;
    let clients: Api<TppClient> = Api::namespaced(client.clone(), &namespace);
    let now = jiff::Timestamp::now();
    match &cli.command {
        Command::Status(args) => {
            let objects = match &args.name {
                Some(name) => vec![get_client(&clients, name, &namespace).await?],
                None => clients.list(&ListParams::default()).await?.items,
            };
            if objects.is_empty() {
                writeln!(out, "No TppClients in namespace {namespace}.")?;
            }
            let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
            for (i, obj) in objects.iter().enumerate() {
                if i > 0 {
                    writeln!(out)?;
                }
                let secret = secrets
                    .get_opt(&layout::credentials_name(&obj.name_any()))
                    .await?;
                let summary = secret
                    .as_ref()
                    .map(credentials::CredentialsSummary::from_secret);
                let server = server_view(&client, &namespace, obj).await;
                write!(
                    out,
                    "{}",
                    status::render(obj, summary.as_ref(), server.as_ref(), now, args.history)
                )?;
            }
            Ok(0)
        }
        Command::Renew(args) => {
            verbs::annotate(&clients, args, annotations::RENEW_TOKENS, now, out).await
        }
        Command::Rotate(args) => {
            verbs::annotate(&clients, args, annotations::ROTATE_KEYS, now, out).await
        }
        Command::RenewCertificate(args) => {
            verbs::annotate(&clients, args, annotations::RENEW_CERTIFICATE, now, out).await
        }
        Command::RetryRegistration(args) => {
            verbs::annotate(&clients, args, annotations::RETRY_REGISTRATION, now, out).await
        }
        Command::Approve(args) => {
            let obj = get_client(&clients, &args.name, &namespace).await?;
            let jwks = published_jwks(&client, &namespace, &args.name).await?;
            let pending = approve::pending(&obj, jwks.as_ref());
            write!(out, "{}", approve::render(&obj, &pending))?;
            let chosen = approve::choose(&pending, &args.kids)?;
            if chosen.is_empty() {
                return Ok(0);
            }
            if !args.yes && !approve::confirm(&chosen)? {
                writeln!(out, "Not approved.")?;
                return Ok(1);
            }
            let patch = approve::patch(&obj, &chosen);
            clients
                .patch(&args.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .context("annotate the TppClient")?;
            writeln!(
                out,
                "Approved {} on TppClient {namespace}/{} ({}).",
                chosen.join(", "),
                args.name,
                annotations::APPROVED_KIDS
            )?;
            Ok(0)
        }
        Command::Jwks(args) => {
            let Some(jwks) = published_jwks(&client, &namespace, &args.name).await? else {
                bail!(
                    "no published JWKS for TppClient {namespace}/{}: ConfigMap {} not found",
                    args.name,
                    layout::jwks_name(&args.name)
                );
            };
            writeln!(out, "{}", serde_json::to_string_pretty(&jwks)?)?;
            Ok(0)
        }
        Command::Preflight(_) => unreachable!("handled above"),
    }
}

/// The client's authorization server; `None` when it cannot be read (e.g. no RBAC for
/// cluster-scoped objects): `status` then shows the client alone.
async fn server_view(
    client: &Client,
    namespace: &str,
    obj: &TppClient,
) -> Option<status::ServerView> {
    let r = &obj.spec.authorization_server_ref;
    let found = match r.kind {
        AuthorizationServerKind::AuthorizationServer => {
            Api::<AuthorizationServer>::namespaced(client.clone(), namespace)
                .get_opt(&r.name)
                .await
                .ok()?
                .map(|s| status::ServerView::found(&s.spec, s.status.as_ref()))
        }
        AuthorizationServerKind::ClusterAuthorizationServer => {
            Api::<ClusterAuthorizationServer>::all(client.clone())
                .get_opt(&r.name)
                .await
                .ok()?
                .map(|s| status::ServerView::found(&s.spec.server, s.status.as_ref()))
        }
    };
    Some(found.unwrap_or(status::ServerView::Missing))
}

/// A TppClient, with a plain message when it does not exist.
async fn get_client(api: &Api<TppClient>, name: &str, namespace: &str) -> Result<TppClient> {
    match api.get_opt(name).await {
        Ok(Some(c)) => Ok(c),
        Ok(None) => bail!("TppClient {name} not found in namespace {namespace}"),
        Err(e) => Err(e).with_context(|| format!("read TppClient {name} in namespace {namespace}")),
    }
}

/// The client's published JWKS (the `<name>-jwks` ConfigMap the operator also serves at
/// `/jwks/{namespace}/{name}`), if any.
pub async fn published_jwks(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<serde_json::Value>> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let Some(cm) = cms.get_opt(&layout::jwks_name(name)).await? else {
        return Ok(None);
    };
    let Some(text) = cm.data.as_ref().and_then(|d| d.get(layout::JWKS_KEY)) else {
        return Ok(None);
    };
    Ok(Some(serde_json::from_str(text).with_context(|| {
        format!(
            "{} in ConfigMap {}",
            layout::JWKS_KEY,
            layout::jwks_name(name)
        )
    })?))
}
