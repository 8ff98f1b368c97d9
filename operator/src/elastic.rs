//! The operator's Elasticsearch calls: reading and moving the alias (one atomic `_aliases`
//! request), deleting indexes per `deletionPolicy`, and the verification gate's counts. The
//! HTTP client, credentials and error classification are the engine sink's
//! ([`kappa_service::sink::elasticsearch::Cluster`]).

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kappa_crds::StreamJob;
use kappa_service::sink::elasticsearch::{Auth, Cluster, SinkConfig, SinkError};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::lifecycle::{AliasSwap, GateVerdict};

/// Requests of the operator give up after this long (the alias request is small).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an Elasticsearch step failed.
#[derive(Debug, thiserror::Error)]
pub enum ElasticError {
    /// The job's sink settings cannot make a client.
    #[error("spec.sink.elasticsearch of {job}: {message}")]
    Config {
        /// `namespace/name` of the job.
        job: String,
        /// Why.
        message: String,
    },
    /// The credentials Secret cannot be read or lacks the keys.
    #[error(
        "spec.sink.elasticsearch.credentialsSecret {secret}: {message}; the Secret needs \
         `username` and `password`, or `apiKey`"
    )]
    Credentials {
        /// `namespace/name` of the Secret.
        secret: String,
        /// Why.
        message: String,
    },
    /// A request failed.
    #[error(transparent)]
    Request(#[from] SinkError),
}

/// Connects to the job's Elasticsearch with the credentials of `credentialsSecret`, read
/// through the Kubernetes API (the operator mounts no job Secrets).
pub async fn connect(client: &Client, job: &StreamJob) -> Result<Cluster, ElasticError> {
    let sink = &job.spec.sink.elasticsearch;
    let ns = job.namespace().unwrap_or_default();
    let config_error =
        |message: String| ElasticError::Config { job: format!("{ns}/{}", job.name_any()), message };
    let mut config = SinkConfig::new(sink.url.clone(), sink.alias.clone())
        .map_err(|e| config_error(e.to_string()))?;
    config.request_timeout = REQUEST_TIMEOUT;
    if let Some(name) = &sink.credentials_secret {
        let secret_error =
            |message: String| ElasticError::Credentials { secret: format!("{ns}/{name}"), message };
        let secret = Api::<Secret>::namespaced(client.clone(), &ns)
            .get(name)
            .await
            .map_err(|e| secret_error(e.to_string()))?;
        let data = secret.data.unwrap_or_default();
        let text = |key: &str| {
            data.get(key)
                .map(|b| String::from_utf8_lossy(&b.0).trim_end_matches(['\r', '\n']).to_owned())
        };
        config.auth = match (text("username"), text("password"), text("apiKey")) {
            (_, _, Some(key)) => Auth::ApiKey(key),
            (Some(username), Some(password), None) => Auth::Basic { username, password },
            _ => return Err(secret_error("no credentials keys".into())),
        };
        if let Some(ca) = data.get("ca.crt") {
            let path = std::env::temp_dir().join(format!("kappa-operator-{ns}-{name}-ca.crt"));
            std::fs::write(&path, &ca.0)
                .map_err(|e| secret_error(format!("cannot store ca.crt: {e}")))?;
            config.tls.ca_cert_pem = Some(path);
        }
    }
    Cluster::connect(&config).map_err(ElasticError::Request)
}

/// Carries out one alias move: refreshes the index the alias moves to, then moves the alias in
/// a single `POST /_aliases`. Documents the index acknowledged are searchable only after a
/// refresh, and readers must find the whole index the moment the alias reaches it.
pub async fn move_alias(cluster: &Cluster, swap: &AliasSwap) -> Result<(), ElasticError> {
    cluster.refresh(&swap.add).await?;
    let remove: Vec<&str> = swap.remove.iter().map(String::as_str).collect();
    cluster.swap_alias(&swap.alias, &remove, &swap.add).await?;
    Ok(())
}

/// The verification gate: compares the documents of windows that ended before `settled_before`
/// (RFC 3339: now minus `maxLateness`, windows no record can change any more) in the candidate
/// index and the live one. Passes when the candidate's count is within `max_diff_percent` of
/// the live count.
pub async fn verify(
    cluster: &Cluster,
    live_index: &str,
    candidate_index: &str,
    settled_before: &str,
    max_diff_percent: f64,
) -> Result<GateVerdict, ElasticError> {
    let query =
        json!({ "range": { kappa_crds::naming::WINDOW_END_FIELD: { "lt": settled_before } } });
    cluster.refresh(candidate_index).await?;
    let live = cluster.count_matching(live_index, &query).await?;
    let candidate = cluster.count_matching(candidate_index, &query).await?;
    Ok(gate_verdict(live_index, live, candidate_index, candidate, max_diff_percent))
}

/// The gate's rule on two counts (pure).
///
/// ```
/// use kappa_operator::elastic::gate_verdict;
/// use kappa_operator::lifecycle::GateVerdict;
/// assert_eq!(gate_verdict("a-v1", 100, "a-v2", 99, 2.0), GateVerdict::Passed);
/// assert!(matches!(gate_verdict("a-v1", 100, "a-v2", 90, 2.0), GateVerdict::Failed(_)));
/// ```
pub fn gate_verdict(
    live_index: &str,
    live: u64,
    candidate_index: &str,
    candidate: u64,
    max_diff_percent: f64,
) -> GateVerdict {
    let diff = live.abs_diff(candidate) as f64 * 100.0 / live.max(1) as f64;
    if diff <= max_diff_percent {
        GateVerdict::Passed
    } else {
        GateVerdict::Failed(format!(
            "verification gate: {candidate_index} has {candidate} documents of settled windows, \
             {live_index} has {live} ({diff:.2}% apart, more than \
             spec.promotion.verify.maxDocCountDiffPercent {max_diff_percent}%)"
        ))
    }
}
