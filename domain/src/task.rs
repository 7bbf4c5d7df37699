//! The `Task` aggregate: a generation run (augmentation or preprocessing) of
//! one project, from request to its end state. Workers do the pixel work in
//! batches; the core records each batch's results once (the batch number is
//! the idempotency key) and ends the task when every batch is in.

use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::generation::{Overrides, SampledMethod};
use crate::project::data::{ClassType, DataItem};

pub const STREAM_TYPE: &str = "task";

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

    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskStatus::Finish | TaskStatus::FinishError | TaskStatus::Error | TaskStatus::Cancel
        )
    }
}

/// What a worker does for one batch: the sources, and per output image the
/// steps (methods with their sampled parameters) and where it goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateJob {
    pub task_id: String,
    pub batch_no: u32,
    pub kind: TaskKind,
    pub items: Vec<JobItem>,
    /// Object key of the reference image per method that uses one.
    #[serde(default)]
    pub references: std::collections::BTreeMap<String, String>,
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
}

/// One selected source image and the split it fell into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub filename: String,
    pub s3_key: String,
    pub classtype: ClassType,
}

/// An image the worker could not turn into outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFailure {
    pub filename: String,
    pub reason: String,
}

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
        /// Reference image (`s3_key`) per PRE method that uses one.
        #[serde(default)]
        references: std::collections::BTreeMap<String, String>,
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
}

impl TaskEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            TaskEvent::GenerationRequested { .. } => "GenerationRequested",
            TaskEvent::TaskDispatched { .. } => "TaskDispatched",
            TaskEvent::BatchRecorded { .. } => "BatchRecorded",
            TaskEvent::TaskFinished { .. } => "TaskFinished",
            TaskEvent::TaskFailed { .. } => "TaskFailed",
            TaskEvent::TaskCancelled { .. } => "TaskCancelled",
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
    pub recorded: std::collections::BTreeSet<u32>,
    pub number_gen_images: u32,
    pub number_finished: u32,
    pub failures: u32,
    /// Every output recorded so far (`s3_key`s), for cancel.
    pub outputs: Vec<DataItem>,
}

/// How many batches `n` images make.
pub fn batch_count(n: usize, batch_size: u32) -> u32 {
    let size = batch_size.max(1) as usize;
    n.div_ceil(size) as u32
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
                number_gen_images: *number_gen_images,
                number_finished: 0,
                failures: 0,
                outputs: Vec::new(),
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
                TaskEvent::BatchRecorded {
                    batch_no,
                    outputs,
                    failures,
                    ..
                } => {
                    t.recorded.insert(*batch_no);
                    t.number_finished += outputs.len() as u32;
                    t.failures += failures.len() as u32;
                    t.outputs.extend(outputs.iter().cloned());
                    if t.status == TaskStatus::PreparingData {
                        t.status = TaskStatus::Running;
                    }
                }
                TaskEvent::TaskFinished { status, .. } => t.status = *status,
                TaskEvent::TaskFailed { .. } => t.status = TaskStatus::Error,
                TaskEvent::TaskCancelled { .. } => t.status = TaskStatus::Cancel,
            }
        }
        Some(t)
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
        if batch_no >= self.batches {
            return Err(DomainError::Invalid(format!(
                "task {} has no batch {batch_no}",
                self.task_id
            )));
        }
        let failed = self.failures + failures.len() as u32;
        let mut events = vec![TaskEvent::BatchRecorded {
            batch_no,
            outputs,
            failures,
            at: now,
        }];
        if self.recorded.len() as u32 + 1 == self.batches {
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

/// The jobs of a generation request, batch by batch (the same request always
/// gives the same jobs). `bucket` is stripped from keys for the workers.
pub fn plan_jobs(requested: &TaskEvent, bucket: &str) -> Result<Vec<GenerateJob>, DomainError> {
    let TaskEvent::GenerationRequested {
        task_id,
        s3_prefix,
        kind,
        methods,
        overrides,
        references,
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
    let strip = |k: &str| -> String {
        k.strip_prefix(bucket)
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or(k)
            .to_owned()
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
                    key: strip(&s3_key),
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
            key: strip(&source.s3_key),
            classtype: source.classtype,
            outputs,
        });
    }
    let references: std::collections::BTreeMap<String, String> = references
        .iter()
        .map(|(m, k)| (m.clone(), strip(k)))
        .collect();
    Ok(items
        .chunks((*batch_size).max(1) as usize)
        .enumerate()
        .map(|(b, chunk)| GenerateJob {
            task_id: task_id.clone(),
            batch_no: b as u32,
            kind: *kind,
            items: chunk.to_vec(),
            references: references.clone(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

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
}
