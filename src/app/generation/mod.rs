//! Generation, the user's side: a request becomes a `Task` (seed, split,
//! methods, batches; decided by `tessera_domain::task::request`), recorded
//! with the split it puts on the project's data items in one transaction;
//! progress is read from the `tasks` read model; a cancel ends the task and
//! forgets the outputs recorded so far.
//!
//! The other roles live beside it: [`record`] turns the batch results
//! workers report into events, [`dispatch`] turns a task into jobs on the
//! bus.

pub mod dispatch;
pub mod record;

use std::sync::Arc;

use tessera_domain::bus::Bus;
use tessera_domain::project::data::{data_stream_id, DataEvent, Deleted};
use tessera_domain::task::{
    self, GenerationRequest, ProjectImages, RequestedBy, RunLimits, Task, TaskKind,
};
use tessera_domain::DomainError;
use tessera_projections::data_items;
use tessera_projections::tasks::{self, TaskRow};

use crate::app::error::{Result, ServiceError};
use crate::app::executor::{Change, Executor};
use crate::app::identity::Principal;
use crate::app::projects::Projects;

/// A generation request as the API received it.
pub struct Request {
    pub project_id: String,
    pub seed: Option<u64>,
    pub request: GenerationRequest,
}

pub struct Requested {
    pub task_id: String,
    pub seed: u64,
    pub times_generated: i64,
    pub times_preprocessed: i64,
}

pub struct Generation {
    exec: Arc<Executor>,
    projects: Arc<Projects>,
    bus: Arc<dyn Bus>,
    limits: RunLimits,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Generation {
    pub fn new(
        exec: Arc<Executor>,
        projects: Arc<Projects>,
        bus: Arc<dyn Bus>,
        limits: RunLimits,
    ) -> Self {
        Generation {
            exec,
            projects,
            bus,
            limits,
        }
    }

    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>> {
        Ok(self.exec.store().pool().acquire().await?)
    }

    /// Checks a request, splits the sources and records the task.
    pub async fn request(&self, who: &Principal, r: Request) -> Result<Requested> {
        let project = self.projects.by_id(who, &r.project_id).await?;
        let task_id = uuid::Uuid::new_v4().to_string();
        let seed = r.seed.unwrap_or_else(rand::random);
        let by = RequestedBy {
            task_id: &task_id,
            project_id: &project.project_id,
            owner: &who.user_id,
            s3_prefix: &project.s3_prefix,
            seed,
            at: now(),
        };
        let data_type = r.request.data_type;
        let project_id = project.project_id.as_str();
        let read = move |_: Option<&Task>| async move {
            let mut conn = self.conn().await?;
            Ok(ProjectImages {
                images: data_items::of_kind(&mut conn, project_id, data_type).await?,
                augment_runs: tasks::times(&mut conn, project_id, TaskKind::Augment).await?,
                preprocess_runs: tasks::times(&mut conn, project_id, TaskKind::Preprocess).await?,
            })
        };
        self.exec
            .execute_with::<Task, _, (), _, _, _, _>(
                &task_id,
                &who.user_id,
                read,
                |existing, images| {
                    if existing.is_some() {
                        return Err(ServiceError::bug("a fresh task id is taken"));
                    }
                    let (requested, split) =
                        task::request(&r.request, &by, images, &self.limits)?;
                    Change::from(vec![requested]).also(&data_stream_id(project_id), &[split])
                },
            )
            .await
            .map_err(|e| {
                e.on_constraint(tasks::ONE_ACTIVE, || {
                    DomainError::Conflict(
                        "A task is already running in this project; wait for it to finish or cancel it."
                            .into(),
                    )
                    .into()
                })
            })?
            .output()?;
        let mut conn = self.conn().await?;
        Ok(Requested {
            seed,
            times_generated: tasks::times(&mut conn, project_id, TaskKind::Augment).await?,
            times_preprocessed: tasks::times(&mut conn, project_id, TaskKind::Preprocess).await?,
            task_id,
        })
    }

    /// One of the caller's tasks (looked up by owner in the query) and its
    /// per-image failures.
    pub async fn progress(
        &self,
        who: &Principal,
        task_id: &str,
    ) -> Result<(TaskRow, Vec<(String, String)>)> {
        let mut conn = self.conn().await?;
        let row = tasks::by_id(&mut conn, &who.user_id, task_id)
            .await?
            .ok_or_else(|| DomainError::NotFound("task not found".into()))?;
        let failures = tasks::failures(&mut conn, task_id).await?;
        Ok((row, failures))
    }

    /// Cancels a task: it ends in CANCEL and the outputs recorded so far are
    /// forgotten (the janitor removes the task's folder).
    pub async fn cancel(&self, who: &Principal, task_id: &str) -> Result<()> {
        let at = now();
        self.exec
            .execute::<Task, (), _, _>(task_id, &who.user_id, |task| {
                let task = task
                    .filter(|t| t.owner == who.user_id)
                    .ok_or_else(|| DomainError::NotFound("task not found".into()))?;
                let forget: Vec<DataEvent> = forget_outputs(task, at).into_iter().collect();
                Change::from(task.cancel(at)?).also(&data_stream_id(&task.project_id), &forget)
            })
            .await?
            .output()
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
