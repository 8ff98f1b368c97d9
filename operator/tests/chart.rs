//! The Helm chart `charts/kappa-operator`, rendered as `helm template` renders it (by
//! `tests/helm-render`, Go text/template + sprig + gojsonschema, since no Helm binary is
//! packaged here) and read back as Kubernetes types: its RBAC is exactly `rbac::RULES`, its
//! Deployment runs the operator with flags `OperatorArgs` accepts and probes `probe_router`
//! serves, and its CRD is the generated one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{CommandFactory, Parser};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kappa_operator::rbac::{self, Scope};
use kappa_operator::OperatorArgs;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

const RELEASE: &str = "kappa";
const NAMESPACE: &str = "kappa-system";
/// What `tests/run.sh` installs for the renderer (Debian packages).
const GO_PACKAGES: &str = "golang-go golang-github-masterminds-sprig-dev \
                           golang-github-ghodss-yaml-dev golang-github-xeipuuv-gojsonschema-dev";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf()
}

fn chart_dir() -> PathBuf {
    workspace().join("charts/kappa-operator")
}

/// The renderer binary, built (again) when missing or older than its source.
fn renderer() -> PathBuf {
    let root = workspace();
    let source = root.join("tests/helm-render/main.go");
    let binary = root.join("target/helm-render/helm-render");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if modified(&binary).is_some_and(|built| modified(&source).is_some_and(|src| built >= src)) {
        return binary;
    }
    let hint = format!(
        "the chart test renders with tests/helm-render (Go); install its toolchain with \
         `apt-get install -y --no-install-recommends {GO_PACKAGES}` (tests/run.sh does)"
    );
    // Built under a unique name and renamed: tests of this binary may build it concurrently.
    let partial = binary.with_file_name(format!("helm-render.{}", std::process::id()));
    let output = Command::new("go")
        .args(["build", "-o"])
        .arg(&partial)
        .arg("./tests/helm-render")
        .current_dir(&root)
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env("GOFLAGS", "")
        .output()
        .unwrap_or_else(|e| panic!("cannot run `go` ({e}): {hint}"));
    assert!(
        output.status.success(),
        "building tests/helm-render failed:\n{}\n{hint}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::rename(&partial, &binary).unwrap();
    binary
}

/// `helm template kappa charts/kappa-operator -n kappa-system --include-crds -f <values>`.
fn helm_template(values: &str) -> Result<String, String> {
    let overrides = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(overrides.path(), values).unwrap();
    let output = Command::new(renderer())
        .args(["-n", NAMESPACE, "--include-crds", "-f"])
        .arg(overrides.path())
        .arg(RELEASE)
        .arg(chart_dir())
        .output()
        .unwrap();
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// One rendered document, read as its Kubernetes type.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // a dozen documents per render: size does not matter
enum Object {
    Deployment(Deployment),
    ServiceAccount(ServiceAccount),
    ClusterRole(ClusterRole),
    ClusterRoleBinding(ClusterRoleBinding),
    Role(Role),
    RoleBinding(RoleBinding),
    Service(Service),
    NetworkPolicy(NetworkPolicy),
    Crd(CustomResourceDefinition),
    ServiceMonitor(Value),
}

/// Reads `text` as `K` and checks nothing was lost on the way: a misspelled or misplaced
/// field, which serde would skip, fails here.
fn typed<K: DeserializeOwned + Serialize>(source: &str, text: &str) -> K {
    let object: K = serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{source}: {e}\n{text}"));
    let raw: Value = serde_yaml::from_str(text).unwrap();
    let back = serde_json::to_value(&object).unwrap();
    let mut lost = Vec::new();
    differences("", &raw, &back, &mut lost);
    assert!(lost.is_empty(), "{source}: fields the type does not read (a typo?): {lost:?}");
    object
}

/// JSON pointers of `raw` that `back` lacks or holds differently.
fn differences(at: &str, raw: &Value, back: &Value, out: &mut Vec<String>) {
    match (raw, back) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let path = format!("{at}/{key}");
                match b.get(key) {
                    Some(other) => differences(&path, value, other, out),
                    None => out.push(path),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differences(&format!("{at}/{i}"), x, y, out);
            }
        }
        (a, b) if a != b => out.push(at.to_owned()),
        _ => {}
    }
}

