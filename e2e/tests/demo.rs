//! `make demo` run non-interactively: the demo binary with `DEMO_EXIT_AFTER_READY=1` starts a
//! real control plane, the sandbox AS and the operator, gets the example TppClient Ready,
//! prints the `kubectl get tppclients` table and the credentials Secret's keys (never its
//! values), and exits 0 after stopping everything.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// Bound on the whole run (control plane start included).
const TIMEOUT: Duration = Duration::from_secs(240);

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn demo_once_reaches_ready_prints_the_table_and_secret_keys_and_exits_zero() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_demo"))
        .env("DEMO_EXIT_AFTER_READY", "1")
        .env("DEMO_DIR", dir.path().join("demo"))
        // Leave 8080 to a demo the developer may be running; any free port will do here.
        .env("DEMO_ADMIN_PORT", "0")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("start the demo binary");
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the demo") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let (stdout, stderr) = (read(&out_path), read(&err_path));
    let context = format!(
        "----- stdout -----\n{stdout}\n----- stderr -----\n{stderr}\n----- operator log -----\n{}",
        read(&dir.path().join("demo/operator.log"))
    );
    let status =
        status.unwrap_or_else(|| panic!("demo still running after {TIMEOUT:?}\n{context}"));
    assert!(status.success(), "demo exited with {status}\n{context}");

    let table = stdout
        .lines()
        .skip_while(|l| !l.contains("get tppclients"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        table.starts_with("NAME") && table.contains("READY") && table.contains("CLIENT ID"),
        "no kubectl table header\n{context}"
    );
    let row = stdout
        .lines()
        .find(|l| l.starts_with("payments "))
        .unwrap_or_default();
    assert!(
        row.split_whitespace().nth(1) == Some("True"),
        "no Ready row for payments\n{context}"
    );

    let keys_line = stdout
        .lines()
        .skip_while(|l| !l.contains("data keys (values not shown)"))
        .nth(1)
        .unwrap_or_default();
    for key in [
        "tls.crt",
        "tls.key",
        "ca.crt",
        "client_id",
        "accounts.access_token",
        "accounts.expires_at",
    ] {
        assert!(
            keys_line.split_whitespace().any(|k| k == key),
            "Secret key {key} not listed\n{context}"
        );
    }
    assert!(
        stdout.contains("Sandbox introspection of token accounts: active=true"),
        "no introspection\n{context}"
    );
    assert!(
        !stdout.contains("PRIVATE KEY") && !stdout.contains("BEGIN CERTIFICATE"),
        "key or certificate material printed\n{context}"
    );
    assert!(
        stdout.contains("stopped the operator, the sandbox AS, kube-apiserver and etcd"),
        "no clean stop\n{context}"
    );
}
