//! The StreamJob field reference in Markdown, generated from the CRD's OpenAPI schema (and so
//! from the types and their doc comments). README.md embeds it; `crds/tests/reference.rs` fails
//! when the two drift apart.

use std::fmt::Write;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::Value;

/// Fields whose type is a Kubernetes API type: named and linked instead of expanded (their
/// schema is Kubernetes' own, documented upstream).
const KUBERNETES_TYPES: &[(&str, &str)] = &[(
    "spec.engine.resources",
    "[`ResourceRequirements`](https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/#resources)",
)];

/// One Markdown table per object of the StreamJob (`spec`, `spec.source`, ...; `[]` marks the
/// items of a list), then the same for `status`. Each row gives a field's path, type, whether it
/// is required or its default, its constraints and the first paragraph of its description;
/// CEL admission rules are listed under the object they apply to.
///
/// ```
/// let md = kappa_crds::reference_markdown();
/// assert!(md.contains("### `spec.source.kafka`"));
/// assert!(md.contains("| `spec.version` | string | required |"));
/// ```
pub fn reference_markdown() -> String {
    let crd = crate::crd::crd();
    let root = crd
        .spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("the CRD has a schema");
    let mut out = String::new();
    let properties = root.properties.as_ref().expect("the root schema has properties");
    for name in ["spec", "status"] {
        if let Some(node) = properties.get(name) {
            object_tables(&mut out, name, node, true);
        }
    }
    out
}

/// The table of the object at `path`, then the tables of the objects below it.
fn object_tables(out: &mut String, path: &str, node: &JSONSchemaProps, top: bool) {
    let _ = writeln!(out, "### `{path}`\n");
    if top {
        let _ = writeln!(out, "{}\n", first_paragraph(node.description.as_deref()));
    }
    out.push_str("| field | type | required / default | constraints | description |\n");
    out.push_str("| --- | --- | --- | --- | --- |\n");
    let required = node.required.as_deref().unwrap_or_default();
    let mut below = Vec::new();
    for (name, child) in node.properties.iter().flatten() {
        let child_path = format!("{path}.{name}");
        let kubernetes_type =
            KUBERNETES_TYPES.iter().find(|(p, _)| *p == child_path).map(|(_, t)| *t);
        let expanded = match kubernetes_type {
            Some(_) => None,
            None => expandable(&child_path, child),
        };
        let ty = kubernetes_type.map_or_else(|| type_name(child), str::to_owned);
        let presence = if required.contains(name) { "required".to_owned() } else { default(child) };
        let mut constraints = constraints(child);
        // An expanded object lists its rules under its own table.
        if expanded.as_ref().is_none_or(|(p, _)| *p != child_path) {
            constraints.extend(rules(child).into_iter().map(|r| format!("rule: {r}")));
        }
        let _ = writeln!(
            out,
            "| `{child_path}` | {} | {} | {} | {} |",
            escape(&ty),
            escape(&presence),
            escape(&constraints.join("; ")),
            escape(&first_paragraph(child.description.as_deref())),
        );
        below.extend(expanded);
    }
    let rules = rules(node);
    if !rules.is_empty() {
        out.push_str("\nAdmission rules:\n\n");
        for r in rules {
            let _ = writeln!(out, "- {r}");
        }
    }
    out.push('\n');
    for (p, n) in below {
        object_tables(out, &p, n, false);
    }
}

