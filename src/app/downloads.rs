//! Compress-download: a request fixes a selection of a project's items and
//! becomes a `download` task; the dispatcher (a reactor) puts one job on
//! `tessera.jobs.compress`; a worker streams the zip into object storage and
//! reports on `tessera.results.compress`; the core records the end, mails the
//! owner and hands out presigned GETs.
//!
//! The selection (every file with its zip path and size, and the manifest) is
//! written as a spec object beside the zip before the task is recorded: the
//! job message only names it, so an export of 100,000 files is one small
//! message.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tessera_domain::bus::{Bus, Job};
use tessera_domain::download::{
    self, CompressJob, CompressResult, DownType, Download, DownloadEvent, DownloadStatus,
    ExportEntry, ExportSpec, ManifestEntry, COMPRESS_SUBJECT,
};
use tessera_domain::identity::Email;
use tessera_domain::mail::{Mailer, OutgoingMail};
use tessera_domain::project::data::DataKind;
use tessera_domain::{Decision, DomainError};
use tessera_projections::data_items;
use tessera_projections::downloads::{self, DownloadRow};

use crate::app::error::{Result, ServiceError};
use crate::app::executor::Executor;
use crate::app::identity::Principal;
use crate::app::projects::Projects;

/// How long a presigned download link works.
pub const LINK_TTL: Duration = Duration::from_secs(3600);

pub struct Downloads {
    exec: Arc<Executor>,
    projects: Arc<Projects>,
    bus: Arc<dyn Bus>,
    mailer: Arc<dyn Mailer>,
}

