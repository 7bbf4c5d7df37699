//! The `Task` aggregate: a generation run (augmentation or preprocessing) of
//! one project, from request to its end state. Workers do the pixel work in
//! batches; the core records each batch's results once (the batch number is
//! the idempotency key) and ends the task when every batch is in.
//!
//! A preprocessing run whose methods need a reference image the user did not
//! pick measures first (PREPARING_DATA): workers report each source's metric
//! in measuring batches, recorded once each like the others, and the last one
//! fixes the references (the median image per method) before the generation
//! batches go out.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::convert::count_u32;
use crate::error::DomainError;
use crate::generation::{Overrides, SampledMethod};
use crate::project::data::{ClassType, DataItem};

pub mod request;

pub use request::{request, GenerationRequest, ProjectImages, RequestedBy, RunLimits};

pub const STREAM_TYPE: &str = "task";

/// The subject of generation jobs for a worker pool.
pub fn job_subject(pool: &str) -> String {
    format!("tessera.jobs.generate.{pool}")
}

/// Where workers report batch results.
pub const RESULTS_SUBJECT: &str = "tessera.results.generate";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TaskKind {
    Augment,
    Preprocess,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Augment => "AUGMENT",
            TaskKind::Preprocess => "PREPROCESS",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    Pending,
    PreparingData,
    Running,
    Finish,
    FinishError,
    Error,
    Cancel,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "PENDING",
            TaskStatus::PreparingData => "PREPARING_DATA",
            TaskStatus::Running => "RUNNING",
            TaskStatus::Finish => "FINISH",
            TaskStatus::FinishError => "FINISH_ERROR",
            TaskStatus::Error => "ERROR",
            TaskStatus::Cancel => "CANCEL",
        }
    }

    /// The status a read model stores (its `as_str`).
    pub fn parse(s: &str) -> Option<TaskStatus> {
        [
            TaskStatus::Pending,
            TaskStatus::PreparingData,
            TaskStatus::Running,
            TaskStatus::Finish,
            TaskStatus::FinishError,
            TaskStatus::Error,
            TaskStatus::Cancel,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskStatus::Finish | TaskStatus::FinishError | TaskStatus::Error | TaskStatus::Cancel
        )
    }
}

/// Which part of a task a job or result belongs to. Batch numbers count
/// within a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Make the outputs.
    #[default]
    Generate,
    /// Measure the sources' reference metrics (no outputs).
    Measure,
}

impl Stage {
    /// The suffix that keeps a stage's dedup ids apart: `<task>:<batch>`
    /// for generation, `<task>:m<batch>` for measuring.
    pub fn batch_id(self, task_id: &str, batch_no: u32) -> String {
        match self {
            Stage::Generate => format!("{task_id}:{batch_no}"),
            Stage::Measure => format!("{task_id}:m{batch_no}"),
        }
    }
}

/// What a worker does for one batch: the sources, and per output image the
/// steps (methods with their sampled parameters) and where it goes. A
/// measuring job (`stage` Measure) has items without outputs and names the
/// methods whose metric to measure in `measure`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateJob {
    pub task_id: String,
    pub batch_no: u32,
    pub kind: TaskKind,
    pub items: Vec<JobItem>,
    /// Object key of the reference image per method that uses one.
    #[serde(default)]
    pub references: BTreeMap<String, String>,
    #[serde(default)]
    pub stage: Stage,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measure: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobItem {
    pub filename: String,
    /// Object key (without the bucket) of the source.
    pub key: String,
    pub classtype: ClassType,
    pub outputs: Vec<JobOutput>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobOutput {
    pub filename: String,
    /// `<bucket>/…` as data items record it.
    pub s3_key: String,
    /// Object key (without the bucket).
    pub key: String,
    pub steps: Vec<SampledMethod>,
}

/// What a worker reports for one batch. `error` set means the whole batch
/// failed for good (it was dead-lettered) and the task must end in ERROR.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateResult {
    pub task_id: String,
    pub batch_no: u32,
    pub outputs: Vec<DataItem>,
    pub failures: Vec<ImageFailure>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub stage: Stage,
    /// A measuring batch's metrics, one entry per source it could read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<Measurement>,
}

