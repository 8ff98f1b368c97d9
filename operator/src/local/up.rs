//! `kappa up`: the operator's lifecycle on one machine. The unchanged controller reconciles a
//! StreamJob read from a file against the in-memory API; the local [`Kubelet`] runs each
//! version's engine as a child process; the alias moves in the real Elasticsearch-API server
//! the job names, with the same promotion, verification and rollback rules as in a cluster.
//!
//! The state directory (default `.kappa/`) holds everything a restart needs:
//! - `api.json`: the API's objects (the StreamJob with its status rows, Deployments,
//!   ConfigMaps, Events), saved within a second of every change and at exit;
//! - `kubeconfig`: how `kappa status --local` and `kubectl --kubeconfig` reach the API while
//!   `kappa up` runs;
//! - `pods/<namespace>/<deployment>/`: each engine's log and checkpoints.
//!
//! A second `kappa up` resumes: the engines restart from their checkpoints and the controller
//! picks up from the saved status. The job file is the spec: it is re-read every second, and a
//! valid change is applied (a new `spec.version` starts a blue/green replay). An invalid file is
//! refused with its field paths and the job keeps running as it was; so is a logic change
//! without a new `spec.version`, as the CRD's transition rules refuse it in a cluster.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use kappa_crds::StreamJob;
use kube::api::PostParams;
use kube::{Api, ResourceExt as _};
use serde_json::Value;

use super::api::FakeKube;
use super::kubelet::{Kubelet, KubeletSettings};
use super::serve;
use crate::build::EngineDefaults;
use crate::controller::{Context, Settings};
use crate::lifecycle::same_logic;
use crate::metrics::Metrics;

/// How often the loop syncs engines, re-reads the job file and saves the API.
const TICK: Duration = Duration::from_secs(1);

/// What `kappa up` runs.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The StreamJob manifest.
    pub job_file: PathBuf,
    /// Where the API, the kubeconfig and the engines' disks live.
    pub state_dir: PathBuf,
    /// The program that runs engines (the `kappa` binary itself).
    pub engine_program: PathBuf,
    /// Address of the local Kubernetes API (port 0: any free port).
    pub api_addr: SocketAddr,
    /// Engine checkpoint interval (shorter than a cluster's: a laptop stops more often).
    pub checkpoint_interval: String,
}

/// The files of a state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// The state directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The kubeconfig `kappa up` writes for other processes.
    pub fn kubeconfig(&self) -> PathBuf {
        self.root.join("kubeconfig")
    }

    fn api(&self) -> PathBuf {
        self.root.join("api.json")
    }

    fn pods(&self) -> PathBuf {
        self.root.join("pods")
    }
}

/// Runs the job of `options.job_file` until `stop` completes, then stops the engines (each
/// takes a final checkpoint) and saves the state.
pub async fn up(options: UpOptions, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
    let state = StateDir::new(&options.state_dir);
    std::fs::create_dir_all(&options.state_dir)
        .with_context(|| format!("cannot create {}", options.state_dir.display()))?;
    refuse_a_second_instance(&state).await?;

    let api = FakeKube::without_request_log();
    if let Some(saved) = read_saved(&state.api())? {
        let count = api.import(&saved).map_err(anyhow::Error::msg).with_context(|| {
            format!("{} is not a saved API (move it away to start afresh)", state.api().display())
        })?;
        tracing::info!(objects = count, file = %state.api().display(), "resumed the saved state");
    }
    let mut file = JobFile::new(&options.job_file);
    let job = file.read().map_err(|problems| {
        anyhow::anyhow!(
            "{}: {} problem(s):\n  {}",
            file.path.display(),
            problems.len(),
            problems.join("\n  ")
        )
    })?;
    let namespace = job.namespace().unwrap_or_else(|| "default".into());
    apply_job(&api, &namespace, job).await.with_context(|| file.path.display().to_string())?;

    let addr = serve::serve(api.clone(), options.api_addr).await.with_context(|| {
        format!("cannot serve the local Kubernetes API on {}", options.api_addr)
    })?;
    serve::write_kubeconfig(&state.kubeconfig(), addr, &namespace)
        .with_context(|| format!("cannot write {}", state.kubeconfig().display()))?;
    tracing::info!(
        %addr, kubeconfig = %state.kubeconfig().display(),
        "local Kubernetes API up (kappa status --local, kubectl --kubeconfig)"
    );

    let mut kubelet = Kubelet::new(
        api.clone(),
        KubeletSettings { engine_program: options.engine_program.clone(), root: state.pods() },
    );
    let settings = Settings {
        engine: EngineDefaults {
            image: "kappa (local binary)".into(),
            checkpoint_interval: options.checkpoint_interval.clone(),
            ..EngineDefaults::default()
        },
        ..Settings::default()
    };
    let ctx = Arc::new(Context::with_locator(
        api.client(),
        settings,
        Arc::new(Metrics::new()),
        kubelet.locator(),
    ));
    let controller = tokio::spawn(crate::run::run_controllers(api.client(), &[], ctx));

    let mut saved_revision = api.revision();
    let mut events = EventLog::default();
    events.skip_existing(&api);
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = ticks.tick() => {}
        }
        kubelet.sync().await;
        if file.changed() {
            match file.read() {
                Ok(job) => {
                    if let Err(e) = apply_job(&api, &namespace, job).await {
                        tracing::error!("{}: {e:#}", file.path.display());
                    }
                }
                Err(problems) => tracing::error!(
                    "{}: not applied, the job runs on unchanged:\n  {}",
                    file.path.display(),
                    problems.join("\n  ")
                ),
            }
        }
        events.print_new(&api);
        if api.revision() != saved_revision {
            saved_revision = api.revision();
            save(&api, &state.api())?;
        }
    }
    tracing::info!("stopping: engines take a final checkpoint");
    controller.abort();
    kubelet.shutdown().await;
    save(&api, &state.api())?;
    tracing::info!(state = %options.state_dir.display(), "stopped; `kappa up` again resumes");
    Ok(())
}

