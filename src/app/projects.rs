//! Project command handlers: load the `Project`, decide, append; data items
//! decide from the `data_items` read model under their stream's version.
//! Reads come from the read models, never from the log.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tessera_domain::project::data::{
    self, data_stream_id, DataEvent, DataItem, DataKind, Dataset, UploadBatch,
};
use tessera_domain::project::{
    self as project, parse_description, NewProject, Project, ProjectEvent, ProjectLimits,
    ProjectName,
};
use tessera_domain::DomainError;
use tessera_projections::data_items::{self, GroupRow, ItemRow};
use tessera_projections::projects::{self, ProjectRow};

use crate::adapters::storage::ObjectStore;
use crate::app::executor::Executor;
use crate::app::{Principal, ServiceError};

/// How long a presigned upload URL works.
pub const UPLOAD_URL_TTL: Duration = Duration::from_secs(15 * 60);

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
    exec: Arc<Executor>,
    limits: ProjectLimits,
    objects: ObjectStore,
}

/// A second project of the same name for one owner.
fn name_taken(e: ServiceError) -> ServiceError {
    e.on_constraint(projects::NAME_TAKEN, || {
        DomainError::NameTaken("User already created project with project_name before".into())
            .into()
    })
}

impl Projects {
    pub fn new(exec: Arc<Executor>, limits: ProjectLimits, objects: ObjectStore) -> Self {
        Projects {
            exec,
            limits,
            objects,
        }
    }

    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>> {
        Ok(self.exec.store().pool().acquire().await?)
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
        let mut conn = self.conn().await?;
        Ok(projects::list(&mut conn, &who.user_id).await?)
    }

    pub async fn by_name(&self, who: &Principal, name: &str) -> Result<ProjectRow> {
        let mut conn = self.conn().await?;
        projects::by_name(&mut conn, &who.user_id, name)
            .await?
            .ok_or_else(|| DomainError::NotFound("project not found".into()).into())
    }

    pub async fn by_id(&self, who: &Principal, project_id: &str) -> Result<ProjectRow> {
        let mut conn = self.conn().await?;
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
        let new = NewProject {
            owner: &who.user_id,
            identity_id: &who.identity_id,
            name,
            description,
            is_sample,
        };
        let owned = self.list(who).await?.len();
        let event = project::create(
            &new,
            owned,
            self.bucket(),
            &uuid::Uuid::new_v4().simple().to_string(),
            &self.limits,
            chrono::Utc::now().timestamp(),
        )?;
        let ProjectEvent::ProjectCreated { project_id, .. } = &event else {
            return Err(ServiceError::bug("project::create made no ProjectCreated"));
        };
        let created = self
            .exec
            .execute::<Project, (), _, _>(project_id, &who.user_id, |existing| match existing {
                Some(_) => Err(ServiceError::bug("a fresh project id is taken")),
                None => Ok(vec![event.clone()]),
            })
            .await
            .map_err(name_taken)?
            .state()?
            .ok_or_else(|| ServiceError::bug("a new project folds to nothing"))?;
        Ok(ProjectRow {
            project_id: created.project_id,
            name: created.name.as_str().to_owned(),
            description: created.description,
            identity_id: created.identity_id,
            s3_prefix: created.s3_prefix,
            is_sample: created.is_sample,
        })
    }

    /// Runs a decision on one of the caller's live projects.
    async fn execute(
        &self,
        who: &Principal,
        project_id: &str,
        decide: impl Fn(&Project) -> std::result::Result<Vec<ProjectEvent>, DomainError>,
    ) -> Result<Project> {
        self.exec
            .execute::<Project, (), _, _>(project_id, &who.user_id, |project| {
                let project = project
                    .filter(|p| p.owner == who.user_id && !p.deleted)
                    .ok_or_else(|| DomainError::NotFound("project not found".into()))?;
                Ok(decide(project))
            })
            .await
            .map_err(name_taken)?
            .state()?
            .ok_or_else(|| ServiceError::bug("a project folds to nothing"))
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
            let mut conn = self.conn().await?;
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
        let mut conn = self.conn().await?;
        Ok(tessera_projections::tasks::running(&mut conn, project_ids).await?)
    }

