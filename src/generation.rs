//! Generation: requests become a `Task` (seed, split, methods, batches); the
//! dispatcher (a reactor) turns each request into jobs on the bus; workers
//! report batch results on `tessera.results.generate`, which the core records
//! once per batch, together with the project's new data items, in one
//! transaction.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tessera_domain::bus::{Bus, ConsumerConfig, Job};
use tessera_domain::generation::{self, MethodKind, RawOverrides, SplitMix64};
use tessera_domain::pool::{self, PoolEvent};
use tessera_domain::project::data::{
    data_stream_id, ClassType, DataEvent, DataKind, Deleted, Uploaded, DATA_STREAM_TYPE,
};
use tessera_domain::task::{
    self, Candidate, GenerateResult, Source, Stage, Task, TaskEvent, TaskKind, TaskStatus,
    STREAM_TYPE,
};
use tessera_domain::{
    DomainError, EventStore, ExpectedVersion, RecordedEvent, StoreError, StreamRef,
};
use tessera_projections::data_items;
use tessera_projections::tasks::{self, TaskRow};

use crate::identity::Principal;
use crate::pools::Pools;
use crate::projects::Projects;
use crate::reactor::Reactor;
use crate::service::{encode, ServiceError};
use crate::store::SqlEventStore;

type Result<T> = std::result::Result<T, ServiceError>;

/// The subject of generation jobs for a worker pool.
pub fn job_subject(pool: &str) -> String {
    format!("tessera.jobs.generate.{pool}")
}
/// Where workers report batch results.
pub const RESULTS_SUBJECT: &str = "tessera.results.generate";

#[derive(Debug, Clone, Copy)]
pub struct GenerationLimits {
    /// Augmentation runs per project.
    pub max_augment_runs: i64,
    /// Preprocessing runs per project.
    pub max_preprocess_runs: i64,
    /// Source images per job.
    pub batch_size: u32,
}

impl Default for GenerationLimits {
    fn default() -> Self {
        GenerationLimits {
            max_augment_runs: 5,
            max_preprocess_runs: 5,
            batch_size: 4,
        }
    }
}

/// A generation request as the API received it.
pub struct Request {
    pub project_id: String,
    pub method_ids: Vec<String>,
    pub data_type: DataKind,
    pub num_aug_p_img: Option<i64>,
    pub data_number: Vec<i64>,
    pub seed: Option<u64>,
    pub overrides: RawOverrides,
    /// Reference image (file name in the project) per method, optional.
    pub references: BTreeMap<String, String>,
}

pub struct Requested {
    pub task_id: String,
    pub seed: u64,
    pub times_generated: i64,
    pub times_preprocessed: i64,
}

pub struct Generation {
    store: SqlEventStore,
    projects: Arc<Projects>,
    bus: Arc<dyn Bus>,
    limits: GenerationLimits,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn busy(e: StoreError) -> ServiceError {
    match e {
        StoreError::Duplicate { constraint }
            if constraint.contains(tasks::ONE_ACTIVE) || constraint.contains("active_project") =>
        {
            DomainError::Conflict(
                "A task is already running in this project; wait for it to finish or cancel it."
                    .into(),
            )
            .into()
        }
        other => other.into(),
    }
}

impl Generation {
    pub fn new(
        store: SqlEventStore,
        projects: Arc<Projects>,
        bus: Arc<dyn Bus>,
        limits: GenerationLimits,
    ) -> Self {
        Generation {
            store,
            projects,
            bus,
            limits,
        }
    }

