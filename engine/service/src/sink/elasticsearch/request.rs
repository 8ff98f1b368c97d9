//! Pure request building: index mappings and settings derived from the job, `_bulk` bodies cut
//! to size, alias actions, and reading Elasticsearch's error bodies. No I/O here.

use kappa_crds::naming::{FINAL_FIELD, WINDOW_END_FIELD, WINDOW_START_FIELD};
use kappa_engine::aggregate::AggKind;
use kappa_engine::output::WindowDoc;
use kappa_engine::JobPlan;
use serde_json::{json, Map, Value};

use super::config::BatchLimits;

/// Version type of every write: a document is replaced by an equal or newer version, and a
/// stale one (lower version) is refused with a version conflict. Equal versions must be
/// accepted because a replay after a crash rewrites exactly the same state.
pub const VERSION_TYPE: &str = "external_gte";
/// Date format of `window_start`/`window_end`: the engine writes RFC 3339, readers may query
/// with epoch milliseconds.
pub const DATE_FORMAT: &str = "strict_date_optional_time||epoch_millis";
/// Shards of a new index unless the job's `indexSettings` say otherwise. One: a job writes one
/// document per window and key, a small index, and every version creates a new index, so more
/// shards would mostly multiply per-shard overhead; large jobs raise it in `indexSettings`.
pub const DEFAULT_NUMBER_OF_SHARDS: u64 = 1;

/// Mappings of a job's index: `window_start`/`window_end` dates, `final` boolean, a `keyword`
/// per groupBy key (dotted keys become nested objects), `long` for counts and `double` for
/// the other aggregates; then `overrides` (mapping *properties*) deep-merged over them.
/// Dynamic mapping stays on, so overrides and later fields may add to it.
pub fn derive_mappings(plan: &JobPlan, overrides: Option<&Value>) -> Value {
    let aggregates = plan.aggregates.iter().map(|a| (a.name.as_str(), &a.kind));
    derive_mappings_for(plan.group_by.iter().map(|(path, _)| path.as_str()), aggregates, overrides)
}

/// [`derive_mappings`] from the groupBy paths and (name, kind) of each aggregate.
pub fn derive_mappings_for<'a>(
    group_by: impl IntoIterator<Item = &'a str>,
    aggregates: impl IntoIterator<Item = (&'a str, &'a AggKind)>,
    overrides: Option<&Value>,
) -> Value {
    let mut properties = Map::new();
    let date = json!({ "type": "date", "format": DATE_FORMAT });
    properties.insert(WINDOW_START_FIELD.to_owned(), date.clone());
    properties.insert(WINDOW_END_FIELD.to_owned(), date);
    properties.insert(FINAL_FIELD.to_owned(), json!({ "type": "boolean" }));
    for path in group_by {
        insert_path(&mut properties, path, json!({ "type": "keyword" }));
    }
    for (name, kind) in aggregates {
        insert_path(&mut properties, name, json!({ "type": aggregate_field_type(kind) }));
    }
    let mut properties = Value::Object(properties);
    if let Some(overrides) = overrides {
        deep_merge(&mut properties, overrides);
    }
    json!({ "properties": properties })
}

/// The Elasticsearch field type of an aggregate's result.
pub fn aggregate_field_type(kind: &AggKind) -> &'static str {
    match kind {
        AggKind::Count | AggKind::ApproxDistinct => "long",
        AggKind::Sum
        | AggKind::Min
        | AggKind::Max
        | AggKind::Avg
        | AggKind::ApproxPercentile(_) => "double",
    }
}

/// Puts `leaf` at a dotted path, creating `{"properties": ..}` objects on the way, the way
/// Elasticsearch expands a dotted field name in a document.
fn insert_path(properties: &mut Map<String, Value>, path: &str, leaf: Value) {
    let mut node = properties;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            node.insert(part.to_owned(), leaf);
            return;
        }
        let child = node.entry(part.to_owned()).or_insert_with(|| json!({ "properties": {} }));
        // A leaf already there (`a` and `a.b` both keys) cannot also be an object; the
        // object wins, and Elasticsearch will refuse documents that disagree.
        if child.get("properties").and_then(Value::as_object).is_none() {
            *child = json!({ "properties": {} });
        }
        node = child["properties"].as_object_mut().expect("just ensured an object");
    }
}

/// Merges `over` into `base`: objects merge key by key, recursively; anything else in `over`
/// replaces what `base` had.
///
/// ```
/// use kappa_service::sink::elasticsearch::request::deep_merge;
/// let mut base = serde_json::json!({"a": {"type": "keyword", "x": 1}, "b": 2});
/// deep_merge(&mut base, &serde_json::json!({"a": {"type": "text"}, "c": 3}));
/// assert_eq!(base, serde_json::json!({"a": {"type": "text", "x": 1}, "b": 2, "c": 3}));
/// ```
pub fn deep_merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(key) {
                    Some(existing) => deep_merge(existing, value),
                    None => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, over) => *base = over.clone(),
    }
}

