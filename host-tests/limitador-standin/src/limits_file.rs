//! The limits file: limitador-server's YAML format (a list of the library's `Limit`), read at
//! start and read again whenever it changes.
//!
//! limitador-server watches the file's directory with inotify; the stand-in polls the file's
//! metadata instead, which sees the same changes (in place, by rename, through a symlink)
//! a moment later.

use crate::routes::Status;
use limitador::limit::Limit;
use limitador::AsyncRateLimiter;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// How often the file's metadata is looked at.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Reads and parses the file. The messages are limitador-server's.
pub fn read(path: &Path) -> Result<Vec<Limit>, String> {
    let file = std::fs::File::open(path)
        .map_err(|e| format!("Couldn't read file '{}': {e}", path.display()))?;
    serde_norway::from_reader(file).map_err(|e| format!("Couldn't parse: {e}"))
}

/// Reads the file and makes its limits the limiter's only ones. Counters of limits that are
/// kept (same namespace, seconds, conditions and variables) stay; those of removed limits
/// are deleted by the library.
pub async fn apply(path: &Path, limiter: &AsyncRateLimiter) -> Result<(), String> {
    let limits = read(path)?;
    limiter
        .configure_with(limits)
        .await
        .map_err(|e| format!("Internal error: {e}"))
}

/// What identifies one version of the file: a rewrite in place changes the size or the
/// modification time, a replacement by rename changes the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    modified: Option<SystemTime>,
    changed: (i64, i64),
    len: u64,
    inode: u64,
}

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Fingerprint {
        modified: meta.modified().ok(),
        changed: (meta.ctime(), meta.ctime_nsec()),
        len: meta.len(),
        inode: meta.ino(),
    })
}

/// Polls the file forever; on each change applies it again and records the outcome in
/// `status` (as limitador-server does: a success bumps `config_version`, a failure counts in
/// `config_err_since` and leaves the previous limits in force).
pub async fn watch(path: PathBuf, limiter: Arc<AsyncRateLimiter>, status: Arc<RwLock<Status>>) {
    let mut last = fingerprint(&path);
    loop {
        tokio::time::sleep(POLL_INTERVAL).await;
        let now = fingerprint(&path);
        // A file that vanished is no new configuration; wait for it to come back.
        if now.is_none() || now == last {
            continue;
        }
        last = now;
        let outcome = apply(&path, &limiter).await;
        let mut status = match status.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        match outcome {
            Ok(()) => {
                status.config_success();
                eprintln!("data modified; reloaded limit file");
            }
            Err(e) => {
                status.config_failure();
                eprintln!("Failed reloading limit file: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_temp(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("standin-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn reads_limitador_server_yaml() {
        let path = write_temp(
            "ok.yaml",
            r#"
- namespace: "gov:vk:k1"
  max_value: 100
  seconds: 2764800
  name: budget
  conditions: []
  variables: ["descriptors[0].window"]
- namespace: "gov:team:t1"
  max_value: 5
  seconds: 60
  conditions: ["descriptors[0].kind == 'requests'"]
  variables: []
"#,
        );
        let limits = read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(limits.len(), 2);
        let first = &limits[0];
        assert_eq!(first.namespace().as_ref(), "gov:vk:k1");
        assert_eq!(first.max_value(), 100);
        assert_eq!(first.seconds(), 2_764_800);
        assert_eq!(first.name(), Some("budget"));
        assert!(first.variables().contains("descriptors[0].window"));
    }

    #[test]
    fn bad_files_give_limitador_servers_messages() {
        let missing = read(Path::new("/nonexistent/limits.yaml")).unwrap_err();
        assert!(missing.starts_with("Couldn't read file '/nonexistent/limits.yaml'"));
        let path = write_temp("bad.yaml", "- namespace: x\n  seconds: 1\n");
        let bad = read(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(bad.starts_with("Couldn't parse: "), "{bad}");
        let path = write_temp(
            "badcel.yaml",
            "- {namespace: x, max_value: 1, seconds: 1, conditions: ['(('], variables: []}\n",
        );
        let bad_cel = read(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(bad_cel.starts_with("Couldn't parse: "), "{bad_cel}");
    }
}
