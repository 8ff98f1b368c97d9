//! What a reader of an index or alias sees, through the Elasticsearch REST API of any peer
//! (osmem-server or a real OpenSearch node): counts, every document through one scroll (a
//! point-in-time view, however long reading it takes), and [`AliasReader`], which reads
//! through an alias at the moment it moves.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};

use crate::http::send_json;
use crate::reference::Reference;

/// Documents per scroll page.
const PAGE: usize = 5_000;

/// `_count` of an index or alias as a reader sees it now (no refresh: what is searchable).
pub fn count(url: &str, index: &str) -> u64 {
    let (status, body) = send_json("GET", &format!("{url}/{index}/_count"), None);
    assert_eq!(status, 200, "count {index}: {body}");
    body["count"].as_u64().expect("a count")
}

/// The indices an alias points to, sorted (empty: no alias).
pub fn alias_targets(url: &str, alias: &str) -> Vec<String> {
    let (status, body) = send_json("GET", &format!("{url}/_alias/{alias}"), None);
    if status == 404 {
        return Vec::new();
    }
    assert_eq!(status, 200, "alias {alias}: {body}");
    let mut out: Vec<String> =
        body.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    out.sort();
    out
}

/// Every document `_source` of an index or alias as a reader sees it now (no refresh), read
/// through one scroll: the view is fixed by the first request.
pub fn scroll_all(url: &str, index: &str) -> Vec<Json> {
    let (status, mut page) = send_json(
        "POST",
        &format!("{url}/{index}/_search?scroll=2m"),
        Some(&json!({"size": PAGE, "track_total_hits": true, "query": {"match_all": {}}})),
    );
    assert_eq!(status, 200, "scroll {index}: {page}");
    let total = page["hits"]["total"]["value"].as_u64();
    let mut docs = Vec::new();
    loop {
        let hits = page["hits"]["hits"].as_array().cloned().unwrap_or_default();
        if hits.is_empty() {
            break;
        }
        docs.extend(hits.into_iter().map(|h| h["_source"].clone()));
        let id = page["_scroll_id"].as_str().expect("a scroll id").to_owned();
        let (status, next) = send_json(
            "POST",
            &format!("{url}/_search/scroll"),
            Some(&json!({"scroll": "2m", "scroll_id": id})),
        );
        assert_eq!(status, 200, "scroll {index}: {next}");
        page = next;
    }
    if let Some(id) = page["_scroll_id"].as_str() {
        let _ = send_json("DELETE", &format!("{url}/_search/scroll/{id}"), None);
    }
    if let Some(total) = total {
        assert_eq!(docs.len() as u64, total, "the scroll returned every hit of {index}");
    }
    docs
}

/// What a reader saw through an alias right after it moved.
#[derive(Debug, Clone)]
pub struct AliasRead {
    /// The indices the alias pointed to.
    pub targets: Vec<String>,
    /// Every document through the alias, from a scroll opened at once (its first request
    /// fixes the view).
    pub docs: Vec<Json>,
    /// From the alias change being seen to the last page read.
    pub took: Duration,
}

impl AliasRead {
    /// Asserts that the read is a complete index: the alias pointed at `index` alone, and the
    /// reader found every window of `reference` with its values and finality.
    pub fn assert_complete(&self, index: &str, reference: &Reference) {
        assert_eq!(self.targets, [index], "the alias moved to {index}");
        assert_eq!(
            self.docs.len(),
            reference.windows.len(),
            "a reader of {index} right after the move found {} of {} windows",
            self.docs.len(),
            reference.windows.len()
        );
        reference.assert_documents(&self.docs);
    }
}

/// Watches an alias (every few milliseconds) and, each time it points somewhere new, reads
/// every document through it at once, as a dashboard refreshing then would.
pub struct AliasReader {
    stop: Arc<AtomicBool>,
    reads: Arc<Mutex<Vec<AliasRead>>>,
    states: Arc<Mutex<Vec<Vec<String>>>>,
    thread: Option<JoinHandle<()>>,
}

impl AliasReader {
    /// Starts watching `alias` on the server at `url`.
    pub fn start(url: &str, alias: &str) -> Self {
        Self::spawn(url, alias, true)
    }

    /// Polls `GET /_alias/{alias}` every 5 ms and records each distinct state (the first one
    /// too); with `read`, reads every document through the alias each time it points somewhere
    /// new.
    fn spawn(url: &str, alias: &str, read: bool) -> Self {
        let (url, alias) = (url.to_owned(), alias.to_owned());
        let stop = Arc::new(AtomicBool::new(false));
        let reads: Arc<Mutex<Vec<AliasRead>>> = Arc::default();
        let states: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
        let thread = {
            let (stop, reads, states) =
                (Arc::clone(&stop), Arc::clone(&reads), Arc::clone(&states));
            std::thread::spawn(move || {
                let mut last: Option<Vec<String>> = None;
                while !stop.load(Ordering::Relaxed) {
                    let targets = alias_targets(&url, &alias);
                    if last.as_ref() != Some(&targets) {
                        let seen = Instant::now();
                        states.lock().unwrap().push(targets.clone());
                        if read && !targets.is_empty() {
                            let docs = scroll_all(&url, &alias);
                            let took = seen.elapsed();
                            let read = AliasRead { targets: targets.clone(), docs, took };
                            reads.lock().unwrap().push(read);
                        }
                        last = Some(targets);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        Self { stop, reads, states, thread: Some(thread) }
    }

    /// The reads so far, one per move.
    pub fn reads(&self) -> Vec<AliasRead> {
        self.reads.lock().unwrap().clone()
    }

    /// Stops watching; returns every read and every distinct alias state seen, in order.
    pub fn finish(mut self) -> (Vec<AliasRead>, Vec<Vec<String>>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the alias reader does not panic");
        }
        let reads = self.reads.lock().unwrap().clone();
        let states = self.states.lock().unwrap().clone();
        (reads, states)
    }
}

/// Records every alias state a reader sees between requests: an [`AliasReader`] that does not
/// read the documents.
pub struct AliasWatch(AliasReader);

impl AliasWatch {
    /// Starts polling `GET /_alias/{alias}` of the server at `url` every 5 ms.
    pub fn start(url: &str, alias: &str) -> Self {
        Self(AliasReader::spawn(url, alias, false))
    }

    /// Stops polling and returns every distinct alias state in order.
    pub fn finish(self) -> Vec<Vec<String>> {
        self.0.finish().1
    }
}

impl Drop for AliasReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