/// A download task as the API shows it.
pub struct DownloadView {
    pub row: DownloadRow,
    /// A fresh presigned GET of the zip, once it is finished.
    pub presign_url: Option<String>,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Downloads {
    pub fn new(
        exec: Arc<Executor>,
        projects: Arc<Projects>,
        bus: Arc<dyn Bus>,
        mailer: Arc<dyn Mailer>,
    ) -> Self {
        Downloads {
            exec,
            projects,
            bus,
            mailer,
        }
    }

    /// Starts an export, or returns the task already building (or having
    /// built) the same selection.
    pub async fn create(
        &self,
        who: &Principal,
        project_id: &str,
        down_type: &str,
    ) -> Result<String> {
        let down_type = DownType::parse(down_type)?;
        let project = self.projects.by_id(who, project_id).await?;
        let items = data_items::of_kinds(
            &mut *self.conn().await?,
            &project.project_id,
            down_type.kinds(),
        )
        .await?;
        if items.is_empty() {
            let what = match down_type {
                DownType::All => "images".to_owned(),
                other => format!("{} images", other.as_str()),
            };
            return Err(DomainError::Invalid(format!(
                "There is nothing to download: the project has no {what}."
            ))
            .into());
        }
        let objects = self.projects.objects();
        let mut entries = Vec::with_capacity(items.len());
        let mut manifest = BTreeMap::new();
        let mut selection = Vec::with_capacity(items.len());
        for item in &items {
            let kind = DataKind::parse(&item.kind)?;
            let path = format!("{}/{}", kind.as_str(), item.filename);
            let key = objects.object_key(&item.s3_key)?.to_owned();
            let size = u64::try_from(item.size).unwrap_or(0);
            selection.push((path.clone(), key.clone(), size, item.hash.clone()));
            manifest.insert(
                path.clone(),
                ManifestEntry {
                    name: item.filename.clone(),
                    type_of_image: kind.as_str().to_owned(),
                    class: (!item.classtype.is_empty()).then(|| item.classtype.clone()),
                    method_to_create: method_names(&item.gen_id),
                    size,
                    name_of_project: project.name.clone(),
                },
            );
            entries.push(ExportEntry { key, path, size });
        }
        let fingerprint = download::fingerprint(down_type, &project.name, &selection);
        if let Some(existing) = self
            .existing_build(&project.project_id, &fingerprint)
            .await?
        {
            return Ok(existing);
        }
        let task_id = uuid::Uuid::new_v4().simple().to_string();
        let folder = format!("{}/download", project.s3_prefix);
        let zip_key = objects
            .object_key(&format!(
                "{folder}/{}",
                download::zip_name(&project.name, down_type, &task_id)
            ))?
            .to_owned();
        let spec_key = objects
            .object_key(&format!("{folder}/.spec/{task_id}.json"))?
            .to_owned();
        let spec = ExportSpec {
            zip_key: zip_key.clone(),
            entries,
            manifest,
        };
        let body = serde_json::to_vec(&spec)
            .map_err(|e| ServiceError::internal("encoding an export spec", e))?;
        objects.put(&spec_key, body, "application/json").await?;
        let event = DownloadEvent::DownloadRequested {
            task_id: task_id.clone(),
            project_id: project.project_id.clone(),
            project_name: project.name.clone(),
            owner: who.user_id.clone(),
            down_type,
            fingerprint: fingerprint.clone(),
            zip_key,
            spec_key: spec_key.clone(),
            files: spec.entries.len() as u64,
            bytes: spec.entries.iter().map(|e| e.size).sum(),
            at: now(),
        };
        let appended = self
            .exec
            .execute::<Download, (), _, _>(&task_id, &who.user_id, |existing| match existing {
                Some(_) => Err(ServiceError::bug("a fresh task id is taken")),
                None => Ok(vec![event.clone()]),
            })
            .await
            .and_then(|done| done.output());
        // The spec is named by no event when the append fails: its writer
        // removes it (the janitor only knows objects the log knows).
        match appended {
            Ok(()) => Ok(task_id),
            Err(e) if e.is_duplicate_of(downloads::ONE_BUILD) => {
                // Another request of the same selection won the race.
                let _ = objects.delete(&[spec_key]).await;
                self.existing_build(&project.project_id, &fingerprint)
                    .await?
                    .ok_or_else(|| ServiceError::bug("the winning build vanished"))
            }
            Err(e) => {
                let _ = objects.delete(&[spec_key]).await;
                Err(e)
            }
        }
    }

    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>> {
        Ok(self.exec.store().pool().acquire().await?)
    }

    async fn existing_build(&self, project_id: &str, fingerprint: &str) -> Result<Option<String>> {
        Ok(
            downloads::by_build(&mut *self.conn().await?, project_id, fingerprint)
                .await?
                .map(|r| r.task_id),
        )
    }

    /// One of the caller's download tasks, with a fresh link once finished.
    pub async fn view(&self, who: &Principal, task_id: &str) -> Result<DownloadView> {
        let row = downloads::by_id(&mut *self.conn().await?, &who.user_id, task_id)
            .await?
            .ok_or_else(|| DomainError::NotFound("task not found".into()))?;
        let presign_url = if row.status == DownloadStatus::Finish.as_str() {
            Some(
                self.projects
                    .objects()
                    .presign_get(&row.zip_key, LINK_TTL)
                    .await?,
            )
        } else {
            None
        };
        Ok(DownloadView { row, presign_url })
    }

    /// Puts a running task's job on the bus (dedup id: the task id).
    pub async fn dispatch(&self, task_id: &str) -> Result<bool> {
        let Some(d) = self.exec.load::<Download>(task_id).await?.state else {
            return Ok(false);
        };
        if d.status != DownloadStatus::Running {
            return Ok(false);
        }
        let job = CompressJob {
            task_id: d.task_id.clone(),
            spec_key: d.spec_key.clone(),
        };
        let payload = serde_json::to_vec(&job)
            .map_err(|e| ServiceError::internal("encoding a compress job", e))?;
        self.bus
            .publish(Job {
                subject: COMPRESS_SUBJECT.into(),
                dedup_id: format!("compress:{}", d.task_id),
                payload,
            })
            .await
            .map_err(|e| ServiceError::internal("publishing a compress job", e))?;
        Ok(true)
    }

    /// Re-publishes the jobs of running tasks (start-up: an in-process bus
    /// starts empty; a durable one drops the repeats).
    pub async fn redispatch_running(&self) -> Result<usize> {
        let running = downloads::running(&mut *self.conn().await?).await?;
        let mut n = 0;
        for row in running {
            if self.dispatch(&row.task_id).await? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Records a worker's report once. `false`: the task is not in this log.
    /// The spec has done its work then: the janitor removes it.
    pub async fn record(&self, result: &CompressResult) -> Result<bool> {
        let at = now();
        let done = self
            .exec
            .execute::<Download, bool, _, _>(&result.task_id, "worker", |d| {
                Ok(match d {
                    Some(d) => Decision::new(d.record(result, at), true),
                    None => Decision::new(Vec::new(), false),
                })
            })
            .await?;
        if let (Some(d), false) = (&done.state, done.events.is_empty()) {
            self.mail_owner(d, &done.events).await;
        }
        done.output()
    }

    /// Tells the owner the zip is ready (or why it is not). A mail that
    /// cannot be sent is logged; the task's state does not depend on it.
    async fn mail_owner(&self, d: &Download, new: &[DownloadEvent]) {
        let Ok(mut conn) = self.conn().await else {
            return;
        };
        let email = match tessera_projections::users::email_of(&mut conn, &d.owner).await {
            Ok(Some(e)) => e,
            _ => return,
        };
        drop(conn);
        let Ok(to) = Email::parse(&email) else { return };
        let (subject, body) = match new.first() {
            Some(DownloadEvent::DownloadFinished { size, .. }) => (
                "Your download is ready".to_owned(),
                format!(
                    "The zip of task {} is ready ({size} bytes).\n\nAsk projects/download_update \
                     (or dataflow/get_compress_download_task) with this task id for a download \
                     link; each link works for one hour.\n",
                    d.task_id
                ),
            ),
            Some(DownloadEvent::DownloadFailed { reason, .. }) => (
                "Your download could not be built".to_owned(),
                format!(
                    "The zip of task {} could not be built: {reason}\n",
                    d.task_id
                ),
            ),
            _ => return,
        };
        if let Err(e) = self.mailer.send(OutgoingMail { to, subject, body }).await {
            tracing::warn!(error = %e, task_id = %d.task_id, "cannot mail the owner of a download");
        }
    }
}

/// Method names from a data item's `gen_id` (comma-separated method ids).
fn method_names(gen_id: &str) -> Vec<String> {
    gen_id
        .split(',')
        .filter(|id| !id.is_empty())
        .map(|id| {
            tessera_domain::generation::find(id)
                .map(|m| m.name.to_owned())
                .unwrap_or_else(|| id.to_owned())
        })
        .collect()
}
