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

use tessera_domain::bus::{Bus, ConsumerConfig, Job};
use tessera_domain::download::{
    self, CompressJob, CompressResult, DownType, Download, DownloadEvent, DownloadStatus,
    ExportEntry, ExportSpec, ManifestEntry, STREAM_TYPE,
};
use tessera_domain::identity::Email;
use tessera_domain::mail::{Mailer, OutgoingMail};
use tessera_domain::project::data::DataKind;
use tessera_domain::{
    DomainError, EventStore, ExpectedVersion, RecordedEvent, StoreError, StreamRef,
};
use tessera_projections::data_items;
use tessera_projections::downloads::{self, DownloadRow};

use crate::identity::Principal;
use crate::projects::Projects;
use crate::reactor::Reactor;
use crate::service::{encode, ServiceError};
use crate::store::SqlEventStore;

type Result<T> = std::result::Result<T, ServiceError>;

/// Where compress jobs go.
pub const COMPRESS_SUBJECT: &str = "tessera.jobs.compress";
/// Where workers report finished (or failed) zips.
pub const COMPRESS_RESULTS_SUBJECT: &str = "tessera.results.compress";
/// How long a presigned download link works.
pub const LINK_TTL: Duration = Duration::from_secs(3600);

pub struct Downloads {
    store: SqlEventStore,
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
        store: SqlEventStore,
        projects: Arc<Projects>,
        bus: Arc<dyn Bus>,
        mailer: Arc<dyn Mailer>,
    ) -> Self {
        Downloads {
            store,
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
        let mut conn = self.store.pool().acquire().await?;
        let items = data_items::of_kinds(&mut conn, &project.project_id, down_type.kinds()).await?;
        drop(conn);
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
        let body = serde_json::to_vec(&spec).map_err(|e| ServiceError::Internal(e.to_string()))?;
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
            .store
            .append(
                &StreamRef::new(STREAM_TYPE, &task_id),
                ExpectedVersion::NoStream,
                vec![encode(&event, event.event_type(), &who.user_id)?],
            )
            .await;
        match appended {
            Ok(_) => Ok(task_id),
            // PostgreSQL names the constraint, SQLite the column.
            Err(StoreError::Duplicate { constraint })
                if constraint.contains(downloads::ONE_BUILD)
                    || constraint.contains("build_key") =>
            {
                // Another request of the same selection won the race.
                let _ = objects.delete(&[spec_key]).await;
                self.existing_build(&project.project_id, &fingerprint)
                    .await?
                    .ok_or_else(|| ServiceError::Internal("the winning build vanished".into()))
            }
            Err(e) => {
                let _ = objects.delete(&[spec_key]).await;
                Err(e.into())
            }
        }
    }

    async fn existing_build(&self, project_id: &str, fingerprint: &str) -> Result<Option<String>> {
        let mut conn = self.store.pool().acquire().await?;
        Ok(downloads::by_build(&mut conn, project_id, fingerprint)
            .await?
            .map(|r| r.task_id))
    }

    /// One of the caller's download tasks, with a fresh link once finished.
    pub async fn view(&self, who: &Principal, task_id: &str) -> Result<DownloadView> {
        let mut conn = self.store.pool().acquire().await?;
        let row = downloads::by_id(&mut conn, &who.user_id, task_id)
            .await?
            .ok_or_else(|| DomainError::NotFound("task not found".into()))?;
        drop(conn);
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

    async fn load(&self, task_id: &str) -> Result<(Option<Download>, i64)> {
        let recorded = self.store.read_stream(task_id).await?;
        let version = recorded.last().map_or(0, |e| e.stream_version);
        let events = recorded
            .iter()
            .filter(|e| e.stream_type == STREAM_TYPE)
            .map(tessera_projections::decode::<DownloadEvent>)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        Ok((Download::fold(&events), version))
    }

    /// Puts a running task's job on the bus (dedup id: the task id).
    pub async fn dispatch(&self, task_id: &str) -> Result<bool> {
        let (Some(d), _) = self.load(task_id).await? else {
            return Ok(false);
        };
        if d.status != DownloadStatus::Running {
            return Ok(false);
        }
        let job = CompressJob {
            task_id: d.task_id.clone(),
            spec_key: d.spec_key.clone(),
        };
        let payload =
            serde_json::to_vec(&job).map_err(|e| ServiceError::Internal(e.to_string()))?;
        self.bus
            .publish(Job {
                subject: COMPRESS_SUBJECT.into(),
                dedup_id: format!("compress:{}", d.task_id),
                payload,
            })
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        Ok(true)
    }

    /// Re-publishes the jobs of running tasks (start-up: an in-process bus
    /// starts empty; a durable one drops the repeats).
    pub async fn redispatch_running(&self) -> Result<usize> {
        let mut conn = self.store.pool().acquire().await?;
        let running = downloads::running(&mut conn).await?;
        drop(conn);
        let mut n = 0;
        for row in running {
            if self.dispatch(&row.task_id).await? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Records a worker's report once. `false`: the task is not in this log.
    pub async fn record(&self, result: &CompressResult) -> Result<bool> {
        for _ in 0..8 {
            let (Some(d), version) = self.load(&result.task_id).await? else {
                return Ok(false);
            };
            let new = d.record(result, now());
            if new.is_empty() {
                return Ok(true);
            }
            let events = new
                .iter()
                .map(|e| encode(e, e.event_type(), "worker"))
                .collect::<Result<Vec<_>>>()?;
            match self
                .store
                .append(
                    &StreamRef::new(STREAM_TYPE, &d.task_id),
                    ExpectedVersion::Exact(version),
                    events,
                )
                .await
            {
                Ok(_) => {
                    // The spec has done its work.
                    let _ = self
                        .projects
                        .objects()
                        .delete(std::slice::from_ref(&d.spec_key))
                        .await;
                    self.mail_owner(&d, &new).await;
                    return Ok(true);
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Internal(
            "download stream kept changing".into(),
        ))
    }

    /// Tells the owner the zip is ready (or why it is not). A mail that
    /// cannot be sent is logged; the task's state does not depend on it.
    async fn mail_owner(&self, d: &Download, new: &[DownloadEvent]) {
        let Ok(mut conn) = self.store.pool().acquire().await else {
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

    /// Consumes workers' reports until `shutdown` flips.
    pub async fn consume_results(self: Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        let config = ConsumerConfig {
            ack_wait: Duration::from_secs(60),
            max_deliver: 20,
            ..ConsumerConfig::new("core-compress-results", COMPRESS_RESULTS_SUBJECT)
        };
        let bus = self.bus.clone();
        crate::consume::consume(bus, config, shutdown, |delivery| {
            let this = self.clone();
            async move {
                let result = match serde_json::from_slice::<CompressResult>(&delivery.payload) {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = delivery
                            .acker
                            .dead_letter(&format!("not a compress result: {e}"))
                            .await;
                        return;
                    }
                };
                match this.record(&result).await {
                    Ok(true) => {
                        let _ = delivery.acker.ack().await;
                    }
                    Ok(false) => {
                        let _ = delivery.acker.nak(Duration::from_secs(1)).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "recording a compress result failed; redelivering");
                        let _ = delivery.acker.nak(Duration::from_millis(500)).await;
                    }
                }
            }
        })
        .await;
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

/// Turns each download request into a compress job (a reactor: its
/// checkpoint moves after the job is on the bus).
pub struct Dispatcher {
    pub downloads: Arc<Downloads>,
}

#[async_trait::async_trait]
impl Reactor for Dispatcher {
    fn checkpoint(&self) -> &'static str {
        "dispatch:download"
    }

    async fn react(&self, events: &[RecordedEvent]) -> std::result::Result<(), String> {
        for e in events {
            if e.stream_type == STREAM_TYPE && e.event_type == "DownloadRequested" {
                self.downloads
                    .dispatch(&e.stream_id)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}
