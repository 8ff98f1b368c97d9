//! The operator process: flags, the metrics and probe server, leader election through a
//! `coordination.k8s.io` Lease, and one controller per watched namespace (or one for all).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kappa_crds::StreamJob;
use kube::runtime::{watcher, Controller};
use kube::{Api, Client};
use kube_lease_manager::LeaseManagerBuilder;

use crate::build::EngineDefaults;
use crate::controller::{self, Context, Settings};
use crate::metrics::Metrics;
use crate::names;

/// Flags of `kappa-operator` (each also read from the environment, as the Helm chart sets
/// them).
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "kappa-operator", version, about = "The Kappa StreamJob operator")]
pub struct OperatorArgs {
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "KAPPA_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Engine image for versions whose spec.engine.image is not set.
    #[arg(long, env = "KAPPA_ENGINE_IMAGE", default_value = "ghcr.io/kappa-dev/kappa:0.1.0")]
    pub engine_image: String,
    /// imagePullPolicy of engine containers.
    #[arg(long, env = "KAPPA_ENGINE_IMAGE_PULL_POLICY")]
    pub engine_image_pull_policy: Option<String>,
    /// ServiceAccount of engine pods.
    #[arg(long, env = "KAPPA_ENGINE_SERVICE_ACCOUNT")]
    pub engine_service_account: Option<String>,
    /// Checkpoint interval passed to every engine.
    #[arg(long, env = "KAPPA_CHECKPOINT_INTERVAL", default_value = "10s")]
    pub checkpoint_interval: String,
    /// Namespaces to watch, comma-separated; empty: every namespace.
    #[arg(long, env = "KAPPA_WATCH_NAMESPACES", value_delimiter = ',')]
    pub watch_namespaces: Vec<String>,
    /// Run only while holding the Lease (set it on whenever more than one replica may run).
    #[arg(long, env = "KAPPA_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Namespace of the Lease (default: the pod's namespace, `POD_NAMESPACE`).
    #[arg(long, env = "KAPPA_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(long, env = "KAPPA_LEASE_NAME", default_value = "kappa-operator")]
    pub lease_name: String,
    /// How long deletion retries Elasticsearch cleanup before it gives up (e.g. 5m).
    #[arg(long, env = "KAPPA_CLEANUP_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub cleanup_timeout: Duration,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    kappa_crds::parse_duration(text).map_err(|e| e.to_string())
}

impl OperatorArgs {
    /// The controller settings these flags give.
    pub fn settings(&self) -> Settings {
        Settings {
            engine: EngineDefaults {
                image: self.engine_image.clone(),
                image_pull_policy: self.engine_image_pull_policy.clone(),
                checkpoint_interval: self.checkpoint_interval.clone(),
                service_account: self.engine_service_account.clone(),
            },
            cleanup_timeout: self.cleanup_timeout,
            ..Settings::default()
        }
    }
}

/// Runs the operator until SIGTERM/SIGINT.
pub fn run(args: OperatorArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: OperatorArgs) -> anyhow::Result<()> {
    let client = Client::try_default().await.context("cannot configure the Kubernetes client")?;
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("cannot serve metrics on {}", args.metrics_addr))?;
    let app = probe_router(Arc::clone(&metrics), Arc::clone(&ready));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let ctx = Arc::new(Context::new(client.clone(), args.settings(), metrics));
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    if !args.leader_election {
        ready.store(true, Ordering::Relaxed);
        tokio::select! {
            () = run_controllers(client, &args.watch_namespaces, ctx) => {}
            () = &mut shutdown => {}
        }
        return Ok(());
    }
    let identity = std::env::var("POD_NAME")
        .unwrap_or_else(|_| format!("kappa-operator-{}", std::process::id()));
    let lease_ns = args
        .lease_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "default".into());
    let manager =
        lease_manager(client.clone(), &lease_ns, &args.lease_name, &identity, LEASE_DURATION_SECS)
            .await
            .with_context(|| format!("cannot prepare Lease {lease_ns}/{}", args.lease_name))?;
    let (mut leading, _task) = manager.watch().await;
    // Ready means "able to lead": a standby replica is ready too, so a rollout is not blocked.
    ready.store(true, Ordering::Relaxed);
    loop {
        tracing::info!(identity, lease = %args.lease_name, "waiting to lead");
        tokio::select! {
            changed = wait_for(&mut leading, true) => changed?,
            () = &mut shutdown => return Ok(()),
        }
        tracing::info!(identity, "leading: starting controllers");
        tokio::select! {
            () = run_controllers(client.clone(), &args.watch_namespaces, Arc::clone(&ctx)) => return Ok(()),
            lost = wait_for(&mut leading, false) => {
                lost?;
                tracing::warn!(identity, "lost the Lease: controllers stopped");
            }
            () = &mut shutdown => return Ok(()),
        }
    }
}

/// The Lease manager of one operator replica. Each replica keeps the crate's default field
/// manager (derived from its identity): server-side apply conflicts between distinct managers
/// are what stop two replicas from taking the Lease at once.
///
/// A leader renews the Lease well within `duration_secs`; a follower takes over at most that
/// long after the leader vanished (a released Lease is taken sooner).
pub async fn lease_manager(
    client: Client,
    namespace: &str,
    lease: &str,
    identity: &str,
    duration_secs: u64,
) -> Result<kube_lease_manager::LeaseManager, kube_lease_manager::LeaseManagerError> {
    LeaseManagerBuilder::new(client, lease)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(duration_secs)
        .with_grace((duration_secs / 4).max(1))
        .build()
        .await
}

/// Lease duration of the operator: a crashed leader is replaced within this many seconds.
pub const LEASE_DURATION_SECS: u64 = 15;

/// Waits until the leadership channel says `want`.
async fn wait_for(
    leading: &mut tokio::sync::watch::Receiver<bool>,
    want: bool,
) -> anyhow::Result<()> {
    leading.wait_for(|l| *l == want).await.map(|_| ()).context("the Lease manager stopped")
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Runs one controller per namespace (or one over all namespaces) until they end.
pub async fn run_controllers(client: Client, namespaces: &[String], ctx: Arc<Context>) {
    let apis: Vec<(Api<StreamJob>, Api<Deployment>)> = if namespaces.is_empty() {
        vec![(Api::all(client.clone()), Api::all(client))]
    } else {
        namespaces
            .iter()
            .map(|ns| (Api::namespaced(client.clone(), ns), Api::namespaced(client.clone(), ns)))
            .collect()
    };
    let owned = watcher::Config::default().labels(&format!(
        "{}={}",
        names::LABEL_MANAGED_BY,
        names::CONTROLLER_NAME
    ));
    let controllers = apis.into_iter().map(|(jobs, deployments)| {
        Controller::new(jobs, watcher::Config::default())
            .owns(deployments, owned.clone())
            .run(controller::reconcile, controller::error_policy, Arc::clone(&ctx))
            .for_each(|result| async move {
                match result {
                    Ok((job, _)) => tracing::debug!(job = %job.name, "reconciled"),
                    Err(e) => tracing::debug!(%e, "reconcile error"),
                }
            })
    });
    futures::future::join_all(controllers).await;
}

/// `/metrics`, `/healthz` (the process serves) and `/readyz` (leader election is set up).
pub fn probe_router(metrics: Arc<Metrics>, ready: Arc<AtomicBool>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State((m, _)): State<(Arc<Metrics>, Arc<AtomicBool>)>| async move { m.render() }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State((_, r)): State<(Arc<Metrics>, Arc<AtomicBool>)>| async move {
                if r.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting")
                }
            }),
        )
        .with_state((metrics, ready))
}