/// The rendered chart.
struct Rendered {
    objects: Vec<Object>,
}

impl Rendered {
    fn new(values: &str) -> Self {
        let output = helm_template(values).unwrap_or_else(|e| panic!("render failed: {e}"));
        let mut objects = Vec::new();
        for chunk in output.split("---\n").filter(|c| !c.trim().is_empty()) {
            let (source, text) = chunk.split_once('\n').expect("a document after its source");
            assert!(source.starts_with("# Source: kappa-operator/"), "{chunk}");
            let kind: Value = serde_yaml::from_str(text).unwrap();
            objects.push(match kind["kind"].as_str().unwrap_or_default() {
                "Deployment" => Object::Deployment(typed(source, text)),
                "ServiceAccount" => Object::ServiceAccount(typed(source, text)),
                "ClusterRole" => Object::ClusterRole(typed(source, text)),
                "ClusterRoleBinding" => Object::ClusterRoleBinding(typed(source, text)),
                "Role" => Object::Role(typed(source, text)),
                "RoleBinding" => Object::RoleBinding(typed(source, text)),
                "Service" => Object::Service(typed(source, text)),
                "NetworkPolicy" => Object::NetworkPolicy(typed(source, text)),
                "CustomResourceDefinition" => Object::Crd(typed(source, text)),
                "ServiceMonitor" => Object::ServiceMonitor(kind),
                other => panic!("{source}: unexpected kind {other:?}"),
            });
        }
        Self { objects }
    }

