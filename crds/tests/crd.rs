//! The committed CRD (`crds/streamjob.yaml`): no drift from the types, the shape `kubectl` and
//! the API server expect, a structural schema, and CEL rules that admit the reference job and
//! refuse the mistakes they exist for (evaluated offline with `kube-cel`).

use std::path::PathBuf;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube_cel::{
    analyze_rule, compile_schema, CompiledSchema, ScopeContext, Validator, WarningKind,
};
use serde_json::{json, Value};

/// Set to `1` to rewrite `crds/streamjob.yaml` from the types instead of failing on drift.
const BLESS_ENV: &str = "KAPPA_BLESS";

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("streamjob.yaml")
}

fn committed_crd() -> CustomResourceDefinition {
    let text = std::fs::read_to_string(committed_path()).expect("crds/streamjob.yaml exists");
    serde_yaml::from_str(&text).expect("crds/streamjob.yaml is a CustomResourceDefinition")
}

/// The `openAPIV3Schema` of the committed CRD, as JSON.
fn schema() -> Value {
    let crd = committed_crd();
    let version = &crd.spec.versions[0];
    let schema = version.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref());
    serde_json::to_value(schema.expect("v1alpha1 has a schema")).expect("schema serializes")
}

/// The reference job as the API server sees it: JSON, with apiVersion and kind.
fn reference() -> Value {
    let job = kappa_crds::load_manifest(kappa_crds::REFERENCE_JOB_YAML).expect("reference loads");
    serde_json::to_value(job).expect("a job serializes")
}

/// Messages of the rules `object` breaks (on update when `old` is given).
fn broken_rules(object: &Value, old: Option<&Value>) -> Vec<String> {
    match Validator::new().validate(&schema(), object, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(|e| format!("{}: {}", e.field_path, e.message)).collect(),
    }
}

fn assert_refused(object: &Value, old: Option<&Value>, message: &str) {
    let broken = broken_rules(object, old);
    assert!(
        broken.iter().any(|b| b.contains(message)),
        "expected a rule failing with {message:?}, got {broken:#?}"
    );
}

fn assert_admitted(object: &Value, old: Option<&Value>) {
    let broken = broken_rules(object, old);
    assert!(broken.is_empty(), "expected no rule to fail, got {broken:#?}");
}

#[test]
fn committed_yaml_matches_the_types() {
    let generated = kappa_crds::crd_yaml();
    let path = committed_path();
    if std::env::var(BLESS_ENV).is_ok_and(|v| v == "1") {
        std::fs::write(&path, &generated).expect("write crds/streamjob.yaml");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "crds/streamjob.yaml is out of date with the types in crds/src; regenerate it with\n  \
         {BLESS_ENV}=1 cargo test -p kappa-crds --test crd\nand commit the result"
    );
}

#[test]
fn crd_names_scope_and_columns() {
    let crd = committed_crd();
    assert_eq!(crd.metadata.name.as_deref(), Some("streamjobs.kappa.dev"));
    assert_eq!(crd.spec.group, "kappa.dev");
    assert_eq!(crd.spec.names.kind, "StreamJob");
    assert_eq!(crd.spec.names.plural, "streamjobs");
    assert_eq!(crd.spec.names.short_names.as_deref(), Some(&["sj".to_string()][..]));
    assert_eq!(crd.spec.scope, "Namespaced");

    assert_eq!(crd.spec.versions.len(), 1);
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(version.served && version.storage);
    let subresources = version.subresources.as_ref().expect("subresources");
    assert!(subresources.status.is_some(), "status subresource");

    let columns: Vec<(&str, &str, &str)> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.as_str(), c.type_.as_str(), c.json_path.as_str()))
        .collect();
    assert_eq!(
        columns,
        [
            ("Version", "string", ".spec.version"),
            ("Live", "string", ".status.liveVersion"),
            ("Phase", "string", ".status.phase"),
            ("Lag", "integer", ".status.lag"),
            ("Age", "date", ".metadata.creationTimestamp"),
        ]
    );
}