impl GenerateResult {
    /// The report of a job that failed for good.
    pub fn failed(job: &GenerateJob, error: String) -> GenerateResult {
        GenerateResult {
            task_id: job.task_id.clone(),
            batch_no: job.batch_no,
            outputs: Vec::new(),
            failures: Vec::new(),
            error: Some(error),
            stage: job.stage,
            measurements: Vec::new(),
        }
    }
}

/// One source's metrics (method id → value) as a measuring batch found them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub filename: String,
    pub metrics: BTreeMap<String, f64>,
}

/// One selected source image and the split it fell into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub filename: String,
    pub s3_key: String,
    pub classtype: ClassType,
}

/// A project image a reference may be chosen from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub filename: String,
    pub s3_key: String,
}

/// An image the worker could not turn into outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFailure {
    pub filename: String,
    pub reason: String,
}

// The request is the large one, and there is one per task stream: boxing
// it would add an indirection to every match for no memory worth having.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum TaskEvent {
    /// Everything a worker (and a replay) needs: the seed, the split, the
    /// methods and parameters, the batches.
    GenerationRequested {
        task_id: String,
        project_id: String,
        owner: String,
        s3_prefix: String,
        kind: TaskKind,
        /// Method ids in run order (preprocessing: the resolved plan).
        methods: Vec<String>,
        /// Parameters the user fixed ("expert mode").
        #[serde(default)]
        overrides: Overrides,
        /// Reference image (`s3_key`) per PRE method that uses one, as the
        /// user picked it.
        #[serde(default)]
        references: BTreeMap<String, String>,
        /// Methods whose reference is the project's image with the median
        /// metric, found by measuring before the first generation batch.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        measure: Vec<String>,
        /// The project's images (of the requested data type) measured for
        /// them: all of them, not only the selection, so every run over any
        /// part of the project normalises to the same images.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        candidates: Vec<Candidate>,
        seed: u64,
        num_aug_p_img: u32,
        data_number: [u32; 3],
        /// Every selected source with its split.
        sources: Vec<Source>,
        /// Indexes into `sources` of the images this task processes.
        to_process: Vec<u32>,
        batch_size: u32,
        number_gen_images: u32,
        at: i64,
    },
    TaskDispatched {
        at: i64,
    },
    /// One measuring batch's metrics (sources it could not read are left
    /// out: their generation batch reports them).
    SourcesMeasured {
        batch_no: u32,
        measurements: Vec<Measurement>,
        at: i64,
    },
    /// The references the measuring found (`s3_key` per method), recorded
    /// with the last measuring batch.
    ReferencesChosen {
        references: BTreeMap<String, String>,
        at: i64,
    },
    BatchRecorded {
        batch_no: u32,
        outputs: Vec<DataItem>,
        failures: Vec<ImageFailure>,
        at: i64,
    },
    TaskFinished {
        status: TaskStatus,
        at: i64,
    },
    TaskFailed {
        reason: String,
        at: i64,
    },
    TaskCancelled {
        at: i64,
    },
    /// Outputs a batch wrote after the task was cancelled: never recorded
    /// as data items; the janitor removes their objects.
    OutputsDiscarded {
        batch_no: u32,
        /// `<bucket>/…` keys, as data items record them.
        s3_keys: Vec<String>,
        at: i64,
    },
}

impl crate::aggregate::DomainEvent for TaskEvent {
    const STREAM_TYPE: &'static str = STREAM_TYPE;

    fn event_type(&self) -> &'static str {
        match self {
            TaskEvent::GenerationRequested { .. } => "GenerationRequested",
            TaskEvent::TaskDispatched { .. } => "TaskDispatched",
            TaskEvent::SourcesMeasured { .. } => "SourcesMeasured",
            TaskEvent::ReferencesChosen { .. } => "ReferencesChosen",
            TaskEvent::BatchRecorded { .. } => "BatchRecorded",
            TaskEvent::TaskFinished { .. } => "TaskFinished",
            TaskEvent::TaskFailed { .. } => "TaskFailed",
            TaskEvent::TaskCancelled { .. } => "TaskCancelled",
            TaskEvent::OutputsDiscarded { .. } => "OutputsDiscarded",
        }
    }
}

