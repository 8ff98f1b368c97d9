//! `kappa status`, `kappa promote` and `kappa rollback`: the commands that work against a
//! cluster. They read the StreamJob and patch its spec or annotations, nothing else: the
//! operator carries out every change (workloads, the alias swap), so the CLI never talks to
//! Elasticsearch or Kafka behind its back.
//!
//! Each command is an async function taking a [`kube::Client`], so tests can pass one backed
//! by an in-memory API; the decisions (which version to pin, which patch to send, how the table
//! reads) are pure functions in [`alias`] and [`status`].

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use kappa_crds::{StreamJob, VersionPhase, VersionStatus};
use kube::Api;

pub mod alias;
pub mod status;

pub use alias::{promote, rollback, rollback_when_current, WaitOptions};
pub use status::{status, ProgressDisplay, StatusOptions};

/// The StreamJob to act on.
#[derive(Debug, clap::Args)]
pub struct JobArgs {
    /// Name of the StreamJob.
    job: String,
    /// Its namespace (default: the kubeconfig context's namespace).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Talk to the job `kappa up` runs on this machine (its API, through the kubeconfig in
    /// the state directory) instead of the cluster.
    #[arg(long)]
    local: bool,
    /// The state directory of `kappa up` (with --local).
    #[arg(long, default_value = ".kappa", env = "KAPPA_STATE_DIR", requires = "local")]
    state_dir: std::path::PathBuf,
}

/// Arguments of `kappa status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    target: JobArgs,
    /// Keep polling until interrupted or until no version is replaying any more.
    #[arg(long)]
    watch: bool,
    /// Time between polls; the replay rate is measured over it. The operator refreshes the
    /// status every 5s while a version replays, so a longer interval gives a steadier rate.
    #[arg(long, default_value = "2s", value_parser = super::run::parse_duration)]
    interval: Duration,
}

/// Arguments of `kappa promote`.
#[derive(Debug, clap::Args)]
pub struct PromoteArgs {
    #[command(flatten)]
    target: JobArgs,
    /// The version to move the alias to (default: `spec.version`). Another version is pinned
    /// with `spec.activeVersion` and must be complete.
    version: Option<String>,
}

/// Arguments of `kappa rollback`.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    target: JobArgs,
    /// The version to pin (default: the most recently retired one).
    #[arg(long = "to")]
    to: Option<String>,
    /// Switch only once the target's index has caught up (by the caught-up rule of
    /// spec.promotion): its engine is run first if it was stopped. Without it the alias moves
    /// at once and the target catches up while serving.
    #[arg(long)]
    wait: bool,
    /// With --wait: give up after this long (the alias is then left where it is).
    #[arg(long, default_value = "30m", value_parser = super::run::parse_duration, requires = "wait")]
    timeout: Duration,
}

/// `kappa status`: connects with the kubeconfig and prints the job's versions.
pub async fn run_status(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let (client, ns) = connect(&args.target).await?;
    let display = if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        ProgressDisplay::Bar
    } else {
        ProgressDisplay::Lines
    };
    let options = StatusOptions { watch: args.watch, interval: args.interval, display };
    let mut out = std::io::stdout();
    status(client, &ns, &args.target.job, &options, &mut out).await?;
    Ok(ExitCode::SUCCESS)
}

/// `kappa promote`: connects with the kubeconfig and approves or pins a version.
pub async fn run_promote(args: &PromoteArgs) -> anyhow::Result<ExitCode> {
    let (client, ns) = connect(&args.target).await?;
    let mut out = std::io::stdout();
    promote(client, &ns, &args.target.job, args.version.as_deref(), &mut out).await?;
    Ok(ExitCode::SUCCESS)
}