/// Keys a structural schema forbids inside `allOf`/`anyOf`/`oneOf`/`not`: the branches may only
/// add value validations.
const FORBIDDEN_IN_JUNCTORS: &[&str] =
    &["type", "properties", "items", "additionalProperties", "default", "nullable", "description"];

fn structural_problems(node: &Value, path: &str, problems: &mut Vec<String>) {
    let flag = |name: &str| node.get(name).and_then(Value::as_bool).unwrap_or(false);
    let preserves = flag("x-kubernetes-preserve-unknown-fields");
    if node.get("type").is_none() && !preserves && !flag("x-kubernetes-int-or-string") {
        problems.push(format!("{path}: no type"));
    }
    for junctor in ["allOf", "anyOf", "oneOf"] {
        for branch in node.get(junctor).and_then(Value::as_array).into_iter().flatten() {
            for key in FORBIDDEN_IN_JUNCTORS {
                if branch.get(key).is_some() {
                    problems.push(format!("{path}: {junctor} branch sets {key}"));
                }
            }
        }
    }
    if let Some(not) = node.get("not") {
        for key in FORBIDDEN_IN_JUNCTORS {
            if not.get(key).is_some() {
                problems.push(format!("{path}: not sets {key}"));
            }
        }
    }
    if let Some(properties) = node.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            structural_problems(child, &format!("{path}.{name}"), problems);
        }
    }
    if let Some(items) = node.get("items") {
        structural_problems(items, &format!("{path}[]"), problems);
    }
    if let Some(values) = node.get("additionalProperties").filter(|v| v.is_object()) {
        structural_problems(values, &format!("{path}{{}}"), problems);
    }
}

#[test]
fn schema_is_structural() {
    let mut problems = Vec::new();
    structural_problems(&schema(), "", &mut problems);
    assert!(problems.is_empty(), "the API server would refuse these schema nodes: {problems:#?}");
}

/// Rules that do not compile, or whose estimated cost exceeds the API server's budget (the API
/// server refuses such a CRD). kube-cel's scope warnings are not used: they flag comprehension
/// variables (`a` in `self.all(a, ...)`) as unknown.
fn rule_problems(node: &Value, path: &str, problems: &mut Vec<String>) {
    if let Some(rules) = node.get("x-kubernetes-validations").and_then(Value::as_array) {
        let compiled: CompiledSchema = compile_schema(node);
        for error in compiled.compilation_errors() {
            problems.push(format!("{path}: {error}"));
        }
        for rule in rules.iter().filter_map(|r| r.get("rule").and_then(Value::as_str)) {
            for warning in analyze_rule(rule, &compiled, ScopeContext::CrdValidation) {
                if warning.kind == WarningKind::CostExceeded {
                    problems.push(format!("{path}: {rule}: {}", warning.message));
                }
            }
        }
    }
    for child in ["properties", "items", "additionalProperties"] {
        match node.get(child) {
            Some(Value::Object(map)) if child == "properties" => {
                for (name, n) in map {
                    rule_problems(n, &format!("{path}.{name}"), problems);
                }
            }
            Some(n @ Value::Object(_)) => rule_problems(n, &format!("{path}.{child}"), problems),
            _ => {}
        }
    }
}

