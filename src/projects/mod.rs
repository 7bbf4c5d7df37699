//! Project command handlers: load the `Project`, decide, append; data items
//! decide from the `data_items` read model under their stream's version.
//! Reads come from the read models, never from the log.

pub mod janitor;
pub mod sample;

use std::collections::HashMap;
use std::time::Duration;

use tessera_domain::project::data::{
    self, data_stream_id, DataEvent, DataItem, DataKind, DATA_STREAM_TYPE,
};
use tessera_domain::project::{
    parse_description, Project, ProjectEvent, ProjectLimits, ProjectName, STREAM_TYPE,
};
use tessera_domain::{DomainError, EventStore, ExpectedVersion, StoreError, StreamRef};
use tessera_projections::data_items::{self, GroupRow, ItemRow};
use tessera_projections::projects::{self, ProjectRow};

use crate::identity::{Principal, ServiceError};
use crate::storage::{ObjectStore, StorageError};
use crate::store::SqlEventStore;

/// How long a presigned upload URL works.
pub const UPLOAD_URL_TTL: Duration = Duration::from_secs(15 * 60);

impl From<StorageError> for ServiceError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::BadKey(m) => DomainError::Invalid(m).into(),
            StorageError::Backend(m) => ServiceError::Internal(m),
        }
    }
}

/// Where `list_data` goes on: after the item at `seq` (opaque to clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor(pub i64);

/// One page of `list_data`.
pub struct Page {
    pub items: Vec<ItemRow>,
    /// The last item's name and position, when more may follow.
    pub next: Option<(String, Cursor)>,
}

type Result<T> = std::result::Result<T, ServiceError>;

pub struct Projects {
    store: SqlEventStore,
    limits: ProjectLimits,
    objects: ObjectStore,
    locks: crate::service::StreamLocks,
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
    pub fn new(store: SqlEventStore, limits: ProjectLimits, objects: ObjectStore) -> Self {
        Projects {
            store,
            limits,
            objects,
            locks: Default::default(),
        }
    }

    pub fn bucket(&self) -> &str {
        self.objects.bucket()
    }

    pub fn limits(&self) -> &ProjectLimits {
        &self.limits
    }

    pub fn objects(&self) -> &ObjectStore {
        &self.objects
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
        let s3_prefix = format!("{}/{}/{}", self.bucket(), who.identity_id, project_id);
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

    /// Deletes a project (refused while tasks run).
    pub async fn delete(&self, who: &Principal, project_id: &str) -> Result<()> {
        let now = chrono::Utc::now().timestamp();
        let running = {
            let mut conn = self.store.pool().acquire().await?;
            tessera_projections::tasks::running(&mut conn, &[project_id])
                .await?
                .len()
        };
        self.execute(who, project_id, |p| p.delete(running, now))
            .await?;
        Ok(())
    }

    /// The unfinished tasks of the given projects.
    pub async fn running_tasks(
        &self,
        project_ids: &[&str],
    ) -> Result<Vec<tessera_projections::tasks::TaskRow>> {
        let mut conn = self.store.pool().acquire().await?;
        Ok(tessera_projections::tasks::running(&mut conn, project_ids).await?)
    }

    /// How many augmentation runs a project has had.
    pub async fn times_generated(&self, project_id: &str) -> Result<i64> {
        let mut conn = self.store.pool().acquire().await?;
        Ok(tessera_projections::tasks::times(&mut conn, project_id, "AUGMENT").await?)
    }
}

impl Projects {
    /// The groups (ORIGINAL / PREPROCESS / AUGMENT) of the given projects.
    pub async fn groups(&self, project_ids: &[&str]) -> Result<HashMap<String, Vec<GroupRow>>> {
        let mut conn = self.store.pool().acquire().await?;
        let mut by_project: HashMap<String, Vec<GroupRow>> = HashMap::new();
        for g in data_items::groups(&mut conn, project_ids).await? {
            by_project.entry(g.project_id.clone()).or_default().push(g);
        }
        Ok(by_project)
    }

