//! The real OpenSearch peer (tests/peers/opensearch.sh) starts and behaves as the sink's tests
//! need a real node to: writes become visible only after a refresh, external versions refuse
//! older writes, aliases move in one atomic request, and pause/resume freeze and thaw the node.
//! One test, so one node (each takes 10-40 s and ~700 MB).

use std::time::Duration;

use kappa_testkit::http::{get_json, send_json};
use kappa_testkit::opensearch::OpenSearchNode;
use serde_json::{json, Value as Json};

/// `POST url` with an NDJSON body (one line per value), as `_bulk` takes it; returns (status,
/// JSON body or Null).
fn send_ndjson(url: &str, lines: &[Json]) -> (u16, Json) {
    let body: String = lines.iter().map(|line| format!("{line}\n")).collect();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent
        .post(url)
        .header("content-type", "application/x-ndjson")
        .send(body.as_str())
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_json::<Json>().unwrap_or(Json::Null))
}

/// The last lines of the node's log, for assertion messages.
fn log_tail(node: &OpenSearchNode) -> String {
    let log = node.log();
    let lines: Vec<&str> = log.lines().collect();
    format!("--- node log (tail) ---\n{}", lines[lines.len().saturating_sub(40)..].join("\n"))
}

fn count(node: &OpenSearchNode, index: &str) -> u64 {
    let (status, body) = send_json("GET", &format!("{}/{index}/_count", node.url()), None);
    assert_eq!(status, 200, "count {index}: {body}\n{}", log_tail(node));
    body["count"].as_u64().unwrap()
}

fn index_op(index: &str, id: &str, version: u64) -> Json {
    json!({"index": {"_index": index, "_id": id, "version": version, "version_type": "external_gte"}})
}

#[test]
fn real_node_refreshes_versions_swaps_aliases_and_pauses() {
    let node = OpenSearchNode::start();
    let url = node.url();

    let root = get_json(&url).unwrap_or_else(|| panic!("GET /\n{}", log_tail(&node)));
    assert_eq!(root["version"]["distribution"], "opensearch", "a real node: {root}");
    assert!(node.log().contains("started"), "{}", log_tail(&node));

    // Refresh only on request: nothing written is searchable until `_refresh`.
    let settings = json!({"settings": {"index": {
        "number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "-1"
    }}});
    for index in ["events-1", "events-2"] {
        let (status, body) = send_json("PUT", &format!("{url}/{index}"), Some(&settings));
        assert_eq!(status, 200, "create {index}: {body}\n{}", log_tail(&node));
    }

    let (status, body) = send_ndjson(
        &format!("{url}/_bulk"),
        &[
            index_op("events-1", "a", 5),
            json!({"server": "a", "tx_count": 1}),
            index_op("events-1", "b", 7),
            json!({"server": "b", "tx_count": 2}),
        ],
    );
    assert_eq!(status, 200, "bulk: {body}\n{}", log_tail(&node));
    assert_eq!(body["errors"], false, "bulk: {body}");
    let statuses: Vec<&Json> =
        body["items"].as_array().unwrap().iter().map(|i| &i["index"]["status"]).collect();
    assert_eq!(statuses, [&json!(201), &json!(201)], "bulk: {body}");

    assert_eq!(count(&node, "events-1"), 0, "not searchable before a refresh");
    let (status, body) = send_json("POST", &format!("{url}/events-1/_refresh"), None);
    assert_eq!(status, 200, "refresh: {body}");
    assert_eq!(count(&node, "events-1"), 2, "searchable after a refresh");

    // external_gte: a lower version is refused, an equal one (a replayed write) accepted.
    let (status, body) = send_ndjson(
        &format!("{url}/_bulk"),
        &[
            index_op("events-1", "a", 4),
            json!({"server": "a", "tx_count": 0}),
            index_op("events-1", "b", 7),
            json!({"server": "b", "tx_count": 2}),
        ],
    );
    assert_eq!(status, 200, "bulk: {body}");
    assert_eq!(body["errors"], true, "the older write is refused: {body}");
    let older = &body["items"][0]["index"];
    assert_eq!(older["status"], 409, "{body}");
    assert_eq!(older["error"]["type"], "version_conflict_engine_exception", "{body}");
    assert_eq!(body["items"][1]["index"]["status"], 200, "equal version accepted: {body}");
    let (status, doc) = send_json("GET", &format!("{url}/events-1/_doc/a"), None);
    assert_eq!(status, 200, "get a: {doc}");
    assert_eq!((&doc["_version"], &doc["_source"]["tx_count"]), (&json!(5), &json!(1)), "{doc}");

    // Aliases: added in one request, then swapped atomically in one request.
    let (status, body) = send_json(
        "POST",
        &format!("{url}/_aliases"),
        Some(&json!({"actions": [{"add": {"index": "events-1", "alias": "events"}}]})),
    );
    assert_eq!((status, &body["acknowledged"]), (200, &json!(true)), "add alias: {body}");
    let (status, body) = send_json("GET", &format!("{url}/_alias/events"), None);
    assert_eq!(status, 200, "get alias: {body}");
    assert_eq!(body, json!({"events-1": {"aliases": {"events": {}}}}));
    assert_eq!(count(&node, "events"), 2, "count through the alias");

    let (status, body) = send_json(
        "POST",
        &format!("{url}/_aliases"),
        Some(&json!({"actions": [
            {"remove": {"index": "events-1", "alias": "events"}},
            {"add": {"index": "events-2", "alias": "events"}}
        ]})),
    );
    assert_eq!((status, &body["acknowledged"]), (200, &json!(true)), "swap alias: {body}");
    let (status, body) = send_json("GET", &format!("{url}/_alias/events"), None);
    assert_eq!(status, 200, "get alias: {body}");
    assert_eq!(body, json!({"events-2": {"aliases": {"events": {}}}}));
    assert_eq!(count(&node, "events"), 0, "the alias now reads the empty index");

    // pause() freezes the node's JVM (its pid is the right process); resume() thaws it.
    let health = format!("{url}/_cluster/health");
    let quick: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(1))).build().into();
    node.pause();
    assert!(quick.get(&health).call().is_err(), "a frozen node does not answer");
    node.resume();
    let health = get_json(&health).unwrap_or_else(|| panic!("no health\n{}", log_tail(&node)));
    assert_ne!(health["status"], "red", "answers again after resume: {health}");
}
