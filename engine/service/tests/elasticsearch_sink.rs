//! The sink against a real OpenSearch-compatible server (osmem-server): index creation,
//! external versions, rejections, outages and alias swaps.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kappa_service::sink::elasticsearch::{
    BatchLimits, ElasticsearchSink, IndexStatus, RetryPolicy, SinkConfig, SinkError,
    SinkHealthState,
};
use serde_json::{json, Value};
use support::{doc, plan, window_doc, OsmemServer};

fn sink(server: &OsmemServer, index: &str) -> ElasticsearchSink {
    ElasticsearchSink::new(SinkConfig::new(server.url(), index).unwrap()).unwrap()
}

fn parsed(body: &str) -> Value {
    serde_json::from_str(body).unwrap()
}

#[tokio::test]
async fn ensure_index_creates_the_derived_mappings_once() {
    let server = OsmemServer::start();
    let sink = sink(&server, "tx-stats-v1");
    let plan = plan(&["server", "geo.country"]);

    assert_eq!(sink.ensure_index(&plan).await.unwrap(), IndexStatus::Created);
    let mappings = sink.cluster().mappings("tx-stats-v1").await.unwrap();
    let p = &mappings["properties"];
    assert_eq!(p["window_start"]["type"], "date");
    assert_eq!(p["window_end"]["type"], "date");
    assert_eq!(p["final"]["type"], "boolean");
    assert_eq!(p["server"]["type"], "keyword");
    assert_eq!(p["geo"]["properties"]["country"]["type"], "keyword");
    assert_eq!(p["tx_count"]["type"], "long");
    assert_eq!(p["users"]["type"], "long");
    assert_eq!(p["amount_sum"]["type"], "double");
    assert_eq!(p["latency_p95"]["type"], "double");

    // A restart finds the index and leaves it alone.
    assert_eq!(sink.ensure_index(&plan).await.unwrap(), IndexStatus::AlreadyExisted);

    // Two engines racing to create the same index both succeed.
    let (a, b) = (self::sink(&server, "race"), self::sink(&server, "race"));
    let (ra, rb) = tokio::join!(a.ensure_index(&plan), b.ensure_index(&plan));
    let mut statuses = [ra.unwrap(), rb.unwrap()];
    statuses.sort_by_key(|s| *s == IndexStatus::Created);
    assert_eq!(statuses, [IndexStatus::AlreadyExisted, IndexStatus::Created]);
    assert!(sink.health().is_healthy());
}

#[tokio::test]
async fn invalid_mapping_overrides_are_fatal_with_the_servers_reason() {
    let server = OsmemServer::start();
    let mut config = SinkConfig::new(server.url(), "bad-mappings").unwrap();
    config.mapping_overrides = Some(json!({ "server": { "type": "no_such_type" } }));
    let sink = ElasticsearchSink::new(config).unwrap();
    let error = sink.ensure_index(&plan(&["server"])).await.unwrap_err();
    assert!(matches!(error, SinkError::IndexCreation { .. }), "{error:?}");
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("no_such_type"), "{error}");
}

#[tokio::test]
async fn written_documents_read_back_equal() {
    let server = OsmemServer::start();
    let mut config = SinkConfig::new(server.url(), "tx-stats-v1").unwrap();
    config.batch = BatchLimits { max_docs: 64, max_bytes: 8 * 1024 };
    let sink = ElasticsearchSink::new(config).unwrap();
    sink.ensure_index(&plan(&["server"])).await.unwrap();

    let docs: Vec<_> = (0..500).map(|i| window_doc(i, 3)).collect();
    let report = sink.write(&docs).await.unwrap();
    assert_eq!((report.written, report.conflicts, report.retries), (500, 0, 0));
    assert!(report.rejected.is_empty());

    sink.cluster().refresh("tx-stats-v1").await.unwrap();
    assert_eq!(sink.cluster().count("tx-stats-v1").await.unwrap(), 500);
    let stored = sink.cluster().search_all("tx-stats-v1").await.unwrap();
    let mut expected: Vec<(String, Value)> =
        docs.iter().map(|d| (d.id.clone(), parsed(&d.body))).collect();
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(stored, expected);
}

