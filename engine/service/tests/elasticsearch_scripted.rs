//! Answers osmem-server never gives (per-item 429, whole-request 503 and 400), from a scripted
//! HTTP peer: proves that only refused documents are resent and which failures are fatal.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kappa_service::sink::elasticsearch::{ElasticsearchSink, RetryPolicy, SinkConfig, SinkError};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One scripted answer: status and JSON body.
type Answer = (u16, Value);

/// An HTTP/1.1 peer that answers requests with the next scripted answer and records the
/// request bodies it received.
struct ScriptedPeer {
    url: String,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl ScriptedPeer {
    async fn start(script: Vec<Answer>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.into_iter()));
        let recorded = bodies.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (script, recorded) = (script.clone(), recorded.clone());
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut read = BufReader::new(read);
                    loop {
                        let mut length = 0;
                        let mut line = String::new();
                        loop {
                            line.clear();
                            if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            let lower = line.to_ascii_lowercase();
                            if let Some(value) = lower.strip_prefix("content-length:") {
                                length = value.trim().parse().unwrap();
                            }
                        }
                        let mut body = vec![0; length];
                        read.read_exact(&mut body).await.unwrap();
                        recorded.lock().unwrap().push(String::from_utf8(body).unwrap());
                        let (status, answer) =
                            script.lock().unwrap().next().expect("more requests than scripted");
                        let answer = answer.to_string();
                        let response = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                             content-length: {}\r\n\r\n{answer}",
                            answer.len()
                        );
                        write.write_all(response.as_bytes()).await.unwrap();
                    }
                });
            }
        });
        Self { url, bodies }
    }

    /// The `_id`s of the documents of each request received, in order.
    fn requested_ids(&self) -> Vec<Vec<String>> {
        let bodies = self.bodies.lock().unwrap();
        bodies
            .iter()
            .map(|body| {
                body.lines()
                    .step_by(2)
                    .map(|action| {
                        let action: Value = serde_json::from_str(action).unwrap();
                        action["index"]["_id"].as_str().unwrap().to_owned()
                    })
                    .collect()
            })
            .collect()
    }
}

fn sink(peer: &ScriptedPeer) -> ElasticsearchSink {
    let mut config = SinkConfig::new(&peer.url, "idx").unwrap();
    config.retry = RetryPolicy {
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(20),
        max_elapsed: Some(Duration::from_secs(10)),
    };
    ElasticsearchSink::new(config).unwrap()
}

fn docs() -> Vec<kappa_engine::output::WindowDoc> {
    ["a", "b", "c"]
        .into_iter()
        .map(|id| kappa_engine::output::WindowDoc {
            id: id.to_owned(),
            version: 1,
            start: 0,
            key: Box::new([]),
            body: json!({ "n": 1 }).to_string(),
            is_final: false,
        })
        .collect()
}

fn item(status: u16, error_type: Option<&str>) -> Value {
    match error_type {
        None => json!({ "index": { "status": status, "result": "created" } }),
        Some(ty) => json!({ "index": { "status": status, "error": { "type": ty, "reason": ty } } }),
    }
}

#[tokio::test]
async fn only_documents_refused_with_429_are_resent() {
    let peer = ScriptedPeer::start(vec![
        (
            200,
            json!({ "errors": true, "items": [
                item(201, None),
                item(429, Some("es_rejected_execution_exception")),
                item(409, Some("version_conflict_engine_exception")),
            ]}),
        ),
        (200, json!({ "errors": false, "items": [item(200, None)] })),
    ])
    .await;
    let sink = sink(&peer);
    let report = sink.write(&docs()).await.unwrap();
    assert_eq!((report.written, report.conflicts, report.retries), (2, 1, 1));
    assert_eq!(peer.requested_ids(), [vec!["a", "b", "c"], vec!["b"]]);
    assert!(sink.health().is_healthy());
}

#[tokio::test]
async fn whole_request_503_is_retried_and_400_is_fatal() {
    let peer = ScriptedPeer::start(vec![
        (503, json!({ "error": { "type": "cluster_block_exception", "reason": "no master" } })),
        (200, json!({ "errors": false, "items": [item(201, None), item(201, None), item(201, None)] })),
        (400, json!({ "error": { "type": "illegal_argument_exception", "reason": "bad bulk" } })),
    ])
    .await;
    let sink = sink(&peer);
    let report = sink.write(&docs()).await.unwrap();
    assert_eq!((report.written, report.retries), (3, 1));
    assert_eq!(peer.requested_ids().len(), 2);

    let error = sink.write(&docs()).await.unwrap_err();
    assert!(matches!(error, SinkError::Http { status: 400, .. }), "{error:?}");
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("bad bulk"), "{error}");
    assert_eq!(peer.requested_ids().len(), 3, "a fatal error is not retried");
    assert!(!sink.health().is_healthy());
}
