//! Semantic validation: what the OpenAPI schema and the CEL rules cannot express.
//!
//! [`validate`] also repeats the schema's bounds (patterns, lengths, ranges), so a manifest
//! that `kappa run` accepts is one `kubectl apply` accepts too, and it reports every problem at
//! once, each with the path of the field to fix.
//!
//! CEL expressions are only parsed here: what the engine evaluates is decided by its compiler,
//! which this crate cannot depend on. `kappa_engine::plan::validate` adds the compiler's
//! verdict on every expression ([`cel_expressions`] lists them) to these checks; every command
//! and the operator validate through it.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::duration::parse_duration;
use crate::naming::{index_name_for, RESERVED_DOCUMENT_FIELDS};
use crate::spec::{
    AggregateOp, AggregateSpec, EngineSpec, KafkaSource, PipelineSpec, PromotionSpec,
    RetentionSpec, SinkSpec, StartFrom, StreamJob, TimeField, WindowSpec, MAX_AGGREGATES,
    MAX_AGGREGATE_NAME_LEN, MAX_ALIAS_LEN, MAX_FIELD_PATH_LEN, MAX_GROUP_BY_KEYS, MAX_VERSION_LEN,
};

/// Longest Elasticsearch index name, in bytes.
const MAX_INDEX_NAME_BYTES: usize = 255;
/// Longest StreamJob name (a Kubernetes label value).
const MAX_JOB_NAME_LEN: usize = 63;
/// Longest Kafka topic name.
const MAX_TOPIC_LEN: usize = 249;
/// Most engine replicas per version (the schema's bound): one engine owns a version's
/// partitions and checkpoint.
const MAX_REPLICAS: i32 = 1;
/// Most retained previous versions (the schema's bound).
const MAX_KEEP_VERSIONS: i32 = 20;
/// Characters Elasticsearch refuses anywhere in an index name.
const INDEX_FORBIDDEN_CHARS: &[char] =
    &['*', '?', '"', '<', '>', '|', '/', '\\', ' ', ',', '#', ':'];