    /// Which of `filenames` the project already holds, with their sizes.
    pub async fn upload_check(
        &self,
        who: &Principal,
        project_id: &str,
        filenames: &[String],
    ) -> Result<Vec<(String, u64)>> {
        if filenames.len() > self.limits.max_batch * 2 {
            return Err(DomainError::Invalid(format!(
                "ls_filename may hold at most {} names",
                self.limits.max_batch * 2
            ))
            .into());
        }
        let project = self.by_id(who, project_id).await?;
        let mut conn = self.store.pool().acquire().await?;
        let names: Vec<&str> = filenames.iter().map(String::as_str).collect();
        let existing = data_items::existing(&mut conn, &project.project_id, &names).await?;
        Ok(filenames
            .iter()
            .filter_map(|n| existing.get(n).map(|e| (n.clone(), e.size)))
            .collect())
    }

    /// Presigned PUT URLs (15 minutes) for files of the project.
    pub async fn upload_urls(
        &self,
        who: &Principal,
        project_id: &str,
        filenames: &[String],
    ) -> Result<Vec<(String, String, String)>> {
        if filenames.is_empty() || filenames.len() > self.limits.max_batch {
            return Err(DomainError::Invalid(format!(
                "ls_filename must hold 1-{} names",
                self.limits.max_batch
            ))
            .into());
        }
        let project = self.by_id(who, project_id).await?;
        let mut urls = Vec::with_capacity(filenames.len());
        for name in filenames {
            data::check_filename(name)?;
            let s3_key = format!("{}/{name}", project.s3_prefix);
            let key = self.objects.object_key(&s3_key)?;
            let url = self.objects.presign_put(key, UPLOAD_URL_TTL).await?;
            urls.push((name.clone(), s3_key, url));
        }
        Ok(urls)
    }

    /// Records files the client has put into storage: each must lie in the
    /// project's prefix and exist there with the stated size. All or nothing.
    pub async fn upload_update(
        &self,
        who: &Principal,
        project_id: &str,
        items: Vec<DataItem>,
    ) -> Result<usize> {
        let project = self.by_id(who, project_id).await?;
        // The checks that need no state first, so a bad batch costs no I/O.
        data::plan_upload(
            &project.s3_prefix,
            items.clone(),
            &HashMap::new(),
            0,
            &ProjectLimits {
                max_originals_per_project: u64::MAX,
                ..self.limits
            },
        )?;
        let keys = items
            .iter()
            .map(|i| self.objects.object_key(&i.s3_key))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let sizes = self.objects.sizes(&keys).await?;
        let mut wrong = Vec::new();
        for (item, size) in items.iter().zip(&sizes) {
            match size {
                None => wrong.push(format!("{} is not in storage", item.s3_key)),
                Some(n) if *n != item.size => wrong.push(format!(
                    "{} has {n} bytes in storage, not {}",
                    item.s3_key, item.size
                )),
                Some(_) => {}
            }
        }
        if !wrong.is_empty() {
            let shown: Vec<_> = wrong.iter().take(5).cloned().collect();
            return Err(DomainError::Invalid(format!(
                "{} of the files do not match storage: {}",
                wrong.len(),
                shown.join("; ")
            ))
            .into());
        }
        self.record_uploads(who, &project, items).await
    }

    /// Appends the uploads (already checked against storage).
    async fn record_uploads(
        &self,
        who: &Principal,
        project: &ProjectRow,
        items: Vec<DataItem>,
    ) -> Result<usize> {
        let n = items.len();
        let names: Vec<String> = items.iter().map(|i| i.filename.clone()).collect();
        let stream = StreamRef::new(DATA_STREAM_TYPE, data_stream_id(&project.project_id));
        crate::service::decide_and_append(&self.store, &self.locks, &stream, |_| {
            let items = items.clone();
            let names = &names;
            async move {
                let mut conn = self.store.pool().acquire().await?;
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                let existing = data_items::existing(&mut conn, &project.project_id, &refs).await?;
                let originals = data_items::groups(&mut conn, &[project.project_id.as_str()])
                    .await?
                    .iter()
                    .find(|g| g.kind == DataKind::Original.as_str())
                    .map_or(0, |g| g.count.max(0) as u64);
                let planned = data::plan_upload(
                    &project.s3_prefix,
                    items,
                    &existing,
                    originals,
                    &self.limits,
                )?;
                let event = DataEvent::DataItemsUploaded {
                    project_id: project.project_id.clone(),
                    items: planned,
                    at: chrono::Utc::now().timestamp(),
                };
                Ok(vec![crate::service::encode(
                    &event,
                    event.event_type(),
                    &who.user_id,
                )?])
            }
        })
        .await?;
        Ok(n)
    }

