//! The operator binary against a loopback stand-in for a kube-apiserver that does not serve the
//! `tpp.dev` CRDs (every request 404, as a cluster where the chart's CRDs were left out), then
//! serves them empty: `/readyz` stays false until every watcher's first list has succeeded,
//! and SIGTERM stops the process within `--shutdown-timeout` even while the watches retry.
//! Process and loopback network I/O.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure with a location

use std::{
    convert::Infallible,
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Request, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};

/// What the stand-in API server saw and how it answers.
#[derive(Default)]
struct Api {
    /// Paths (with query) of every request, in order.
    requests: Mutex<Vec<String>>,
    /// Serve the CRDs' lists (empty) and watches (that never send an event).
    crds_installed: AtomicBool,
}

impl Api {
    fn count(&self, needle: &str) -> usize {
        self.requests
            .lock()
            .map(|r| r.iter().filter(|p| p.contains(needle)).count())
            .unwrap_or(0)
    }
}

async fn answer(State(api): State<Arc<Api>>, req: Request) -> Response {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    if let Ok(mut r) = api.requests.lock() {
        r.push(path.clone());
    }
    let ours = path.starts_with("/apis/tpp.dev/");
    if ours && !api.crds_installed.load(Ordering::SeqCst) {
        let status = serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "the server could not find the requested resource",
            "reason": "NotFound", "details": {}, "code": 404
        });
        return (
            StatusCode::NOT_FOUND,
            [("content-type", "application/json")],
            status.to_string(),
        )
            .into_response();
    }
    if path.contains("watch=true") {
        // A watch that stays open and quiet.
        let quiet = futures::stream::pending::<Result<Bytes, Infallible>>();
        return (
            [("content-type", "application/json")],
            Body::from_stream(quiet),
        )
            .into_response();
    }
    let list = serde_json::json!({
        "kind": "List", "apiVersion": "v1",
        "metadata": {"resourceVersion": "1"}, "items": []
    });
    ([("content-type", "application/json")], list.to_string()).into_response()
}

struct Operator {
    child: Child,
    admin: String,
    _dir: tempfile::TempDir,
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The stand-in API server and the operator binary pointed at it.
async fn start(extra_args: &[&str]) -> (Arc<Api>, Operator) {
    let api = Arc::new(Api::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let app = Router::new().fallback(answer).with_state(api.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://{addr}\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n"
        ),
    )
    .expect("write kubeconfig");
    let admin = format!("127.0.0.1:{}", free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_tpp-operator"))
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "info")
        // The chart's default: watch every namespace.
        .env("TPP_OPERATOR_NAMESPACES", "")
        .args(["--admin-address", &admin])
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the operator");
    let op = Operator {
        child,
        admin: format!("http://{admin}"),
        _dir: dir,
    };
    wait_until(Duration::from_secs(60), "/healthz answers", || async {
        status(&op, "/healthz").await == Some(200)
    })
    .await;
    (api, op)
}

async fn status(op: &Operator, path: &str) -> Option<u16> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?;
    let r = http.get(format!("{}{path}", op.admin)).send().await.ok()?;
    Some(r.status().as_u16())
}

async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {timeout:?} waiting until {what}");
}

#[tokio::test]
async fn readyz_turns_true_only_once_every_watcher_has_listed() {
    let (api, op) = start(&[]).await;
    // The watchers have tried, and retried, to list TppClients across all namespaces.
    wait_until(
        Duration::from_secs(60),
        "TppClients listed twice",
        || async { api.count("/apis/tpp.dev/v1alpha1/tppclients?") >= 2 },
    )
    .await;
    assert_eq!(
        api.count("/namespaces//"),
        0,
        "an empty TPP_OPERATOR_NAMESPACES must mean every namespace"
    );
    assert_eq!(
        status(&op, "/readyz").await,
        Some(503),
        "ready before any list"
    );
    assert_eq!(status(&op, "/healthz").await, Some(200));
    // The CRDs appear: once the watchers' retries list them, the operator is ready.
    api.crds_installed.store(true, Ordering::SeqCst);
    wait_until(Duration::from_secs(120), "/readyz is 200", || async {
        status(&op, "/readyz").await == Some(200)
    })
    .await;
}

#[tokio::test]
async fn sigterm_stops_the_process_within_the_shutdown_timeout_while_the_crds_are_missing() {
    let (api, mut op) = start(&["--shutdown-timeout", "2s"]).await;
    wait_until(Duration::from_secs(60), "TppClients listed", || async {
        api.count("/apis/tpp.dev/v1alpha1/tppclients?") >= 1
    })
    .await;
    let pid = op.child.id();
    let term = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    // Generous against a loaded machine; without the bound the process never exits.
    let deadline = Instant::now() + Duration::from_secs(60);
    let exited = loop {
        if let Some(status) = op.child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let status = exited.expect("the operator was still running 60 s after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
}
