//! Child processes of the harness (etcd, kube-apiserver, the operator, AS peers).
//!
//! Every child is started with `PR_SET_PDEATHSIG` from a thread that lives as long as the test
//! process, so it dies with the test binary even on a crash; a [`ChildGuard`] kills it by PID on
//! drop, and processes owned by the shared control plane are also killed at exit. Output goes
//! to a log file whose tail is printed when a test fails. Does process I/O.

use std::{
    fs::File,
    io::{Read, Seek, SeekFrom},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Mutex, OnceLock, mpsc},
};

use anyhow::{Context, Result};

/// A running child process that is killed (SIGKILL, then reaped) when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl ChildGuard {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The file holding the process's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `max` bytes of the log.
    pub fn log_tail(&self, max: u64) -> String {
        tail(&self.log, max)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Kill with SIGKILL (a crash, as far as the process can tell) and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Send SIGTERM and wait up to `timeout` for a clean exit, then SIGKILL.
    pub fn terminate(&mut self, timeout: std::time::Duration) {
        if let Some(child) = self.child.as_mut() {
            // SAFETY: kill(2) with a PID we own and a valid signal number.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = std::time::Instant::now() + timeout;
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    self.child = None;
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        self.kill();
    }

    /// Send SIGSTOP (the process freezes: no renewal, no timer, nothing runs) or SIGCONT, to
    /// the PID this guard recorded.
    pub fn freeze(&mut self, frozen: bool) {
        if let Some(child) = self.child.as_ref() {
            let signal = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
            // SAFETY: kill(2) with a PID we own and a valid signal number.
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        }
    }

    /// The process name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `max` bytes of a file (lossy UTF-8), or a note that it could not be read.
pub fn tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// A thread that never exits: children spawned from it keep their parent-death signal armed
/// until the whole test process goes away (PR_SET_PDEATHSIG fires when the spawning *thread*
/// exits, and test threads are short-lived).
fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("e2e-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
                // Channel closed: park forever so children keep their parent thread.
                loop {
                    std::thread::park();
                }
            })
            .expect("spawn the e2e spawner thread");
        Mutex::new(tx)
    })
}

/// Start `cmd` with stdout and stderr appended to `log`, dying with the test process.
pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<ChildGuard> {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("open {}", log.display()))?;
    let err = out.try_clone()?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    spawner()
        .lock()
        .map_err(|_| anyhow::anyhow!("spawner poisoned"))?
        .send((cmd, tx))?;
    let child = rx.recv()?.with_context(|| format!("spawn {name}"))?;
    Ok(ChildGuard {
        name: name.to_owned(),
        child: Some(child),
        log: log.to_owned(),
    })
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}
