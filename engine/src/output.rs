//! Window documents: the JSON written to the sink, with a deterministic id and a monotone
//! version.
//!
//! A document has `window_start`, `window_end` (RFC 3339 UTC with milliseconds), the groupBy
//! keys, one field per aggregate and `final`. Its id is a hash of (job, window start, key), so a
//! replay or a retry overwrites the same document; its version is the number of records folded
//! in, which only grows, so external versioning never lets a document go backwards.

use crate::key::KeyValue;
use crate::plan::JobPlan;
use crate::store::WindowEntry;
use crate::time::{format_rfc3339_millis, EpochMillis};

/// One output document.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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
    // The job name, a NUL, and the key values as a JSON array.
    let mut canonical = Vec::with_capacity(job.len() + 64);
    canonical.extend_from_slice(job.as_bytes());
    canonical.push(0);
    canonical.push(b'[');
    for (i, value) in key.iter().enumerate() {
        if i > 0 {
            canonical.push(b',');
        }
        value.write_json(&mut canonical);
    }
    canonical.push(b']');
    let hash = xxhash_rust::xxh3::xxh3_128(&canonical);
    let mut id = String::with_capacity(20 + 1 + 32);
    id.push_str(itoa::Buffer::new().format(start));
    id.push('-');
    const HEX: &[u8; 16] = b"0123456789abcdef";
    id.extend((0..32).rev().map(|nibble| char::from(HEX[(hash >> (4 * nibble)) as usize & 15])));
    id
}

impl WindowDoc {
    /// Builds the document of a window.
    pub fn build(plan: &JobPlan, entry: &WindowEntry, is_final: bool) -> Self {
        // Room for the reference job's documents (about 300 bytes) without growing.
        let mut body = Vec::with_capacity(512);
        body.extend_from_slice(b"{\"window_start\":\"");
        format_rfc3339_millis(entry.start, &mut body);
        body.extend_from_slice(b"\",\"window_end\":\"");
        format_rfc3339_millis(plan.window.end_of(entry.start), &mut body);
        body.push(b'"');
        let (key_leads, agg_leads) = plan.member_leads.split_at(plan.group_by.len());
        for (lead, value) in key_leads.iter().zip(entry.key.iter()) {
            body.extend_from_slice(lead);
            value.write_json(&mut body);
        }
        for ((lead, agg), state) in agg_leads.iter().zip(&plan.aggregates).zip(&entry.state.aggs) {
            body.extend_from_slice(lead);
            serde_json::to_writer(&mut body, &state.result(&agg.kind)).expect("values serialize");
        }
        body.extend_from_slice(if is_final { b",\"final\":true}" } else { b",\"final\":false}" });
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The id as it was first defined: ids are stored in the index, so they must never change.
    fn reference_id(job: &str, start: EpochMillis, key: &[KeyValue]) -> String {
        let mut canonical = job.as_bytes().to_vec();
        canonical.push(0);
        let values: Vec<serde_json::Value> = key.iter().map(KeyValue::to_json).collect();
        serde_json::to_writer(&mut canonical, &values).unwrap();
        format!("{start}-{:032x}", xxhash_rust::xxh3::xxh3_128(&canonical))
    }

    #[test]
    fn ids_stay_what_they_were() {
        let keys: [&[KeyValue]; 4] = [
            &[],
            &[KeyValue::Str("srv-1".into()), KeyValue::Str("payment".into())],
            &[KeyValue::Null, KeyValue::Bool(false), KeyValue::Int(-7), KeyValue::Float(2.5)],
            &[KeyValue::Str("a\"b\\c\u{7f}\u{1f}é".into())],
        ];
        for key in keys {
            for start in [i64::MIN, -60_000, 0, 1_704_067_200_000] {
                assert_eq!(
                    document_id("tx-stats", start, key),
                    reference_id("tx-stats", start, key)
                );
            }
        }
        // Pinned, so a change to the reference itself shows too.
        let key = [KeyValue::Str("srv-1".into())];
        assert_eq!(document_id("tx-stats", 60_000, &key), "60000-0fc13aadb03cc8cc082ebe5f837feff2");
    }
}