/// The settings of a new index: [`DEFAULT_NUMBER_OF_SHARDS`] with the job's `indexSettings`
/// merged over. The user's settings may be flat (`number_of_shards`), prefixed
/// (`index.number_of_shards`) or nested (`{"index": {..}}`); all are normalised to the nested
/// form first, so a default and an override of the same setting cannot both reach the server.
pub fn index_settings(overrides: Option<&Value>) -> Value {
    let mut settings = json!({ "index": { "number_of_shards": DEFAULT_NUMBER_OF_SHARDS } });
    if let Some(overrides) = overrides {
        let mut nested = Map::new();
        if let Value::Object(map) = expand_dotted_keys(overrides) {
            for (key, value) in map {
                if key == "index" {
                    deep_merge(nested.entry("index").or_insert_with(|| json!({})), &value);
                } else {
                    let index = nested.entry("index").or_insert_with(|| json!({}));
                    deep_merge(index, &json!({ key: value }));
                }
            }
        }
        deep_merge(&mut settings, &Value::Object(nested));
    }
    settings
}

/// `{"a.b": 1}` → `{"a": {"b": 1}}`, recursively.
fn expand_dotted_keys(value: &Value) -> Value {
    let Value::Object(map) = value else { return value.clone() };
    let mut out = Value::Object(Map::new());
    for (key, value) in map {
        let mut nested = expand_dotted_keys(value);
        for part in key.rsplit('.') {
            nested = json!({ part: nested });
        }
        deep_merge(&mut out, &nested);
    }
    out
}

/// The body of `PUT /<index>`.
pub fn create_index_body(settings: Value, mappings: Value) -> Value {
    json!({ "settings": settings, "mappings": mappings })
}

/// The body of `POST /_aliases` moving `alias` from the indices in `remove` to `add` in one
/// atomic request (only adding when `remove` is empty).
///
/// ```
/// use kappa_service::sink::elasticsearch::request::alias_actions;
/// let body = alias_actions("tx", &["tx-v1"], "tx-v2");
/// assert_eq!(body["actions"][0]["remove"]["index"], "tx-v1");
/// assert_eq!(body["actions"][1]["add"]["index"], "tx-v2");
/// ```
pub fn alias_actions(alias: &str, remove: &[&str], add: &str) -> Value {
    let mut actions = Vec::with_capacity(remove.len() + 1);
    for index in remove {
        actions.push(json!({ "remove": { "index": index, "alias": alias } }));
    }
    actions.push(json!({ "add": { "index": add, "alias": alias } }));
    json!({ "actions": actions })
}

/// One `_bulk` request body and the documents it carries, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkRequest {
    /// NDJSON: an action line and a source line per document, each ending in `\n`.
    pub body: Vec<u8>,
    /// Positions (in the slice given to [`bulk_requests`]) of the documents, in body order;
    /// the response's items come back in this order.
    pub docs: Vec<usize>,
}

/// Cuts the documents at `positions` of `docs` into `_bulk` bodies for `index`, each within
/// `limits` (a document alone larger than `max_bytes` still gets a request of its own).
///
/// ```
/// use kappa_service::sink::elasticsearch::{config::BatchLimits, request::bulk_requests};
/// use kappa_engine::output::WindowDoc;
/// let doc = |id: &str| WindowDoc {
///     id: id.into(), version: 3, start: 0, key: Box::new([]), body: "{}".into(), is_final: false,
/// };
/// let docs = [doc("a"), doc("b"), doc("c")];
/// let limits = BatchLimits { max_docs: 2, max_bytes: 1 << 20 };
/// let requests = bulk_requests("i", &docs, 0..docs.len(), limits);
/// assert_eq!(requests.len(), 2);
/// assert_eq!(
///     std::str::from_utf8(&requests[1].body).unwrap(),
///     "{\"index\":{\"_index\":\"i\",\"_id\":\"c\",\"version\":3,\"version_type\":\"external_gte\"}}\n{}\n",
/// );
/// ```
pub fn bulk_requests(
    index: &str,
    docs: &[WindowDoc],
    positions: impl IntoIterator<Item = usize>,
    limits: BatchLimits,
) -> Vec<BulkRequest> {
    let max_docs = limits.max_docs.max(1);
    let mut prefix = Vec::with_capacity(index.len() + 32);
    prefix.extend_from_slice(b"{\"index\":{\"_index\":");
    serde_json::to_writer(&mut prefix, index).expect("strings serialize");
    prefix.extend_from_slice(b",\"_id\":");

    let mut requests = Vec::new();
    let mut current = BulkRequest { body: Vec::new(), docs: Vec::new() };
    let mut action = Vec::with_capacity(128);
    for position in positions {
        let doc = &docs[position];
        debug_assert!(!doc.body.contains('\n'), "a document body must be one line");
        action.clear();
        action.extend_from_slice(&prefix);
        serde_json::to_writer(&mut action, &doc.id).expect("strings serialize");
        action.extend_from_slice(b",\"version\":");
        action.extend_from_slice(doc.version.to_string().as_bytes());
        action.extend_from_slice(b",\"version_type\":\"");
        action.extend_from_slice(VERSION_TYPE.as_bytes());
        action.extend_from_slice(b"\"}}\n");
        let entry_len = action.len() + doc.body.len() + 1;
        let full =
            current.docs.len() >= max_docs || current.body.len() + entry_len > limits.max_bytes;
        if full && !current.docs.is_empty() {
            requests.push(std::mem::replace(
                &mut current,
                BulkRequest { body: Vec::new(), docs: Vec::new() },
            ));
        }
        current.body.extend_from_slice(&action);
        current.body.extend_from_slice(doc.body.as_bytes());
        current.body.push(b'\n');
        current.docs.push(position);
    }
    if !current.docs.is_empty() {
        requests.push(current);
    }
    requests
}