    /// Checks a request, splits the sources and records the task.
    pub async fn request(&self, who: &Principal, r: Request) -> Result<Requested> {
        let project = self.projects.by_id(who, &r.project_id).await?;
        let chosen = generation::validate_method_ids(&r.method_ids)?;
        let kind = match generation::kind_of(&chosen) {
            Some(MethodKind::Augment) => TaskKind::Augment,
            _ => TaskKind::Preprocess,
        };
        let plan = match kind {
            TaskKind::Augment => chosen.clone(),
            TaskKind::Preprocess => generation::preprocessing_plan(&chosen)?,
        };
        let overrides = generation::validate_overrides(&plan, &r.overrides)?;
        let num_aug_p_img = match (kind, r.num_aug_p_img) {
            (TaskKind::Augment, Some(n)) if !(1..=5).contains(&n) => {
                return Err(DomainError::Invalid("num_aug_p_img must be 1-5".into()).into())
            }
            (TaskKind::Augment, n) => n.unwrap_or(1) as u32,
            (TaskKind::Preprocess, _) => 1,
        };
        let [train, val, test] = match r.data_number.as_slice() {
            [a, b, c] => [*a, *b, *c],
            _ => {
                return Err(DomainError::Invalid(
                    "data_number must hold three numbers: train, val, test".into(),
                )
                .into())
            }
        };
        if train <= 0 || val < 0 || test < 0 {
            return Err(DomainError::Invalid(
                "data_number must have a positive train count and no negative count".into(),
            )
            .into());
        }
        if r.data_type == DataKind::Augment {
            return Err(
                DomainError::Invalid("data_type must be ORIGINAL or PREPROCESS".into()).into(),
            );
        }
        let mut conn = self.store.pool().acquire().await?;
        let available = data_items::of_kind(&mut conn, &project.project_id, r.data_type).await?;
        let wanted = (train + val + test) as usize;
        if wanted > available.len() {
            return Err(DomainError::Invalid(format!(
                "data_number asks for {wanted} images; the project has {} {} images",
                available.len(),
                r.data_type.as_str()
            ))
            .into());
        }
        let (runs, limit) = match kind {
            TaskKind::Augment => (
                tasks::times(&mut conn, &project.project_id, "AUGMENT").await?,
                self.limits.max_augment_runs,
            ),
            TaskKind::Preprocess => (
                tasks::times(&mut conn, &project.project_id, "PREPROCESS").await?,
                self.limits.max_preprocess_runs,
            ),
        };
        if runs >= limit {
            return Err(DomainError::LimitExceeded(format!(
                "This project has used all {limit} {} runs.",
                kind.as_str().to_lowercase()
            ))
            .into());
        }
        let mut references = BTreeMap::new();
        for (method, filename) in &r.references {
            if !plan.iter().any(|m| m.id == method.as_str()) {
                return Err(DomainError::Invalid(format!(
                    "a reference image is given for {method}, which this request does not run"
                ))
                .into());
            }
            let key = available
                .iter()
                .find(|(f, _)| f == filename)
                .map(|(_, k)| k.clone())
                .ok_or_else(|| {
                    DomainError::Invalid(format!(
                        "reference image {filename} is not in the project"
                    ))
                })?;
            references.insert(method.clone(), key);
        }
        drop(conn);

        // The split: sources by name, shuffled with the seed, then cut.
        let seed = r.seed.unwrap_or_else(rand::random);
        let mut order: Vec<usize> = (0..available.len()).collect();
        let mut rng = SplitMix64::new(seed);
        for i in (1..order.len()).rev() {
            let j = rng.range_i64(0, i as i64) as usize;
            order.swap(i, j);
        }
        let mut sources = Vec::with_capacity(wanted);
        for (position, index) in order.into_iter().take(wanted).enumerate() {
            let Some((filename, s3_key)) = available.get(index) else {
                continue;
            };
            let classtype = if (position as i64) < train {
                ClassType::Train
            } else if (position as i64) < train + val {
                ClassType::Val
            } else {
                ClassType::Test
            };
            sources.push(Source {
                filename: filename.clone(),
                s3_key: s3_key.clone(),
                classtype,
            });
        }
        // Methods without a picked reference use the project's image with
        // the median metric, which workers measure, over all the project's
        // images of this data type, before the first generation batch.
        let measure: Vec<String> = plan
            .iter()
            .filter(|m| m.uses_reference && !references.contains_key(m.id))
            .map(|m| m.id.to_owned())
            .collect();
        let candidates: Vec<Candidate> = if measure.is_empty() {
            Vec::new()
        } else {
            available
                .iter()
                .map(|(filename, s3_key)| Candidate {
                    filename: filename.clone(),
                    s3_key: s3_key.clone(),
                })
                .collect()
        };
        let to_process: Vec<u32> = sources
            .iter()
            .enumerate()
            .filter(|(_, s)| kind == TaskKind::Preprocess || s.classtype == ClassType::Train)
            .map(|(i, _)| i as u32)
            .collect();
        let number_gen_images = to_process.len() as u32 * num_aug_p_img;
        let task_id = uuid::Uuid::new_v4().to_string();
        let at = now();
        let requested = TaskEvent::GenerationRequested {
            task_id: task_id.clone(),
            project_id: project.project_id.clone(),
            owner: who.user_id.clone(),
            s3_prefix: project.s3_prefix.clone(),
            kind,
            methods: plan.iter().map(|m| m.id.to_owned()).collect(),
            overrides,
            references,
            measure,
            candidates,
            seed,
            num_aug_p_img,
            data_number: [train as u32, val as u32, test as u32],
            sources: sources.clone(),
            to_process,
            batch_size: self.limits.batch_size,
            number_gen_images,
            at,
        };
        let split = DataEvent::DataItemsSplit {
            project_id: project.project_id.clone(),
            assignments: sources
                .iter()
                .map(|s| (s.filename.clone(), s.classtype))
                .collect(),
            at,
        };
        self.store
            .append_many(&[
                (
                    StreamRef::new(STREAM_TYPE, &task_id),
                    ExpectedVersion::NoStream,
                    vec![encode(&requested, requested.event_type(), &who.user_id)?],
                ),
                (
                    StreamRef::new(DATA_STREAM_TYPE, data_stream_id(&project.project_id)),
                    ExpectedVersion::Any,
                    vec![encode(&split, split.event_type(), &who.user_id)?],
                ),
            ])
            .await
            .map_err(busy)?;
        let mut conn = self.store.pool().acquire().await?;
        Ok(Requested {
            task_id,
            seed,
            times_generated: tasks::times(&mut conn, &project.project_id, "AUGMENT").await?,
            times_preprocessed: tasks::times(&mut conn, &project.project_id, "PREPROCESS").await?,
        })
    }