#[tokio::test]
async fn lower_versions_are_conflicts_and_equal_versions_rewrite() {
    let server = OsmemServer::start();
    let sink = sink(&server, "versions");
    sink.ensure_index(&plan(&["server"])).await.unwrap();
    let body = |n: u64| json!({ "server": "srv-1", "tx_count": n });

    let report = sink.write(&[doc("w", 5, body(5))]).await.unwrap();
    assert_eq!((report.written, report.conflicts), (1, 0));

    // A stale replay: the index keeps the newer state, and that is a success.
    let report = sink.write(&[doc("w", 3, body(3))]).await.unwrap();
    assert_eq!((report.written, report.conflicts), (0, 1));
    assert!(report.rejected.is_empty());
    sink.cluster().refresh("versions").await.unwrap();
    assert_eq!(sink.cluster().search_all("versions").await.unwrap(), [("w".into(), body(5))]);

    // external_gte: the same version is accepted and replaces the body.
    let rewrite = json!({ "server": "srv-1", "tx_count": 5, "final": true });
    let report = sink.write(&[doc("w", 5, rewrite.clone())]).await.unwrap();
    assert_eq!((report.written, report.conflicts), (1, 0));
    sink.cluster().refresh("versions").await.unwrap();
    assert_eq!(sink.cluster().search_all("versions").await.unwrap(), [("w".into(), rewrite)]);
}

