//! The bulk write path: send `_bulk` requests, judge every item of the answer, resend only the
//! documents refused for a transient reason, and report the rest.

use std::collections::HashMap;

use elasticsearch::http::Method;
use kappa_engine::output::WindowDoc;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::cluster::Cluster;
use super::config::BatchLimits;
use super::error::{is_retryable_status, SinkError};
use super::health::SinkHealth;
use super::request::{bulk_requests, error_object_reason, BulkRequest};
use super::retry::RetryPolicy;

/// Error type of a write whose version is lower than the stored one.
pub const VERSION_CONFLICT: &str = "version_conflict_engine_exception";
/// Error type of a write into an index that does not exist (and may not be auto-created).
pub const INDEX_NOT_FOUND: &str = "index_not_found_exception";

/// The outcome of one [`BulkWriter::write`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Documents created or replaced.
    pub written: usize,
    /// Documents refused because the index holds an equal or newer version: nothing to do.
    pub conflicts: usize,
    /// Documents Elasticsearch refused for a reason of their own (mapping, size, ..). The
    /// caller must route them to dead letters.
    pub rejected: Vec<RejectedDoc>,
    /// Retry rounds (backoff sleeps) the write needed.
    pub retries: u32,
}

/// A document Elasticsearch refused and retrying cannot fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedDoc {
    /// Document id.
    pub id: String,
    /// HTTP status of the item.
    pub status: u16,
    /// `error.type`, e.g. `mapper_parsing_exception`.
    pub reason_type: String,
    /// `error.reason` (with the first `caused_by` reason).
    pub reason: String,
}

/// How one item of a bulk answer is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemOutcome {
    /// 2xx: stored.
    Written,
    /// 409 version conflict: the index already holds this or a newer version.
    Conflict,
    /// 429 or 5xx: resend the document later.
    Retry,
    /// The sink as a whole cannot write (no such index, no privilege): fail the write rather
    /// than dead-letter every document.
    Fatal,
    /// Any other 4xx: the document itself is bad.
    Reject,
}

/// Judges one bulk item by its status and `error.type`.
///
/// ```
/// use kappa_service::sink::elasticsearch::bulk::{classify_item, ItemOutcome};
/// assert_eq!(classify_item(201, ""), ItemOutcome::Written);
/// assert_eq!(classify_item(409, "version_conflict_engine_exception"), ItemOutcome::Conflict);
/// assert_eq!(classify_item(429, "es_rejected_execution_exception"), ItemOutcome::Retry);
/// assert_eq!(classify_item(400, "mapper_parsing_exception"), ItemOutcome::Reject);
/// ```
pub fn classify_item(status: u16, reason_type: &str) -> ItemOutcome {
    match status {
        200..=299 => ItemOutcome::Written,
        409 if reason_type == VERSION_CONFLICT => ItemOutcome::Conflict,
        _ if is_retryable_status(status) => ItemOutcome::Retry,
        401 | 403 => ItemOutcome::Fatal,
        404 if reason_type == INDEX_NOT_FOUND => ItemOutcome::Fatal,
        _ => ItemOutcome::Reject,
    }
}

#[derive(Deserialize)]
struct BulkAnswer {
    items: Vec<HashMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<Map<String, Value>>,
}

/// Writes documents into one index with `_bulk`, within the batch limits and retry budget.
#[derive(Debug, Clone)]
pub struct BulkWriter {
    cluster: Cluster,
    index: String,
    limits: BatchLimits,
    retry: RetryPolicy,
    health: SinkHealth,
}

/// What became of the items of one request, folded into the write's state.
struct Round<'a> {
    report: &'a mut WriteReport,
    retry_later: Vec<usize>,
    last_cause: Option<SinkError>,
}

impl BulkWriter {
    /// A writer for `index` on `cluster`, recording outcomes in `health`.
    pub fn new(
        cluster: Cluster,
        index: String,
        limits: BatchLimits,
        retry: RetryPolicy,
        health: SinkHealth,
    ) -> Self {
        Self { cluster, index, limits, retry, health }
    }

    /// Writes `docs` with external versions (`external_gte`). Returns once every document is
    /// written, a version conflict or rejected; resends documents refused with 429/5xx and
    /// requests that failed with a transport error, 429 or 5xx, with backoff, until the retry
    /// budget is spent ([`SinkError::Unavailable`]). A request refused with another 4xx fails
    /// the write at once. On error, some documents may have been written: writes are
    /// idempotent, so the caller retries the whole slice.
    pub async fn write(&self, docs: &[WindowDoc]) -> Result<WriteReport, SinkError> {
        let mut report = WriteReport::default();
        let mut pending: Vec<usize> = (0..docs.len()).collect();
        let mut schedule = self.retry.start();
        let action = format!("bulk write to index {}", self.index);
        while !pending.is_empty() {
            let mut round =
                Round { report: &mut report, retry_later: Vec::new(), last_cause: None };
            for request in bulk_requests(&self.index, docs, pending.iter().copied(), self.limits) {
                if let Err(error) = self.send(request, docs, &action, &mut round).await {
                    self.health.record_failure(&error);
                    return Err(error);
                }
            }
            let Some(cause) = round.last_cause else {
                break;
            };
            self.health.record_failure(&cause);
            pending = round.retry_later;
            let Some(delay) = schedule.next_delay() else {
                return Err(SinkError::Unavailable {
                    index: self.index.clone(),
                    url: self.cluster.url().to_owned(),
                    attempts: schedule.attempts(),
                    elapsed: schedule.elapsed(),
                    pending: pending.len(),
                    last_cause: Box::new(cause),
                });
            };
            report.retries += 1;
            tracing::warn!(
                index = %self.index,
                pending = pending.len(),
                ?delay,
                error = %cause,
                "retrying bulk write"
            );
            tokio::time::sleep(delay).await;
        }
        self.health.record_success();
        Ok(report)
    }

