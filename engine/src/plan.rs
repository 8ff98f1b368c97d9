//! The compiled form of a job: slots, timestamp readers, CEL programs, window shape and
//! aggregates, built once from a validated `StreamJob` and shared by every worker; and
//! [`validate`], the check that a job will compile, which every entry point runs.

use kappa_crds::duration::parse_duration_millis;
use kappa_crds::load::{load_manifest_with, ManifestError};
use kappa_crds::{AggregateOp, FieldError, SinkMode, StreamJob, TimeField, TimeFormat};

use crate::aggregate::AggKind;
use crate::cel::{self, Program};
use crate::decode::{DecodeError, PathTree};
use crate::fields::FieldTable;
use crate::time::{parse_rfc3339_cached, seconds_to_millis, EpochMillis, MinuteCache};
use crate::value::Value;
use crate::window::WindowShape;

/// Why a job could not be compiled. [`validate`] reports all of these first; this is the
/// engine's own guard, naming the same field paths.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The manifest failed semantic validation.
    #[error("invalid job:\n{0}")]
    Invalid(String),
    /// A CEL expression did not compile.
    #[error("{path}: {source}")]
    Cel {
        /// Field path of the expression.
        path: String,
        /// The compiler's reason.
        source: cel::CelError,
    },
}

/// How to read one timestamp from a decoded record.
#[derive(Debug, Clone)]
pub struct TimeReader {
    /// Dotted path, for error messages.
    pub field: String,
    /// Slot holding the raw value.
    pub slot: usize,
    /// Encoding.
    pub format: TimeFormat,
}

impl TimeReader {
    fn new(tf: &TimeField, fields: &mut FieldTable) -> Self {
        Self { field: tf.field.clone(), slot: fields.slot_for_path(&tf.field), format: tf.format }
    }

    /// Reads the timestamp as epoch milliseconds; `cache` is this field's [`MinuteCache`] (one
    /// per reader and worker).
    #[inline]
    pub fn read(
        &self,
        slots: &[Value<'_>],
        cache: &mut MinuteCache,
    ) -> Result<EpochMillis, DecodeError> {
        let value = &slots[self.slot];
        let bad = |text: &str| DecodeError::BadTimestamp {
            field: self.field.clone(),
            format: self.format_name(),
            value: text.chars().take(64).collect(),
        };
        match (self.format, value) {
            (_, Value::Missing | Value::Null) => Err(DecodeError::MissingField(self.field.clone())),
            (TimeFormat::Rfc3339, Value::Str(s)) => {
                parse_rfc3339_cached(s.as_bytes(), cache).map_err(|_| bad(s))
            }
            (TimeFormat::EpochMillis, Value::Int(i)) => Ok(*i),
            (TimeFormat::EpochMillis, Value::Float(f)) => {
                seconds_to_millis(*f / 1_000.0).map_err(|_| bad(&f.to_string()))
            }
            (TimeFormat::EpochSeconds, Value::Int(i)) => {
                i.checked_mul(1_000).ok_or_else(|| bad(&i.to_string()))
            }
            (TimeFormat::EpochSeconds, Value::Float(f)) => {
                seconds_to_millis(*f).map_err(|_| bad(&f.to_string()))
            }
            (TimeFormat::EpochMillis | TimeFormat::EpochSeconds, Value::Str(s)) => {
                let secs_per_unit = if self.format == TimeFormat::EpochMillis { 1e-3 } else { 1.0 };
                s.trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(|n| seconds_to_millis(n * secs_per_unit).ok())
                    .ok_or_else(|| bad(s))
            }
            (_, other) => Err(DecodeError::WrongType {
                field: self.field.clone(),
                expected: self.expected_type(),
                found: other.type_name(),
            }),
        }
    }

    fn format_name(&self) -> &'static str {
        match self.format {
            TimeFormat::Rfc3339 => "RFC 3339",
            TimeFormat::EpochMillis => "epochMillis",
            TimeFormat::EpochSeconds => "epochSeconds",
        }
    }

    fn expected_type(&self) -> &'static str {
        match self.format {
            TimeFormat::Rfc3339 => "an RFC 3339 string",
            _ => "a number",
        }
    }
}

