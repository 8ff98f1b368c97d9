//! A real OpenSearch node as the Elasticsearch API peer of tests, beside [`osmem`](crate::osmem)'s
//! in-memory imitation. `tests/peers/opensearch.sh` fetches the pinned version from Maven Central
//! once (cached by version under `${XDG_CACHE_HOME:-~/.cache}/kappa/`), then starts a fresh
//! single node per [`OpenSearchNode`] on free loopback ports; as root it runs the node as the
//! system user `kappa-peer`, since OpenSearch refuses to run as root.
//!
//! Unlike osmem-server, a real node makes writes visible to search and `_count` only after a
//! refresh (`POST /<index>/_refresh`, or the index's `refresh_interval`). A node takes about
//! 10–40 s to start and some 700 MB of memory, so tests share one where they can.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A real OpenSearch node (tests/peers/opensearch.sh), stopped on drop.
pub struct OpenSearchNode {
    /// Its config, data, logs and pid; removed on drop unless the thread is panicking.
    run_dir: PathBuf,
    url: String,
    /// The node's JVM.
    pid: u32,
}

/// The peer script, `tests/peers/opensearch.sh`.
pub fn opensearch_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../peers/opensearch.sh")
}

fn run_script(command: &str, run_dir: &Path) -> Output {
    Command::new("bash")
        .arg(opensearch_script())
        .arg(command)
        .arg(run_dir)
        // A watchdog in the script stops the node if this process dies without dropping it.
        .env("KAPPA_PEER_PARENT_PID", std::process::id().to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", opensearch_script().display()))
}

impl OpenSearchNode {
    /// Installs (cached) and starts a dedicated node; panics with the script's stderr
    /// (which names the peer and carries the log tail) if it cannot start.
    pub fn start() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let run_dir = std::env::temp_dir().join(format!(
            "kappa-opensearch-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        if run_dir.exists() {
            // Left by an earlier process that had the same pid.
            run_script("stop", &run_dir);
            let _ = std::fs::remove_dir_all(&run_dir);
        }
        std::fs::create_dir_all(&run_dir)
            .unwrap_or_else(|e| panic!("create {}: {e}", run_dir.display()));
        let out = run_script("start", &run_dir);
        if !out.status.success() {
            panic!(
                "the OpenSearch peer (tests/peers/opensearch.sh start {}) did not start ({}):\n{}",
                run_dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let url = stdout.lines().last().unwrap_or_default().trim().to_owned();
        assert!(url.starts_with("http://"), "opensearch.sh start printed no URL: {stdout:?}");
        let pid = std::fs::read_to_string(run_dir.join("pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid in {}", run_dir.join("pid").display()));
        Self { run_dir, url, pid }
    }

    /// Base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The node's log so far (for failure messages): everything it printed, startup included.
    pub fn log(&self) -> String {
        std::fs::read(self.run_dir.join("opensearch.log"))
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// Freezes the node's Java process (SIGSTOP): connections hang, like an overloaded or
    /// partitioned cluster; its data is kept.
    pub fn pause(&self) {
        let _ = Command::new("kill").args(["-STOP", &self.pid.to_string()]).status();
    }

    /// Resumes a paused node (SIGCONT).
    pub fn resume(&self) {
        let _ = Command::new("kill").args(["-CONT", &self.pid.to_string()]).status();
    }
}

impl Drop for OpenSearchNode {
    fn drop(&mut self) {
        self.resume();
        let out = run_script("stop", &self.run_dir);
        if !out.status.success() {
            eprintln!(
                "tests/peers/opensearch.sh stop {}: {}",
                self.run_dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if std::thread::panicking() {
            eprintln!(
                "OpenSearch node log kept: {}",
                self.run_dir.join("opensearch.log").display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.run_dir);
        }
    }
}