#[tokio::test]
async fn documents_violating_the_mapping_are_rejected_and_the_rest_written() {
    let server = OsmemServer::start();
    let sink = sink(&server, "rejects");
    sink.ensure_index(&plan(&["server"])).await.unwrap();
    let docs = [
        window_doc(1, 1),
        doc("bad", 1, json!({ "server": "srv-x", "tx_count": "not a number" })),
        window_doc(2, 1),
    ];
    let report = sink.write(&docs).await.unwrap();
    assert_eq!(report.written, 2);
    assert_eq!(report.retries, 0, "a bad document is not retried");
    assert_eq!(report.rejected.len(), 1);
    let rejected = &report.rejected[0];
    assert_eq!((rejected.id.as_str(), rejected.status), ("bad", 400));
    assert_eq!(rejected.reason_type, "mapper_parsing_exception");
    assert!(rejected.reason.contains("tx_count"), "{}", rejected.reason);
    sink.cluster().refresh("rejects").await.unwrap();
    assert_eq!(sink.cluster().count("rejects").await.unwrap(), 2);
    assert!(sink.health().is_healthy(), "a bad document is not a sick sink");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_survives_an_outage_and_health_shows_it() {
    let server = OsmemServer::start();
    // Set-up and checks use the default timeouts; the tight ones below are for the outage
    // (a busy machine can take longer than 500 ms to create or refresh an index).
    let admin = sink(&server, "outage");
    admin.ensure_index(&plan(&["server"])).await.unwrap();
    let mut config = SinkConfig::new(server.url(), "outage").unwrap();
    config.request_timeout = Duration::from_millis(500);
    config.retry = RetryPolicy {
        initial_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(500),
        max_elapsed: Some(Duration::from_secs(60)),
    };
    let sink = ElasticsearchSink::new(config).unwrap();

    // The status endpoint's view, from another task.
    let health = sink.health();
    let saw_degraded = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let observer = tokio::spawn({
        let (saw_degraded, stop) = (saw_degraded.clone(), stop.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                if let SinkHealthState::Degraded { consecutive_failures, last_error, .. } =
                    health.state()
                {
                    assert!(consecutive_failures >= 1);
                    assert!(!last_error.is_empty());
                    saw_degraded.store(true, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });

    server.pause();
    let docs: Vec<_> = (0..200).map(|i| window_doc(i, 1)).collect();
    let writer = tokio::spawn({
        let sink = sink.clone();
        async move { sink.write(&docs).await }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!writer.is_finished(), "the write must wait for the server");
    server.resume();

    let report = writer.await.unwrap().expect("the write succeeds once the server is back");
    stop.store(true, Ordering::Relaxed);
    observer.await.unwrap();
    assert_eq!(report.written, 200);
    assert!(report.retries >= 1, "{report:?}");
    assert!(saw_degraded.load(Ordering::Relaxed), "health never showed Degraded");
    assert_eq!(sink.health().state(), SinkHealthState::Healthy);
    admin.cluster().refresh("outage").await.unwrap();
    assert_eq!(admin.cluster().count("outage").await.unwrap(), 200);
}

#[tokio::test]
async fn an_outage_longer_than_the_budget_is_unavailable() {
    let server = OsmemServer::start();
    // The index is created with the default timeouts: the tight budget below is for the
    // outage, and a busy machine (CI runs the tests in parallel) can take longer than 300 ms
    // to create an index.
    sink(&server, "budget").ensure_index(&plan(&["server"])).await.unwrap();
    let mut config = SinkConfig::new(server.url(), "budget").unwrap();
    config.request_timeout = Duration::from_millis(300);
    config.retry = RetryPolicy {
        initial_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(200),
        max_elapsed: Some(Duration::from_secs(1)),
    };
    let sink = ElasticsearchSink::new(config).unwrap();

    server.pause();
    let started = std::time::Instant::now();
    let error = sink.write(&[window_doc(1, 1), window_doc(2, 1)]).await.unwrap_err();
    server.resume();
    let SinkError::Unavailable { attempts, pending, ref last_cause, .. } = error else {
        panic!("expected Unavailable, got {error:?}");
    };
    assert!(attempts >= 2, "{error}");
    assert_eq!(pending, 2);
    assert!(matches!(**last_cause, SinkError::Timeout { .. }), "{last_cause:?}");
    assert!(error.is_retryable());
    // Budget (1 s) plus at most one request timeout.
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(!sink.health().is_healthy());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_swaps_are_atomic() {
    let server = OsmemServer::start();
    let plan = plan(&["server"]);
    let (v1, v2) = (sink(&server, "tx-stats-v1"), sink(&server, "tx-stats-v2"));
    v1.ensure_index(&plan).await.unwrap();
    v2.ensure_index(&plan).await.unwrap();
    let cluster = v1.cluster().clone();

    assert!(cluster.alias_targets("tx-stats").await.unwrap().is_empty());
    cluster.swap_alias("tx-stats", &[], "tx-stats-v1").await.unwrap();
    assert_eq!(cluster.alias_targets("tx-stats").await.unwrap(), ["tx-stats-v1"]);
    cluster.swap_alias("tx-stats", &["tx-stats-v1"], "tx-stats-v2").await.unwrap();
    assert_eq!(cluster.alias_targets("tx-stats").await.unwrap(), ["tx-stats-v2"]);

    // A request whose second action fails changes nothing: the actions apply together or not.
    let error = cluster.swap_alias("tx-stats", &["tx-stats-v2"], "no-such-index").await;
    assert!(error.is_err());
    assert_eq!(cluster.alias_targets("tx-stats").await.unwrap(), ["tx-stats-v2"]);

    // Readers polling during swaps always see exactly one index.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn({
        let (cluster, stop) = (cluster.clone(), stop.clone());
        async move {
            let mut observations = 0;
            while !stop.load(Ordering::Relaxed) {
                let targets = cluster.alias_targets("tx-stats").await.unwrap();
                assert_eq!(targets.len(), 1, "alias seen pointing at {targets:?}");
                observations += 1;
            }
            observations
        }
    });
    let mut current = "tx-stats-v2";
    for _ in 0..50 {
        let next = if current == "tx-stats-v1" { "tx-stats-v2" } else { "tx-stats-v1" };
        cluster.swap_alias("tx-stats", &[current], next).await.unwrap();
        current = next;
    }
    stop.store(true, Ordering::Relaxed);
    let observations = reader.await.unwrap();
    assert!(observations > 0);
    assert_eq!(cluster.alias_targets("tx-stats").await.unwrap(), [current]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_admin_calls_move_from_several_indices_count_ranges_and_delete() {
    let server = OsmemServer::start();
    let plan = plan(&["server"]);
    let (v1, v2, v3) =
        (sink(&server, "tx-stats-v1"), sink(&server, "tx-stats-v2"), sink(&server, "tx-stats-v3"));
    for s in [&v1, &v2, &v3] {
        s.ensure_index(&plan).await.unwrap();
    }
    let cluster = v1.cluster().clone();
    cluster.swap_alias("tx-stats", &[], "tx-stats-v1").await.unwrap();
    cluster.swap_alias("tx-stats", &[], "tx-stats-v2").await.unwrap();
    assert_eq!(cluster.alias_targets("tx-stats").await.unwrap(), ["tx-stats-v1", "tx-stats-v2"]);
    cluster.swap_alias("tx-stats", &["tx-stats-v1", "tx-stats-v2"], "tx-stats-v3").await.unwrap();
    assert_eq!(cluster.alias_targets("tx-stats").await.unwrap(), ["tx-stats-v3"]);

    for (id, end) in [("a", "2026-01-01T00:01:00.000Z"), ("b", "2026-01-01T00:05:00.000Z")] {
        let (status, body) = kappa_testkit::http::send_json(
            "PUT",
            &format!("{}/tx-stats-v3/_doc/{id}?refresh=true", server.url()),
            Some(&serde_json::json!({"window_end": end, "server": "s1"})),
        );
        assert!((200..300).contains(&status), "{body}");
    }
    let older = serde_json::json!({"range": {"window_end": {"lt": "2026-01-01T00:03:00.000Z"}}});
    assert_eq!(cluster.count_matching("tx-stats-v3", &older).await.unwrap(), 1);

    assert!(cluster.delete_index("tx-stats-v1").await.unwrap());
    assert!(!cluster.delete_index("tx-stats-v1").await.unwrap(), "deleting twice is fine");
    assert_eq!(server.alias_targets("tx-stats"), ["tx-stats-v3"]);
}