#[test]
fn cel_rules_compile_within_the_cost_budget() {
    let mut problems = Vec::new();
    rule_problems(&schema(), "", &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");

    // The list bounds are what keep the uniqueness rule affordable.
    let mut unbounded = schema();
    let pipeline = &mut unbounded["properties"]["spec"]["properties"]["pipeline"]["properties"];
    pipeline["aggregates"].as_object_mut().expect("aggregates schema").remove("maxItems");
    let mut problems = Vec::new();
    rule_problems(&unbounded, "", &mut problems);
    assert!(!problems.is_empty(), "an unbounded aggregates list should exceed the cost budget");
}

#[test]
fn reference_job_is_admitted() {
    assert_admitted(&reference(), None);
}

#[test]
fn tumbling_and_hopping_together_are_refused() {
    let mut job = reference();
    job["spec"]["pipeline"]["window"]["hopping"] = json!({"size": "5m", "slide": "1m"});
    assert_refused(&job, None, "set exactly one of window.tumbling or window.hopping");
}

#[test]
fn aggregate_without_field_is_refused() {
    let mut job = reference();
    job["spec"]["pipeline"]["aggregates"][1] = json!({"name": "amount_sum", "op": "sum"});
    assert_refused(&job, None, "field is required for every op but count");
}

#[test]
fn aggregate_rules_mirror_the_semantic_checks() {
    let cases = [
        (json!({"name": "n", "op": "count", "field": "x"}), "count takes no field"),
        (json!({"name": "n", "op": "approx_percentile", "field": "x"}), "needs percentile"),
        (json!({"name": "n", "op": "approx_percentile", "field": "x", "percentile": 95}), "(0, 1)"),
        (json!({"name": "n", "op": "avg", "field": "x", "percentile": 0.5}), "only to approx"),
        (json!({"name": "final", "op": "count"}), "written by the engine"),
        (json!({"name": "server", "op": "count"}), "differ from every groupBy key"),
    ];
    for (aggregate, message) in cases {
        let mut job = reference();
        job["spec"]["pipeline"]["aggregates"][0] = aggregate;
        assert_refused(&job, None, message);
    }
}

#[test]
fn duplicate_aggregate_names_are_refused() {
    let mut job = reference();
    job["spec"]["pipeline"]["aggregates"][4]["name"] = json!("latency_max");
    assert_refused(&job, None, "aggregate names must be unique");
}

#[test]
fn pipeline_change_needs_a_new_version() {
    let old = reference();
    let mut new = old.clone();
    new["spec"]["pipeline"]["maxLateness"] = json!("1d");
    assert_refused(&new, Some(&old), "spec.pipeline is part of the job's logic");

    new["spec"]["version"] = json!("v2");
    assert_admitted(&new, Some(&old));
}

#[test]
fn operational_fields_change_in_place() {
    let old = reference();
    let mut new = old.clone();
    new["spec"]["engine"]["replicas"] = json!(0);
    assert_admitted(&new, Some(&old));

    let mut new = old.clone();
    new["spec"]["promotion"] =
        json!({"mode": "manual", "maxLag": 10, "maxDelay": "5s", "stableFor": "5m"});
    assert_admitted(&new, Some(&old));

    let mut new = old.clone();
    new["spec"]["activeVersion"] = json!("v0");
    new["spec"]["retention"]["keepVersions"] = json!(3);
    assert_admitted(&new, Some(&old));
}

#[test]
fn engine_image_change_needs_a_new_version() {
    let old = reference();
    let mut new = old.clone();
    new["spec"]["engine"]["image"] = json!("registry.example/kappa-engine:0.2.0");
    assert_refused(&new, Some(&old), "spec.engine.image is part of the job's logic");

    new["spec"]["version"] = json!("v2");
    assert_admitted(&new, Some(&old));
}

#[test]
fn source_and_sink_changes_need_a_new_version() {
    let old = reference();
    let mut new = old.clone();
    new["spec"]["source"]["kafka"]["topic"] = json!("tx-logs-v2");
    assert_refused(&new, Some(&old), "spec.source is part of the job's logic");

    let mut new = old.clone();
    new["spec"]["sink"]["elasticsearch"]["mappings"] = json!({"server": {"type": "keyword"}});
    assert_refused(&new, Some(&old), "spec.sink mode, alias, indexSettings and mappings");

    // The URL and credentials are operational: the same index, reached another way.
    let mut new = old.clone();
    new["spec"]["sink"]["elasticsearch"]["url"] = json!("https://es.internal:9200");
    new["spec"]["sink"]["elasticsearch"]["credentialsSecret"] = json!("es-writer");
    assert_admitted(&new, Some(&old));
}