    /// Sends one request and sorts its documents into the round. Returns an error only for a
    /// fatal failure; retryable ones are recorded in the round.
    async fn send(
        &self,
        request: BulkRequest,
        docs: &[WindowDoc],
        action: &str,
        round: &mut Round<'_>,
    ) -> Result<(), SinkError> {
        let answer = match self
            .cluster
            .send(Method::Post, "_bulk", Some(request.body), true, action)
            .await
        {
            Ok(answer) if (200..300).contains(&answer.status) => answer,
            Ok(answer) => {
                let error = self.cluster.http_error(&answer, action);
                return self.retry_whole(error, request.docs, round);
            }
            Err(error) => return self.retry_whole(error, request.docs, round),
        };
        let parsed: BulkAnswer = serde_json::from_slice(&answer.body).map_err(|e| {
            self.cluster.protocol_error(action, format!("invalid bulk response: {e}"))
        })?;
        if parsed.items.len() != request.docs.len() {
            return Err(self.cluster.protocol_error(
                action,
                format!("{} items for {} documents", parsed.items.len(), request.docs.len()),
            ));
        }
        let mut refused = 0;
        for (item, position) in parsed.items.into_iter().zip(request.docs) {
            // Each item is `{"<op>": {..}}`; the op is `index` here.
            let Some(item) = item.into_values().next() else {
                return Err(self.cluster.protocol_error(action, "empty bulk item".to_owned()));
            };
            let (reason_type, reason) =
                item.error.as_ref().map(error_object_reason).unwrap_or_default();
            match classify_item(item.status, &reason_type) {
                ItemOutcome::Written => round.report.written += 1,
                ItemOutcome::Conflict => round.report.conflicts += 1,
                ItemOutcome::Retry => {
                    refused += 1;
                    round.retry_later.push(position);
                    round.last_cause = Some(SinkError::ItemsRefused {
                        index: self.index.clone(),
                        count: refused,
                        status: item.status,
                        reason_type,
                        reason,
                    });
                }
                ItemOutcome::Fatal => {
                    return Err(SinkError::Http {
                        url: self.cluster.url().to_owned(),
                        action: action.to_owned(),
                        status: item.status,
                        reason_type,
                        reason,
                    })
                }
                ItemOutcome::Reject => round.report.rejected.push(RejectedDoc {
                    id: docs[position].id.clone(),
                    status: item.status,
                    reason_type,
                    reason,
                }),
            }
        }
        Ok(())
    }

    /// A request that failed as a whole: retry all its documents if the failure is transient.
    fn retry_whole(
        &self,
        error: SinkError,
        positions: Vec<usize>,
        round: &mut Round<'_>,
    ) -> Result<(), SinkError> {
        if !error.is_retryable() {
            return Err(error);
        }
        round.retry_later.extend(positions);
        round.last_cause = Some(error);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_judged_by_status_and_type() {
        assert_eq!(classify_item(200, ""), ItemOutcome::Written);
        assert_eq!(classify_item(409, VERSION_CONFLICT), ItemOutcome::Conflict);
        assert_eq!(classify_item(409, "other"), ItemOutcome::Reject, "not silently dropped");
        assert_eq!(classify_item(503, "unavailable_shards_exception"), ItemOutcome::Retry);
        assert_eq!(classify_item(404, INDEX_NOT_FOUND), ItemOutcome::Fatal);
        assert_eq!(classify_item(403, "security_exception"), ItemOutcome::Fatal);
        assert_eq!(classify_item(400, "illegal_argument_exception"), ItemOutcome::Reject);
    }

    #[test]
    fn bulk_answers_parse_with_and_without_errors() {
        let body = br#"{"took":1,"errors":true,"items":[
            {"index":{"_id":"a","status":201,"result":"created"}},
            {"index":{"_id":"b","status":409,"error":{"type":"version_conflict_engine_exception",
                "reason":"[b]: version conflict"}}}]}"#;
        let answer: BulkAnswer = serde_json::from_slice(body).unwrap();
        let statuses: Vec<u16> =
            answer.items.iter().map(|i| i.values().next().unwrap().status).collect();
        assert_eq!(statuses, [201, 409]);
        let error = answer.items[1]["index"].error.as_ref().unwrap();
        assert_eq!(error_object_reason(error).0, VERSION_CONFLICT);
    }
}
