//! A kubelet for `kappa up`: keeps one local child process per engine Deployment the
//! controller wrote into the in-memory API, and reports back what a kubelet would (a Pod with
//! container state and restart count, the Deployment's ready replicas). The controller cannot
//! tell it from a cluster: a crash-looping engine shows as `CrashLoopBackOff` with its restart
//! count and last words, so the version fails exactly as it would in a cluster.
//!
//! What "running a pod" means here:
//! - **Program.** The engine container's `args` are run by the local `kappa` binary (the image is
//!   not pulled: the local binary *is* the engine), with `--status-addr` moved to a free
//!   loopback port that [`Kubelet::locator`] hands to the controller.
//! - **Volumes.** ConfigMap and Secret volumes are written as files under the pod's directory,
//!   emptyDirs are empty directories there; arguments and environment values that name a mount
//!   path are rewritten to the local directory.
//! - **Disk.** Checkpoints go to the pod directory (`--checkpoint-dir`) unless the args choose a
//!   place: a local engine restarted by the next `kappa up` resumes from its checkpoint without
//!   needing a broker that lets it create a checkpoint topic.
//! - **Lifecycle.** A template change or scale to 0 sends SIGTERM (the engine takes a final
//!   checkpoint) and SIGKILL after the grace period; a new process starts only once the old one
//!   has exited (the Deployments use the Recreate strategy). An exited engine is restarted
//!   after a back-off that doubles from 1 s to 30 s, as a kubelet's does (shorter, for a laptop).
//!   Engines stop by themselves (final checkpoint included) when this process dies
//!   ([`kappa_service::ENV_EXIT_WITH_PARENT`]), so a killed `kappa up` leaves none behind.
//!
//! The pod directory is `<root>/<namespace>/<deployment>/` with `engine.log` (stdout and stderr
//! of every start, appended), `volumes/` and `checkpoints/`.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::hash::{Hash as _, Hasher as _};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Secret};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt as _};
use serde_json::{json, Value};

use super::api::FakeKube;
use crate::controller::EngineLocator;
use crate::names;

/// First restart back-off; it doubles per restart up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest restart back-off.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// An engine that ran this long before it exited starts its back-off from the beginning.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(120);
/// Grace period when the pod template sets none (the Kubernetes default).
const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// How much of the end of `engine.log` becomes the container's termination message.
const LAST_WORDS_BYTES: u64 = 2048;
/// Bound of one readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Where a version's engine listens: (namespace, job, version) → address.
type Addresses = Arc<Mutex<BTreeMap<(String, String, String), SocketAddr>>>;

/// How the kubelet runs engines.
#[derive(Debug, Clone)]
pub struct KubeletSettings {
    /// The program that runs an engine container's args (the `kappa` binary).
    pub engine_program: PathBuf,
    /// Root of the pod directories.
    pub root: PathBuf,
}

/// Runs the engine Deployments of an in-memory API as child processes; call
/// [`Kubelet::sync`] every second or so, and [`Kubelet::shutdown`] at the end.
pub struct Kubelet {
    api: FakeKube,
    settings: KubeletSettings,
    pods: BTreeMap<(String, String), LocalPod>,
    addresses: Addresses,
    http: reqwest::Client,
    /// The last status written per Deployment, to write only changes.
    written: BTreeMap<(String, String), Value>,
}

/// One engine "pod": the process of a Deployment and what a kubelet remembers about it.
struct LocalPod {
    job: String,
    version: String,
    /// Hash of the pod template the process runs; another one means replace the process.
    template_hash: u64,
    template: PodSpec,
    labels: BTreeMap<String, String>,
    dir: PathBuf,
    port: u16,
    grace: Duration,
    process: Option<Child>,
    started: Option<(Instant, String)>,
    /// SIGTERM was sent at this instant: the pod is going away.
    terminating: Option<Instant>,
    restarts: i32,
    restart_at: Option<Instant>,
    last_exit: Option<(i32, String)>,
    /// Why the process cannot start (a missing ConfigMap, say), shown as the waiting reason.
    blocked: Option<(String, String)>,
    ready: bool,
    /// The Pod object last written, to write only changes.
    written: Option<Value>,
}

impl Kubelet {
    /// A kubelet for the Deployments in `api`.
    pub fn new(api: FakeKube, settings: KubeletSettings) -> Self {
        Self {
            api,
            settings,
            pods: BTreeMap::new(),
            addresses: Arc::default(),
            http: reqwest::Client::builder()
                .timeout(PROBE_TIMEOUT)
                .build()
                .expect("a plain HTTP client builds"),
            written: BTreeMap::new(),
        }
    }

