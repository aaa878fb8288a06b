//! A workload that consumes a TppClient's credentials Secret the way the README tells users to:
//! mounted as a volume, read as one consistent snapshot per call, and used over mTLS with the
//! mounted certificate. Every `--interval` it calls a certificate-bound endpoint of the AS
//! (`--url`, e.g. the sandbox's `/userinfo`) with `<token>.access_token`, and counts the
//! calls, the failures and the distinct tokens and certificates it has used; `GET /stats` on
//! `--stats-address` returns them as JSON. Built into the e2e node tier's workload image.
//!
//! The snapshot: the kubelet writes a Secret volume into a timestamped folder and swaps the
//! `..data` symlink atomically, so reading every file through one resolution of `..data`
//! gives a certificate, key and token that belong together. A new certificate gets a new
//! HTTP client (a pooled connection keeps the TLS identity it was opened with, and a token
//! bound to the new certificate would be refused on it). Never logs a token or a key.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, Result};
use axum::{Json, Router, extract::State, routing::get};
use clap::Parser;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Calls a certificate-bound endpoint every interval with the mounted credentials.
#[derive(Parser, Debug)]
#[command(name = "credentials-consumer")]
struct Args {
    /// Where the `<name>-credentials` Secret is mounted.
    #[arg(
        long,
        env = "CREDENTIALS_DIR",
        default_value = "/var/run/tpp/credentials"
    )]
    dir: PathBuf,
    /// Name of the token to use (`<token>.access_token`).
    #[arg(long, env = "TOKEN_NAME", default_value = "accounts")]
    token: String,
    /// The certificate-bound endpoint to call.
    #[arg(long, env = "RESOURCE_URL")]
    url: String,
    /// Address of the stats endpoint (`GET /stats`).
    #[arg(long, env = "STATS_ADDRESS", default_value = "127.0.0.1:9090")]
    stats_address: SocketAddr,
    /// Time between calls, in milliseconds.
    #[arg(long, env = "INTERVAL_MS", default_value_t = 1000)]
    interval_ms: u64,
}

/// What `/stats` reports.
#[derive(Clone, Debug, Default, Serialize)]
struct Stats {
    calls: u64,
    ok: u64,
    failed: u64,
    /// The last failures (at most 20): time, what failed, never a secret.
    failures: Vec<String>,
    /// Distinct access tokens used (a refresh is a new one), by SHA-256 prefix.
    tokens: Vec<String>,
    /// Distinct certificates used (a renewal is a new one), by SHA-256 prefix.
    certificates: Vec<String>,
    /// Distinct snapshots (kubelet updates of the volume) seen.
    snapshots: Vec<String>,
}

/// One consistent read of the mounted Secret.
struct Snapshot {
    /// The folder `..data` pointed to (the folder itself when not a kubelet volume).
    folder: String,
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Vec<u8>,
    token: String,
}

fn read_snapshot(dir: &Path, token: &str) -> Result<Snapshot> {
    let data = dir.join("..data");
    let folder = match std::fs::read_link(&data) {
        Ok(target) => dir.join(target),
        Err(_) => dir.to_path_buf(),
    };
    let read = |name: &str| {
        std::fs::read(folder.join(name)).with_context(|| format!("read {name} of the snapshot"))
    };
    Ok(Snapshot {
        folder: folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        cert: read("tls.crt")?,
        key: read("tls.key")?,
        ca: read("ca.crt")?,
        token: String::from_utf8(read(&format!("{token}.access_token"))?)
            .context("the access token is not UTF-8")?
            .trim()
            .to_owned(),
    })
}

fn short_hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn http_client(s: &Snapshot) -> Result<reqwest::Client> {
    let mut pem = s.cert.clone();
    pem.push(b'\n');
    pem.extend_from_slice(&s.key);
    Ok(reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&s.ca)?)
        .identity(reqwest::Identity::from_pem(&pem)?)
        .timeout(Duration::from_secs(5))
        .build()?)
}

fn note(stats: &Mutex<Stats>, f: impl FnOnce(&mut Stats)) {
    if let Ok(mut s) = stats.lock() {
        f(&mut s);
    }
}

fn push_distinct(list: &mut Vec<String>, item: String) -> bool {
    if list.last() == Some(&item) || list.contains(&item) {
        return false;
    }
    list.push(item);
    true
}

