//! Logs go to a file: stdout carries the CNI protocol.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::{Mutex, Once};

/// Log to `path` (appending), or to stderr if it cannot be opened. Only the
/// first call has an effect. `VPCNET_CNI_LOG` sets the filter (default info).
pub fn init(path: &Path) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_env("VPCNET_CNI_LOG")
            .unwrap_or_else(|_| "info".into());
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_target(false);
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let res = match OpenOptions::new().create(true).append(true).open(path) {
            Ok(f) => builder.with_writer(Mutex::new(f)).try_init(),
            Err(e) => {
                eprintln!(
                    "vpcnet-cni: cannot open log file {}: {e}; logging to stderr",
                    path.display()
                );
                builder.with_writer(std::io::stderr).try_init()
            }
        };
        if let Err(e) = res {
            eprintln!("vpcnet-cni: logging: {e}");
        }
    });
}