/// One problem in a manifest, with the path of the field to fix.
///
/// Paths use the manifest's (camelCase) names, `[i]` for list items and `.key` for map keys
/// (`[key]` when the key is not a plain identifier, e.g. `consumerProperties[group.id]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Field path such as `spec.pipeline.aggregates[2].field`.
    pub path: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl FieldError {
    /// A field error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every semantic problem of `job`, in field order; empty when the job is valid.
///
/// CEL expressions are checked to parse, not to compile: `kappa_engine::plan::validate` is the
/// whole check (see the module documentation).
///
/// ```
/// let mut job = kappa_crds::load_manifest(kappa_crds::REFERENCE_JOB_YAML).unwrap();
/// job.spec.version = "V2".into();
/// job.spec.pipeline.aggregates[1].field = None;
/// let paths: Vec<_> = kappa_crds::validate(&job).into_iter().map(|e| e.path).collect();
/// assert_eq!(paths, ["spec.version", "spec.pipeline.aggregates[1].field"]);
/// ```
pub fn validate(job: &StreamJob) -> Vec<FieldError> {
    let spec = &job.spec;
    let mut errors = Errors::default();
    if let Some(name) = &job.metadata.name {
        // The name is the value of the `kappa.dev/job` label on every object of the job, and
        // label values have at most 63 characters.
        if name.len() > MAX_JOB_NAME_LEN {
            errors.push(
                "metadata.name",
                format!(
                    "{} characters is longer than {MAX_JOB_NAME_LEN}: the name labels every object \
                     of the job; choose a shorter name",
                    name.len()
                ),
            );
        }
    }
    let version_ok = errors.dns_label("spec.version", &spec.version);
    check_source(&mut errors, &spec.source.kafka);
    check_pipeline(&mut errors, &spec.pipeline);
    check_sink(&mut errors, &spec.sink, version_ok.then_some(spec.version.as_str()));
    check_engine(&mut errors, &spec.engine);
    check_promotion(&mut errors, &spec.promotion);
    check_retention(&mut errors, &spec.retention);
    if let Some(active) = &spec.active_version {
        errors.dns_label("spec.activeVersion", active);
    }
    errors.0
}

/// Every CEL expression of `pipeline` with the field path its problems are reported at, in
/// manifest order: the filter, the derived fields, the aggregates' `where` clauses.
pub fn cel_expressions(pipeline: &PipelineSpec) -> Vec<(String, &str)> {
    const AT: &str = "spec.pipeline";
    let filter = pipeline.filter.as_deref().map(|f| (format!("{AT}.filter"), f));
    let derived = pipeline
        .derived
        .iter()
        .map(|(name, expr)| (map_key_path(&format!("{AT}.derived"), name), expr.as_str()));
    let conditions = pipeline.aggregates.iter().enumerate().filter_map(|(i, a)| {
        a.where_.as_deref().map(|w| (format!("{AT}.aggregates[{i}].where"), w))
    });
    filter.into_iter().chain(derived).chain(conditions).collect()
}

/// Collects field errors; the helpers return whether the value was fine.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(path, message));
    }

    /// Checks `value` is an RFC 1123 label of at most [`MAX_VERSION_LEN`] characters.
    fn dns_label(&mut self, path: &str, value: &str) -> bool {
        let problem = if value.is_empty() {
            Some("must not be empty; write a version such as v1".to_string())
        } else if value.len() > MAX_VERSION_LEN {
            Some(format!("{value:?} is longer than {MAX_VERSION_LEN} characters"))
        } else if value.chars().any(|c| c.is_ascii_uppercase()) {
            Some(format!(
                "{value:?} has uppercase letters; it becomes part of index and consumer-group \
                 names, write {:?}",
                value.to_ascii_lowercase()
            ))
        } else if !value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            let suggestion: String = value
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
                .collect();
            Some(format!(
                "{value:?} may contain only lowercase letters, digits and '-' (e.g. {suggestion:?})"
            ))
        } else if value.starts_with('-') || value.ends_with('-') {
            Some(format!("{value:?} must start and end with a letter or digit"))
        } else {
            None
        };
        self.report(path, problem)
    }

    /// Checks a manifest duration; `positive` refuses zero.
    fn duration(&mut self, path: &str, text: &str, positive: bool) -> Option<Duration> {
        match parse_duration(text) {
            Ok(_) if text.trim() != text => {
                self.push(
                    path,
                    format!("duration {text:?} has spaces; write it as {:?}", text.trim()),
                );
                None
            }
            Ok(d) if positive && d.is_zero() => {
                self.push(
                    path,
                    format!("duration {text:?} is zero; a window needs a length, e.g. 1m"),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.push(path, e.to_string());
                None
            }
        }
    }

    /// Checks a dotted path into the record, e.g. `meta.ts`.
    fn field_path(&mut self, path: &str, value: &str) -> bool {
        let problem = if value.is_empty() {
            Some("is empty; name a field of the record, e.g. amount or meta.amount".to_string())
        } else if value.split('.').any(str::is_empty) {
            Some(format!(
                "{value:?} is not a dotted field path: every segment between dots must be non-empty \
                 (e.g. meta.amount)"
            ))
        } else if value.chars().any(char::is_whitespace) {
            Some(format!("{value:?} contains whitespace; field paths are written like meta.amount"))
        } else if value.len() > MAX_FIELD_PATH_LEN {
            Some(format!("{value:?} is longer than {MAX_FIELD_PATH_LEN} characters"))
        } else {
            None
        };
        self.report(path, problem)
    }

    /// Checks `src` parses as CEL.
    fn cel(&mut self, path: &str, src: &str) -> bool {
        let problem = cel::parser::Parser::new().parse(src).err().map(|errors| {
            let details: Vec<String> = errors
                .errors
                .iter()
                .map(|e| format!("{} (line {}, column {})", e.msg, e.pos.0, e.pos.1 + 1))
                .collect();
            format!("{src:?} is not a valid CEL expression: {}", details.join("; "))
        });
        self.report(path, problem)
    }

    fn report(&mut self, path: &str, problem: Option<String>) -> bool {
        match problem {
            Some(message) => {
                self.push(path, message);
                false
            }
            None => true,
        }
    }
}

