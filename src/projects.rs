//! Project command handlers: load the `Project`, decide, append. Reads come
//! from the `projects` read model.

use tessera_domain::project::{
    parse_description, Project, ProjectEvent, ProjectLimits, ProjectName, STREAM_TYPE,
};
use tessera_domain::{DomainError, EventStore, ExpectedVersion, StoreError, StreamRef};
use tessera_projections::projects::{self, ProjectRow};

use crate::identity::{Principal, ServiceError};
use crate::store::SqlEventStore;

type Result<T> = std::result::Result<T, ServiceError>;

pub struct Projects {
    store: SqlEventStore,
    limits: ProjectLimits,
    bucket: String,
}

fn duplicate(e: StoreError) -> ServiceError {
    match e {
        StoreError::Duplicate { constraint } if constraint.contains(projects::NAME_TAKEN) || constraint.contains("projects.owner") => {
            DomainError::Conflict(
                "ConditionalCheckFailedException: User already created project with project_name before".into(),
            )
            .into()
        }
        other => other.into(),
    }
}

impl Projects {
    pub fn new(store: SqlEventStore, limits: ProjectLimits, bucket: String) -> Self {
        Projects {
            store,
            limits,
            bucket,
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub async fn list(&self, who: &Principal) -> Result<Vec<ProjectRow>> {
        let mut conn = self.store.pool().acquire().await?;
        Ok(projects::list(&mut conn, &who.user_id).await?)
    }

    pub async fn by_name(&self, who: &Principal, name: &str) -> Result<ProjectRow> {
        let mut conn = self.store.pool().acquire().await?;
        projects::by_name(&mut conn, &who.user_id, name)
            .await?
            .ok_or_else(|| DomainError::NotFound("project not found".into()).into())
    }

    pub async fn by_id(&self, who: &Principal, project_id: &str) -> Result<ProjectRow> {
        let mut conn = self.store.pool().acquire().await?;
        projects::by_id(&mut conn, &who.user_id, project_id)
            .await?
            .ok_or_else(|| DomainError::NotFound("project not found".into()).into())
    }

    /// Creates a project named `name` (`prj_sample` for samples).
    pub async fn create(
        &self,
        who: &Principal,
        name: &str,
        description: &str,
        is_sample: bool,
    ) -> Result<ProjectRow> {
        let name = ProjectName::parse(name, &self.limits)?;
        let description = parse_description(description, &self.limits)?;
        if self.list(who).await?.len() >= self.limits.max_projects_per_user {
            return Err(DomainError::LimitExceeded(format!(
                "A user may have at most {} projects.",
                self.limits.max_projects_per_user
            ))
            .into());
        }
        let project_id = format!("{}_{}", name.as_str(), uuid::Uuid::new_v4().simple());
        let s3_prefix = format!("{}/{}/{}", self.bucket, who.identity_id, project_id);
        let event = ProjectEvent::ProjectCreated {
            project_id: project_id.clone(),
            owner: who.user_id.clone(),
            identity_id: who.identity_id.clone(),
            name: name.clone(),
            description: description.clone(),
            is_sample,
            s3_prefix: s3_prefix.clone(),
            at: chrono::Utc::now().timestamp(),
        };
        self.store
            .append(
                &StreamRef::new(STREAM_TYPE, &project_id),
                ExpectedVersion::NoStream,
                vec![crate::service::encode(
                    &event,
                    event.event_type(),
                    &who.user_id,
                )?],
            )
            .await
            .map_err(duplicate)?;
        Ok(ProjectRow {
            project_id,
            name: name.as_str().to_owned(),
            description,
            identity_id: who.identity_id.clone(),
            s3_prefix,
            is_sample,
        })
    }

    async fn execute(
        &self,
        who: &Principal,
        project_id: &str,
        decide: impl Fn(&Project) -> std::result::Result<Vec<ProjectEvent>, DomainError>,
    ) -> Result<Project> {
        for _ in 0..5 {
            let recorded = self.store.read_stream(project_id).await?;
            let version = recorded.last().map_or(0, |e| e.stream_version);
            let events = recorded
                .iter()
                .map(tessera_projections::decode::<ProjectEvent>)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
            let project = Project::fold(&events)
                .filter(|p| p.owner == who.user_id && !p.deleted)
                .ok_or_else(|| DomainError::NotFound("project not found".into()))?;
            let new = decide(&project)?;
            if new.is_empty() {
                return Ok(project);
            }
            let stored = new
                .iter()
                .map(|e| crate::service::encode(e, e.event_type(), &who.user_id))
                .collect::<Result<Vec<_>>>()?;
            match self
                .store
                .append(
                    &StreamRef::new(STREAM_TYPE, project_id),
                    ExpectedVersion::Exact(version),
                    stored,
                )
                .await
            {
                Ok(_) => {
                    let all: Vec<_> = events.iter().chain(new.iter()).cloned().collect();
                    return Project::fold(&all)
                        .ok_or_else(|| ServiceError::Internal("fold failed".into()));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(duplicate(e)),
            }
        }
        Err(DomainError::TooManyRequests("The project is busy; retry.".into()).into())
    }

    /// Renames and/or re-describes the project called `current`.
    pub async fn update(
        &self,
        who: &Principal,
        current: &str,
        new_name: Option<&str>,
        new_description: Option<&str>,
    ) -> Result<Project> {
        let row = self.by_name(who, current).await?;
        let name = new_name
            .filter(|n| !n.trim().is_empty())
            .map(|n| ProjectName::parse(n, &self.limits))
            .transpose()?;
        let description = new_description
            .filter(|d| !d.is_empty())
            .map(|d| parse_description(d, &self.limits))
            .transpose()?;
        let now = chrono::Utc::now().timestamp();
        self.execute(who, &row.project_id, |p| {
            p.update(name.clone(), description.clone(), now)
        })
        .await
    }

    /// Deletes a project (refused while tasks run; none can run yet).
    pub async fn delete(&self, who: &Principal, project_id: &str) -> Result<()> {
        let now = chrono::Utc::now().timestamp();
        self.execute(who, project_id, |p| p.delete(0, now)).await?;
        Ok(())
    }
}
