//! The StreamJob controller: `reconcile(Arc<StreamJob>, Arc<Context>) -> Result<Action>` and
//! its `error_policy`, in the pipeline read → validate → observe → decide → build → apply →
//! status.
//!
//! - [`world`] reads what exists (ConfigMaps, Deployments, pods) and observes progress (Kafka,
//!   engine `/status`, the alias, the verification gate);
//! - [`crate::lifecycle::decide`] decides (pure);
//! - [`crate::build`] builds the desired objects (pure);
//! - [`apply`] carries the decision out (server-side apply, deletes, the alias request);
//! - [`status`] writes the status and emits one Event per transition.

pub mod apply;
pub mod status;
pub mod world;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kappa_crds::StreamJob;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::finalizer::{finalizer, Event as Finalizing};
use kube::{Api, Client, ResourceExt};

use crate::build::{BuildError, EngineDefaults};
use crate::elastic::ElasticError;
use crate::lifecycle;
use crate::metrics::Metrics;
use crate::names;
use crate::observe::engine::EngineProbe;
use crate::observe::kafka::KafkaObserver;
use crate::observe::ObserveError;

/// Where a version's engine status endpoint is: (namespace, job, version) → URL. In a cluster
/// that is its Service ([`names::engine_status_url`]); tests point it at local engines.
pub type EngineLocator = Arc<dyn Fn(&str, &str, &str) -> String + Send + Sync>;

/// Operator settings that are not part of any StreamJob.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Defaults of engine workloads (image, checkpoint interval, ...).
    pub engine: EngineDefaults,
    /// Bound of one Kafka observation of a version.
    pub kafka_timeout: Duration,
    /// Bound of one engine `/status` request.
    pub engine_timeout: Duration,
    /// How long deletion keeps retrying Elasticsearch cleanup before it gives up, reports the
    /// indexes left behind and releases the finalizer (so a namespace can always be deleted).
    pub cleanup_timeout: Duration,
    /// Requeue after an error.
    pub error_requeue: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            engine: EngineDefaults::default(),
            kafka_timeout: Duration::from_secs(10),
            engine_timeout: Duration::from_secs(3),
            cleanup_timeout: Duration::from_secs(300),
            error_requeue: Duration::from_secs(15),
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// Operator settings.
    pub settings: Settings,
    /// Operator metrics.
    pub metrics: Arc<Metrics>,
    /// Publishes Events (`events.k8s.io/v1`).
    pub recorder: Recorder,
    /// Finds engine status endpoints.
    pub locate_engine: EngineLocator,
    /// Reads engine status endpoints.
    pub probe: EngineProbe,
    /// Kafka observers, one per distinct source (a client per reconcile would reconnect to
    /// every broker each time).
    kafka: Mutex<HashMap<String, Arc<KafkaObserver>>>,
}

impl Context {
    /// A context with in-cluster engine discovery.
    pub fn new(client: Client, settings: Settings, metrics: Arc<Metrics>) -> Self {
        let locate: EngineLocator = Arc::new(names::engine_status_url);
        Self::with_locator(client, settings, metrics, locate)
    }

    /// A context whose engines are found by `locate_engine` (tests, `kappa up`).
    pub fn with_locator(
        client: Client,
        settings: Settings,
        metrics: Arc<Metrics>,
        locate_engine: EngineLocator,
    ) -> Self {
        let reporter = Reporter {
            controller: names::CONTROLLER_NAME.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            probe: EngineProbe::new(settings.engine_timeout),
            client,
            settings,
            metrics,
            locate_engine,
            kafka: Mutex::new(HashMap::new()),
        }
    }

    /// The (cached) Kafka observer of a source.
    pub fn kafka_observer(
        &self,
        source: &kappa_crds::KafkaSource,
    ) -> Result<Arc<KafkaObserver>, ObserveError> {
        let key = serde_json::to_string(source).expect("a source serializes");
        let mut cache = self.kafka.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(observer) = cache.get(&key) {
            return Ok(Arc::clone(observer));
        }
        let observer = Arc::new(KafkaObserver::new(source, self.settings.kafka_timeout)?);
        cache.insert(key, Arc::clone(&observer));
        Ok(observer)
    }
}

