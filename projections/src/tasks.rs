//! `tasks` (inline): each generation task's status and progress, and
//! `task_failures`: the images it could not process. At most one unfinished
//! task per project (`tasks_one_active`).

use async_trait::async_trait;
use sqlx::{AnyConnection, Row};
use tessera_domain::task::{TaskEvent, TaskKind, TaskStatus};
use tessera_domain::RecordedEvent;

use crate::{Projection, ProjectionError};

pub struct Tasks;

/// The constraint a second unfinished task of a project trips over.
pub const ONE_ACTIVE: &str = "tasks_one_active";

async fn set_status(
    conn: &mut AnyConnection,
    task_id: &str,
    status: TaskStatus,
    error: Option<&str>,
    at: i64,
) -> Result<(), sqlx::Error> {
    let active = if status.is_final() {
        "NULL"
    } else {
        "active_project"
    };
    sqlx::query(&format!(
        "UPDATE tasks SET status = $1, updated_at = $2, error = COALESCE($3, error), \
         active_project = {active} WHERE task_id = $4"
    ))
    .bind(status.as_str())
    .bind(at)
    .bind(error)
    .bind(task_id)
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl Projection for Tasks {
    fn name(&self) -> &'static str {
        "tasks"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["tasks", "task_failures", "task_batches"]
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        if !event.is::<TaskEvent>() {
            return Ok(());
        }
        let id = &event.stream_id;
        match event.decode::<TaskEvent>()? {
            TaskEvent::GenerationRequested {
                task_id,
                project_id,
                owner,
                kind,
                number_gen_images,
                at,
                ..
            } => {
                sqlx::query(
                    "INSERT INTO tasks (task_id, project_id, owner, kind, status, number_finished, \
                     number_gen_images, failures, error, created_at, updated_at, active_project) \
                     VALUES ($1, $2, $3, $4, $5, 0, $6, 0, '', $7, $7, $2) ON CONFLICT (task_id) DO NOTHING",
                )
                .bind(&task_id)
                .bind(&project_id)
                .bind(&owner)
                .bind(kind.as_str())
                .bind(TaskStatus::PreparingData.as_str())
                .bind(i64::from(number_gen_images))
                .bind(at)
                .execute(conn)
                .await?;
            }
            TaskEvent::TaskDispatched { at } => {
                sqlx::query(
                    "UPDATE tasks SET status = $1, updated_at = $2 WHERE task_id = $3 AND status = $4",
                )
                .bind(TaskStatus::Running.as_str())
                .bind(at)
                .bind(id)
                .bind(TaskStatus::PreparingData.as_str())
                .execute(conn)
                .await?;
            }
            TaskEvent::BatchRecorded {
                batch_no,
                outputs,
                failures,
                at,
            } => {
                sqlx::query(
                    "INSERT INTO task_batches (task_id, batch_no, outputs) VALUES ($1, $2, $3) \
                     ON CONFLICT (task_id, batch_no) DO NOTHING",
                )
                .bind(id)
                .bind(i64::from(batch_no))
                .bind(outputs.len() as i64)
                .execute(&mut *conn)
                .await?;
                for f in &failures {
                    sqlx::query(
                        "INSERT INTO task_failures (task_id, filename, reason) VALUES ($1, $2, $3) \
                         ON CONFLICT (task_id, filename) DO UPDATE SET reason = excluded.reason",
                    )
                    .bind(id)
                    .bind(&f.filename)
                    .bind(&f.reason)
                    .execute(&mut *conn)
                    .await?;
                }
                // Counts are recomputed from the recorded batches, so a
                // replayed event changes nothing.
                sqlx::query(
                    "UPDATE tasks SET \
                     number_finished = (SELECT COALESCE(SUM(outputs), 0) FROM task_batches WHERE task_id = $1), \
                     failures = (SELECT COUNT(*) FROM task_failures WHERE task_id = $1), \
                     status = CASE WHEN status = $2 THEN $3 ELSE status END, updated_at = $4 \
                     WHERE task_id = $1",
                )
                .bind(id)
                .bind(TaskStatus::PreparingData.as_str())
                .bind(TaskStatus::Running.as_str())
                .bind(at)
                .execute(conn)
                .await?;
            }
            // Measuring (PREPARING_DATA) shows as activity only.
            TaskEvent::SourcesMeasured { at, .. } | TaskEvent::ReferencesChosen { at, .. } => {
                sqlx::query("UPDATE tasks SET updated_at = $1 WHERE task_id = $2")
                    .bind(at)
                    .bind(id)
                    .execute(conn)
                    .await?;
            }
            TaskEvent::TaskFinished { status, at } => {
                set_status(conn, id, status, None, at).await?
            }
            TaskEvent::TaskFailed { reason, at } => {
                set_status(conn, id, TaskStatus::Error, Some(&reason), at).await?
            }
            TaskEvent::TaskCancelled { at } => {
                set_status(conn, id, TaskStatus::Cancel, None, at).await?
            }
            // Objects only: the janitor removes them.
            TaskEvent::OutputsDiscarded { .. } => {}
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    pub task_id: String,
    pub project_id: String,
    pub owner: String,
    pub kind: String,
    pub status: String,
    pub number_finished: i64,
    pub number_gen_images: i64,
    pub failures: i64,
    pub error: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str =
    "task_id, project_id, owner, kind, status, number_finished, number_gen_images, \
                       failures, error, created_at, updated_at";

fn row(r: &sqlx::any::AnyRow) -> Result<TaskRow, sqlx::Error> {
    Ok(TaskRow {
        task_id: r.try_get(0)?,
        project_id: r.try_get(1)?,
        owner: r.try_get(2)?,
        kind: r.try_get(3)?,
        status: r.try_get(4)?,
        number_finished: r.try_get(5)?,
        number_gen_images: r.try_get(6)?,
        failures: r.try_get(7)?,
        error: r.try_get(8)?,
        created_at: r.try_get(9)?,
        updated_at: r.try_get(10)?,
    })
}

/// One of the user's tasks; another user's task finds nothing.
pub async fn by_id(
    conn: &mut AnyConnection,
    owner: &str,
    task_id: &str,
) -> Result<Option<TaskRow>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM tasks WHERE task_id = $1 AND owner = $2"
    ))
    .bind(task_id)
    .bind(owner)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(row)
    .transpose()
}

