//! `projects` (inline): the project list of each user, and the uniqueness of a
//! project name per owner.

use async_trait::async_trait;
use sqlx::{AnyConnection, Row};
use tessera_domain::project::ProjectEvent;
use tessera_domain::RecordedEvent;

use crate::{Projection, ProjectionError};

pub struct Projects;

/// The constraint a duplicate project name trips over.
pub const NAME_TAKEN: &str = "projects_owner_name";

#[async_trait]
impl Projection for Projects {
    fn name(&self) -> &'static str {
        "projects"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["projects"]
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        if !event.is::<ProjectEvent>() {
            return Ok(());
        }
        match event.decode::<ProjectEvent>()? {
            ProjectEvent::ProjectCreated {
                project_id,
                owner,
                identity_id,
                name,
                description,
                is_sample,
                s3_prefix,
                at,
            } => {
                sqlx::query(
                    "INSERT INTO projects (project_id, owner, name, name_key, description, identity_id, s3_prefix, is_sample, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (project_id) DO NOTHING",
                )
                .bind(&project_id)
                .bind(&owner)
                .bind(name.as_str())
                .bind(name.key())
                .bind(&description)
                .bind(&identity_id)
                .bind(&s3_prefix)
                .bind(i64::from(is_sample))
                .bind(at)
                .execute(conn)
                .await?;
            }
            ProjectEvent::ProjectRenamed { name, .. } => {
                sqlx::query("UPDATE projects SET name = $1, name_key = $2 WHERE project_id = $3")
                    .bind(name.as_str())
                    .bind(name.key())
                    .bind(&event.stream_id)
                    .execute(conn)
                    .await?;
            }
            ProjectEvent::ProjectDescribed { description, .. } => {
                sqlx::query("UPDATE projects SET description = $1 WHERE project_id = $2")
                    .bind(&description)
                    .bind(&event.stream_id)
                    .execute(conn)
                    .await?;
            }
            ProjectEvent::ProjectDeleted { .. } => {
                sqlx::query("DELETE FROM projects WHERE project_id = $1")
                    .bind(&event.stream_id)
                    .execute(conn)
                    .await?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRow {
    pub project_id: String,
    pub name: String,
    pub description: String,
    pub identity_id: String,
    pub s3_prefix: String,
    pub is_sample: bool,
}

const COLUMNS: &str = "project_id, name, description, identity_id, s3_prefix, is_sample";

fn row(r: &sqlx::any::AnyRow) -> Result<ProjectRow, sqlx::Error> {
    Ok(ProjectRow {
        project_id: r.try_get(0)?,
        name: r.try_get(1)?,
        description: r.try_get(2)?,
        identity_id: r.try_get(3)?,
        s3_prefix: r.try_get(4)?,
        is_sample: r.try_get::<i64, _>(5)? != 0,
    })
}

/// A user's projects, oldest first.
pub async fn list(conn: &mut AnyConnection, owner: &str) -> Result<Vec<ProjectRow>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM projects WHERE owner = $1 ORDER BY created_at, project_id"
    ))
    .bind(owner)
    .fetch_all(conn)
    .await?
    .iter()
    .map(row)
    .collect()
}

/// One of the user's projects by name (case-insensitive).
pub async fn by_name(
    conn: &mut AnyConnection,
    owner: &str,
    name: &str,
) -> Result<Option<ProjectRow>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM projects WHERE owner = $1 AND name_key = $2"
    ))
    .bind(owner)
    .bind(name.trim().to_lowercase())
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(row)
    .transpose()
}

/// One of the user's projects by id; another user's id finds nothing.
pub async fn by_id(
    conn: &mut AnyConnection,
    owner: &str,
    project_id: &str,
) -> Result<Option<ProjectRow>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM projects WHERE owner = $1 AND project_id = $2"
    ))
    .bind(owner)
    .bind(project_id)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(row)
    .transpose()
}