/// One aggregate of the job.
#[derive(Debug)]
pub struct AggregatePlan {
    /// Output field name.
    pub name: String,
    /// Function.
    pub kind: AggKind,
    /// Input slot (none for `count`).
    pub field: Option<(String, usize)>,
    /// Optional `where` condition.
    pub condition: Option<Program>,
}

/// A derived field: a slot computed by a CEL program.
#[derive(Debug)]
pub struct DerivedPlan {
    /// Field name.
    pub name: String,
    /// Slot it fills.
    pub slot: usize,
    /// Expression.
    pub program: Program,
}

/// The compiled job.
#[derive(Debug)]
pub struct JobPlan {
    /// Job name (part of every document id).
    pub job: String,
    /// Job version.
    pub version: String,
    /// Slots.
    pub fields: FieldTable,
    /// The record paths to extract.
    pub paths: PathTree,
    /// Event time.
    pub event_time: TimeReader,
    /// Log time from the record; `None` means the source's record timestamp.
    pub log_time: Option<TimeReader>,
    /// Lateness bound in milliseconds.
    pub max_lateness_ms: i64,
    /// Derived fields, in declaration order.
    pub derived: Vec<DerivedPlan>,
    /// Filter.
    pub filter: Option<Program>,
    /// Group-by keys: output name and slot.
    pub group_by: Vec<(String, usize)>,
    /// Window shape.
    pub window: WindowShape,
    /// Aggregates, in output order.
    pub aggregates: Vec<AggregatePlan>,
    /// Sink mode.
    pub mode: SinkMode,
    /// Fingerprint of the logic (snapshots from another logic are refused).
    pub fingerprint: u64,
    /// `,"name":` of each document member after the window bounds: the groupBy keys, then
    /// the aggregates. Escaped once here rather than for every document (where it was a
    /// quarter of the cost of building one).
    pub(crate) member_leads: Box<[Box<[u8]>]>,
}

/// `,"name":` for each groupBy key, then each aggregate (see [`JobPlan::member_leads`]).
fn member_leads(group_by: &[(String, usize)], aggregates: &[AggregatePlan]) -> Box<[Box<[u8]>]> {
    let names = group_by.iter().map(|(name, _)| name).chain(aggregates.iter().map(|a| &a.name));
    names
        .map(|name| {
            let mut lead = vec![b','];
            serde_json::to_writer(&mut lead, name).expect("names serialize");
            lead.push(b':');
            lead.into_boxed_slice()
        })
        .collect()
}