fn check_source(errors: &mut Errors, kafka: &KafkaSource) {
    const AT: &str = "spec.source.kafka";
    if kafka.bootstrap_servers.split(',').any(|s| !is_host_port(s.trim())) {
        errors.push(
            format!("{AT}.bootstrapServers"),
            format!(
                "{:?} is not a comma-separated host:port list (e.g. kafka-0:9092,kafka-1:9092)",
                kafka.bootstrap_servers
            ),
        );
    }
    let topic = &kafka.topic;
    if topic.is_empty() || topic.len() > MAX_TOPIC_LEN || topic == "." || topic == ".." {
        errors.push(
            format!("{AT}.topic"),
            format!("{topic:?} is not a Kafka topic name (1 to {MAX_TOPIC_LEN} characters)"),
        );
    } else if !topic.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        errors.push(
            format!("{AT}.topic"),
            format!("{topic:?} is not a Kafka topic name: use letters, digits, '.', '_' and '-'"),
        );
    }
    if let StartFrom::Timestamp { timestamp } = &kafka.start_from {
        if !is_rfc3339(timestamp) {
            errors.push(
                format!("{AT}.startFrom.timestamp"),
                format!(
                    "{timestamp:?} is not an RFC 3339 instant; write a date, 'T', a time and 'Z' \
                     or an offset, e.g. 2024-01-01T00:00:00Z or 2024-01-01T02:00:00+02:00"
                ),
            );
        }
    }
    for key in kafka.consumer_properties.keys() {
        if let Some(fix) = consumer_property_problem(key) {
            errors.push(map_key_path(&format!("{AT}.consumerProperties"), key), fix);
        }
    }
}

/// Why `key` may not appear in `consumerProperties`, with the fix.
fn consumer_property_problem(key: &str) -> Option<String> {
    let lower = key.to_ascii_lowercase();
    let owned = |fix: &str| Some(format!("{key} is set by the engine; {fix}"));
    match lower.as_str() {
        "group.id" => {
            owned("each job version gets its own consumer group kappa.<namespace>.<job>.<version>")
        }
        "enable.auto.commit" | "enable.auto.offset.store" => {
            owned("offsets are committed with the engine's checkpoints")
        }
        "bootstrap.servers" | "metadata.broker.list" => {
            owned("use spec.source.kafka.bootstrapServers")
        }
        "auto.offset.reset" => owned("use spec.source.kafka.startFrom"),
        _ if lower.contains("password")
            || lower.contains("secret")
            || lower == "ssl.key.pem"
            || lower == "sasl.oauthbearer.config" =>
        {
            Some(format!(
                "{key} is a credential and must not be written in the manifest; use \
                 spec.source.kafka.sasl (or tls) with a Secret reference"
            ))
        }
        _ => None,
    }
}

fn is_host_port(entry: &str) -> bool {
    match entry.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.chars().any(char::is_whitespace)
                && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        None => false,
    }
}

fn check_pipeline(errors: &mut Errors, p: &PipelineSpec) {
    const AT: &str = "spec.pipeline";
    check_time_field(errors, &format!("{AT}.eventTime"), &p.event_time);
    if let Some(log_time) = &p.log_time {
        check_time_field(errors, &format!("{AT}.logTime"), log_time);
    }
    errors.duration(&format!("{AT}.maxLateness"), &p.max_lateness, false);
    if let Some(filter) = &p.filter {
        errors.cel(&format!("{AT}.filter"), filter);
    }
    for (name, expr) in &p.derived {
        let path = map_key_path(&format!("{AT}.derived"), name);
        if !is_identifier(name) {
            errors.push(
                &path,
                format!(
                    "derived field name {name:?} must be an identifier (letters, digits, '_', not \
                     starting with a digit) so expressions can refer to it"
                ),
            );
        }
        errors.cel(&path, expr);
    }
    check_group_by(errors, p);
    check_window(errors, &p.window);
    check_aggregates(errors, p);
}