    pub async fn progress(
        &self,
        who: &Principal,
        task_id: &str,
    ) -> Result<(TaskRow, Vec<(String, String)>)> {
        let mut conn = self.store.pool().acquire().await?;
        let row = tasks::by_id(&mut conn, &who.user_id, task_id)
            .await?
            .ok_or_else(|| DomainError::NotFound("task not found".into()))?;
        let failures = tasks::failures(&mut conn, task_id).await?;
        Ok((row, failures))
    }

    async fn load(&self, task_id: &str) -> Result<(Vec<TaskEvent>, i64)> {
        let recorded = self.store.read_stream(task_id).await?;
        let version = recorded.last().map_or(0, |e| e.stream_version);
        let events = recorded
            .iter()
            .map(tessera_projections::decode::<TaskEvent>)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        Ok((events, version))
    }

    /// Cancels a task: it ends in CANCEL and the outputs recorded so far are
    /// forgotten (their objects go with the task's folder).
    pub async fn cancel(&self, who: &Principal, task_id: &str) -> Result<()> {
        for _ in 0..8 {
            let (events, version) = self.load(task_id).await?;
            let task = Task::fold(&events)
                .filter(|t| t.owner == who.user_id)
                .ok_or_else(|| DomainError::NotFound("task not found".into()))?;
            let new = task.cancel(now())?;
            let forget = forget_outputs(&task, now());
            match self
                .append_task(
                    &task,
                    version,
                    &new,
                    forget.into_iter().collect(),
                    &who.user_id,
                )
                .await
            {
                Ok(()) => return Ok(()),
                Err(ServiceError::Store(StoreError::Conflict { .. })) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(DomainError::TooManyRequests("The task is busy; retry.".into()).into())
    }

    async fn append_task(
        &self,
        task: &Task,
        version: i64,
        new: &[TaskEvent],
        data: Vec<DataEvent>,
        actor: &str,
    ) -> Result<()> {
        if new.is_empty() {
            return Ok(());
        }
        let mut writes = vec![(
            StreamRef::new(STREAM_TYPE, &task.task_id),
            ExpectedVersion::Exact(version),
            new.iter()
                .map(|e| encode(e, e.event_type(), actor))
                .collect::<Result<Vec<_>>>()?,
        )];
        if !data.is_empty() {
            writes.push((
                StreamRef::new(DATA_STREAM_TYPE, data_stream_id(&task.project_id)),
                ExpectedVersion::Any,
                data.iter()
                    .map(|d| encode(d, d.event_type(), actor))
                    .collect::<Result<Vec<_>>>()?,
            ));
        }
        self.store.append_many(&writes).await?;
        Ok(())
    }

    /// Records one batch result (idempotent: a batch is recorded once).
    /// `false`: the task is not in this deployment's log (another server
    /// sharing the bus may know it).
    pub async fn record(&self, result: GenerateResult) -> Result<bool> {
        for _ in 0..8 {
            let (events, version) = self.load(&result.task_id).await?;
            let Some(task) = Task::fold(&events) else {
                return Ok(false);
            };
            let at = now();
            let (new, data) = if let Some(error) = &result.error {
                let batch = match result.stage {
                    Stage::Generate => "batch",
                    Stage::Measure => "measuring batch",
                };
                (
                    task.fail(&format!("{batch} {} failed: {error}", result.batch_no), at),
                    None,
                )
            } else {
                if task.status == tessera_domain::task::TaskStatus::Cancel {
                    // Outputs of a job that ran past the cancel.
                    let keys: Vec<String> = result
                        .outputs
                        .iter()
                        .filter_map(|o| {
                            self.projects
                                .objects()
                                .object_key(&o.s3_key)
                                .ok()
                                .map(str::to_owned)
                        })
                        .collect();
                    self.projects.objects().delete(&keys).await?;
                    return Ok(true);
                }
                if result.stage == Stage::Measure {
                    let new =
                        task.record_measurements(result.batch_no, result.measurements.clone(), at)?;
                    match self
                        .append_task(&task, version, &new, Vec::new(), "worker")
                        .await
                    {
                        Ok(()) => return Ok(true),
                        Err(ServiceError::Store(StoreError::Conflict { .. })) => continue,
                        Err(e) => return Err(e),
                    }
                }
                let new = task.record_batch(
                    result.batch_no,
                    result.outputs.clone(),
                    result.failures.clone(),
                    at,
                )?;
                let mut data = (!result.outputs.is_empty()).then(|| DataEvent::DataItemsUploaded {
                    project_id: task.project_id.clone(),
                    items: result
                        .outputs
                        .iter()
                        .map(|o| Uploaded {
                            item: o.clone(),
                            replaces: None,
                        })
                        .collect(),
                    at,
                });
                if new.is_empty() {
                    data = None;
                }
                (new, data)
            };
            let mut data: Vec<DataEvent> = data.into_iter().collect();
            // A finished preprocessing run replaces the earlier PREPROCESS
            // set, in the same transaction as its end.
            if task.kind == TaskKind::Preprocess
                && new
                    .iter()
                    .any(|e| matches!(e, TaskEvent::TaskFinished { .. }))
            {
                data.extend(self.previous_preprocess(&task, at).await?);
            }
            match self.append_task(&task, version, &new, data, "worker").await {
                Ok(()) => return Ok(true),
                Err(ServiceError::Store(StoreError::Conflict { .. })) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ServiceError::Internal("task stream kept changing".into()))
    }

    /// The project's PREPROCESS items made by other runs, as a deletion.
    async fn previous_preprocess(&self, task: &Task, at: i64) -> Result<Option<DataEvent>> {
        let mut conn = self.store.pool().acquire().await?;
        let mine = format!("{}/{}/", task.s3_prefix, task.task_id);
        let old: Vec<String> =
            data_items::of_kind(&mut conn, &task.project_id, DataKind::Preprocess)
                .await?
                .into_iter()
                .filter(|(_, key)| !key.starts_with(&mine))
                .map(|(f, _)| f)
                .collect();
        if old.is_empty() {
            return Ok(None);
        }
        let names: Vec<&str> = old.iter().map(String::as_str).collect();
        let existing = data_items::existing(&mut conn, &task.project_id, &names).await?;
        Ok(Some(DataEvent::DataItemsDeleted {
            project_id: task.project_id.clone(),
            items: existing
                .into_iter()
                .map(|(filename, e)| Deleted {
                    filename,
                    s3_key: e.s3_key,
                    size: e.size,
                    kind: e.kind,
                    classtype: e.classtype,
                })
                .collect(),
            at,
        }))
    }

    /// Publishes the jobs of a task's batches not recorded yet: its
    /// measuring batches while the references are not chosen, else its
    /// generation batches, after which it is marked dispatched. Dedup ids
    /// are `<task_id>:<batch_no>` (`<task_id>:m<batch_no>` for measuring).
    pub async fn dispatch(&self, task_id: &str, pool: &str) -> Result<usize> {
        let (events, version) = self.load(task_id).await?;
        let Some(task) = Task::fold(&events) else {
            return Ok(0);
        };
        if task.status.is_final() {
            return Ok(0);
        }
        let Some(requested) = events.first() else {
            return Ok(0);
        };
        let bucket = self.projects.bucket();
        let (jobs, done) = if task.measuring() {
            (task::plan_measure_jobs(requested, bucket)?, &task.measured)
        } else {
            (
                task::plan_jobs(requested, &task.references, bucket)?,
                &task.recorded,
            )
        };
        let mut sent = 0;
        for job in jobs.iter().filter(|j| !done.contains(&j.batch_no)) {
            let payload =
                serde_json::to_vec(job).map_err(|e| ServiceError::Internal(e.to_string()))?;
            self.bus
                .publish(Job {
                    subject: job_subject(pool),
                    dedup_id: job.stage.batch_id(&job.task_id, job.batch_no),
                    payload,
                })
                .await
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
            sent += 1;
        }
        if task.measuring() {
            return Ok(sent);
        }
        let new = task.dispatched(now());
        match self
            .append_task(&task, version, &new, Vec::new(), "dispatcher")
            .await
        {
            Ok(()) | Err(ServiceError::Store(StoreError::Conflict { .. })) => Ok(sent),
            Err(e) => Err(e),
        }
    }

    /// Re-publishes the jobs of every unfinished task whose pool runs
    /// (start-up: an in-process bus starts empty; a durable one drops the
    /// repeats).
    pub async fn redispatch_unfinished(&self, pools: &Pools) -> Result<usize> {
        let mut conn = self.store.pool().acquire().await?;
        let open = tasks::unfinished(&mut conn).await?;
        drop(conn);
        let mut n = 0;
        for t in open {
            if let Some(pool) = pools.route(&t.owner).await? {
                n += self.dispatch(&t.task_id, &pool).await?;
            }
        }
        Ok(n)
    }

    /// Dispatches a new task to its owner's pool, or holds it (not
    /// dispatched: PREPARING_DATA) while that pool is stopped.
    async fn dispatch_routed(&self, task_id: &str, pools: &Pools) -> Result<usize> {
        let mut conn = self.store.pool().acquire().await?;
        let Some(task) = tasks::by_task(&mut conn, task_id).await? else {
            return Ok(0);
        };
        drop(conn);
        match pools.route(&task.owner).await? {
            Some(pool) => self.dispatch(task_id, &pool).await,
            None => {
                tracing::info!(task_id, "task held: its worker pool is stopped");
                Ok(0)
            }
        }
    }

    /// Dispatches the held tasks of a pool that has just started: tasks never
    /// dispatched (PREPARING_DATA) whose owner's jobs go to `pool`.
    async fn release_held(&self, pool: &str, pools: &Pools) -> Result<usize> {
        let mut conn = self.store.pool().acquire().await?;
        let held: Vec<_> = tasks::unfinished(&mut conn)
            .await?
            .into_iter()
            .filter(|t| t.status == TaskStatus::PreparingData.as_str())
            .collect();
        drop(conn);
        let mut n = 0;
        for t in held {
            if pools.route(&t.owner).await?.as_deref() == Some(pool) {
                n += self.dispatch(&t.task_id, pool).await?;
            }
        }
        Ok(n)
    }

    /// Consumes batch results until `shutdown` flips.
    pub async fn consume_results(self: Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        let config = ConsumerConfig {
            ack_wait: Duration::from_secs(60),
            max_deliver: 20,
            ..ConsumerConfig::new("core-results", RESULTS_SUBJECT)
        };
        let bus = self.bus.clone();
        crate::consume::consume(bus, config, shutdown, |delivery| {
            let this = self.clone();
            async move {
                let outcome = match serde_json::from_slice::<GenerateResult>(&delivery.payload) {
                    Ok(result) => this.record(result).await,
                    Err(e) => {
                        let _ = delivery
                            .acker
                            .dead_letter(&format!("not a batch result: {e}"))
                            .await;
                        return;
                    }
                };
                match outcome {
                    Ok(true) => {
                        let _ = delivery.acker.ack().await;
                    }
                    Ok(false) => {
                        tracing::warn!(
                            "a batch result for a task this log does not hold; leaving it to others"
                        );
                        let _ = delivery.acker.nak(Duration::from_secs(1)).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "recording a batch result failed; redelivering");
                        let _ = delivery.acker.nak(Duration::from_millis(500)).await;
                    }
                }
            }
        })
        .await;
    }
}

/// The outputs a cancelled task forgets.
fn forget_outputs(task: &Task, at: i64) -> Option<DataEvent> {
    (!task.outputs.is_empty()).then(|| DataEvent::DataItemsDeleted {
        project_id: task.project_id.clone(),
        items: task
            .outputs
            .iter()
            .map(|o| Deleted {
                filename: o.filename.clone(),
                s3_key: o.s3_key.clone(),
                size: o.size,
                kind: o.kind,
                classtype: o.classtype,
            })
            .collect(),
        at,
    })
}

/// Turns each generation request into jobs on its owner's worker pool (and
/// a measured task's references into its generation jobs), and
/// releases a pool's held tasks when it starts (a reactor: its checkpoint
/// moves after the jobs are on the bus).
pub struct Dispatcher {
    pub generation: Arc<Generation>,
    pub pools: Arc<Pools>,
}

#[async_trait::async_trait]
impl Reactor for Dispatcher {
    fn checkpoint(&self) -> &'static str {
        "dispatch:generation"
    }

    async fn react(&self, events: &[RecordedEvent]) -> std::result::Result<(), String> {
        for e in events {
            // A new task goes out (measuring first, if it must); a measured
            // one sends its generation batches.
            if e.stream_type == STREAM_TYPE
                && (e.event_type == "GenerationRequested" || e.event_type == "ReferencesChosen")
            {
                self.generation
                    .dispatch_routed(&e.stream_id, &self.pools)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            if e.stream_type == pool::STREAM_TYPE && e.event_type == "WorkerPoolStarted" {
                let Ok(PoolEvent::WorkerPoolStarted { pool, .. }) =
                    tessera_projections::decode::<PoolEvent>(e)
                else {
                    continue;
                };
                let n = self
                    .generation
                    .release_held(&pool, &self.pools)
                    .await
                    .map_err(|e| e.to_string())?;
                if n > 0 {
                    tracing::info!(pool, jobs = n, "worker pool started; held tasks dispatched");
                }
            }
        }
        Ok(())
    }
}
