//! Shared test support of the sink tests: the osmem-server peer (from kappa-testkit) and
//! window-document fixtures.

#![allow(dead_code)] // Each test binary uses a different part of this module.

use kappa_engine::output::WindowDoc;
pub use kappa_testkit::osmem::OsmemServer;

/// A compiled plan of the reference job (`tx-stats`), grouped by `groupBy`.
pub fn plan(group_by: &[&str]) -> kappa_engine::JobPlan {
    let mut job = kappa_crds::load_manifest(kappa_crds::REFERENCE_JOB_YAML).expect("reference job");
    job.spec.pipeline.group_by = group_by.iter().map(|s| s.to_string()).collect();
    kappa_engine::JobPlan::compile(&job).expect("reference job compiles")
}

/// A window document with a hand-written body.
pub fn doc(id: &str, version: u64, body: serde_json::Value) -> WindowDoc {
    WindowDoc {
        id: id.to_owned(),
        version,
        start: 0,
        key: Box::new([]),
        body: body.to_string(),
        is_final: false,
    }
}

/// Document `i` of a window of the reference job grouped by `server`.
pub fn window_doc(i: usize, version: u64) -> WindowDoc {
    doc(
        &format!("60000-{i:032x}"),
        version,
        serde_json::json!({
            "window_start": "2024-01-01T00:01:00.000Z",
            "window_end": "2024-01-01T00:02:00.000Z",
            "server": format!("srv-{i}"),
            "tx_count": version,
            "amount_sum": i as f64 * 1.25,
            "latency_p95": 12.5,
            "final": false
        }),
    )
}
