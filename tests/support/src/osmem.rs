//! osmem-server, an OpenSearch-compatible in-memory server (PyPI), as the Elasticsearch API
//! peer of tests. `tests/run.sh` installs the pinned version into `target/test-venv`; set
//! `KAPPA_OSMEM_BIN` to use another binary.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};

use crate::http::{get_json, send_json};

/// The pinned osmem-server version (tests/run.sh installs it).
pub const OSMEM_VERSION: &str = "0.1.6";

/// A running osmem-server on a free loopback port; killed on drop.
pub struct OsmemServer {
    child: Child,
    port: u16,
}

/// Where the server binary is: `KAPPA_OSMEM_BIN`, else the test venv of `tests/run.sh`.
pub fn osmem_binary() -> PathBuf {
    if let Ok(p) = std::env::var("KAPPA_OSMEM_BIN") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-venv/lib");
    let found = std::fs::read_dir(&venv).ok().and_then(|dir| {
        dir.flatten()
            .map(|d| d.path().join("site-packages/osmem_server/bin/osmem-server"))
            .find(|p| p.exists())
    });
    found.unwrap_or_else(|| {
        panic!(
            "osmem-server {OSMEM_VERSION} is not installed: run tests/run.sh (it installs it into \
             target/test-venv), or set KAPPA_OSMEM_BIN"
        )
    })
}

impl OsmemServer {
    /// Starts a server and waits until it answers.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(osmem_binary())
            .args(["-addr", &format!("127.0.0.1:{port}"), "-no-stdin-watch"])
            .args(["-parent-pid", &std::process::id().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start osmem-server");
        let server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while get_json(&server.url()).is_none() {
            assert!(Instant::now() < deadline, "osmem-server did not answer on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Freezes the server (SIGSTOP): connections hang, like an overloaded or partitioned
    /// cluster; its data is kept.
    pub fn pause(&self) {
        let _ = Command::new("kill").args(["-STOP", &self.child.id().to_string()]).status();
    }

    /// Resumes a paused server (SIGCONT).
    pub fn resume(&self) {
        let _ = Command::new("kill").args(["-CONT", &self.child.id().to_string()]).status();
    }

    /// Every document `_source` of an index or alias (refreshed first). Panics if the index
    /// holds more than one page (10 000), so a test can never compare a truncated result.
    pub fn search_all(&self, index: &str) -> Vec<Json> {
        send_json("POST", &format!("{}/{index}/_refresh", self.url()), None);
        let (status, body) = send_json(
            "POST",
            &format!("{}/{index}/_search", self.url()),
            Some(&json!({"size": 10000, "query": {"match_all": {}}})),
        );
        assert_eq!(status, 200, "search {index}: {body}");
        let hits = body["hits"]["hits"].as_array().cloned().unwrap_or_default();
        assert_eq!(hits.len() as u64, self.count(index), "search returned every document");
        hits.into_iter().map(|h| h["_source"].clone()).collect()
    }

    /// `_count` of an index or alias.
    pub fn count(&self, index: &str) -> u64 {
        crate::reader::count(&self.url(), index)
    }

    /// The indices an alias points to.
    pub fn alias_targets(&self, alias: &str) -> Vec<String> {
        crate::reader::alias_targets(&self.url(), alias)
    }
}

impl Drop for OsmemServer {
    fn drop(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