/// Why a reconcile failed. Each variant names the object or peer involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {action}: {source}")]
    Kube {
        /// What was being done, e.g. `apply Deployment payments/tx-stats-v2`.
        action: String,
        /// The client error.
        source: kube::Error,
    },
    /// An Elasticsearch call failed.
    #[error(transparent)]
    Elastic(#[from] ElasticError),
    /// A version's objects could not be built (its ConfigMap is damaged).
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The StreamJob has no namespace (it is a namespaced resource: a client bug).
    #[error("StreamJob {0} has no namespace")]
    NoNamespace(String),
    /// Adding or removing the finalizer failed.
    #[error("finalizer kappa.dev/cleanup: {0}")]
    Finalizer(String),
    /// A blocking task panicked or was cancelled.
    #[error("observation task of {0} did not finish: {1}")]
    Task(String, String),
}

impl Error {
    /// A short label for the failure metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kubernetes",
            Error::Elastic(_) => "elasticsearch",
            Error::Build(_) => "build",
            Error::NoNamespace(_) => "invalid",
            Error::Finalizer(_) => "finalizer",
            Error::Task(..) => "task",
        }
    }
}

/// Wraps a kube error with what was being done.
pub(crate) fn kube_error(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Kube { action, source }
}

/// Reconciles one StreamJob: through the finalizer, either its normal lifecycle
/// ([`apply::reconcile_job`]) or, once it is being deleted, its cleanup
/// ([`apply::cleanup_job`]).
pub async fn reconcile(job: Arc<StreamJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let ns = job.namespace().ok_or_else(|| Error::NoNamespace(job.name_any()))?;
    let api: Api<StreamJob> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, names::FINALIZER, job, |event| async {
        match event {
            Finalizing::Apply(job) => apply::reconcile_job(&job, &ctx).await,
            Finalizing::Cleanup(job) => apply::cleanup_job(&job, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    });
    ctx.metrics
        .observe_reconcile(started.elapsed(), result.as_ref().err().map(Error::metric_label));
    result
}

/// What to do after a failed reconcile: log it, count it, retry soon.
pub fn error_policy(job: Arc<StreamJob>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(job = %job.name_any(), namespace = ?job.namespace(), %error, "reconcile failed");
    Action::requeue(ctx.settings.error_requeue)
}

/// The pure view of what the resource asks for, given the logic each known version ran with.
pub fn desired(
    job: &StreamJob,
    recorded: &std::collections::BTreeMap<String, kappa_crds::StreamJobSpec>,
) -> lifecycle::Desired {
    let spec = &job.spec;
    let duration = |text: &str| kappa_crds::parse_duration(text).unwrap_or(Duration::ZERO);
    let spec_conflict = recorded.get(&spec.version).and_then(|old| {
        (!lifecycle::same_logic(old, spec)).then(|| {
            format!(
                "spec.version {} already runs with another logic (source, pipeline, sink or \
                 engine image differ); choose a new spec.version to replay the changed logic",
                spec.version
            )
        })
    });
    lifecycle::Desired {
        job: job.name_any(),
        generation: job.metadata.generation.unwrap_or(0),
        version: spec.version.clone(),
        alias: spec.sink.elasticsearch.alias.clone(),
        active_version: spec.active_version.clone(),
        promotion: lifecycle::PromotionPolicy {
            mode: spec.promotion.mode,
            max_lag: spec.promotion.max_lag,
            max_delay: duration(&spec.promotion.max_delay),
            stable_for: duration(&spec.promotion.stable_for),
            verify: spec.promotion.verify.is_some(),
        },
        approved: job.annotations().get(names::ANNOTATION_APPROVE).cloned(),
        warm_version: job.annotations().get(names::ANNOTATION_WARM_VERSION).cloned(),
        keep_versions: usize::try_from(spec.retention.keep_versions).unwrap_or(0),
        warm_for: duration(&spec.retention.warm_for),
        deletion_policy: spec.deletion_policy,
        spec_conflict,
    }
}
