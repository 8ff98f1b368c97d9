//! The reference transaction-statistics job, pointed at test peers.

/// The committed reference job (crds/fixtures/valid/tx-stats.yaml).
pub const TX_STATS_YAML: &str = include_str!("../../../crds/fixtures/valid/tx-stats.yaml");

/// The reference job with its Kafka bootstrap servers, Elasticsearch URL, alias and version
/// replaced (the alias keeps tests on one server apart).
pub fn tx_stats_job(bootstrap: &str, es_url: &str, alias: &str, version: &str) -> String {
    let mut out = String::with_capacity(TX_STATS_YAML.len());
    for line in TX_STATS_YAML.lines() {
        let indent = &line[..line.len() - line.trim_start().len()];
        let trimmed = line.trim_start();
        let replaced = if trimmed.starts_with("bootstrapServers:") {
            format!("{indent}bootstrapServers: \"{bootstrap}\"")
        } else if trimmed.starts_with("url:") {
            format!("{indent}url: \"{es_url}\"")
        } else if trimmed.starts_with("alias:") {
            format!("{indent}alias: {alias}")
        } else if trimmed.starts_with("version:") && indent.len() == 2 {
            format!("{indent}version: {version}")
        } else {
            line.to_owned()
        };
        out.push_str(&replaced);
        out.push('\n');
    }
    out
}

/// [`tx_stats_job`] without `pipeline.logTime`: log time is the Kafka record timestamp.
pub fn tx_stats_job_record_time(
    bootstrap: &str,
    es_url: &str,
    alias: &str,
    version: &str,
) -> String {
    let job = tx_stats_job(bootstrap, es_url, alias, version);
    let mut out = String::with_capacity(job.len());
    let mut skip = 0;
    for line in job.lines() {
        if line.trim_start().starts_with("logTime:") {
            skip = 2; // its `field` and `format` lines
            continue;
        }
        if skip > 0 {
            skip -= 1;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The many-small-windows workload of the reference job: 130k records from 64 servers over
/// 3.5 days of log time. At the head about 104k windows are open (3-day lateness) and 18k are
/// final, with about one record each, so an engine that reaches the head still has some 104k
/// documents to write before its index is complete. Its 24 MB fit MockCluster's 5 MB per
/// partition over 8 partitions.
pub fn many_small_windows(seed: u64) -> kappa_engine::gen::GenConfig {
    kappa_engine::gen::GenConfig {
        records: 130_000,
        seed,
        servers: 64,
        rate_per_sec: 0.43,
        ..kappa_engine::gen::GenConfig::default()
    }
}

/// Windows of `reference` that are still open at the head of its log.
pub fn open_windows(reference: &crate::reference::Reference) -> usize {
    use crate::reference::{LATENESS_MS, WINDOW_MS};
    reference
        .windows
        .keys()
        .filter(|(start, ..)| reference.max_log < start + WINDOW_MS + LATENESS_MS)
        .count()
}