fn check_time_field(errors: &mut Errors, at: &str, time: &TimeField) {
    errors.field_path(&format!("{at}.field"), &time.field);
}

fn check_group_by(errors: &mut Errors, p: &PipelineSpec) {
    const AT: &str = "spec.pipeline.groupBy";
    if p.group_by.len() > MAX_GROUP_BY_KEYS {
        errors.push(AT, format!("at most {MAX_GROUP_BY_KEYS} groupBy keys are allowed"));
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, key) in p.group_by.iter().enumerate() {
        let path = format!("{AT}[{i}]");
        if key.is_empty() {
            errors.push(&path, "empty groupBy key; remove it or name a field of the record");
            continue;
        }
        if !errors.field_path(&path, key) {
            continue;
        }
        if let Some(first) = seen.insert(key, i) {
            errors
                .push(&path, format!("{key:?} is already groupBy[{first}]; remove the duplicate"));
            seen.insert(key, first);
        } else if RESERVED_DOCUMENT_FIELDS.contains(&key.as_str()) {
            errors.push(
                &path,
                format!(
                    "{key:?} is a field the engine writes; derive the value under another name"
                ),
            );
        }
    }
}

fn check_window(errors: &mut Errors, window: &WindowSpec) {
    const AT: &str = "spec.pipeline.window";
    match (&window.tumbling, &window.hopping) {
        (Some(_), Some(_)) => {
            errors.push(AT, "set exactly one of tumbling or hopping, not both");
        }
        (None, None) => {
            errors.push(
                AT,
                "set tumbling (e.g. tumbling: 1m) or hopping (e.g. hopping: {size: 5m, slide: 1m})",
            );
        }
        _ => {}
    }
    if let Some(size) = &window.tumbling {
        errors.duration(&format!("{AT}.tumbling"), size, true);
    }
    if let Some(hopping) = &window.hopping {
        let size = errors.duration(&format!("{AT}.hopping.size"), &hopping.size, true);
        let slide = errors.duration(&format!("{AT}.hopping.slide"), &hopping.slide, true);
        if let (Some(size), Some(slide)) = (size, slide) {
            let path = format!("{AT}.hopping.slide");
            if slide > size {
                errors.push(
                    path,
                    format!(
                        "slide {} is longer than size {}; windows would leave gaps (use tumbling \
                         windows for slide = size)",
                        hopping.slide, hopping.size
                    ),
                );
            } else if size.as_millis() % slide.as_millis() != 0 {
                errors.push(
                    path,
                    format!(
                        "slide {} does not divide size {}; choose a slide the size is a whole \
                         multiple of (e.g. size 5m, slide 1m)",
                        hopping.slide, hopping.size
                    ),
                );
            }
        }
    }
}

fn check_aggregates(errors: &mut Errors, p: &PipelineSpec) {
    const AT: &str = "spec.pipeline.aggregates";
    if p.aggregates.is_empty() {
        errors.push(AT, "add at least one aggregate, e.g. {name: events, op: count}");
    } else if p.aggregates.len() > MAX_AGGREGATES {
        errors.push(AT, format!("at most {MAX_AGGREGATES} aggregates are allowed"));
    }
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, a) in p.aggregates.iter().enumerate() {
        let at = format!("{AT}[{i}]");
        if let Some(problem) = aggregate_name_problem(a, p, seen.get(a.name.as_str()).copied()) {
            errors.push(format!("{at}.name"), problem);
        }
        seen.entry(&a.name).or_insert(i);
        check_aggregate_inputs(errors, &at, a);
    }
}