/// The folded state of one task.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub task_id: String,
    pub project_id: String,
    pub owner: String,
    pub s3_prefix: String,
    pub kind: TaskKind,
    pub status: TaskStatus,
    pub batches: u32,
    pub recorded: BTreeSet<u32>,
    /// Measuring batches (0: nothing to measure) and those recorded.
    pub measure_batches: u32,
    pub measured: BTreeSet<u32>,
    /// The methods measured for, and every source's metrics so far.
    pub measure: Vec<String>,
    pub measurements: Vec<Measurement>,
    /// The images measured, for turning a measured file name into its key.
    pub candidates: Vec<Candidate>,
    /// Reference (`s3_key`) per method: the user's picks, then the chosen.
    pub references: BTreeMap<String, String>,
    pub references_chosen: bool,
    pub number_gen_images: u32,
    pub number_finished: u32,
    pub failures: u32,
    /// Every output recorded so far (`s3_key`s), for cancel.
    pub outputs: Vec<DataItem>,
    /// Batches whose late outputs (after a cancel) were discarded.
    pub discarded: BTreeSet<u32>,
}

/// How many batches `n` images make.
pub fn batch_count(n: usize, batch_size: u32) -> u32 {
    let size = batch_size.max(1) as usize;
    count_u32(n.div_ceil(size))
}

impl crate::aggregate::Aggregate for Task {
    type Event = TaskEvent;

    fn fold(_: &str, events: &[TaskEvent]) -> Option<Task> {
        Task::fold(events)
    }
}

