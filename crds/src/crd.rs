//! The generated `CustomResourceDefinition`, with the CEL admission rules that a schema cannot
//! express through types alone.
//!
//! The rules are attached here, next to each other, rather than spread over derive attributes:
//! one place to read every admission rule, and one test file that evaluates them offline.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, ValidationRule,
};
use kube::CustomResourceExt;

use crate::spec::StreamJob;

/// One CEL rule and the schema node (dotted path below the root, `[]` for array items) it is
/// attached to.
struct Rule {
    at: &'static [&'static str],
    rule: &'static str,
    message: &'static str,
    reason: Option<&'static str>,
}

const fn rule(at: &'static [&'static str], rule: &'static str, message: &'static str) -> Rule {
    Rule { at, rule, message, reason: None }
}

const fn transition(
    at: &'static [&'static str],
    rule: &'static str,
    message: &'static str,
) -> Rule {
    Rule { at, rule, message, reason: Some("FieldValueForbidden") }
}

/// Every CEL rule of the CRD. Transition rules (those using `oldSelf`) run on UPDATE only.
const RULES: &[Rule] = &[
    // The logic fields cannot change under the same version: a changed job must replay into a
    // new index, or the index would mix results of two logics.
    transition(
        &["spec"],
        "self.version != oldSelf.version || self.source == oldSelf.source",
        "spec.source is part of the job's logic: change spec.version to replay with the new source",
    ),
    transition(
        &["spec"],
        "self.version != oldSelf.version || self.pipeline == oldSelf.pipeline",
        "spec.pipeline is part of the job's logic: change spec.version to replay with the new pipeline",
    ),
    transition(
        &["spec"],
        "self.version != oldSelf.version || (self.sink.mode == oldSelf.sink.mode \
         && self.sink.elasticsearch.alias == oldSelf.sink.elasticsearch.alias \
         && has(self.sink.elasticsearch.indexSettings) == has(oldSelf.sink.elasticsearch.indexSettings) \
         && (!has(self.sink.elasticsearch.indexSettings) || self.sink.elasticsearch.indexSettings == oldSelf.sink.elasticsearch.indexSettings) \
         && has(self.sink.elasticsearch.mappings) == has(oldSelf.sink.elasticsearch.mappings) \
         && (!has(self.sink.elasticsearch.mappings) || self.sink.elasticsearch.mappings == oldSelf.sink.elasticsearch.mappings))",
        "spec.sink mode, alias, indexSettings and mappings are part of the job's logic: change spec.version to write a new index",
    ),
    transition(
        &["spec"],
        "self.version != oldSelf.version \
         || ((has(self.engine) && has(self.engine.image)) == (has(oldSelf.engine) && has(oldSelf.engine.image)) \
         && (!(has(self.engine) && has(self.engine.image)) || self.engine.image == oldSelf.engine.image))",
        "spec.engine.image is part of the job's logic: change spec.version to run a new engine image",
    ),
    rule(
        &["spec", "pipeline", "window"],
        "has(self.tumbling) != has(self.hopping)",
        "set exactly one of window.tumbling or window.hopping",
    ),
    rule(
        &["spec", "pipeline", "aggregates", "[]"],
        "self.op == 'count' || has(self.field)",
        "field is required for every op but count",
    ),
    rule(
        &["spec", "pipeline", "aggregates", "[]"],
        "self.op != 'count' || !has(self.field)",
        "count takes no field (it counts records); to count records that have a field, write a where condition such as has(meta.user_id)",
    ),
    rule(
        &["spec", "pipeline", "aggregates", "[]"],
        "self.op != 'approx_percentile' || has(self.percentile)",
        "approx_percentile needs percentile, a number in (0, 1) such as 0.95",
    ),
    rule(
        &["spec", "pipeline", "aggregates", "[]"],
        "!has(self.percentile) || self.op == 'approx_percentile'",
        "percentile applies only to approx_percentile",
    ),
    rule(
        &["spec", "pipeline", "aggregates", "[]"],
        "!has(self.percentile) || (self.percentile > 0.0 && self.percentile < 1.0)",
        "percentile must be in (0, 1), e.g. 0.95",
    ),
    rule(
        &["spec", "pipeline", "aggregates", "[]"],
        "!(self.name in ['window_start', 'window_end', 'final'])",
        "window_start, window_end and final are written by the engine; choose another aggregate name",
    ),
    rule(
        &["spec", "pipeline", "aggregates"],
        "self.all(a, self.exists_one(b, b.name == a.name))",
        "aggregate names must be unique",
    ),
    rule(
        &["spec", "pipeline"],
        "self.aggregates.all(a, !has(self.groupBy) || !(a.name in self.groupBy))",
        "an aggregate name must differ from every groupBy key (both become document fields)",
    ),
];

/// The StreamJob CRD, as applied to a cluster.
pub fn crd() -> CustomResourceDefinition {
    let mut crd = StreamJob::crd();
    for version in &mut crd.spec.versions {
        let Some(root) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) else {
            continue;
        };
        for r in RULES {
            let node = schema_node(root, r.at);
            node.x_kubernetes_validations.get_or_insert_with(Vec::new).push(ValidationRule {
                rule: r.rule.to_string(),
                message: Some(r.message.to_string()),
                reason: r.reason.map(str::to_string),
                ..ValidationRule::default()
            });
        }
    }
    crd
}

/// The CRD as YAML, exactly as committed at `crds/streamjob.yaml`.
pub fn crd_yaml() -> String {
    let header = "# Generated from the types in crds/src; do not edit by hand. Regenerate with\n\
                  # KAPPA_BLESS=1 cargo test -p kappa-crds --test crd\n";
    format!("{header}{}", serde_yaml::to_string(&crd()).expect("a CRD always serializes"))
}

fn schema_node<'a>(root: &'a mut JSONSchemaProps, path: &[&str]) -> &'a mut JSONSchemaProps {
    let mut node = root;
    for step in path {
        node = if *step == "[]" {
            match node.items.as_mut() {
                Some(JSONSchemaPropsOrArray::Schema(items)) => items.as_mut(),
                _ => panic!("schema node has no items for a CEL rule: {path:?}"),
            }
        } else {
            node.properties
                .as_mut()
                .and_then(|p| p.get_mut(*step))
                .unwrap_or_else(|| panic!("schema has no property {step} for a CEL rule: {path:?}"))
        };
    }
    node
}