fn aggregate_name_problem(
    a: &AggregateSpec,
    p: &PipelineSpec,
    first: Option<usize>,
) -> Option<String> {
    let name = a.name.as_str();
    if !is_identifier(name) {
        return Some(format!(
            "{name:?} is not a valid output field name: use letters, digits and '_', not \
             starting with a digit (e.g. amount_sum)"
        ));
    }
    if name.len() > MAX_AGGREGATE_NAME_LEN {
        return Some(format!("{name:?} is longer than {MAX_AGGREGATE_NAME_LEN} characters"));
    }
    if let Some(first) = first {
        return Some(format!(
            "{name:?} is already the name of aggregates[{first}]; aggregate names must be unique"
        ));
    }
    if let Some(k) = p.group_by.iter().position(|k| k == name) {
        return Some(format!(
            "{name:?} is also groupBy[{k}]; both become document fields, rename the aggregate \
             (e.g. {name}_{})",
            a.op.as_str()
        ));
    }
    if p.derived.contains_key(name) {
        return Some(format!(
            "{name:?} is also a derived field; rename the aggregate or the derived field"
        ));
    }
    if RESERVED_DOCUMENT_FIELDS.contains(&name) {
        return Some(format!(
            "{name:?} is a field the engine writes ({}); choose another aggregate name",
            RESERVED_DOCUMENT_FIELDS.join(", ")
        ));
    }
    None
}

fn check_aggregate_inputs(errors: &mut Errors, at: &str, a: &AggregateSpec) {
    let op = a.op.as_str();
    match (&a.field, a.op.needs_field()) {
        (None, true) => errors.push(
            format!("{at}.field"),
            format!("{op} needs field, the dotted path of the value it reads (e.g. field: amount)"),
        ),
        (Some(_), false) => errors.push(
            format!("{at}.field"),
            "count takes no field (it counts records); to count records where a field is present, \
             remove field and add a where condition, e.g. where: \"has(meta.user_id)\"",
        ),
        (Some(field), true) => {
            errors.field_path(&format!("{at}.field"), field);
        }
        (None, false) => {}
    }
    if let Some(condition) = &a.where_ {
        errors.cel(&format!("{at}.where"), condition);
    }
    let path = format!("{at}.percentile");
    match (a.op, a.percentile) {
        (AggregateOp::ApproxPercentile, None) => {
            errors
                .push(path, "approx_percentile needs percentile, a number in (0, 1) such as 0.95");
        }
        (AggregateOp::ApproxPercentile, Some(q)) if !(q > 0.0 && q < 1.0) => {
            let hint = if q > 1.0 && q < 100.0 {
                format!("; for the {q}th percentile write {}", q / 100.0)
            } else {
                String::new()
            };
            errors.push(path, format!("percentile {q} is not in (0, 1){hint}"));
        }
        (AggregateOp::ApproxPercentile, Some(_)) | (_, None) => {}
        (_, Some(_)) => errors.push(
            path,
            format!(
                "percentile applies only to approx_percentile; remove it from this {op} aggregate"
            ),
        ),
    }
}

fn check_sink(errors: &mut Errors, sink: &SinkSpec, version: Option<&str>) {
    const AT: &str = "spec.sink.elasticsearch";
    let es = &sink.elasticsearch;
    if let Some(problem) = url_problem(&es.url) {
        errors.push(format!("{AT}.url"), problem);
    }
    let alias_path = format!("{AT}.alias");
    match alias_problem(&es.alias) {
        Some(problem) => errors.push(&alias_path, problem),
        // With today's bounds a valid alias and a valid version always make a valid index;
        // checking the combination keeps that true if either bound changes.
        None => {
            let index = version.map(|v| index_name_for(&es.alias, v));
            if let Some(problem) = index.as_deref().and_then(index_name_problem) {
                errors.push(&alias_path, format!("the index <alias>-<version>: {problem}"));
            }
        }
    }
    if es.credentials_secret.as_deref().is_some_and(str::is_empty) {
        errors
            .push(format!("{AT}.credentialsSecret"), "is empty; name a Secret or remove the field");
    }
}

fn url_problem(url: &str) -> Option<String> {
    let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else {
        return Some(format!(
            "{url:?} is not an http(s) URL; write e.g. http://elasticsearch:9200"
        ));
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') || url.chars().any(char::is_whitespace) {
        return Some(format!("{url:?} has no host; write e.g. http://elasticsearch:9200"));
    }
    None
}