impl Task {
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a TaskEvent>) -> Option<Task> {
        let mut iter = events.into_iter();
        let mut t = match iter.next()? {
            TaskEvent::GenerationRequested {
                task_id,
                project_id,
                owner,
                s3_prefix,
                kind,
                to_process,
                batch_size,
                number_gen_images,
                references,
                measure,
                candidates,
                ..
            } => Task {
                task_id: task_id.clone(),
                project_id: project_id.clone(),
                owner: owner.clone(),
                s3_prefix: s3_prefix.clone(),
                kind: *kind,
                status: TaskStatus::PreparingData,
                batches: batch_count(to_process.len(), *batch_size),
                recorded: Default::default(),
                measure_batches: if measure.is_empty() {
                    0
                } else {
                    batch_count(candidates.len(), *batch_size)
                },
                measured: Default::default(),
                measure: measure.clone(),
                measurements: Vec::new(),
                candidates: candidates.clone(),
                references: references.clone(),
                references_chosen: false,
                number_gen_images: *number_gen_images,
                number_finished: 0,
                failures: 0,
                outputs: Vec::new(),
                discarded: BTreeSet::new(),
            },
            _ => return None,
        };
        for e in iter {
            match e {
                TaskEvent::GenerationRequested { .. } => {}
                TaskEvent::TaskDispatched { .. } => {
                    if t.status == TaskStatus::PreparingData {
                        t.status = TaskStatus::Running;
                    }
                }
                TaskEvent::SourcesMeasured {
                    batch_no,
                    measurements,
                    ..
                } => {
                    if t.measured.insert(*batch_no) {
                        t.measurements.extend(measurements.iter().cloned());
                    }
                }
                TaskEvent::ReferencesChosen { references, .. } => {
                    t.references.extend(references.clone());
                    t.references_chosen = true;
                }
                TaskEvent::BatchRecorded {
                    batch_no,
                    outputs,
                    failures,
                    ..
                } => {
                    t.recorded.insert(*batch_no);
                    t.number_finished += count_u32(outputs.len());
                    t.failures += count_u32(failures.len());
                    t.outputs.extend(outputs.iter().cloned());
                    if t.status == TaskStatus::PreparingData {
                        t.status = TaskStatus::Running;
                    }
                }
                TaskEvent::TaskFinished { status, .. } => t.status = *status,
                TaskEvent::TaskFailed { .. } => t.status = TaskStatus::Error,
                TaskEvent::TaskCancelled { .. } => t.status = TaskStatus::Cancel,
                TaskEvent::OutputsDiscarded { batch_no, .. } => {
                    t.discarded.insert(*batch_no);
                }
            }
        }
        Some(t)
    }

    /// Whether the task still waits for measuring batches (its generation
    /// batches cannot be planned yet).
    pub fn measuring(&self) -> bool {
        self.measure_batches > 0 && !self.references_chosen
    }

    /// Records a measuring batch's metrics once; the last one also chooses
    /// the references.
    pub fn record_measurements(
        &self,
        batch_no: u32,
        measurements: Vec<Measurement>,
        now: i64,
    ) -> Result<Vec<TaskEvent>, DomainError> {
        if self.status.is_final() || !self.measuring() || self.measured.contains(&batch_no) {
            return Ok(Vec::new());
        }
        if batch_no >= self.measure_batches {
            return Err(DomainError::Invalid(format!(
                "task {} has no measuring batch {batch_no}",
                self.task_id
            )));
        }
        let last = count_u32(self.measured.len()) + 1 == self.measure_batches;
        let chosen = last.then(|| {
            let all: Vec<&Measurement> = self
                .measurements
                .iter()
                .chain(measurements.iter())
                .collect();
            median_references(&self.measure, &all, &self.candidates)
        });
        let mut events = vec![TaskEvent::SourcesMeasured {
            batch_no,
            measurements,
            at: now,
        }];
        if let Some(references) = chosen {
            events.push(TaskEvent::ReferencesChosen {
                references,
                at: now,
            });
        }
        Ok(events)
    }

    /// Records a batch's results; a batch already recorded, or a task that
    /// has ended, records nothing (redelivered jobs are harmless). The last
    /// batch ends the task.
    pub fn record_batch(
        &self,
        batch_no: u32,
        outputs: Vec<DataItem>,
        failures: Vec<ImageFailure>,
        now: i64,
    ) -> Result<Vec<TaskEvent>, DomainError> {
        if self.status.is_final() || self.recorded.contains(&batch_no) {
            return Ok(Vec::new());
        }
        if self.measuring() {
            return Err(DomainError::Invalid(format!(
                "task {} is still measuring its sources",
                self.task_id
            )));
        }
        if batch_no >= self.batches {
            return Err(DomainError::Invalid(format!(
                "task {} has no batch {batch_no}",
                self.task_id
            )));
        }
        let failed = self.failures + count_u32(failures.len());
        let mut events = vec![TaskEvent::BatchRecorded {
            batch_no,
            outputs,
            failures,
            at: now,
        }];
        if count_u32(self.recorded.len()) + 1 == self.batches {
            events.push(TaskEvent::TaskFinished {
                status: if failed > 0 {
                    TaskStatus::FinishError
                } else {
                    TaskStatus::Finish
                },
                at: now,
            });
        }
        Ok(events)
    }

    /// Ends the task in ERROR (a batch kept failing), unless it has ended.
    pub fn fail(&self, reason: &str, now: i64) -> Vec<TaskEvent> {
        if self.status.is_final() {
            return Vec::new();
        }
        vec![TaskEvent::TaskFailed {
            reason: reason.to_owned(),
            at: now,
        }]
    }

    pub fn dispatched(&self, now: i64) -> Vec<TaskEvent> {
        if self.status == TaskStatus::PreparingData {
            vec![TaskEvent::TaskDispatched { at: now }]
        } else {
            Vec::new()
        }
    }

    /// The outputs of a batch that reported after the cancel, for the
    /// janitor (once per batch; nothing for a task that was not cancelled).
    pub fn discard_late(&self, batch_no: u32, outputs: &[DataItem], now: i64) -> Vec<TaskEvent> {
        if self.status != TaskStatus::Cancel
            || outputs.is_empty()
            || self.discarded.contains(&batch_no)
        {
            return Vec::new();
        }
        vec![TaskEvent::OutputsDiscarded {
            batch_no,
            s3_keys: outputs.iter().map(|o| o.s3_key.clone()).collect(),
            at: now,
        }]
    }

    pub fn cancel(&self, now: i64) -> Result<Vec<TaskEvent>, DomainError> {
        if self.status.is_final() {
            return Err(DomainError::Conflict(format!(
                "The task has already ended ({}).",
                self.status.as_str()
            )));
        }
        Ok(vec![TaskEvent::TaskCancelled { at: now }])
    }
}

/// The file name of output `n` of `source` in task `task_id`: unique within
/// the project (the task's short id) and keeping the source's extension.
pub fn output_name(source: &str, task_id: &str, n: Option<u32>) -> String {
    let (stem, ext) = match source.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, ext),
        _ => (source, "png"),
    };
    let short: String = task_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    match n {
        Some(n) => format!("{stem}_{short}_{n}.{ext}"),
        None => format!("{stem}_{short}.{ext}"),
    }
}