    /// Finds engines as the controller's locator: the status URL of a running version, or an
    /// address that refuses connections when it has none.
    pub fn locator(&self) -> EngineLocator {
        let addresses = Arc::clone(&self.addresses);
        Arc::new(move |ns, job, version| {
            let addresses = addresses.lock().unwrap_or_else(PoisonError::into_inner);
            match addresses.get(&(ns.to_owned(), job.to_owned(), version.to_owned())) {
                Some(addr) => format!("http://{addr}/status"),
                None => "http://127.0.0.1:9/status".into(),
            }
        })
    }

    /// The versions with a live process, as `(namespace, job, version, pid)`.
    pub fn running(&self) -> Vec<(String, String, String, u32)> {
        self.pods
            .iter()
            .filter_map(|((ns, _), pod)| {
                let pid = pod.process.as_ref()?.id();
                Some((ns.clone(), pod.job.clone(), pod.version.clone(), pid))
            })
            .collect()
    }

    /// One pass: starts, restarts and stops processes to match the Deployments, probes
    /// readiness, and writes Pods and Deployment statuses that changed.
    pub async fn sync(&mut self) {
        let deployments: Vec<Deployment> = self
            .api
            .list_as::<Deployment>(None)
            .into_iter()
            .filter(|d| {
                d.labels().get(names::LABEL_MANAGED_BY).map(String::as_str)
                    == Some(names::CONTROLLER_NAME)
            })
            .collect();
        let mut wanted = BTreeMap::new();
        for d in &deployments {
            let key = (d.namespace().unwrap_or_default(), d.name_any());
            let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            wanted.insert(key, (replicas, d));
        }
        // Stop what is no longer wanted or runs an old template.
        for (key, pod) in &mut self.pods {
            let keep = wanted.get(key).is_some_and(|(replicas, d)| {
                *replicas > 0 && template_hash(d) == Some(pod.template_hash)
            });
            if !keep {
                pod.terminate();
            }
        }
        self.reap_terminated();
        // Start what is wanted and not there (after the old process of a Recreate is gone).
        for (key, (replicas, d)) in &wanted {
            if *replicas > 0 && !self.pods.contains_key(key) {
                if let Some(pod) = self.new_pod(d) {
                    self.pods.insert(key.clone(), pod);
                }
            }
        }
        let now = Instant::now();
        for ((ns, _), pod) in &mut self.pods {
            if pod.terminating.is_some() {
                continue;
            }
            pod.notice_exit(now);
            if pod.process.is_none() && pod.restart_at.is_none_or(|at| now >= at) {
                pod.start(&self.api, ns, &self.settings.engine_program);
            }
        }
        self.probe_readiness().await;
        self.publish_addresses();
        self.write_pods();
        self.write_deployment_statuses(&wanted).await;
    }