/// `kappa rollback`: connects with the kubeconfig and pins a previous version.
pub async fn run_rollback(args: &RollbackArgs) -> anyhow::Result<ExitCode> {
    let (client, ns) = connect(&args.target).await?;
    let mut out = std::io::stdout();
    if args.wait {
        let wait = WaitOptions { timeout: args.timeout, interval: Duration::from_secs(2) };
        rollback_when_current(client, &ns, &args.target.job, args.to.as_deref(), wait, &mut out)
            .await?;
    } else {
        rollback(client, &ns, &args.target.job, args.to.as_deref(), &mut out).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A client from the kubeconfig (or the in-cluster config) and the namespace to use.
async fn connect(target: &JobArgs) -> anyhow::Result<(kube::Client, String)> {
    if target.local {
        return connect_local(target).await;
    }
    let client = kube::Client::try_default().await.context(
        "cannot connect to the Kubernetes API: set KUBECONFIG or a current context in \
         ~/.kube/config",
    )?;
    let ns = target.namespace.clone().unwrap_or_else(|| client.default_namespace().to_string());
    Ok((client, ns))
}

/// A client for the API of `kappa up`, from the kubeconfig it wrote into its state directory.
async fn connect_local(target: &JobArgs) -> anyhow::Result<(kube::Client, String)> {
    let state = kappa_operator::local::up::StateDir::new(&target.state_dir);
    let path = state.kubeconfig();
    let not_running = || {
        format!(
            "no `kappa up` runs with state directory {} (start one with `kappa up -f job.yaml`, \
             or pass its --state-dir)",
            target.state_dir.display()
        )
    };
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).with_context(not_running)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .with_context(|| format!("{} is not a usable kubeconfig", path.display()))?;
    let server = config.cluster_url.clone();
    let client = kube::Client::try_from(config)
        .with_context(|| format!("cannot build a client for {server}"))?;
    // Fail here, with the reason, rather than with a connection error halfway through.
    Api::<StreamJob>::all(client.clone())
        .list_metadata(&kube::api::ListParams::default().limit(1))
        .await
        .with_context(not_running)?;
    let ns = target.namespace.clone().unwrap_or_else(|| client.default_namespace().to_string());
    Ok((client, ns))
}

/// Reads the StreamJob `ns/name`; a missing one is an error that says how to look for it.
pub(crate) async fn fetch(api: &Api<StreamJob>, ns: &str, name: &str) -> anyhow::Result<StreamJob> {
    api.get_opt(name)
        .await
        .with_context(|| format!("cannot read StreamJob {ns}/{name}"))?
        .with_context(|| {
            format!(
                "StreamJob {ns}/{name} not found: check the name and the namespace \
                 (kubectl get streamjobs -n {ns})"
            )
        })
}

/// The status rows of a job (none before the operator's first reconcile).
pub(crate) fn rows(job: &StreamJob) -> &[VersionStatus] {
    job.status.as_ref().map_or(&[], |s| s.versions.as_slice())
}

/// Phases of a version whose index is complete, so it may serve the alias (the operator's rule
/// for `spec.activeVersion`).
pub fn can_serve(phase: VersionPhase) -> bool {
    phase.is_complete()
}

/// Phases of a version that was live before and is kept for rollback.
pub fn is_previous(phase: VersionPhase) -> bool {
    phase.is_previous()
}

/// `"v1 (Retained), v2 (Live)"`, or `"none yet"`: the versions that can serve the alias.
pub(crate) fn serving_versions(rows: &[VersionStatus]) -> String {
    let list: Vec<String> = rows
        .iter()
        .filter(|r| can_serve(r.phase))
        .map(|r| format!("{} ({:?})", r.version, r.phase))
        .collect();
    if list.is_empty() {
        "none yet".to_string()
    } else {
        list.join(", ")
    }
}

/// `namespace/name` of a job, for messages.
pub(crate) fn job_ref(job: &StreamJob) -> String {
    format!(
        "{}/{}",
        job.metadata.namespace.as_deref().unwrap_or("default"),
        job.metadata.name.as_deref().unwrap_or("<unnamed>")
    )
}

/// StreamJob fixtures for the unit tests of this module.
#[cfg(test)]
pub(crate) mod fixture {
    use kappa_crds::{StreamJob, StreamJobStatus, VersionPhase, VersionStatus};

    /// The reference job at `spec.version`, with these status rows; the `Live` row (if any) is
    /// `status.liveVersion`.
    pub fn job(spec_version: &str, rows: Vec<VersionStatus>) -> StreamJob {
        let mut job = kappa_crds::load_manifest(kappa_crds::REFERENCE_JOB_YAML).unwrap();
        job.spec.version = spec_version.to_string();
        let live = rows.iter().find(|r| r.phase == VersionPhase::Live).map(|r| r.version.clone());
        job.status =
            Some(StreamJobStatus { live_version: live, versions: rows, ..Default::default() });
        job
    }

    /// A status row with only the version, its index and the phase.
    pub fn row(version: &str, phase: VersionPhase) -> VersionStatus {
        VersionStatus { phase, ..VersionStatus::pending(version, format!("tx-stats-{version}")) }
    }
}