/// Elasticsearch's rules for an index name: lowercase, none of `*?"<>|/\ ,#:`, not starting
/// with `-`, `_` or `+`, not `.` or `..`, at most 255 bytes.
fn index_name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name == "." || name == ".." {
        return Some(format!("{name:?} is not an index name"));
    }
    if name.len() > MAX_INDEX_NAME_BYTES {
        return Some(format!("{name:?} is longer than {MAX_INDEX_NAME_BYTES} bytes"));
    }
    if name.chars().any(char::is_uppercase) {
        return Some(format!(
            "{name:?} has uppercase letters; Elasticsearch index names are lowercase, write {:?}",
            name.to_lowercase()
        ));
    }
    if let Some(c) = name.chars().find(|c| INDEX_FORBIDDEN_CHARS.contains(c)) {
        return Some(format!(
            "{name:?} contains {c:?}; index names cannot contain any of * ? \" < > | / \\ , # : \
             or a space"
        ));
    }
    if name.starts_with(['-', '_', '+']) {
        return Some(format!("{name:?} must not start with '-', '_' or '+'"));
    }
    None
}

/// The alias follows the index-name rules, narrowed to the schema's pattern
/// `^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$` so `kappa run` and the API server accept the same aliases.
fn alias_problem(alias: &str) -> Option<String> {
    if alias.is_empty() {
        return Some("is empty; name the alias readers query, e.g. tx-stats".into());
    }
    if alias.chars().count() > MAX_ALIAS_LEN {
        return Some(format!("{alias:?} is longer than {MAX_ALIAS_LEN} characters"));
    }
    if let Some(problem) = index_name_problem(alias) {
        return Some(problem);
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !alias.chars().all(|c| allowed(c) || matches!(c, '-' | '_' | '.')) {
        return Some(format!(
            "{alias:?} may contain only lowercase letters, digits, '-', '_' and '.'"
        ));
    }
    if !alias.starts_with(allowed) || !alias.ends_with(allowed) {
        return Some(format!("{alias:?} must start and end with a lowercase letter or digit"));
    }
    None
}

fn check_engine(errors: &mut Errors, engine: &EngineSpec) {
    if let Some(image) = &engine.image {
        if image.is_empty() || image.chars().any(char::is_whitespace) {
            errors.push(
                "spec.engine.image",
                format!("{image:?} is not an image reference; write e.g. registry/kappa-engine:0.1.0 or remove it"),
            );
        }
    }
    if let Some(replicas) = engine.replicas {
        if !(0..=MAX_REPLICAS).contains(&replicas) {
            errors.push("spec.engine.replicas", format!("{replicas} is not in 0..={MAX_REPLICAS}"));
        }
    }
}

fn check_promotion(errors: &mut Errors, promotion: &PromotionSpec) {
    if promotion.max_lag < 0 {
        errors.push(
            "spec.promotion.maxLag",
            format!("{} is negative; write a record count, e.g. 1000", promotion.max_lag),
        );
    }
    errors.duration("spec.promotion.maxDelay", &promotion.max_delay, false);
    errors.duration("spec.promotion.stableFor", &promotion.stable_for, false);
    if let Some(verify) = &promotion.verify {
        let pct = verify.max_doc_count_diff_percent;
        if !(0.0..=100.0).contains(&pct) {
            errors.push(
                "spec.promotion.verify.maxDocCountDiffPercent",
                format!("{pct} is not a percentage in 0..=100; write e.g. 2 for 2%"),
            );
        }
    }
}

fn check_retention(errors: &mut Errors, retention: &RetentionSpec) {
    if !(0..=MAX_KEEP_VERSIONS).contains(&retention.keep_versions) {
        errors.push(
            "spec.retention.keepVersions",
            format!("{} is not in 0..={MAX_KEEP_VERSIONS}", retention.keep_versions),
        );
    }
    errors.duration("spec.retention.warmFor", &retention.warm_for, false);
}

/// `parent.key`, or `parent[key]` when the key is not a plain identifier.
fn map_key_path(parent: &str, key: &str) -> String {
    if is_identifier(key) {
        format!("{parent}.{key}")
    } else {
        format!("{parent}[{key}]")
    }
}

/// `^[A-Za-z_][A-Za-z0-9_]*$`
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Strict RFC 3339 date-time: `YYYY-MM-DDTHH:MM:SS(.frac)?(Z|±HH:MM)`, with range checks
/// (leap years, leap second 60).
fn is_rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    let number = |from: usize, to: usize| -> Option<u32> {
        b.get(from..to)?
            .iter()
            .try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    };
    let separators = b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't')
        && b[13] == b':'
        && b[16] == b':';
    if !separators {
        return false;
    }
    let fields =
        (number(0, 4), number(5, 7), number(8, 10), number(11, 13), number(14, 16), number(17, 19));
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = fields
    else {
        return false;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    if day == 0 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
        return false;
    }
    let mut rest = &b[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let digits = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return false;
        }
        rest = &fraction[digits..];
    }
    match rest {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            let two = |a: u8, b: u8| {
                (a.is_ascii_digit() && b.is_ascii_digit()).then(|| (a - b'0') * 10 + (b - b'0'))
            };
            matches!((two(*h1, *h2), two(*m1, *m2)), (Some(h), Some(m)) if h <= 23 && m <= 59)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    //! Branches the fixtures in `crds/fixtures/invalid` do not reach.

    use super::*;
    use crate::load::load_manifest;

    fn reference() -> StreamJob {
        load_manifest(crate::REFERENCE_JOB_YAML).expect("the reference job is valid")
    }

    fn paths(job: &StreamJob) -> Vec<String> {
        validate(job).into_iter().map(|e| e.path).collect()
    }

    #[test]
    fn a_job_name_longer_than_a_label_value_is_refused() {
        let mut job = reference();
        job.metadata.name = Some("j".repeat(64));
        assert_eq!(paths(&job), ["metadata.name"]);
        job.metadata.name = Some("j".repeat(63));
        assert!(validate(&job).is_empty());
    }

    #[test]
    fn rfc3339_shapes_and_ranges() {
        for ok in [
            "2024-01-01T00:00:00Z",
            "2024-02-29T23:59:60.123456789+02:00",
            "1999-12-31t23:59:59z",
            "2024-06-30T12:00:00-07:30",
        ] {
            assert!(is_rfc3339(ok), "{ok}");
        }
        for bad in [
            "2024-01-01",
            "2024-01-01 00:00:00Z",
            "2024-01-01T00:00:00",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+0200",
            "2024-01-01T00:00:00+24:00",
            "1704067200000",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }

    #[test]
    fn reports_every_problem_in_field_order() {
        let mut job = reference();
        job.spec.version = "-v2".into();
        job.spec.pipeline.max_lateness = "3 days".into();
        job.spec.pipeline.aggregates[0].percentile = Some(0.5);
        job.spec.sink.elasticsearch.url = "elasticsearch:9200".into();
        job.spec.engine.replicas = Some(-1);
        job.spec.promotion.max_lag = -5;
        job.spec.retention.keep_versions = -1;
        job.spec.active_version = Some("v1_old".into());
        assert_eq!(
            paths(&job),
            [
                "spec.version",
                "spec.pipeline.maxLateness",
                "spec.pipeline.aggregates[0].percentile",
                "spec.sink.elasticsearch.url",
                "spec.engine.replicas",
                "spec.promotion.maxLag",
                "spec.retention.keepVersions",
                "spec.activeVersion",
            ]
        );
    }

    #[test]
    fn window_and_duration_edges() {
        let mut job = reference();
        job.spec.pipeline.window.tumbling = Some("0s".into());
        assert_eq!(paths(&job), ["spec.pipeline.window.tumbling"]);

        job.spec.pipeline.window.tumbling = None;
        job.spec.pipeline.window.hopping =
            Some(crate::spec::HoppingSpec { size: "1m".into(), slide: "5m".into() });
        let errors = validate(&job);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "spec.pipeline.window.hopping.slide");
        assert!(errors[0].message.contains("longer than size"), "{}", errors[0].message);

        job.spec.pipeline.window.hopping =
            Some(crate::spec::HoppingSpec { size: "1h".into(), slide: "90s".into() });
        assert!(validate(&job).is_empty(), "90s divides 1h");

        job.spec.promotion.stable_for = " 60s".into();
        assert_eq!(paths(&job), ["spec.promotion.stableFor"]);
    }

    #[test]
    fn aggregate_name_rules() {
        let mut job = reference();
        let aggs = &mut job.spec.pipeline.aggregates;
        aggs[0].name = "final".into();
        aggs[1].name = "2x".into();
        aggs[2].name = "latency_max".into(); // collides with aggregates[3]
        job.spec.pipeline.derived.insert("users".into(), "user.id".into());
        let errors = validate(&job);
        let got: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            got,
            [
                "spec.pipeline.aggregates[0].name",
                "spec.pipeline.aggregates[1].name",
                "spec.pipeline.aggregates[3].name",
                "spec.pipeline.aggregates[6].name",
            ]
        );
        assert!(errors[2].message.contains("aggregates[2]"), "{}", errors[2].message);
        assert!(errors[3].message.contains("derived"), "{}", errors[3].message);
    }

    #[test]
    fn percentile_hint_names_the_fraction() {
        let mut job = reference();
        job.spec.pipeline.aggregates[7].percentile = Some(95.0);
        let errors = validate(&job);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.contains("write 0.95"), "{}", errors[0].message);
    }

    #[test]
    fn alias_and_index_rules() {
        for (alias, fragment) in [
            ("Tx-Stats", "write \"tx-stats\""),
            ("tx stats", "space"),
            ("_tx", "must not start"),
            ("tx.", "start and end"),
            ("tx=stats", "only lowercase"),
        ] {
            assert_eq!(alias_problem(alias).map(|m| m.contains(fragment)), Some(true), "{alias}");
        }
        assert!(index_name_problem(&"a".repeat(256)).is_some());
        assert!(index_name_problem("tx-stats-v1").is_none());
    }

    #[test]
    fn kafka_source_rules() {
        let mut job = reference();
        job.spec.source.kafka.bootstrap_servers = "kafka-0:9092, kafka-1".into();
        job.spec.source.kafka.topic = "tx logs".into();
        let props = &mut job.spec.source.kafka.consumer_properties;
        props.insert("fetch.max.bytes".into(), "1048576".into());
        props.insert("auto.offset.reset".into(), "latest".into());
        props.insert("sasl.oauthbearer.client.secret".into(), "x".into());
        assert_eq!(
            paths(&job),
            [
                "spec.source.kafka.bootstrapServers",
                "spec.source.kafka.topic",
                "spec.source.kafka.consumerProperties[auto.offset.reset]",
                "spec.source.kafka.consumerProperties[sasl.oauthbearer.client.secret]",
            ]
        );
    }

    #[test]
    fn derived_names_and_field_paths() {
        let mut job = reference();
        job.spec.pipeline.derived.insert("amount-eur".into(), "amount * 0.9".into());
        job.spec.pipeline.event_time.field = "meta..ts".into();
        job.spec.pipeline.group_by.push("server".into());
        job.spec.pipeline.group_by.push("window_end".into());
        assert_eq!(
            paths(&job),
            [
                "spec.pipeline.eventTime.field",
                "spec.pipeline.derived[amount-eur]",
                "spec.pipeline.groupBy[2]",
                "spec.pipeline.groupBy[3]",
            ]
        );
    }

    #[test]
    fn cel_errors_carry_the_parser_text() {
        let mut job = reference();
        job.spec.pipeline.derived.insert("eur".into(), "amount *".into());
        let errors = validate(&job);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "spec.pipeline.derived.eur");
        assert!(errors[0].message.contains("not a valid CEL expression"), "{}", errors[0].message);
        assert!(errors[0].message.contains("line 1"), "{}", errors[0].message);
    }
}