    /// Stops every engine (SIGTERM, then SIGKILL after its grace period) and waits for them.
    pub async fn shutdown(&mut self) {
        for pod in self.pods.values_mut() {
            pod.terminate();
        }
        while !self.pods.is_empty() {
            self.reap_terminated();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.publish_addresses();
    }

    fn new_pod(&self, d: &Deployment) -> Option<LocalPod> {
        let template = d.spec.as_ref()?.template.clone();
        let spec = template.spec?;
        let labels = template.metadata.and_then(|m| m.labels).unwrap_or_default();
        let ns = d.namespace().unwrap_or_default();
        Some(LocalPod {
            job: labels.get(names::LABEL_JOB).cloned().unwrap_or_default(),
            version: labels.get(names::LABEL_VERSION).cloned().unwrap_or_default(),
            template_hash: template_hash(d)?,
            grace: spec
                .termination_grace_period_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(DEFAULT_GRACE, Duration::from_secs),
            template: spec,
            labels,
            dir: self.settings.root.join(&ns).join(d.name_any()),
            port: free_port().ok()?,
            process: None,
            started: None,
            terminating: None,
            restarts: 0,
            restart_at: None,
            last_exit: None,
            blocked: None,
            ready: false,
            written: None,
        })
    }

    /// Removes pods whose process has exited after SIGTERM (or never ran); SIGKILLs those past
    /// their grace period.
    fn reap_terminated(&mut self) {
        let mut gone = Vec::new();
        for (key, pod) in &mut self.pods {
            let Some(since) = pod.terminating else { continue };
            let exited = match pod.process.as_mut() {
                None => true,
                Some(child) => match child.try_wait() {
                    Ok(Some(status)) => {
                        tracing::info!(
                            job = %pod.job, version = %pod.version, %status, "engine stopped"
                        );
                        true
                    }
                    Ok(None) if since.elapsed() > pod.grace => {
                        tracing::warn!(
                            job = %pod.job, version = %pod.version,
                            "engine still running after its grace period: killing it"
                        );
                        let _ = child.kill();
                        false
                    }
                    Ok(None) => false,
                    Err(_) => true,
                },
            };
            if exited {
                gone.push(key.clone());
            }
        }
        for key in gone {
            self.pods.remove(&key);
            let name = format!("{}-local", key.1);
            self.api.remove("v1", "pods", Some(&key.0), &name);
        }
    }

    async fn probe_readiness(&mut self) {
        for pod in self.pods.values_mut() {
            pod.ready = if pod.process.is_some() && pod.terminating.is_none() {
                let url = format!("http://127.0.0.1:{}/readyz", pod.port);
                matches!(self.http.get(&url).send().await, Ok(r) if r.status().is_success())
            } else {
                false
            };
        }
    }

    fn publish_addresses(&self) {
        let mut addresses = self.addresses.lock().unwrap_or_else(PoisonError::into_inner);
        addresses.clear();
        for ((ns, _), pod) in &self.pods {
            if pod.process.is_some() && pod.terminating.is_none() {
                let addr = SocketAddr::from(([127, 0, 0, 1], pod.port));
                addresses.insert((ns.clone(), pod.job.clone(), pod.version.clone()), addr);
            }
        }
    }

    fn write_pods(&mut self) {
        for ((ns, deployment), pod) in &mut self.pods {
            let object = pod.object(ns, deployment);
            if pod.written.as_ref() != Some(&object) {
                self.api.insert(&object);
                pod.written = Some(object);
            }
        }
    }

    async fn write_deployment_statuses(
        &mut self,
        wanted: &BTreeMap<(String, String), (i32, &Deployment)>,
    ) {
        for (key, (_, d)) in wanted {
            let pod = self.pods.get(key);
            let running = i32::from(pod.is_some_and(|p| p.process.is_some()));
            let ready = i32::from(pod.is_some_and(|p| p.ready));
            let status = json!({
                "observedGeneration": d.metadata.generation,
                "replicas": running,
                "updatedReplicas": running,
                "readyReplicas": ready,
                "availableReplicas": ready,
            });
            if self.written.get(key) == Some(&status) {
                continue;
            }
            let api: Api<Deployment> = Api::namespaced(self.api.client(), &key.0);
            let patch = Patch::Merge(json!({ "status": status }));
            match api.patch_status(&key.1, &PatchParams::default(), &patch).await {
                Ok(_) => {
                    self.written.insert(key.clone(), status);
                }
                Err(e) => tracing::warn!(deployment = %key.1, %e, "cannot write Deployment status"),
            }
        }
        self.written.retain(|key, _| wanted.contains_key(key));
    }
}

impl LocalPod {
    fn engine(&self) -> Option<&Container> {
        let containers = &self.template.containers;
        containers.iter().find(|c| c.name == names::ENGINE_CONTAINER).or(containers.first())
    }

    fn terminate(&mut self) {
        if self.terminating.is_some() {
            return;
        }
        self.terminating = Some(Instant::now());
        if let Some(child) = &self.process {
            tracing::info!(job = %self.job, version = %self.version, "stopping engine (SIGTERM)");
            let pid = rustix::process::Pid::from_child(child);
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }

    /// Records an exit of the process and schedules its restart.
    fn notice_exit(&mut self, now: Instant) {
        let Some(child) = self.process.as_mut() else { return };
        let status = match child.try_wait() {
            Ok(Some(status)) => status,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(%e, "cannot wait for an engine");
                return;
            }
        };
        self.process = None;
        let code = status.code().unwrap_or(128 + signal_of(&status));
        let words = last_words(&self.dir.join("engine.log"));
        let ran = self.started.as_ref().map_or(Duration::ZERO, |(at, _)| now - *at);
        if ran > BACKOFF_RESET_AFTER {
            self.restarts = 0;
        }
        self.restarts += 1;
        let backoff = FIRST_BACKOFF
            .saturating_mul(1u32 << (self.restarts - 1).clamp(0, 8).unsigned_abs())
            .min(MAX_BACKOFF);
        self.restart_at = Some(now + backoff);
        tracing::warn!(
            job = %self.job, version = %self.version, code, restarts = self.restarts,
            "engine exited; restarting in {backoff:?}: {words}"
        );
        self.last_exit = Some((code, words));
    }

