//! `sandbox-as`: runs the Open Finance sandbox AS emulator until SIGTERM or Ctrl-C.
//! Writes `<state-dir>/ca.pem` and, once ready, prints one JSON line to stdout:
//! `{"issuer":"https://localhost:PORT","ca":"/path/ca.pem","admin":"https://127.0.0.1:PORT/_sandbox"}`.
//! Logs go to stderr (`RUST_LOG`, default `info`).

use std::{io::Write as _, path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::Parser;
use e2e::sandbox::{self, AudPolicy, SandboxConfig};
use secrecy::SecretString;

/// Open Finance sandbox authorization server emulator (loopback only).
#[derive(Debug, Parser)]
#[command(name = "sandbox-as", version)]
struct Cli {
    /// TCP port on 127.0.0.1 (0 picks a free one).
    #[arg(long, env = "SANDBOX_AS_PORT", default_value_t = 0)]
    port: u16,
    /// Directory for ca.pem.
    #[arg(long, env = "SANDBOX_AS_STATE_DIR")]
    state_dir: PathBuf,
    /// Access-token lifetime in seconds (`expires_in`).
    #[arg(long, env = "SANDBOX_AS_TOKEN_LIFETIME_SECS", default_value_t = 600)]
    token_lifetime_secs: u64,
    /// Rotate the registration access token on every RFC 7592 GET/PUT.
    #[arg(long, env = "SANDBOX_AS_ROTATE_RAT", default_value_t = true, action = clap::ArgAction::Set)]
    rotate_rat: bool,
    /// How long a fetched jwks_uri document is cached, in seconds.
    #[arg(long, env = "SANDBOX_AS_JWKS_CACHE_TTL_SECS", default_value_t = 900)]
    jwks_cache_ttl_secs: u64,
    /// Client-assertion aud policy: strict (issuer only, iat ≤ 10 s ahead) or lenient.
    #[arg(long, env = "SANDBOX_AS_AUD_POLICY", value_enum, default_value_t = AudPolicy::Lenient)]
    aud_policy: AudPolicy,
    /// Longest accepted assertion exp - iat in seconds (default 300 strict, 600 lenient).
    #[arg(long, env = "SANDBOX_AS_MAX_ASSERTION_LIFETIME_SECS")]
    max_assertion_lifetime_secs: Option<u64>,
    /// Initial access token required for RFC 7591 registration.
    #[arg(long, env = "SANDBOX_AS_INITIAL_ACCESS_TOKEN", hide_env_values = true)]
    initial_access_token: Option<String>,
    /// PEM file of the CA(s) tls_client_auth certificates must chain to.
    #[arg(long, env = "SANDBOX_AS_CLIENT_CA")]
    client_ca: Option<PathBuf>,
    /// JWKS file of the directory that signs software statements.
    #[arg(long, env = "SANDBOX_AS_DIRECTORY_JWKS")]
    directory_jwks: Option<PathBuf>,
    /// Extra PEM roots trusted when fetching https jwks_uri documents.
    #[arg(long, env = "SANDBOX_AS_JWKS_URI_CA")]
    jwks_uri_ca: Option<PathBuf>,
    /// RFC 7396 merge patch (JSON) applied to the discovery document.
    #[arg(long, env = "SANDBOX_AS_DISCOVERY_PATCH")]
    discovery_patch: Option<String>,
}

impl Cli {
    fn into_config(self) -> anyhow::Result<SandboxConfig> {
        let read = |p: &PathBuf| {
            std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))
        };
        let mut cfg = SandboxConfig::new(self.state_dir.clone());
        cfg.port = self.port;
        cfg.token_lifetime = Duration::from_secs(self.token_lifetime_secs);
        cfg.rotate_rat = self.rotate_rat;
        cfg.jwks_cache_ttl = Duration::from_secs(self.jwks_cache_ttl_secs);
        cfg.aud_policy = self.aud_policy;
        cfg.max_assertion_lifetime = self.max_assertion_lifetime_secs.map(Duration::from_secs);
        cfg.initial_access_token = self.initial_access_token.map(SecretString::from);
        cfg.client_ca_pem = self.client_ca.as_ref().map(read).transpose()?;
        cfg.directory_jwks = self
            .directory_jwks
            .as_ref()
            .map(|p| read(p).and_then(|s| serde_json::from_str(&s).context("parse directory jwks")))
            .transpose()?;
        cfg.jwks_uri_ca_pem = self.jwks_uri_ca.as_ref().map(read).transpose()?;
        cfg.discovery_patch = self
            .discovery_patch
            .as_deref()
            .map(|s| serde_json::from_str(s).context("parse discovery patch"))
            .transpose()?;
        Ok(cfg)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cfg = Cli::parse().into_config()?;
    let running = sandbox::start(cfg).await?;
    let ready = serde_json::json!({
        "issuer": running.issuer(),
        "ca": running.ca_path(),
        "admin": running.admin_url(),
    });
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{ready}").context("write ready line")?;
    stdout.flush().context("flush ready line")?;
    drop(stdout);

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("install SIGTERM handler")?;
    tokio::select! {
        _ = sigterm.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