/// Per method, the source with the median metric (the lower median of an
/// even count; equal values are ordered by file name, so the choice is the
/// same whatever order the batches came in). A method no source could be
/// measured for gets no reference.
pub fn median_references(
    methods: &[String],
    measurements: &[&Measurement],
    candidates: &[Candidate],
) -> BTreeMap<String, String> {
    // Only the task's own candidates count, whatever a result names.
    let known: BTreeSet<&str> = candidates.iter().map(|c| c.filename.as_str()).collect();
    let mut chosen = BTreeMap::new();
    for method in methods {
        let mut values: Vec<(f64, &str)> = measurements
            .iter()
            .filter(|m| known.contains(m.filename.as_str()))
            .filter_map(|m| {
                let v = *m.metrics.get(method)?;
                v.is_finite().then_some((v, m.filename.as_str()))
            })
            .collect();
        values.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        let Some((_, filename)) = values.get(values.len().saturating_sub(1) / 2) else {
            continue;
        };
        if let Some(c) = candidates.iter().find(|c| c.filename == *filename) {
            chosen.insert(method.clone(), c.s3_key.clone());
        }
    }
    chosen
}

/// `<bucket>/key` → `key`, as workers address objects.
fn strip_bucket(key: &str, bucket: &str) -> String {
    key.strip_prefix(bucket)
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or(key)
        .to_owned()
}

/// The measuring jobs of a generation request: every candidate, in
/// batches, with the methods to measure for. None when nothing needs
/// measuring.
pub fn plan_measure_jobs(
    requested: &TaskEvent,
    bucket: &str,
) -> Result<Vec<GenerateJob>, DomainError> {
    let TaskEvent::GenerationRequested {
        task_id,
        kind,
        measure,
        candidates,
        batch_size,
        ..
    } = requested
    else {
        return Err(DomainError::Invalid("not a generation request".into()));
    };
    if measure.is_empty() {
        return Ok(Vec::new());
    }
    let items: Vec<JobItem> = candidates
        .iter()
        .map(|c| JobItem {
            filename: c.filename.clone(),
            key: strip_bucket(&c.s3_key, bucket),
            // Measuring makes no outputs; the split is not used.
            classtype: ClassType::Train,
            outputs: Vec::new(),
        })
        .collect();
    Ok(batches(
        GenerateJob {
            task_id: task_id.clone(),
            batch_no: 0,
            kind: *kind,
            items: Vec::new(),
            references: BTreeMap::new(),
            stage: Stage::Measure,
            measure: measure.clone(),
        },
        &items,
        *batch_size,
    ))
}

/// `items` cut into jobs of `batch_size`, numbered from 0, each like `job`.
fn batches(job: GenerateJob, items: &[JobItem], batch_size: u32) -> Vec<GenerateJob> {
    items
        .chunks(batch_size.max(1) as usize)
        .enumerate()
        .map(|(b, chunk)| GenerateJob {
            batch_no: count_u32(b),
            items: chunk.to_vec(),
            ..job.clone()
        })
        .collect()
}

