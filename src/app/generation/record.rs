//! Batch results as workers report them on `tessera.results.generate`: each
//! batch is recorded once (its number is the idempotency key), together with
//! the project's new data items, in one transaction. A preprocessing run's
//! last batch also forgets the project's earlier PREPROCESS set, in that
//! same transaction.

use tessera_domain::project::data::{data_stream_id, DataEvent, DataKind, Deleted, Uploaded};
use tessera_domain::task::{GenerateResult, Stage, Task, TaskEvent, TaskKind};
use tessera_domain::Decision;
use tessera_projections::data_items;

use super::{now, Generation};
use crate::app::error::Result;
use crate::app::executor::Change;

impl Generation {
    /// Records one batch result (idempotent: a batch is recorded once).
    /// `false`: the task is not in this deployment's log (another server
    /// sharing the bus may know it).
    pub async fn record(&self, result: &GenerateResult) -> Result<bool> {
        let at = now();
        let read = |task: Option<&Task>| {
            // Only the batch that ends a preprocessing run needs the set it
            // replaces.
            let replacing = task.filter(|t| finishes_preprocessing(t, result)).map(|t| {
                (
                    t.project_id.clone(),
                    format!("{}/{}/", t.s3_prefix, t.task_id),
                )
            });
            async move {
                match replacing {
                    Some((project_id, own_folder)) => {
                        self.previous_preprocess(&project_id, &own_folder).await
                    }
                    None => Ok(Vec::new()),
                }
            }
        };
        self.exec
            .execute_with::<Task, _, bool, _, _, _, _>(
                &result.task_id,
                "worker",
                read,
                |task, previous| {
                    let Some(task) = task else {
                        return Ok(Change::from(Decision::new(Vec::new(), false)));
                    };
                    decide(task, result, previous, at)
                },
            )
            .await?
            .output()
    }

    /// The project's PREPROCESS items made by other runs (not under
    /// `own_folder`), as they would be deleted.
    async fn previous_preprocess(
        &self,
        project_id: &str,
        own_folder: &str,
    ) -> Result<Vec<Deleted>> {
        let mut conn = self.conn().await?;
        let old: Vec<String> = data_items::of_kind(&mut conn, project_id, DataKind::Preprocess)
            .await?
            .into_iter()
            .filter(|(_, key)| !key.starts_with(own_folder))
            .map(|(f, _)| f)
            .collect();
        if old.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<&str> = old.iter().map(String::as_str).collect();
        let existing = data_items::existing(&mut conn, project_id, &names).await?;
        Ok(existing
            .into_iter()
            .map(|(filename, e)| Deleted {
                filename,
                s3_key: e.s3_key,
                size: e.size,
                kind: e.kind,
                classtype: e.classtype,
            })
            .collect())
    }
}

/// Whether `result` is the generation batch that ends a preprocessing run.
fn finishes_preprocessing(task: &Task, result: &GenerateResult) -> bool {
    task.kind == TaskKind::Preprocess
        && result.error.is_none()
        && result.stage == Stage::Generate
        && !task.status.is_final()
        && !task.recorded.contains(&result.batch_no)
        && task.recorded.len() + 1 == usize::try_from(task.batches).unwrap_or(usize::MAX)
}

fn decide(
    task: &Task,
    result: &GenerateResult,
    previous: &[Deleted],
    at: i64,
) -> Result<Change<TaskEvent, bool>> {
    if let Some(error) = &result.error {
        let batch = match result.stage {
            Stage::Generate => "batch",
            Stage::Measure => "measuring batch",
        };
        let reason = format!("{batch} {} failed: {error}", result.batch_no);
        return Ok(Decision::new(task.fail(&reason, at), true).into());
    }
    if task.status == tessera_domain::task::TaskStatus::Cancel {
        // A job that ran past the cancel: its objects go, nothing is recorded.
        let discarded = task.discard_late(result.batch_no, &result.outputs, at);
        return Ok(Decision::new(discarded, true).into());
    }
    if result.stage == Stage::Measure {
        let new = task.record_measurements(result.batch_no, result.measurements.clone(), at)?;
        return Ok(Decision::new(new, true).into());
    }
    let new = task.record_batch(
        result.batch_no,
        result.outputs.clone(),
        result.failures.clone(),
        at,
    )?;
    let mut data = Vec::new();
    if !new.is_empty() && !result.outputs.is_empty() {
        data.push(DataEvent::DataItemsUploaded {
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
    }
    let finished = new
        .iter()
        .any(|e| matches!(e, TaskEvent::TaskFinished { .. }));
    if task.kind == TaskKind::Preprocess && finished && !previous.is_empty() {
        data.push(DataEvent::DataItemsDeleted {
            project_id: task.project_id.clone(),
            items: previous.to_vec(),
            at,
        });
    }
    Change::from(Decision::new(new, true)).also(&data_stream_id(&task.project_id), &data)
}