/// A task whoever owns it (for the core's own use, never a user's request).
pub async fn by_task(
    conn: &mut AnyConnection,
    task_id: &str,
) -> Result<Option<TaskRow>, sqlx::Error> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM tasks WHERE task_id = $1"))
        .bind(task_id)
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(row)
        .transpose()
}

/// Unfinished tasks of the given projects.
pub async fn running(
    conn: &mut AnyConnection,
    project_ids: &[&str],
) -> Result<Vec<TaskRow>, sqlx::Error> {
    if project_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM tasks WHERE active_project IN ({}) ORDER BY created_at",
        crate::placeholders(1, project_ids.len())
    );
    let mut q = sqlx::query(&sql);
    for id in project_ids {
        q = q.bind(*id);
    }
    q.fetch_all(conn).await?.iter().map(row).collect()
}

/// Every unfinished task (re-dispatched at start-up).
pub async fn unfinished(conn: &mut AnyConnection) -> Result<Vec<TaskRow>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM tasks WHERE active_project IS NOT NULL ORDER BY created_at"
    ))
    .fetch_all(conn)
    .await?
    .iter()
    .map(row)
    .collect()
}

/// How many tasks of `kind` a project has run (those not ended in ERROR or
/// CANCEL).
pub async fn times(
    conn: &mut AnyConnection,
    project_id: &str,
    kind: TaskKind,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM tasks WHERE project_id = $1 AND kind = $2 AND status NOT IN ('ERROR', 'CANCEL')",
    )
    .bind(project_id)
    .bind(kind.as_str())
    .fetch_one(conn)
    .await
}

/// The per-image failures of a task.
pub async fn failures(
    conn: &mut AnyConnection,
    task_id: &str,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query("SELECT filename, reason FROM task_failures WHERE task_id = $1 ORDER BY filename")
        .bind(task_id)
        .fetch_all(conn)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}
