//! The Elasticsearch-API peer of one test: osmem-server (in-memory, fast to start; writes are
//! searchable at once) or a real OpenSearch node (documents searchable only after a refresh).
//! Tests that claim what a reader of the real system sees use the real node.

use serde_json::Value as Json;

use crate::http::send_json;
use crate::opensearch::OpenSearchNode;
use crate::osmem::OsmemServer;
use crate::reader;

/// A running Elasticsearch-API server, stopped on drop.
pub enum ElasticPeer {
    /// osmem-server.
    Osmem(OsmemServer),
    /// A real OpenSearch node.
    OpenSearch(OpenSearchNode),
}

impl ElasticPeer {
    /// Starts osmem-server.
    pub fn osmem() -> Self {
        ElasticPeer::Osmem(OsmemServer::start())
    }

    /// Starts a real OpenSearch node.
    pub fn opensearch() -> Self {
        ElasticPeer::OpenSearch(OpenSearchNode::start())
    }

    /// Base URL.
    pub fn url(&self) -> String {
        match self {
            ElasticPeer::Osmem(s) => s.url(),
            ElasticPeer::OpenSearch(n) => n.url(),
        }
    }

    /// Freezes the server (SIGSTOP).
    pub fn pause(&self) {
        match self {
            ElasticPeer::Osmem(s) => s.pause(),
            ElasticPeer::OpenSearch(n) => n.pause(),
        }
    }

    /// Resumes a paused server (SIGCONT).
    pub fn resume(&self) {
        match self {
            ElasticPeer::Osmem(s) => s.resume(),
            ElasticPeer::OpenSearch(n) => n.resume(),
        }
    }

    /// The server's log, for failure messages (osmem-server keeps none).
    pub fn log(&self) -> String {
        match self {
            ElasticPeer::Osmem(_) => String::new(),
            ElasticPeer::OpenSearch(n) => n.log(),
        }
    }

    /// Makes every acknowledged write of `index` (or alias) searchable.
    pub fn refresh(&self, index: &str) {
        let (status, body) = send_json("POST", &format!("{}/{index}/_refresh", self.url()), None);
        assert_eq!(status, 200, "refresh {index}: {body}");
    }

    /// `_count` as a reader sees it now (no refresh).
    pub fn count(&self, index: &str) -> u64 {
        reader::count(&self.url(), index)
    }

    /// Every acknowledged document of `index` (or alias): refreshed first, then read.
    pub fn documents(&self, index: &str) -> Vec<Json> {
        self.refresh(index);
        reader::scroll_all(&self.url(), index)
    }

    /// The indices an alias points to.
    pub fn alias_targets(&self, alias: &str) -> Vec<String> {
        reader::alias_targets(&self.url(), alias)
    }
}
