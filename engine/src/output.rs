//! Window documents: the JSON written to the sink, with a deterministic id and a monotone
//! version.
//!
//! A document has `window_start`, `window_end` (RFC 3339 UTC with milliseconds), the groupBy
//! keys, one field per aggregate and `final`. Its id is a hash of (job, window start, key), so a
//! replay or a retry overwrites the same document; its version is the number of records folded
//! in, which only grows, so external versioning never lets a document go backwards.

use std::io::Write;

use crate::key::KeyValue;
use crate::plan::JobPlan;
use crate::store::WindowEntry;
use crate::time::{format_rfc3339_millis, EpochMillis};

/// One output document.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowDoc {
    /// Deterministic document id.
    pub id: String,
    /// External version: records folded into the window.
    pub version: u64,
    /// Window start.
    pub start: EpochMillis,
    /// Group key values (in groupBy order).
    pub key: Box<[KeyValue]>,
    /// The document body, one line of JSON.
    pub body: String,
    /// Whether the window is final.
    pub is_final: bool,
}

/// The deterministic id of a window document.
///
/// ```
/// use kappa_engine::{key::KeyValue, output::document_id};
/// let a = document_id("tx-stats", 60_000, &[KeyValue::Str("srv-1".into())]);
/// assert_eq!(a, document_id("tx-stats", 60_000, &[KeyValue::Str("srv-1".into())]));
/// assert_ne!(a, document_id("tx-stats", 120_000, &[KeyValue::Str("srv-1".into())]));
/// assert!(a.starts_with("60000-"));
/// ```
pub fn document_id(job: &str, start: EpochMillis, key: &[KeyValue]) -> String {
    let mut canonical = Vec::with_capacity(64);
    canonical.extend_from_slice(job.as_bytes());
    canonical.push(0);
    serde_json::to_writer(&mut canonical, &key.iter().map(KeyValue::to_json).collect::<Vec<_>>())
        .expect("keys serialize");
    let hash = xxhash_rust::xxh3::xxh3_128(&canonical);
    format!("{start}-{hash:032x}")
}

impl WindowDoc {
    /// Builds the document of a window.
    pub fn build(plan: &JobPlan, entry: &WindowEntry, is_final: bool) -> Self {
        let mut body = Vec::with_capacity(256);
        body.extend_from_slice(b"{\"window_start\":\"");
        format_rfc3339_millis(entry.start, &mut body);
        body.extend_from_slice(b"\",\"window_end\":\"");
        format_rfc3339_millis(plan.window.end_of(entry.start), &mut body);
        body.push(b'"');
        for ((name, _), value) in plan.group_by.iter().zip(entry.key.iter()) {
            write_field(&mut body, name, &value.to_json());
        }
        for (agg, state) in plan.aggregates.iter().zip(entry.state.aggs.iter()) {
            write_field(&mut body, &agg.name, &state.result(&agg.kind));
        }
        let _ = write!(body, ",\"final\":{is_final}}}");
        Self {
            id: document_id(&plan.job, entry.start, &entry.key),
            version: entry.state.records,
            start: entry.start,
            key: entry.key.clone(),
            body: String::from_utf8(body).expect("JSON is UTF-8"),
            is_final,
        }
    }
}

fn write_field(out: &mut Vec<u8>, name: &str, value: &serde_json::Value) {
    out.push(b',');
    serde_json::to_writer(&mut *out, name).expect("names serialize");
    out.push(b':');
    serde_json::to_writer(&mut *out, value).expect("values serialize");
}