/// The jobs of a generation request, batch by batch (the same request and
/// references always give the same jobs). `references` are the task's
/// (`Task::references`: the user's picks and the measured medians).
/// `bucket` is stripped from keys for the workers.
pub fn plan_jobs(
    requested: &TaskEvent,
    references: &BTreeMap<String, String>,
    bucket: &str,
) -> Result<Vec<GenerateJob>, DomainError> {
    let TaskEvent::GenerationRequested {
        task_id,
        s3_prefix,
        kind,
        methods,
        overrides,
        seed,
        num_aug_p_img,
        sources,
        to_process,
        batch_size,
        ..
    } = requested
    else {
        return Err(DomainError::Invalid("not a generation request".into()));
    };
    let specs = methods
        .iter()
        .map(|id| {
            crate::generation::find(id)
                .ok_or_else(|| DomainError::Invalid(format!("unknown method {id}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let method_kind = match kind {
        TaskKind::Augment => crate::generation::MethodKind::Augment,
        TaskKind::Preprocess => crate::generation::MethodKind::Preprocess,
    };
    let per_source = match kind {
        TaskKind::Augment => (*num_aug_p_img).max(1),
        TaskKind::Preprocess => 1,
    };
    let mut items = Vec::with_capacity(to_process.len());
    for (position, index) in to_process.iter().enumerate() {
        let source = sources
            .get(*index as usize)
            .ok_or_else(|| DomainError::Invalid(format!("no source {index}")))?;
        let outputs = (0..per_source)
            .map(|n| {
                let image_index = position as u64 * u64::from(per_source) + u64::from(n);
                let filename = output_name(
                    &source.filename,
                    task_id,
                    (*kind == TaskKind::Augment).then_some(n),
                );
                let s3_key = format!("{s3_prefix}/{task_id}/{filename}");
                JobOutput {
                    key: strip_bucket(&s3_key, bucket),
                    s3_key,
                    filename,
                    steps: crate::generation::plan_image(
                        method_kind,
                        &specs,
                        *seed,
                        image_index,
                        overrides,
                    ),
                }
            })
            .collect();
        items.push(JobItem {
            filename: source.filename.clone(),
            key: strip_bucket(&source.s3_key, bucket),
            classtype: source.classtype,
            outputs,
        });
    }
    let references: BTreeMap<String, String> = references
        .iter()
        .map(|(m, k)| (m.clone(), strip_bucket(k, bucket)))
        .collect();
    Ok(batches(
        GenerateJob {
            task_id: task_id.clone(),
            batch_no: 0,
            kind: *kind,
            items: Vec::new(),
            references,
            stage: Stage::Generate,
            measure: Vec::new(),
        },
        &items,
        *batch_size,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_status_reads_back_and_only_the_four_ends_are_final() {
        let finals: Vec<&str> = [
            "PENDING",
            "PREPARING_DATA",
            "RUNNING",
            "FINISH",
            "FINISH_ERROR",
            "ERROR",
            "CANCEL",
        ]
        .into_iter()
        .filter(|s| {
            let status = TaskStatus::parse(s).unwrap();
            assert_eq!(status.as_str(), *s);
            status.is_final()
        })
        .collect();
        assert_eq!(finals, ["FINISH", "FINISH_ERROR", "ERROR", "CANCEL"]);
        assert_eq!(TaskStatus::parse("DONE"), None);
    }

    fn requested(n: u32) -> TaskEvent {
        TaskEvent::GenerationRequested {
            task_id: "t".into(),
            project_id: "p".into(),
            owner: "u".into(),
            s3_prefix: "b/i/p".into(),
            kind: TaskKind::Augment,
            methods: vec![],
            overrides: Default::default(),
            references: Default::default(),
            measure: vec![],
            candidates: vec![],
            seed: 1,
            num_aug_p_img: 1,
            data_number: [n, 0, 0],
            sources: vec![],
            to_process: (0..n).collect(),
            batch_size: 2,
            number_gen_images: n,
            at: 0,
        }
    }

    #[test]
    fn batches_are_recorded_once_and_the_last_ends_the_task() {
        let mut log = vec![requested(3)];
        let t = Task::fold(&log).unwrap();
        assert_eq!(t.batches, 2);
        log.extend(t.record_batch(1, vec![], vec![], 1).unwrap());
        let t = Task::fold(&log).unwrap();
        assert!(
            t.record_batch(1, vec![], vec![], 2).unwrap().is_empty(),
            "replay"
        );
        let failure = ImageFailure {
            filename: "x".into(),
            reason: "corrupt".into(),
        };
        let end = t.record_batch(0, vec![], vec![failure], 3).unwrap();
        assert_eq!(end.len(), 2);
        log.extend(end);
        let t = Task::fold(&log).unwrap();
        assert_eq!(t.status, TaskStatus::FinishError);
        assert!(t.record_batch(0, vec![], vec![], 4).unwrap().is_empty());
        assert!(t.cancel(5).is_err());
        assert!(t.fail("x", 5).is_empty());
    }

    fn measured(filename: &str, method: &str, value: f64) -> Measurement {
        Measurement {
            filename: filename.into(),
            metrics: [(method.to_owned(), value)].into_iter().collect(),
        }
    }

    #[test]
    fn measuring_comes_first_and_its_last_batch_chooses_the_median() {
        // The project has five images; the run selects two of them.
        let candidates: Vec<Candidate> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|f| Candidate {
                filename: format!("{f}.png"),
                s3_key: format!("bkt/p/{f}.png"),
            })
            .collect();
        let sources: Vec<Source> = candidates
            .iter()
            .take(2)
            .map(|c| Source {
                filename: c.filename.clone(),
                s3_key: c.s3_key.clone(),
                classtype: ClassType::Train,
            })
            .collect();
        let TaskEvent::GenerationRequested {
            task_id,
            project_id,
            owner,
            s3_prefix,
            overrides,
            seed,
            data_number,
            at,
            ..
        } = requested(5)
        else {
            unreachable!()
        };
        let mut log = vec![TaskEvent::GenerationRequested {
            task_id,
            project_id,
            owner,
            s3_prefix,
            kind: TaskKind::Preprocess,
            methods: vec!["PRE-002".into()],
            overrides,
            references: Default::default(),
            measure: vec!["PRE-002".into()],
            candidates,
            seed,
            num_aug_p_img: 1,
            data_number,
            sources,
            to_process: (0..2).collect(),
            batch_size: 2,
            number_gen_images: 2,
            at,
        }];
        let measure = plan_measure_jobs(&log[0], "bkt").unwrap();
        assert_eq!(measure.len(), 3);
        assert!(measure
            .iter()
            .all(|j| j.stage == Stage::Measure && j.items.iter().all(|i| i.outputs.is_empty())));
        assert_eq!(measure[0].items[0].key, "p/a.png");
        let t = Task::fold(&log).unwrap();
        assert!(t.measuring());
        assert!(t.record_batch(0, vec![], vec![], 1).is_err());
        // Batches arrive out of order; "e" could not be read.
        let b2 = t
            .record_measurements(2, vec![measured("e.png", "PRE-001", 1.0)], 1)
            .unwrap();
        assert_eq!(b2.len(), 1);
        log.extend(b2);
        let t = Task::fold(&log).unwrap();
        assert!(
            t.record_measurements(2, vec![], 2).unwrap().is_empty(),
            "replay"
        );
        log.extend(
            t.record_measurements(
                0,
                vec![
                    measured("a.png", "PRE-002", 200.0),
                    measured("b.png", "PRE-002", 10.0),
                ],
                3,
            )
            .unwrap(),
        );
        let t = Task::fold(&log).unwrap();
        assert!(t.measuring());
        let last = t
            .record_measurements(
                1,
                vec![
                    measured("c.png", "PRE-002", 90.0),
                    measured("d.png", "PRE-002", 120.0),
                ],
                4,
            )
            .unwrap();
        assert_eq!(last.len(), 2);
        log.extend(last);
        let t = Task::fold(&log).unwrap();
        assert!(!t.measuring());
        // 10, 90, 120, 200: the lower median is c (90).
        assert_eq!(t.references["PRE-002"], "bkt/p/c.png");
        // Chosen among all five, though c is not in the selection.
        let jobs = plan_jobs(&log[0], &t.references, "bkt").unwrap();
        assert_eq!(jobs.len(), 1);
        assert!(jobs.iter().all(|j| j.references["PRE-002"] == "p/c.png"));
        assert_eq!(t.status, TaskStatus::PreparingData);
    }

    #[test]
    fn the_median_ignores_order_and_breaks_ties_by_name() {
        let candidates: Vec<Candidate> = ["x", "y", "z"]
            .iter()
            .map(|f| Candidate {
                filename: (*f).into(),
                s3_key: format!("k/{f}"),
            })
            .collect();
        let m = [
            measured("z", "M", 5.0),
            measured("x", "M", 5.0),
            measured("y", "M", 1.0),
            // Not a candidate: ignored (else the lower median would be y).
            measured("elsewhere", "M", 0.0),
        ];
        let forward: Vec<&Measurement> = m.iter().collect();
        let backward: Vec<&Measurement> = m.iter().rev().collect();
        let methods = vec!["M".to_owned(), "N".to_owned()];
        let a = median_references(&methods, &forward, &candidates);
        assert_eq!(a, median_references(&methods, &backward, &candidates));
        assert_eq!(a["M"], "k/x");
        assert!(!a.contains_key("N"), "nothing measured for N");
    }
}
