//! A process-wide capturing `tracing` subscriber (every target, every level down to TRACE;
//! `log` records of dependencies bridged in) writing each formatted line into memory, so the
//! tests can assert that no secret reached a log line. No I/O.

use std::io::Write;
use std::sync::{Mutex, Once};

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());
static INSTALL: Once = Once::new();

/// Installs the capturing subscriber once per test process.
pub fn install() {
    INSTALL.call_once(|| {
        let installed = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(|| Line(Vec::new()))
            .try_init();
        assert!(
            installed.is_ok(),
            "the capturing subscriber is the only one"
        );
    });
}

/// Every line captured so far.
pub fn lines() -> Vec<String> {
    LINES.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// One event's output, stored when the formatter drops it.
struct Line(Vec<u8>);

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0).trim_end().to_owned();
        if !text.is_empty() {
            LINES.lock().unwrap_or_else(|p| p.into_inner()).push(text);
        }
    }
}