    fn start(&mut self, api: &FakeKube, ns: &str, program: &Path) {
        self.blocked = None;
        match self.spawn(api, ns, program) {
            Ok(child) => {
                tracing::info!(
                    job = %self.job, version = %self.version, pid = child.id(),
                    log = %self.dir.join("engine.log").display(), port = self.port,
                    "engine started"
                );
                self.process = Some(child);
                self.started = Some((Instant::now(), chrono::Utc::now().to_rfc3339()));
                self.restart_at = None;
            }
            Err((reason, message)) => {
                tracing::warn!(job = %self.job, version = %self.version, reason, message);
                self.blocked = Some((reason, message));
                self.restart_at = Some(Instant::now() + FIRST_BACKOFF);
            }
        }
    }

    fn spawn(&self, api: &FakeKube, ns: &str, program: &Path) -> Result<Child, (String, String)> {
        let config_error = |m: String| ("CreateContainerConfigError".to_owned(), m);
        let container = self.engine().ok_or_else(|| config_error("no container".into()))?;
        let mounts = self.materialize_volumes(api, ns, container).map_err(config_error)?;
        let localize = |text: &str| localize(text, &mounts);
        let mut args: Vec<String> = container.args.iter().flatten().map(|a| localize(a)).collect();
        let status_addr = format!("127.0.0.1:{}", self.port);
        match args.iter().position(|a| a == "--status-addr") {
            Some(at) if at + 1 < args.len() => args[at + 1] = status_addr,
            _ => args.extend(["--status-addr".to_owned(), status_addr]),
        }
        if !args
            .iter()
            .any(|a| a.starts_with("--checkpoint-dir") || a.starts_with("--checkpoint-topic"))
        {
            let dir = self.dir.join("checkpoints");
            args.extend(["--checkpoint-dir".to_owned(), dir.display().to_string()]);
        }
        let log_path = self.dir.join("engine.log");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| config_error(format!("cannot open {}: {e}", log_path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(|e| config_error(format!("cannot open {}: {e}", log_path.display())))?;
        let mut command = Command::new(program);
        command.args(&args).stdin(Stdio::null()).stdout(log).stderr(log_err);
        command.env(kappa_service::ENV_EXIT_WITH_PARENT, "1");
        for var in container.env.iter().flatten() {
            if let Some(value) = &var.value {
                command.env(&var.name, localize(value));
            }
        }
        command.spawn().map_err(|e| {
            ("StartError".to_owned(), format!("cannot start {}: {e}", program.display()))
        })
    }

    /// Writes the ConfigMap, Secret and emptyDir volumes the container mounts under the pod
    /// directory; returns (mount path → local path), longest mount path first.
    fn materialize_volumes(
        &self,
        api: &FakeKube,
        ns: &str,
        container: &Container,
    ) -> Result<Vec<(String, PathBuf)>, String> {
        let mut mounts = Vec::new();
        for mount in container.volume_mounts.iter().flatten() {
            let volume = self
                .template
                .volumes
                .iter()
                .flatten()
                .find(|v| v.name == mount.name)
                .ok_or_else(|| format!("volume {} is mounted but not defined", mount.name))?;
            let dir = self.dir.join("volumes").join(&volume.name);
            let files: BTreeMap<String, Vec<u8>> = if let Some(source) = &volume.config_map {
                let name = source.name.as_str();
                let cm = api
                    .get_as::<ConfigMap>(Some(ns), name)
                    .ok_or_else(|| format!("configmap \"{name}\" not found"))?;
                cm.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect()
            } else if let Some(source) = &volume.secret {
                let name = source.secret_name.clone().unwrap_or_default();
                let secret = api
                    .get_as::<Secret>(Some(ns), &name)
                    .ok_or_else(|| format!("secret \"{name}\" not found"))?;
                let mut files: BTreeMap<String, Vec<u8>> =
                    secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
                for (k, v) in secret.string_data.unwrap_or_default() {
                    files.insert(k, v.into_bytes());
                }
                files
            } else if volume.empty_dir.is_some() {
                BTreeMap::new()
            } else {
                return Err(format!(
                    "volume {}: only configMap, secret and emptyDir run locally",
                    volume.name
                ));
            };
            fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            for (file, bytes) in files {
                let path = dir.join(&file);
                fs::write(&path, bytes)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            }
            let local = match mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => dir.join(sub),
                None => dir,
            };
            mounts.push((mount.mount_path.trim_end_matches('/').to_owned(), local));
        }
        mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        Ok(mounts)
    }

    /// The Pod a kubelet would report for this process.
    fn object(&self, ns: &str, deployment: &str) -> Value {
        let image = self.engine().and_then(|c| c.image.clone()).unwrap_or_default();
        let state = match (&self.process, &self.blocked) {
            (Some(_), _) => json!({"running": {"startedAt": self.started.as_ref().map(|s| &s.1)}}),
            (None, Some((reason, message))) => {
                json!({"waiting": {"reason": reason, "message": message}})
            }
            (None, None) if self.last_exit.is_some() => json!({"waiting": {
                "reason": "CrashLoopBackOff",
                "message": format!("back-off restarting failed engine of {deployment}"),
            }}),
            (None, None) => json!({"waiting": {"reason": "ContainerCreating"}}),
        };
        let last_state = match &self.last_exit {
            Some((code, words)) => json!({"terminated": {
                "exitCode": code,
                "reason": if *code == 0 { "Completed" } else { "Error" },
                "message": words,
            }}),
            None => json!({}),
        };
        let phase = if self.process.is_some() { "Running" } else { "Pending" };
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": format!("{deployment}-local"),
                "namespace": ns,
                "labels": self.labels,
            },
            "spec": self.template,
            "status": {
                "phase": phase,
                "podIP": "127.0.0.1",
                "conditions": [{"type": "Ready", "status": if self.ready { "True" } else { "False" }}],
                "containerStatuses": [{
                    "name": names::ENGINE_CONTAINER,
                    "image": image,
                    "imageID": "",
                    "ready": self.ready,
                    "restartCount": self.restarts,
                    "started": self.process.is_some(),
                    "state": state,
                    "lastState": last_state,
                }],
            },
        })
    }
}

