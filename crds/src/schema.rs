//! Hand-written schema fragments for fields whose Rust type has no structural OpenAPI form.

use schemars::{json_schema, Schema, SchemaGenerator};

/// `startFrom` is either a string (`earliest`/`latest`) or an object `{timestamp}`. Kubernetes
/// structural schemas cannot express "string or object", so the field keeps unknown fields and
/// the semantic validation (and the engine) check its shape.
pub fn start_from(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "Where a new version starts reading: `earliest` (default), `latest`, or `{timestamp: \"2024-01-01T00:00:00Z\"}`.",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Free-form JSON objects passed through to Elasticsearch (index settings, mapping overrides).
pub fn free_form_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}