async fn call_once(
    args: &Args,
    stats: &Mutex<Stats>,
    client: &mut Option<(Vec<u8>, Vec<u8>, reqwest::Client)>,
) -> Result<()> {
    let snap = read_snapshot(&args.dir, &args.token)?;
    let (cert_id, token_id) = (short_hash(&snap.cert), short_hash(snap.token.as_bytes()));
    note(stats, |s| {
        if push_distinct(&mut s.snapshots, snap.folder.clone()) {
            eprintln!("credentials-consumer: new snapshot {}", snap.folder);
        }
        if push_distinct(&mut s.certificates, cert_id.clone()) {
            eprintln!("credentials-consumer: certificate {cert_id}");
        }
        if push_distinct(&mut s.tokens, token_id.clone()) {
            eprintln!("credentials-consumer: token {token_id}");
        }
    });
    let reuse = matches!(client, Some((c, k, _)) if *c == snap.cert && *k == snap.key);
    if !reuse {
        *client = Some((snap.cert.clone(), snap.key.clone(), http_client(&snap)?));
    }
    let http = &client.as_ref().context("client")?.2;
    let response = http
        .get(&args.url)
        .bearer_auth(&snap.token)
        .send()
        .await
        .context("calling the resource")?;
    let status = response.status();
    if !status.is_success() {
        let body: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        anyhow::bail!("HTTP {status} with certificate {cert_id} and token {token_id}: {body}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let stats = Arc::new(Mutex::new(Stats::default()));
    let listener = tokio::net::TcpListener::bind(args.stats_address)
        .await
        .with_context(|| format!("bind {}", args.stats_address))?;
    let app = Router::new()
        .route(
            "/stats",
            get(|State(s): State<Arc<Mutex<Stats>>>| async move {
                Json(s.lock().map(|s| s.clone()).unwrap_or_default())
            }),
        )
        .with_state(stats.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    eprintln!(
        "credentials-consumer: calling {} every {} ms with {}",
        args.url,
        args.interval_ms,
        args.dir.display()
    );
    let mut client = None;
    let mut tick = tokio::time::interval(Duration::from_millis(args.interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = term.recv() => return Ok(()),
        }
        let outcome = call_once(&args, &stats, &mut client).await;
        note(&stats, |s| {
            s.calls += 1;
            match &outcome {
                Ok(()) => s.ok += 1,
                Err(e) => {
                    s.failed += 1;
                    let line = format!("{} {e:#}", jiff::Timestamp::now());
                    eprintln!("credentials-consumer: call failed: {line}");
                    s.failures.push(line);
                    if s.failures.len() > 20 {
                        s.failures.remove(0);
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_folder(dir: &Path, name: &str, token: &str) {
        let f = dir.join(name);
        std::fs::create_dir_all(&f).unwrap();
        for (file, body) in [
            ("tls.crt", "crt"),
            ("tls.key", "key"),
            ("ca.crt", "ca"),
            ("accounts.access_token", token),
        ] {
            std::fs::write(f.join(file), body).unwrap();
        }
    }

    #[test]
    fn a_snapshot_reads_every_file_through_one_resolution_of_the_data_link() {
        let dir = tempfile::tempdir().unwrap();
        write_folder(dir.path(), "..2026_01_01_00_00_00.1", "old");
        write_folder(dir.path(), "..2026_01_01_00_01_00.2", "new");
        std::os::unix::fs::symlink("..2026_01_01_00_00_00.1", dir.path().join("..data")).unwrap();
        let s = read_snapshot(dir.path(), "accounts").unwrap();
        assert_eq!(
            (s.token.as_str(), s.folder.as_str()),
            ("old", "..2026_01_01_00_00_00.1")
        );
        // The kubelet's atomic swap: a new link renamed over `..data`.
        std::os::unix::fs::symlink("..2026_01_01_00_01_00.2", dir.path().join("..data_tmp"))
            .unwrap();
        std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
        let s = read_snapshot(dir.path(), "accounts").unwrap();
        assert_eq!(
            (s.token.as_str(), s.cert.as_slice()),
            ("new", b"crt".as_slice())
        );
    }

    #[test]
    fn a_plain_folder_is_read_directly() {
        let dir = tempfile::tempdir().unwrap();
        write_folder(dir.path(), "plain", "tok");
        let s = read_snapshot(&dir.path().join("plain"), "accounts").unwrap();
        assert_eq!(s.token, "tok");
    }
}