/// Hash of a Deployment's pod template: another hash means a rollout.
fn template_hash(d: &Deployment) -> Option<u64> {
    let template = &d.spec.as_ref()?.template;
    let text = serde_json::to_string(template).ok()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    Some(hasher.finish())
}

/// `text` with a leading mount path (the whole text, or after `=`) replaced by its local path.
fn localize(text: &str, mounts: &[(String, PathBuf)]) -> String {
    let (prefix, value) = match text.split_once('=') {
        Some((flag, value)) if flag.starts_with('-') => (format!("{flag}="), value),
        _ => (String::new(), text),
    };
    for (mount, local) in mounts {
        if value == mount {
            return format!("{prefix}{}", local.display());
        }
        if let Some(rest) = value.strip_prefix(mount.as_str()).and_then(|r| r.strip_prefix('/')) {
            return format!("{prefix}{}", local.join(rest).display());
        }
    }
    text.to_owned()
}

/// The end of an engine log, from its last few lines: the container's termination message.
fn last_words(log: &Path) -> String {
    let Ok(mut file) = fs::File::open(log) else { return String::new() };
    let len = file.metadata().map_or(0, |m| m.len());
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(LAST_WORDS_BYTES)));
    let mut tail = Vec::new();
    let _ = file.read_to_end(&mut tail);
    let text = String::from_utf8_lossy(&tail);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join("\n")
}

#[cfg(unix)]
fn signal_of(status: &std::process::ExitStatus) -> i32 {
    std::os::unix::process::ExitStatusExt::signal(status).unwrap_or(0)
}

/// A loopback port nobody listens on now.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_become_local_paths() {
        let mounts = vec![
            ("/etc/kappa/creds".to_owned(), PathBuf::from("/s/volumes/creds")),
            ("/etc/kappa".to_owned(), PathBuf::from("/s/volumes/config")),
        ];
        assert_eq!(localize("/etc/kappa/job.yaml", &mounts), "/s/volumes/config/job.yaml");
        assert_eq!(localize("/etc/kappa/creds", &mounts), "/s/volumes/creds");
        assert_eq!(
            localize("--file=/etc/kappa/job.yaml", &mounts),
            "--file=/s/volumes/config/job.yaml"
        );
        assert_eq!(localize("/etc/kappanot", &mounts), "/etc/kappanot");
        assert_eq!(localize("0.0.0.0:8080", &mounts), "0.0.0.0:8080");
    }

    #[test]
    fn last_words_are_the_last_lines_of_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("engine.log");
        let lines: String = (0..500).map(|i| format!("line {i}\n")).collect();
        fs::write(&log, lines + "\n\nerror: topic tx does not exist\n").unwrap();
        assert_eq!(last_words(&log), "line 498\nline 499\nerror: topic tx does not exist");
        assert_eq!(last_words(&dir.path().join("missing")), "");
    }
}