impl JobPlan {
    /// Validates `job` (as [`validate`] does) and compiles it.
    pub fn compile(job: &StreamJob) -> Result<Self, PlanError> {
        let errors = validate(job);
        if !errors.is_empty() {
            let text = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
            return Err(PlanError::Invalid(text));
        }
        let spec = &job.spec;
        let p = &spec.pipeline;
        let mut fields = FieldTable::new();
        let compile = |src: &str, path: String, fields: &mut FieldTable| {
            cel::compile(src, fields).map_err(|source| PlanError::Cel { path, source })
        };

        // Derived names are declared first so expressions that mention them read the slot.
        let slots: Vec<usize> = p.derived.keys().map(|n| fields.declare_derived(n)).collect();
        let mut derived = Vec::new();
        for ((name, src), slot) in p.derived.iter().zip(slots) {
            let program = compile(src, format!("spec.pipeline.derived.{name}"), &mut fields)?;
            derived.push(DerivedPlan { name: name.clone(), slot, program });
        }
        let filter = p
            .filter
            .as_deref()
            .map(|src| compile(src, "spec.pipeline.filter".into(), &mut fields))
            .transpose()?;
        let event_time = TimeReader::new(&p.event_time, &mut fields);
        let log_time = p.log_time.as_ref().map(|tf| TimeReader::new(tf, &mut fields));
        let group_by: Vec<(String, usize)> =
            p.group_by.iter().map(|k| (k.clone(), fields.slot_for_path(k))).collect();
        let mut aggregates = Vec::new();
        for (i, a) in p.aggregates.iter().enumerate() {
            let kind = match a.op {
                AggregateOp::Count => AggKind::Count,
                AggregateOp::Sum => AggKind::Sum,
                AggregateOp::Min => AggKind::Min,
                AggregateOp::Max => AggKind::Max,
                AggregateOp::Avg => AggKind::Avg,
                AggregateOp::ApproxDistinct => AggKind::ApproxDistinct,
                AggregateOp::ApproxPercentile => {
                    AggKind::ApproxPercentile(a.percentile.unwrap_or(0.5))
                }
            };
            let field = a.field.as_ref().map(|f| (f.clone(), fields.slot_for_path(f)));
            let condition = a
                .where_
                .as_deref()
                .map(|src| {
                    compile(src, format!("spec.pipeline.aggregates[{i}].where"), &mut fields)
                })
                .transpose()?;
            aggregates.push(AggregatePlan { name: a.name.clone(), kind, field, condition });
        }
        let millis = |text: &str| parse_duration_millis(text).expect("validated duration");
        let window = match (&p.window.tumbling, &p.window.hopping) {
            (Some(size), _) => WindowShape::tumbling(millis(size)),
            (None, Some(h)) => WindowShape::hopping(millis(&h.size), millis(&h.slide)),
            (None, None) => unreachable!("validation requires a window"),
        };
        let fingerprint = {
            let logic =
                serde_json::to_vec(&(&spec.pipeline, &spec.sink.mode)).expect("spec serializes");
            xxhash_rust::xxh3::xxh3_64(&logic)
        };
        Ok(Self {
            job: job.metadata.name.clone().unwrap_or_default(),
            version: spec.version.clone(),
            paths: PathTree::from_fields(&fields),
            fields,
            event_time,
            log_time,
            max_lateness_ms: millis(&p.max_lateness),
            derived,
            filter,
            window,
            mode: spec.sink.mode,
            fingerprint,
            member_leads: member_leads(&group_by, &aggregates),
            group_by,
            aggregates,
        })
    }

    /// Number of slots a decoded record has.
    pub fn slot_count(&self) -> usize {
        self.fields.len()
    }
}

/// Every problem that keeps `job` from running, each with its field path: the manifest's rules
/// ([`kappa_crds::validate`], which only parses CEL) and every expression this engine's CEL
/// compiler refuses, all of them rather than the first. `kappa validate`, `kappa up` and the
/// operator's admission all call this, so a job they accept is one [`JobPlan::compile`] accepts.
///
/// ```
/// let mut job = kappa_crds::load_manifest(kappa_crds::REFERENCE_JOB_YAML).unwrap();
/// job.spec.pipeline.filter = Some("tags.exists(t, t == 'test')".into());
/// assert!(kappa_crds::validate(&job).is_empty(), "it parses");
/// let errors = kappa_engine::plan::validate(&job);
/// assert_eq!(errors[0].path, "spec.pipeline.filter");
/// assert!(errors[0].message.starts_with("macro `exists` is not supported"));
/// ```
pub fn validate(job: &StreamJob) -> Vec<FieldError> {
    let mut errors = kappa_crds::validate(job);
    let pipeline = &job.spec.pipeline;
    // As in `JobPlan::compile`: derived names first, so expressions may read them.
    let mut fields = FieldTable::new();
    for name in pipeline.derived.keys() {
        fields.declare_derived(name);
    }
    for (path, source) in kappa_crds::validate::cel_expressions(pipeline) {
        match cel::compile(source, &mut fields) {
            // The manifest's rules parse with the same parser and have reported it already.
            Ok(_) | Err(cel::CelError::Parse { .. }) => {}
            Err(e) => errors.push(FieldError::new(path, e.to_string())),
        }
    }
    errors
}

/// Parses a StreamJob manifest and [`validate`]s it: [`kappa_crds::load_manifest`] with the
/// engine's verdict on its expressions. Every command that reads a job file loads it with this.
pub fn load_manifest(yaml: &str) -> Result<StreamJob, ManifestError> {
    load_manifest_with(yaml, validate)
}
