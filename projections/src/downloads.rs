//! `downloads` (inline): every compress-download task with its state. One
//! running or finished build per selection (`downloads_one_build`), so the
//! same export asked twice, even at the same moment, is built once.

use async_trait::async_trait;
use sqlx::{AnyConnection, Row};
use tessera_domain::download::{DownloadEvent, DownloadStatus};
use tessera_domain::RecordedEvent;

use crate::{Projection, ProjectionError};

pub struct Downloads;

/// The constraint a second build of the same selection trips over.
pub const ONE_BUILD: &str = "downloads_one_build";

/// The unique key of a selection's build.
pub fn build_key(project_id: &str, fingerprint: &str) -> String {
    format!("{project_id}:{fingerprint}")
}

#[async_trait]
impl Projection for Downloads {
    fn name(&self) -> &'static str {
        "downloads"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["downloads"]
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        if !event.is::<DownloadEvent>() {
            return Ok(());
        }
        let id = &event.stream_id;
        match event.decode::<DownloadEvent>()? {
            DownloadEvent::DownloadRequested {
                task_id,
                project_id,
                project_name,
                owner,
                down_type,
                fingerprint,
                zip_key,
                files,
                bytes,
                at,
                ..
            } => {
                sqlx::query(
                    "INSERT INTO downloads (task_id, project_id, project_name, owner, down_type, \
                     status, zip_key, files, bytes, size, error, created_at, updated_at, build_key) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, '', $10, $10, $11) \
                     ON CONFLICT (task_id) DO NOTHING",
                )
                .bind(&task_id)
                .bind(&project_id)
                .bind(&project_name)
                .bind(&owner)
                .bind(down_type.as_str())
                .bind(DownloadStatus::Running.as_str())
                .bind(&zip_key)
                .bind(i64::try_from(files).unwrap_or(i64::MAX))
                .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
                .bind(at)
                .bind(build_key(&project_id, &fingerprint))
                .execute(conn)
                .await?;
            }
            DownloadEvent::DownloadFinished { size, at } => {
                sqlx::query(
                    "UPDATE downloads SET status = $1, size = $2, updated_at = $3 WHERE task_id = $4",
                )
                .bind(DownloadStatus::Finish.as_str())
                .bind(i64::try_from(size).unwrap_or(i64::MAX))
                .bind(at)
                .bind(id)
                .execute(conn)
                .await?;
            }
            DownloadEvent::DownloadFailed { reason, at } => {
                sqlx::query(
                    "UPDATE downloads SET status = $1, error = $2, updated_at = $3, build_key = NULL \
                     WHERE task_id = $4",
                )
                .bind(DownloadStatus::Error.as_str())
                .bind(&reason)
                .bind(at)
                .bind(id)
                .execute(conn)
                .await?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadRow {
    pub task_id: String,
    pub project_id: String,
    pub project_name: String,
    pub owner: String,
    pub down_type: String,
    pub status: String,
    pub zip_key: String,
    pub files: i64,
    pub size: i64,
    pub error: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "task_id, project_id, project_name, owner, down_type, status, zip_key, \
                       files, size, error, created_at, updated_at";

fn row(r: &sqlx::any::AnyRow) -> Result<DownloadRow, sqlx::Error> {
    Ok(DownloadRow {
        task_id: r.try_get(0)?,
        project_id: r.try_get(1)?,
        project_name: r.try_get(2)?,
        owner: r.try_get(3)?,
        down_type: r.try_get(4)?,
        status: r.try_get(5)?,
        zip_key: r.try_get(6)?,
        files: r.try_get(7)?,
        size: r.try_get(8)?,
        error: r.try_get(9)?,
        created_at: r.try_get(10)?,
        updated_at: r.try_get(11)?,
    })
}

/// One of the user's download tasks; another user's finds nothing.
pub async fn by_id(
    conn: &mut AnyConnection,
    owner: &str,
    task_id: &str,
) -> Result<Option<DownloadRow>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM downloads WHERE task_id = $1 AND owner = $2"
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
) -> Result<Option<DownloadRow>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM downloads WHERE task_id = $1"
    ))
    .bind(task_id)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(row)
    .transpose()
}

/// The running or finished build of a selection.
pub async fn by_build(
    conn: &mut AnyConnection,
    project_id: &str,
    fingerprint: &str,
) -> Result<Option<DownloadRow>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM downloads WHERE build_key = $1"
    ))
    .bind(build_key(project_id, fingerprint))
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(row)
    .transpose()
}

/// Every running download task, oldest first (start-up re-dispatch).
pub async fn running(conn: &mut AnyConnection) -> Result<Vec<DownloadRow>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM downloads WHERE status = $1 ORDER BY created_at"
    ))
    .bind(DownloadStatus::Running.as_str())
    .fetch_all(conn)
    .await?
    .iter()
    .map(row)
    .collect()
}