/// `error.type` and `error.reason` of an Elasticsearch error body (`{"error": {..}}` or
/// `{"error": "text"}`), or the start of the body when it is not one.
pub fn error_reason(body: &[u8]) -> (String, String) {
    const MAX_RAW: usize = 500;
    let raw = || {
        let text = String::from_utf8_lossy(body);
        let mut end = text.len().min(MAX_RAW);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        (String::new(), text[..end].to_owned())
    };
    let Ok(value) = serde_json::from_slice::<Value>(body) else { return raw() };
    match value.get("error") {
        Some(Value::Object(error)) => error_object_reason(error),
        Some(Value::String(text)) => (String::new(), text.clone()),
        _ => raw(),
    }
}

/// `type` and `reason` of an error object, with the first `caused_by` reason appended (it is
/// where a mapping error says which value failed to parse).
pub(super) fn error_object_reason(error: &Map<String, Value>) -> (String, String) {
    let text = |key: &str, obj: &Map<String, Value>| {
        obj.get(key).and_then(Value::as_str).unwrap_or_default().to_owned()
    };
    let mut reason = text("reason", error);
    if let Some(Value::Object(cause)) = error.get("caused_by") {
        let cause_reason = text("reason", cause);
        if !cause_reason.is_empty() {
            reason = format!("{reason} (caused by {}: {cause_reason})", text("type", cause));
        }
    }
    (text("type", error), reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(group_by: &[&str]) -> JobPlan {
        let mut job = kappa_crds::load_manifest(kappa_crds::REFERENCE_JOB_YAML).unwrap();
        job.spec.pipeline.group_by = group_by.iter().map(|s| s.to_string()).collect();
        JobPlan::compile(&job).unwrap()
    }

    fn doc(id: &str, version: u64, body: &str) -> WindowDoc {
        WindowDoc {
            id: id.into(),
            version,
            start: 0,
            key: Box::new([]),
            body: body.into(),
            is_final: false,
        }
    }

    #[test]
    fn mappings_of_the_reference_job() {
        let mappings = derive_mappings(&plan(&["server", "geo.country"]), None);
        let p = &mappings["properties"];
        assert_eq!(p["window_start"], json!({"type": "date", "format": DATE_FORMAT}));
        assert_eq!(p["window_end"]["type"], "date");
        assert_eq!(p["final"]["type"], "boolean");
        assert_eq!(p["server"]["type"], "keyword");
        assert_eq!(p["geo"], json!({"properties": {"country": {"type": "keyword"}}}));
        for (field, ty) in [
            ("tx_count", "long"),
            ("failures", "long"),
            ("users", "long"),
            ("amount_sum", "double"),
            ("latency_min", "double"),
            ("latency_max", "double"),
            ("latency_avg", "double"),
            ("latency_p95", "double"),
        ] {
            assert_eq!(p[field]["type"], ty, "{field}");
        }
        assert!(mappings.get("dynamic").is_none(), "dynamic mapping stays at its default");
        assert_eq!(p.as_object().unwrap().len(), 3 + 2 + 8);
    }

    #[test]
    fn overrides_merge_into_derived_properties() {
        let overrides = json!({
            "server": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
            "geo": {"properties": {"city": {"type": "keyword"}}},
            "amount_sum": {"type": "scaled_float", "scaling_factor": 100},
            "note": {"type": "text"}
        });
        let mappings = derive_mappings(&plan(&["server", "geo.country"]), Some(&overrides));
        let p = &mappings["properties"];
        assert_eq!(p["server"], overrides["server"]);
        assert_eq!(p["geo"]["properties"]["country"]["type"], "keyword", "derived kept");
        assert_eq!(p["geo"]["properties"]["city"]["type"], "keyword", "override added");
        assert_eq!(p["amount_sum"], json!({"type": "scaled_float", "scaling_factor": 100}));
        assert_eq!(p["note"]["type"], "text");
        assert_eq!(p["tx_count"]["type"], "long");
    }

    #[test]
    fn settings_default_to_one_shard_and_take_overrides_in_any_spelling() {
        assert_eq!(index_settings(None), json!({"index": {"number_of_shards": 1}}));
        let flat = json!({"number_of_shards": 3, "index.refresh_interval": "5s"});
        assert_eq!(
            index_settings(Some(&flat)),
            json!({"index": {"number_of_shards": 3, "refresh_interval": "5s"}})
        );
        let nested = json!({"index": {"number_of_replicas": 0}});
        assert_eq!(
            index_settings(Some(&nested)),
            json!({"index": {"number_of_shards": 1, "number_of_replicas": 0}})
        );
    }

    #[test]
    fn bulk_lines_carry_external_gte_versions_and_escaped_ids() {
        let docs = [doc("a\"b", 7, r#"{"x":1}"#)];
        let requests = bulk_requests("tx-stats-v1", &docs, [0], BatchLimits::default());
        let text = std::str::from_utf8(&requests[0].body).unwrap();
        let lines: Vec<&str> = text.split_terminator('\n').collect();
        assert_eq!(lines.len(), 2);
        let action: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(
            action,
            json!({"index": {"_index": "tx-stats-v1", "_id": "a\"b", "version": 7,
                             "version_type": "external_gte"}})
        );
        assert_eq!(lines[1], r#"{"x":1}"#);
        assert!(text.ends_with('\n'), "the bulk API needs a final newline");
    }

    #[test]
    fn bulk_requests_split_by_count() {
        let docs: Vec<WindowDoc> = (0..12).map(|i| doc(&i.to_string(), 1, "{}")).collect();
        let limits = BatchLimits { max_docs: 5, max_bytes: usize::MAX };
        let requests = bulk_requests("i", &docs, 0..docs.len(), limits);
        let sizes: Vec<usize> = requests.iter().map(|r| r.docs.len()).collect();
        assert_eq!(sizes, [5, 5, 2]);
        let all: Vec<usize> = requests.iter().flat_map(|r| r.docs.clone()).collect();
        assert_eq!(all, (0..12).collect::<Vec<_>>(), "every document once, in order");
    }

    #[test]
    fn bulk_requests_split_by_bytes_and_oversized_docs_go_alone() {
        let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(100));
        let docs: Vec<WindowDoc> = (0..10).map(|i| doc(&format!("d{i}"), 1, &body)).collect();
        let one = bulk_requests("i", &docs, [0], BatchLimits::default())[0].body.len();
        // Room for three documents, not four.
        let limits = BatchLimits { max_docs: 1000, max_bytes: one * 4 - 1 };
        let requests = bulk_requests("i", &docs, 0..10, limits);
        let sizes: Vec<usize> = requests.iter().map(|r| r.docs.len()).collect();
        assert_eq!(sizes, [3, 3, 3, 1]);
        assert!(requests.iter().all(|r| r.body.len() <= limits.max_bytes));

        let tiny = BatchLimits { max_docs: 1000, max_bytes: 10 };
        let requests = bulk_requests("i", &docs, [4, 2], tiny);
        assert_eq!(requests.iter().map(|r| r.docs.clone()).collect::<Vec<_>>(), [[4], [2]]);
    }

    #[test]
    fn alias_swap_is_remove_then_add_in_one_body() {
        assert_eq!(
            alias_actions("tx", &["tx-v1"], "tx-v2"),
            json!({"actions": [
                {"remove": {"index": "tx-v1", "alias": "tx"}},
                {"add": {"index": "tx-v2", "alias": "tx"}}
            ]})
        );
        assert_eq!(
            alias_actions("tx", &[], "tx-v1"),
            json!({"actions": [{"add": {"index": "tx-v1", "alias": "tx"}}]})
        );
    }

    #[test]
    fn error_bodies() {
        let body = br#"{"error":{"type":"mapper_parsing_exception","reason":"failed to parse",
            "caused_by":{"type":"illegal_argument_exception","reason":"For input string"}},
            "status":400}"#;
        let (ty, reason) = error_reason(body);
        assert_eq!(ty, "mapper_parsing_exception");
        assert_eq!(
            reason,
            "failed to parse (caused by illegal_argument_exception: For input string)"
        );
        assert_eq!(error_reason(br#"{"error":"alias [x] missing"}"#).1, "alias [x] missing");
        assert_eq!(
            error_reason(b"<html>bad gateway</html>"),
            (String::new(), "<html>bad gateway</html>".into())
        );
    }
}
