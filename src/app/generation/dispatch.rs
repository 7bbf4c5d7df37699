//! Turning tasks into jobs: a task's measuring batches while its references
//! are not chosen, else its generation batches, on its owner's worker pool
//! (`tessera.jobs.generate.<pool>`); then the task is marked dispatched. A
//! task whose pool is stopped is held (PREPARING_DATA) until it starts.
//! Dedup ids are `<task_id>:<batch_no>` (`<task_id>:m<batch_no>` for
//! measuring), so publishing again is harmless.

use tessera_domain::bus::Job;
use tessera_domain::task::{self, job_subject, Task, TaskStatus};
use tessera_projections::tasks;

use super::{now, Generation};
use crate::app::error::{Result, ServiceError};
use crate::app::pools::Pools;

impl Generation {
    /// Publishes the jobs of a task's batches not recorded yet.
    pub async fn dispatch(&self, task_id: &str, pool: &str) -> Result<usize> {
        let loaded = self.exec.load::<Task>(task_id).await?;
        let (Some(task), Some(requested)) = (&loaded.state, loaded.events.first()) else {
            return Ok(0);
        };
        if task.status.is_final() {
            return Ok(0);
        }
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
            let payload = serde_json::to_vec(job)
                .map_err(|e| ServiceError::internal("encoding a generation job", e))?;
            self.bus
                .publish(Job {
                    subject: job_subject(pool),
                    dedup_id: job.stage.batch_id(&job.task_id, job.batch_no),
                    payload,
                })
                .await
                .map_err(|e| ServiceError::internal("publishing a generation job", e))?;
            sent += 1;
        }
        if task.measuring() {
            return Ok(sent);
        }
        let at = now();
        self.exec
            .execute::<Task, (), _, _>(task_id, "dispatcher", |task| {
                Ok(task.map(|t| t.dispatched(at)).unwrap_or_default())
            })
            .await?;
        Ok(sent)
    }

    /// Re-publishes the jobs of every unfinished task whose pool runs
    /// (start-up: an in-process bus starts empty; a durable one drops the
    /// repeats).
    pub async fn redispatch_unfinished(&self, pools: &Pools) -> Result<usize> {
        let open = tasks::unfinished(&mut *self.conn().await?).await?;
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
    pub async fn dispatch_routed(&self, task_id: &str, pools: &Pools) -> Result<usize> {
        let Some(task) = tasks::by_task(&mut *self.conn().await?, task_id).await? else {
            return Ok(0);
        };
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
    pub async fn release_held(&self, pool: &str, pools: &Pools) -> Result<usize> {
        let held: Vec<_> = tasks::unfinished(&mut *self.conn().await?)
            .await?
            .into_iter()
            .filter(|t| t.status == TaskStatus::PreparingData.as_str())
            .collect();
        let mut n = 0;
        for t in held {
            if pools.route(&t.owner).await?.as_deref() == Some(pool) {
                n += self.dispatch(&t.task_id, pool).await?;
            }
        }
        Ok(n)
    }
}