/// The object a field's own table describes: the field itself, its list items or its map
/// values.
fn expandable<'a>(path: &str, node: &'a JSONSchemaProps) -> Option<(String, &'a JSONSchemaProps)> {
    if node.properties.is_some() {
        return Some((path.to_owned(), node));
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = &node.items {
        if items.properties.is_some() {
            return Some((format!("{path}[]"), items));
        }
    }
    if let Some(JSONSchemaPropsOrBool::Schema(values)) = &node.additional_properties {
        if values.properties.is_some() {
            return Some((format!("{path}.*"), values));
        }
    }
    None
}

fn type_name(node: &JSONSchemaProps) -> String {
    if node.x_kubernetes_int_or_string == Some(true) {
        return "integer or string".to_owned();
    }
    let free_form = node.x_kubernetes_preserve_unknown_fields == Some(true);
    match node.type_.as_deref() {
        Some("array") => match &node.items {
            Some(JSONSchemaPropsOrArray::Schema(items)) => format!("[]{}", type_name(items)),
            _ => "array".to_owned(),
        },
        Some("object") => match &node.additional_properties {
            Some(JSONSchemaPropsOrBool::Schema(values)) => {
                format!("map[string]{}", type_name(values))
            }
            _ if free_form => "object (free-form)".to_owned(),
            _ => "object".to_owned(),
        },
        Some(other) => other.to_owned(),
        // Only `x-kubernetes-preserve-unknown-fields` (e.g. `startFrom`, a string or an object).
        None => "any".to_owned(),
    }
}

fn default(node: &JSONSchemaProps) -> String {
    match node.default.as_ref().map(|d| &d.0) {
        None => "optional".to_owned(),
        // An object's default only fills in its fields' defaults, listed in its own table.
        Some(Value::Object(_)) => "optional".to_owned(),
        Some(Value::String(s)) if s.is_empty() => "default `\"\"`".to_owned(),
        Some(Value::String(s)) => format!("default `{s}`"),
        Some(v) => format!("default `{v}`"),
    }
}

/// Enum, length, range, item-count and pattern constraints; for a list of scalars, also those
/// of each item.
fn constraints(node: &JSONSchemaProps) -> Vec<String> {
    let mut out = scalar_constraints(node);
    if let Some(range) = bounds(node.min_items, node.max_items) {
        out.push(format!("{range} items"));
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = &node.items {
        if items.properties.is_none() {
            out.extend(scalar_constraints(items).into_iter().map(|c| format!("each: {c}")));
        }
    }
    out
}

fn scalar_constraints(node: &JSONSchemaProps) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(values) = &node.enum_ {
        let values: Vec<String> = values
            .iter()
            .map(|v| match &v.0 {
                Value::String(s) => format!("`{s}`"),
                other => format!("`{other}`"),
            })
            .collect();
        out.push(format!("one of {}", values.join(", ")));
    }
    if let Some(range) = bounds(node.min_length, node.max_length) {
        out.push(format!("length {range}"));
    }
    let number = |x: f64| if x.fract() == 0.0 { format!("{x:.0}") } else { x.to_string() };
    match (node.minimum, node.maximum) {
        (Some(lo), Some(hi)) => out.push(format!("{} to {}", number(lo), number(hi))),
        (Some(lo), None) => out.push(format!("≥ {}", number(lo))),
        (None, Some(hi)) => out.push(format!("≤ {}", number(hi))),
        (None, None) => {}
    }
    if let Some(p) = &node.pattern {
        out.push(format!("pattern `{p}`"));
    }
    out
}

fn bounds(min: Option<i64>, max: Option<i64>) -> Option<String> {
    match (min, max) {
        (Some(lo), Some(hi)) => Some(format!("{lo} to {hi}")),
        (Some(lo), None) => Some(format!("≥ {lo}")),
        (None, Some(hi)) => Some(format!("≤ {hi}")),
        (None, None) => None,
    }
}

/// The messages of a node's CEL rules; transition rules (comparing with `oldSelf`) are marked,
/// since they only run when an object is updated.
fn rules(node: &JSONSchemaProps) -> Vec<String> {
    node.x_kubernetes_validations
        .iter()
        .flatten()
        .map(|r| {
            let message = r.message.clone().unwrap_or_else(|| format!("`{}`", r.rule));
            if r.rule.contains("oldSelf") {
                format!("on update: {message}")
            } else {
                message
            }
        })
        .collect()
}

/// The first paragraph of a doc comment, on one line.
fn first_paragraph(description: Option<&str>) -> String {
    let text = description.unwrap_or_default().trim();
    let paragraph = text.split("\n\n").next().unwrap_or_default();
    paragraph.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Keeps a cell inside its column (GitHub applies `\|` inside code spans too).
fn escape(cell: &str) -> String {
    cell.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kubernetes_type_names_a_field_that_exists() {
        let md = reference_markdown();
        for (path, ty) in KUBERNETES_TYPES {
            assert!(md.contains(&format!("| `{path}` | {ty} |")), "{path} is not in the reference");
        }
    }

    #[test]
    fn pipes_in_patterns_are_escaped() {
        let md = reference_markdown();
        assert!(md.contains(r"pattern `^[0-9]+(ms\|s\|m\|h\|d)$`"), "{md}");
        for line in md.lines().filter(|l| l.starts_with("| `")) {
            let cells = line.replace("\\|", "").matches('|').count();
            assert_eq!(cells, 6, "a row with five cells: {line}");
        }
    }

    #[test]
    fn descriptions_keep_their_first_paragraph_only() {
        assert_eq!(first_paragraph(Some("One\ntwo.\n\nThree.")), "One two.");
        assert_eq!(first_paragraph(None), "");
    }
}