    /// Forgets files of the project; storage removes them in the background.
    pub async fn delete_images(
        &self,
        who: &Principal,
        project_id: &str,
        filenames: Vec<String>,
    ) -> Result<usize> {
        let project = self.by_id(who, project_id).await?;
        let stream = StreamRef::new(DATA_STREAM_TYPE, data_stream_id(&project.project_id));
        let deleted = std::sync::atomic::AtomicUsize::new(0);
        crate::service::decide_and_append(&self.store, &self.locks, &stream, |_| {
            let filenames = &filenames;
            let project = &project;
            let deleted = &deleted;
            async move {
                let mut conn = self.store.pool().acquire().await?;
                let refs: Vec<&str> = filenames.iter().map(String::as_str).collect();
                let existing = data_items::existing(&mut conn, &project.project_id, &refs).await?;
                let planned = data::plan_delete(filenames, &existing, &self.limits)?;
                deleted.store(planned.len(), std::sync::atomic::Ordering::Relaxed);
                let event = DataEvent::DataItemsDeleted {
                    project_id: project.project_id.clone(),
                    items: planned,
                    at: chrono::Utc::now().timestamp(),
                };
                Ok(vec![crate::service::encode(
                    &event,
                    event.event_type(),
                    &who.user_id,
                )?])
            }
        })
        .await?;
        Ok(deleted.into_inner())
    }

    /// A page of the project's items, newest first.
    pub async fn list_data(
        &self,
        who: &Principal,
        project_id: &str,
        kind: Option<DataKind>,
        limit: usize,
        after: Option<Cursor>,
    ) -> Result<Page> {
        if limit == 0 || limit > self.limits.max_batch {
            return Err(DomainError::Invalid(format!(
                "num_limit must be 1-{}",
                self.limits.max_batch
            ))
            .into());
        }
        let project = self.by_id(who, project_id).await?;
        let mut conn = self.store.pool().acquire().await?;
        // One more than asked tells whether another page follows.
        let mut items = data_items::page(
            &mut conn,
            &project.project_id,
            kind,
            after.map(|c| c.0),
            limit + 1,
        )
        .await?;
        let more = items.len() > limit;
        items.truncate(limit);
        let next = if more {
            items.last().map(|i| (i.filename.clone(), Cursor(i.seq)))
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// The cursor of a client-built `next_token` that names only a file.
    pub async fn cursor_of(
        &self,
        who: &Principal,
        project_id: &str,
        filename: &str,
    ) -> Result<Cursor> {
        let project = self.by_id(who, project_id).await?;
        let mut conn = self.store.pool().acquire().await?;
        data_items::seq_of(&mut conn, &project.project_id, filename)
            .await?
            .map(Cursor)
            .ok_or_else(|| {
                DomainError::Invalid(format!(
                    "next_token names {filename}, which is not in the project"
                ))
                .into()
            })
    }

    /// Creates a sample project and fills it with the sample images.
    pub async fn create_sample(&self, who: &Principal, description: &str) -> Result<ProjectRow> {
        let project = self.create(who, "prj_sample", description, true).await?;
        let prefix = self.objects.object_key(&project.s3_prefix)?.to_owned();
        let mut items = Vec::with_capacity(sample::COUNT);
        for (name, bytes) in sample::images() {
            self.objects
                .put(&format!("{prefix}/{name}"), bytes.clone(), "image/jpeg")
                .await?;
            items.push(DataItem {
                filename: name.clone(),
                s3_key: format!("{}/{name}", project.s3_prefix),
                size: bytes.len() as u64,
                hash: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes)),
                kind: DataKind::Original,
                gen_id: String::new(),
                classtype: None,
            });
        }
        self.record_uploads(who, &project, items).await?;
        Ok(project)
    }
}