    /// How many augmentation runs a project has had.
    pub async fn times_generated(&self, project_id: &str) -> Result<i64> {
        let mut conn = self.conn().await?;
        Ok(tessera_projections::tasks::times(
            &mut conn,
            project_id,
            tessera_domain::task::TaskKind::Augment,
        )
        .await?)
    }
}

impl Projects {
    /// The groups (ORIGINAL / PREPROCESS / AUGMENT) of the given projects.
    pub async fn groups(&self, project_ids: &[&str]) -> Result<HashMap<String, Vec<GroupRow>>> {
        let mut conn = self.conn().await?;
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
        let mut conn = self.conn().await?;
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
        let batch = UploadBatch::check(&project.s3_prefix, items, &self.limits)?;
        let items = batch.items();
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
        self.record_uploads(who, &project, &batch).await
    }

    /// Appends the uploads (already checked against storage), deciding from
    /// the project's current items under the data stream's version.
    async fn record_uploads(
        &self,
        who: &Principal,
        project: &ProjectRow,
        batch: &UploadBatch,
    ) -> Result<usize> {
        let names = batch.filenames();
        let project_id = project.project_id.as_str();
        let names_ref = &names;
        let read = move |_: Option<&Dataset>| async move {
            let names = names_ref;
            let mut conn = self.conn().await?;
            let existing = data_items::existing(&mut conn, project_id, names).await?;
            let originals = data_items::groups(&mut conn, &[project_id])
                .await?
                .iter()
                .find(|g| g.kind == DataKind::Original.as_str())
                .map_or(0, |g| u64::try_from(g.count).unwrap_or(0));
            Ok((existing, originals))
        };
        let at = chrono::Utc::now().timestamp();
        self.exec
            .execute_with::<Dataset, _, (), _, _, _, _>(
                &data_stream_id(project_id),
                &who.user_id,
                read,
                |_, (existing, originals)| {
                    let items = data::plan_upload(batch, existing, *originals, &self.limits)?;
                    Ok(vec![DataEvent::DataItemsUploaded {
                        project_id: project_id.to_owned(),
                        items,
                        at,
                    }])
                },
            )
            .await?
            .output()?;
        Ok(names.len())
    }

    /// Forgets files of the project; storage removes them in the background.
    pub async fn delete_images(
        &self,
        who: &Principal,
        project_id: &str,
        filenames: Vec<String>,
    ) -> Result<usize> {
        let project = self.by_id(who, project_id).await?;
        let project_id = project.project_id.as_str();
        let names: Vec<&str> = filenames.iter().map(String::as_str).collect();
        let names = &names;
        let read = move |_: Option<&Dataset>| async move {
            let mut conn = self.conn().await?;
            Ok(data_items::existing(&mut conn, project_id, names).await?)
        };
        let at = chrono::Utc::now().timestamp();
        self.exec
            .execute_with::<Dataset, _, usize, _, _, _, _>(
                &data_stream_id(project_id),
                &who.user_id,
                read,
                |_, existing| {
                    let items = data::plan_delete(&filenames, existing, &self.limits)?;
                    let n = items.len();
                    Ok(tessera_domain::Decision::new(
                        vec![DataEvent::DataItemsDeleted {
                            project_id: project_id.to_owned(),
                            items,
                            at,
                        }],
                        n,
                    ))
                },
            )
            .await?
            .output()
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
        let mut conn = self.conn().await?;
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
        let mut conn = self.conn().await?;
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
        let mut items = Vec::with_capacity(super::sample::COUNT);
        for (name, bytes) in super::sample::images() {
            self.objects
                .put(&format!("{prefix}/{name}"), bytes.clone(), "image/jpeg")
                .await?;
            items.push(DataItem {
                filename: name.clone(),
                s3_key: format!("{}/{name}", project.s3_prefix),
                size: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
                hash: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes)),
                kind: DataKind::Original,
                gen_id: String::new(),
                classtype: None,
            });
        }
        let batch = UploadBatch::check(&project.s3_prefix, items, &self.limits)?;
        self.record_uploads(who, &project, &batch).await?;
        Ok(project)
    }
}