    fn kinds(&self) -> BTreeMap<&'static str, usize> {
        let mut kinds = BTreeMap::new();
        for o in &self.objects {
            let kind = match o {
                Object::Deployment(_) => "Deployment",
                Object::ServiceAccount(_) => "ServiceAccount",
                Object::ClusterRole(_) => "ClusterRole",
                Object::ClusterRoleBinding(_) => "ClusterRoleBinding",
                Object::Role(_) => "Role",
                Object::RoleBinding(_) => "RoleBinding",
                Object::Service(_) => "Service",
                Object::NetworkPolicy(_) => "NetworkPolicy",
                Object::Crd(_) => "CustomResourceDefinition",
                Object::ServiceMonitor(_) => "ServiceMonitor",
            };
            *kinds.entry(kind).or_default() += 1;
        }
        kinds
    }

    fn deployment(&self) -> &Deployment {
        let mut all = self.objects.iter().filter_map(|o| match o {
            Object::Deployment(d) => Some(d),
            _ => None,
        });
        let d = all.next().expect("a Deployment");
        assert!(all.next().is_none(), "one Deployment");
        d
    }

    fn container(&self) -> &Container {
        let containers = &self.pod_spec().containers;
        assert_eq!(containers.len(), 1, "one container");
        &containers[0]
    }

    fn pod_spec(&self) -> &k8s_openapi::api::core::v1::PodSpec {
        self.deployment().spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    fn service_account(&self) -> &ServiceAccount {
        self.objects
            .iter()
            .find_map(|o| match o {
                Object::ServiceAccount(sa) => Some(sa),
                _ => None,
            })
            .expect("a ServiceAccount")
    }

    fn roles(&self) -> Vec<&Role> {
        self.objects
            .iter()
            .filter_map(|o| match o {
                Object::Role(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    fn role_bindings(&self) -> Vec<&RoleBinding> {
        self.objects
            .iter()
            .filter_map(|o| match o {
                Object::RoleBinding(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    fn service(&self) -> &Service {
        self.objects
            .iter()
            .find_map(|o| match o {
                Object::Service(s) => Some(s),
                _ => None,
            })
            .expect("a Service")
    }

    /// The operator's flags, parsed by the operator's own parser.
    fn operator_args(&self) -> OperatorArgs {
        let c = self.container();
        assert!(c.command.is_none(), "the image's entrypoint is the operator");
        let args = c.args.clone().unwrap_or_default();
        OperatorArgs::try_parse_from(std::iter::once("kappa-operator".to_owned()).chain(args))
            .unwrap_or_else(|e| panic!("the chart's flags do not parse: {e}"))
    }

    /// The container port named `metrics`.
    fn metrics_port(&self) -> i32 {
        let ports = self.container().ports.clone().unwrap_or_default();
        ports
            .iter()
            .find(|p| p.name.as_deref() == Some("metrics"))
            .expect("port metrics")
            .container_port
    }
}

type Grant = (String, String, String);

/// `rbac::RULES` of one scope, flattened to (group, resource, verb).
fn expected(scope: Scope) -> BTreeSet<Grant> {
    let mut set = BTreeSet::new();
    for rule in rbac::RULES.iter().filter(|r| r.scope == scope) {
        for verb in rule.verbs {
            set.insert((rule.api_group.to_owned(), rule.resource.to_owned(), (*verb).to_owned()));
        }
    }
    set
}

/// A Role's rules flattened to (group, resource, verb); refuses wildcards and name limits.
fn granted(name: &str, rules: &[PolicyRule]) -> BTreeSet<Grant> {
    let mut set = BTreeSet::new();
    for rule in rules {
        assert!(rule.non_resource_urls.is_none() && rule.resource_names.is_none(), "{name}");
        let groups = rule.api_groups.clone().unwrap_or_default();
        let resources = rule.resources.clone().unwrap_or_default();
        for g in &groups {
            for r in &resources {
                for v in &rule.verbs {
                    assert!(
                        ![g, r, v].iter().any(|s| s.contains('*')),
                        "{name}: wildcard in {rule:?}"
                    );
                    assert!(
                        set.insert((g.clone(), r.clone(), v.clone())),
                        "{name}: repeats {r} {v}"
                    );
                }
            }
        }
    }
    set
}

/// Panics with what is missing and what is extra unless `role` grants exactly `scope`'s rules.
fn assert_grants(role: &str, rules: Option<&Vec<PolicyRule>>, scope: Scope) {
    let actual = granted(role, rules.map(Vec::as_slice).unwrap_or_default());
    let wanted = expected(scope);
    let missing: Vec<_> = wanted.difference(&actual).collect();
    let extra: Vec<_> = actual.difference(&wanted).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{role} differs from rbac::RULES ({scope:?}): missing {missing:?}, extra {extra:?}"
    );
}

fn assert_bound_to(
    binding: &str,
    subjects: Option<&Vec<k8s_openapi::api::rbac::v1::Subject>>,
    sa: &ServiceAccount,
) {
    let subjects = subjects.expect("subjects");
    assert_eq!(subjects.len(), 1, "{binding}");
    let s = &subjects[0];
    assert_eq!(s.kind, "ServiceAccount", "{binding}");
    assert_eq!(s.name, sa.metadata.name.clone().unwrap(), "{binding}");
    assert_eq!(s.namespace.as_deref(), Some(NAMESPACE), "{binding}");
}

/// The Lease Role and its binding live in the release namespace, with exactly the Lease rules.
fn assert_lease_rbac(chart: &Rendered) {
    let args = chart.operator_args();
    assert_eq!(args.lease_namespace.as_deref(), Some(NAMESPACE));
    let lease = chart
        .roles()
        .into_iter()
        .find(|r| r.metadata.namespace.as_deref() == Some(NAMESPACE))
        .expect("a Role in the release namespace for the Lease");
    let name = lease.metadata.name.clone().unwrap();
    assert_grants(&name, lease.rules.as_ref(), Scope::OperatorNamespace);
    let binding = chart
        .role_bindings()
        .into_iter()
        .find(|b| b.role_ref.name == name)
        .expect("the Lease Role is bound");
    assert_eq!(binding.metadata.namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(binding.role_ref.kind, "Role");
    assert_bound_to(&name, binding.subjects.as_ref(), chart.service_account());
}

#[test]
fn default_values_watch_every_namespace_with_a_cluster_role_of_exactly_the_rules() {
    let chart = Rendered::new("{}");
    let kinds = chart.kinds();
    let want: BTreeMap<&str, usize> = [
        ("ClusterRole", 1),
        ("ClusterRoleBinding", 1),
        ("CustomResourceDefinition", 1),
        ("Deployment", 1),
        ("Role", 1),
        ("RoleBinding", 1),
        ("Service", 1),
        ("ServiceAccount", 1),
    ]
    .into();
    assert_eq!(kinds, want, "ServiceMonitor and NetworkPolicy are off by default");

    let sa = chart.service_account();
    assert_eq!(sa.metadata.namespace.as_deref(), Some(NAMESPACE));
    let (role, binding) = chart.objects.iter().fold((None, None), |(r, b), o| match o {
        Object::ClusterRole(x) => (Some(x), b),
        Object::ClusterRoleBinding(x) => (r, Some(x)),
        _ => (r, b),
    });
    let (role, binding) = (role.unwrap(), binding.unwrap());
    let name = role.metadata.name.clone().unwrap();
    assert!(role.aggregation_rule.is_none());
    assert_grants(&name, role.rules.as_ref(), Scope::Watched);
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(binding.role_ref.name, name);
    assert_bound_to(&name, binding.subjects.as_ref(), sa);
    assert_lease_rbac(&chart);
    assert!(chart.operator_args().watch_namespaces.is_empty());
}

#[test]
fn watched_namespaces_get_one_role_each_and_nothing_cluster_wide() {
    let chart = Rendered::new("watchNamespaces: [payments, search]\n");
    let kinds = chart.kinds();
    assert!(!kinds.contains_key("ClusterRole") && !kinds.contains_key("ClusterRoleBinding"));
    assert_eq!(chart.operator_args().watch_namespaces, ["payments", "search"]);
    let sa = chart.service_account();
    for ns in ["payments", "search"] {
        let roles: Vec<_> = chart
            .roles()
            .into_iter()
            .filter(|r| r.metadata.namespace.as_deref() == Some(ns))
            .collect();
        assert_eq!(roles.len(), 1, "one Role in {ns}");
        let name = roles[0].metadata.name.clone().unwrap();
        assert_grants(&name, roles[0].rules.as_ref(), Scope::Watched);
        let bindings: Vec<_> = chart
            .role_bindings()
            .into_iter()
            .filter(|b| b.metadata.namespace.as_deref() == Some(ns))
            .collect();
        assert_eq!(bindings.len(), 1, "one RoleBinding in {ns}");
        assert_eq!(
            (bindings[0].role_ref.kind.as_str(), &bindings[0].role_ref.name),
            ("Role", &name)
        );
        assert_bound_to(&name, bindings[0].subjects.as_ref(), sa);
    }
    assert_eq!(chart.roles().len(), 3, "payments, search and the Lease");
    assert_lease_rbac(&chart);
}

#[tokio::test]
async fn the_deployment_runs_the_operator_as_its_flags_probes_and_security_expect() {
    let chart = Rendered::new("{}");
    let version = env!("CARGO_PKG_VERSION");
    let meta: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap())
            .unwrap();
    assert_eq!(meta["version"], version, "the chart version follows the workspace version");
    assert_eq!(meta["appVersion"], version);

    let deployment = chart.deployment();
    let spec = deployment.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(deployment.metadata.namespace.as_deref(), Some(NAMESPACE));
    let c = chart.container();
    assert_eq!(
        c.image.as_deref(),
        Some(format!("ghcr.io/kappa-dev/kappa-operator:{version}").as_str())
    );

    let args = chart.operator_args();
    assert!(args.leader_election, "two replicas are safe only with leader election");
    assert_eq!(args.engine_image, format!("ghcr.io/kappa-dev/kappa:{version}"));
    assert_eq!(args.lease_name, "kappa-operator");
    assert_eq!(args.cleanup_timeout, std::time::Duration::from_secs(300));
    assert_eq!(args.checkpoint_interval, "10s");
    let port = chart.metrics_port();
    assert_eq!(i32::from(args.metrics_addr.port()), port);
    assert_eq!(port, 8080);

    // Downward API: the Lease's namespace and holder, the Events' reporting instance.
    let env = c.env.clone().unwrap_or_default();
    for (name, field) in [("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")] {
        let var = env.iter().find(|e| e.name == name).unwrap_or_else(|| panic!("no {name}"));
        let from = var.value_from.as_ref().and_then(|v| v.field_ref.as_ref());
        assert_eq!(from.map(|f| f.field_path.as_str()), Some(field), "{name}");
    }
    // Every KAPPA_* variable is one the process reads.
    let command = OperatorArgs::command();
    let known: BTreeSet<String> = command
        .get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .chain(["KAPPA_LOG".to_owned()])
        .collect();
    for var in env.iter().filter(|e| e.name.starts_with("KAPPA_")) {
        assert!(known.contains(&var.name), "{} is read by nothing in {known:?}", var.name);
    }

    // The probes hit the routes probe_router serves, on the metrics port.
    let probe_port = |probe: &Option<k8s_openapi::api::core::v1::Probe>| {
        let get = probe.as_ref().and_then(|p| p.http_get.clone()).expect("an httpGet probe");
        let port = match &get.port {
            IntOrString::Int(n) => *n,
            IntOrString::String(name) => {
                assert_eq!(name, "metrics");
                port
            }
        };
        (get.path.expect("a probe path"), port)
    };
    let (live, live_port) = probe_port(&c.liveness_probe);
    let (ready, ready_port) = probe_port(&c.readiness_probe);
    assert_eq!((live.as_str(), live_port), ("/healthz", port));
    assert_eq!((ready.as_str(), ready_port), ("/readyz", port));
    let is_ready = Arc::new(AtomicBool::new(false));
    let router = kappa_operator::run::probe_router(
        Arc::new(kappa_operator::metrics::Metrics::new()),
        Arc::clone(&is_ready),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    assert_eq!(http_status(addr, &live).await, 200);
    assert_eq!(http_status(addr, &ready).await, 503, "not ready before leader election is set up");
    is_ready.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(http_status(addr, &ready).await, 200);

    // Restricted pod security.
    let sc = c.security_context.as_ref().expect("a container securityContext");
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let caps = sc.capabilities.as_ref().expect("capabilities");
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]));
    assert!(caps.add.is_none());
    assert_eq!(sc.seccomp_profile.as_ref().map(|s| s.type_.as_str()), Some("RuntimeDefault"));
    assert_ne!(sc.privileged, Some(true));
    let resources = c.resources.as_ref().expect("resources");
    for (what, list) in [("requests", &resources.requests), ("limits", &resources.limits)] {
        let list = list.as_ref().unwrap_or_else(|| panic!("no {what}"));
        assert!(list.contains_key("cpu") && list.contains_key("memory"), "{what}: {list:?}");
    }

    // The pod runs as the chart's ServiceAccount; the Service selects exactly these pods.
    let pod = chart.pod_spec();
    assert_eq!(pod.service_account_name, chart.service_account().metadata.name);
    let pod_labels = spec.template.metadata.as_ref().unwrap().labels.clone().unwrap();
    let selector = spec.selector.match_labels.clone().unwrap();
    assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
    let service = chart.service();
    let service_spec = service.spec.as_ref().unwrap();
    assert_eq!(service_spec.selector.as_ref(), Some(&selector));
    let ports = service_spec.ports.clone().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].name.as_deref(), Some("metrics"));
    assert_eq!(ports[0].port, port);
    assert!(
        matches!(&ports[0].target_port, Some(IntOrString::String(n)) if n == "metrics")
            || ports[0].target_port == Some(IntOrString::Int(port))
    );
}

/// The status code of `GET path` on `addr` (HTTP/1.1, no client dependency).
async fn http_status(addr: std::net::SocketAddr, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("an HTTP status line")
}

#[test]
fn service_monitor_and_network_policy_appear_only_when_enabled() {
    let chart = Rendered::new(
        "replicaCount: 2\n\
         metrics:\n  serviceMonitor:\n    enabled: true\n    labels: {release: prometheus}\n\
         networkPolicy:\n  enabled: true\n  metricsFrom:\n    - namespaceSelector:\n        \
         matchLabels: {kubernetes.io/metadata.name: monitoring}\n",
    );
    let kinds = chart.kinds();
    assert_eq!((kinds.get("ServiceMonitor"), kinds.get("NetworkPolicy")), (Some(&1), Some(&1)));
    assert_eq!(chart.deployment().spec.as_ref().unwrap().replicas, Some(2));
    let selector = chart.deployment().spec.as_ref().unwrap().selector.match_labels.clone().unwrap();
    let service = chart.service();

    let monitor = chart
        .objects
        .iter()
        .find_map(|o| match o {
            Object::ServiceMonitor(v) => Some(v),
            _ => None,
        })
        .unwrap();
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    let service_labels = serde_json::to_value(service.metadata.labels.clone().unwrap()).unwrap();
    let wanted = monitor["spec"]["selector"]["matchLabels"].as_object().expect("a selector");
    assert!(wanted.iter().all(|(k, v)| &service_labels[k] == v), "selects the metrics Service");
    assert_eq!(monitor["spec"]["namespaceSelector"]["matchNames"][0], NAMESPACE);
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");

    let policy = chart
        .objects
        .iter()
        .find_map(|o| match o {
            Object::NetworkPolicy(p) => Some(p),
            _ => None,
        })
        .unwrap();
    let spec = policy.spec.as_ref().unwrap();
    assert_eq!(spec.pod_selector.as_ref().and_then(|s| s.match_labels.clone()), Some(selector));
    assert_eq!(
        spec.policy_types.as_deref(),
        Some(&["Ingress".to_owned()][..]),
        "egress stays open"
    );
    let ingress = spec.ingress.clone().unwrap();
    assert_eq!(ingress.len(), 1);
    let ports = ingress[0].ports.clone().unwrap();
    assert_eq!(ports.len(), 1);
    let metrics = IntOrString::String("metrics".into());
    assert!(ports[0].port == Some(metrics) || ports[0].port == Some(IntOrString::Int(8080)));
    let from = serde_json::to_value(ingress[0].from.clone().unwrap()).unwrap();
    assert_eq!(
        from[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );
}

#[test]
fn the_charts_crd_is_the_generated_one() {
    let chart = std::fs::read(chart_dir().join("crds/streamjob.yaml")).unwrap();
    let repository = std::fs::read(workspace().join("crds/streamjob.yaml")).unwrap();
    assert!(
        chart == repository,
        "charts/kappa-operator/crds/streamjob.yaml differs from crds/streamjob.yaml: \
         cp crds/streamjob.yaml charts/kappa-operator/crds/"
    );
    assert_eq!(String::from_utf8(chart).unwrap(), kappa_crds::crd_yaml());
    let rendered = Rendered::new("{}");
    let crd = rendered
        .objects
        .iter()
        .find_map(|o| match o {
            Object::Crd(c) => Some(c),
            _ => None,
        })
        .expect("the CRD is rendered from crds/");
    assert_eq!(crd.metadata.name.as_deref(), Some("streamjobs.kappa.dev"));
}

#[test]
fn values_are_described_by_the_schema_and_unknown_ones_are_refused() {
    let values: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap())
            .unwrap();
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(chart_dir().join("values.schema.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    assert_eq!(schema["additionalProperties"], false);
    fn described(path: &str, value: &Value, schema: &Value, root: &Value) {
        let schema = match schema["$ref"].as_str() {
            Some(r) => root.pointer(r.trim_start_matches('#')).expect("a resolvable $ref"),
            None => schema,
        };
        assert!(schema.get("type").is_some(), "{path}: no type in the schema");
        let (Some(map), Some(props)) = (value.as_object(), schema["properties"].as_object()) else {
            return;
        };
        assert_eq!(schema["additionalProperties"], false, "{path}: closed object");
        for (key, v) in map {
            let sub = props.get(key).unwrap_or_else(|| panic!("{path}.{key} is not in the schema"));
            described(&format!("{path}.{key}"), v, sub, root);
        }
    }
    described("", &values, &schema, &schema);

    let typo = helm_template("replicas: 2\n").expect_err("an unknown value is refused");
    assert!(typo.contains("Additional property replicas is not allowed"), "{typo}");
    let bad = helm_template("engine:\n  checkpointInterval: soon\n").expect_err("a bad duration");
    assert!(bad.contains("checkpointInterval"), "{bad}");
}

#[test]
fn notes_say_what_to_do_next() {
    let output = Command::new(renderer())
        .args(["-n", NAMESPACE, "--notes", RELEASE])
        .arg(chart_dir())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let notes = String::from_utf8(output.stdout).unwrap();
    let example = workspace().join("examples/tx-stats.yaml");
    let job = kappa_crds::load_manifest(&std::fs::read_to_string(&example).unwrap()).unwrap();
    let ns = job.metadata.namespace.clone().unwrap();
    for line in [
        format!("kubectl -n {NAMESPACE} get pods"),
        "kubectl apply -f examples/tx-stats.yaml".to_owned(),
        "kubectl get streamjobs".to_owned(),
        format!("kappa status {} -n {ns}", job.metadata.name.clone().unwrap()),
        "kubectl apply -f charts/kappa-operator/crds/".to_owned(),
    ] {
        assert!(notes.contains(&line), "NOTES.txt lacks `{line}`:\n{notes}");
    }
}
