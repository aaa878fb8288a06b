//! Logging: `tracing` filtered by `RUST_LOG` (default `info`), as text or JSON lines. Writes to
//! stderr.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// Install the global subscriber once.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,kube=warn,hyper=warn,reqwest=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Json => registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Text => {
            // Colours only on a terminal (`kubectl logs` shows raw escape codes otherwise).
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none();
            registry
                .with(fmt::layer().with_ansi(ansi).with_writer(std::io::stderr))
                .try_init()
        }
    };
}