/// Two `kappa up` on one state directory would run every engine twice.
async fn refuse_a_second_instance(state: &StateDir) -> anyhow::Result<()> {
    let Ok(text) = std::fs::read_to_string(state.kubeconfig()) else { return Ok(()) };
    let Some(server) = text.lines().find_map(|l| l.trim().strip_prefix("server: http://")) else {
        return Ok(());
    };
    let probe = tokio::time::timeout(
        Duration::from_millis(500),
        tokio::net::TcpStream::connect(server.trim().to_owned()),
    );
    if matches!(probe.await, Ok(Ok(_))) {
        bail!(
            "another `kappa up` serves this state directory ({}); stop it first or pass \
             another --state-dir",
            state.root.display()
        );
    }
    Ok(())
}

/// The job file, re-read when its bytes change.
struct JobFile {
    path: PathBuf,
    last: Option<Vec<u8>>,
}

impl JobFile {
    fn new(path: &Path) -> Self {
        Self { path: path.to_owned(), last: None }
    }

    fn changed(&self) -> bool {
        std::fs::read(&self.path).ok() != self.last
    }

    /// Loads and validates the file; the problems carry field paths.
    fn read(&mut self) -> Result<StreamJob, Vec<String>> {
        let bytes = std::fs::read(&self.path)
            .map_err(|e| vec![format!("cannot read {}: {e}", self.path.display())])?;
        self.last = Some(bytes.clone());
        let text = String::from_utf8_lossy(&bytes);
        kappa_engine::plan::load_manifest(&text)
            .map_err(|e| e.field_errors().iter().map(ToString::to_string).collect())
    }
}

/// Writes the file's StreamJob into the API as `kubectl apply` would: the spec is the file's
/// (fields left out are gone) except `spec.activeVersion`, which keeps the CLI's pin while the
/// file sets none; labels and annotations are merged over what is stored (so an approval set by
/// `kappa promote` stays); the status is the operator's.
async fn apply_job(api: &FakeKube, namespace: &str, mut job: StreamJob) -> anyhow::Result<()> {
    let name = job.name_any();
    let jobs: Api<StreamJob> = Api::namespaced(api.client(), namespace);
    job.metadata.namespace = Some(namespace.to_owned());
    job.status = None;
    match jobs.get_opt(&name).await.context("read the StreamJob")? {
        None => {
            jobs.create(&PostParams::default(), &job).await.context("create the StreamJob")?;
            tracing::info!(job = %name, version = %job.spec.version, "applied the job file");
        }
        Some(mut stored) => {
            // A pin set by `kappa rollback`/`promote` is not the file's to undo unless the file
            // sets one itself (as `kubectl apply` leaves fields it never applied alone).
            if job.spec.active_version.is_none() {
                job.spec.active_version.clone_from(&stored.spec.active_version);
            }
            if stored.spec.version == job.spec.version && !same_logic(&stored.spec, &job.spec) {
                bail!(
                    "not applied: spec.version: the source, pipeline, sink or engine image \
                     changed, which needs a new spec.version (it is still {}); the job runs on \
                     unchanged",
                    job.spec.version
                );
            }
            if stored.spec == job.spec
                && job.labels().iter().all(|(k, v)| stored.labels().get(k) == Some(v))
                && job.annotations().iter().all(|(k, v)| stored.annotations().get(k) == Some(v))
            {
                return Ok(());
            }
            let version = job.spec.version.clone();
            stored.spec = job.spec;
            stored.labels_mut().extend(job.metadata.labels.unwrap_or_default());
            stored.annotations_mut().extend(job.metadata.annotations.unwrap_or_default());
            jobs.replace(&name, &PostParams::default(), &stored)
                .await
                .context("update the StreamJob")?;
            tracing::info!(job = %name, %version, "applied the changed job file");
        }
    }
    Ok(())
}

fn read_saved(path: &Path) -> anyhow::Result<Option<Value>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
            format!("{} is not JSON (move it away to start afresh)", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Saves the API atomically (a crash leaves the previous or the new file, never half of one).
fn save(api: &FakeKube, path: &Path) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec(&api.export()).expect("the API's objects serialize");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Prints each new Event of the controller once (the operator emits one per phase change,
/// alias move and problem), so the terminal of `kappa up` reads as the job's history.
#[derive(Default)]
struct EventLog {
    seen: std::collections::BTreeSet<String>,
}

impl EventLog {
    /// Marks the Events of a resumed state as printed.
    fn skip_existing(&mut self, api: &FakeKube) {
        for event in api.list("events.k8s.io/v1", "events", None) {
            if let Some(name) = event["metadata"]["name"].as_str() {
                self.seen.insert(name.to_owned());
            }
        }
    }

    fn print_new(&mut self, api: &FakeKube) {
        let mut events = api.list("events.k8s.io/v1", "events", None);
        events.sort_by_key(|e| {
            e["metadata"]["resourceVersion"].as_str().and_then(|v| v.parse::<u64>().ok())
        });
        for event in events {
            let Some(name) = event["metadata"]["name"].as_str() else { continue };
            if !self.seen.insert(name.to_owned()) {
                continue;
            }
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            tracing::info!(
                "{} {}: {} — {}",
                text(&event["regarding"]["name"]),
                text(&event["type"]).to_lowercase(),
                text(&event["reason"]),
                text(&event["note"])
            );
        }
    }
}
