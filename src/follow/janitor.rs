//! The janitor: the one remover of objects. It deletes what the log says is
//! gone: the files of `DataItemsDeleted`, a late batch's `OutputsDiscarded`,
//! everything under a deleted project's prefix or a cancelled task's folder,
//! and a download's spec once the download has ended. A reactor with its own
//! checkpoint, so removals interrupted by a crash or restart resume;
//! deleting an absent object is not an error, so a replayed batch is
//! harmless. A file recorded again after its deletion (same key) is left
//! alone.

use tessera_domain::download::{Download, DownloadEvent};
use tessera_domain::project::data::{DataEvent, Deleted};
use tessera_domain::project::{Project, ProjectEvent};
use tessera_domain::task::{Task, TaskEvent};
use tessera_domain::{Aggregate, Cause, EventStore, RecordedEvent};

use crate::adapters::storage::ObjectStore;
use crate::adapters::store::SqlEventStore;
use crate::follow::reactor::Reactor;

pub const CHECKPOINT: &str = "janitor:objects";

pub struct Janitor {
    pub store: SqlEventStore,
    pub objects: ObjectStore,
}

impl Janitor {
    /// The state of aggregate `A` on stream `stream_id`.
    async fn fold<A: Aggregate>(&self, stream_id: &str) -> Result<Option<A>, Cause> {
        let events = self
            .store
            .read_stream(stream_id)
            .await?
            .iter()
            .filter(|e| e.is::<A::Event>())
            .map(RecordedEvent::decode)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(A::fold(stream_id, &events))
    }

    /// Object keys of `<bucket>/…` keys (others are not ours to remove).
    fn keys<'a>(&self, s3_keys: impl IntoIterator<Item = &'a String>) -> Vec<String> {
        s3_keys
            .into_iter()
            .filter_map(|k| self.objects.object_key(k).ok().map(str::to_owned))
            .collect()
    }

    async fn deleted_items(&self, project_id: &str, items: &[Deleted]) -> Result<(), Cause> {
        // A file recorded again since (deleted, then uploaded anew under the
        // same key) keeps its new object.
        let names: Vec<&str> = items.iter().map(|d| d.filename.as_str()).collect();
        let live = tessera_projections::data_items::existing(
            &mut *self.store.pool().acquire().await?,
            project_id,
            &names,
        )
        .await?;
        let keys = self.keys(
            items
                .iter()
                .filter(|d| live.get(&d.filename).is_none_or(|l| l.s3_key != d.s3_key))
                .map(|d| &d.s3_key),
        );
        self.objects.delete(&keys).await?;
        tracing::info!(files = keys.len(), "removed deleted files from storage");
        Ok(())
    }

    /// Everything under `<prefix>/` (a `<bucket>/…` key).
    async fn folder(&self, prefix: &str) -> Result<usize, Cause> {
        let Ok(key) = self.objects.object_key(prefix) else {
            tracing::warn!(%prefix, "folder is not in this bucket");
            return Ok(0);
        };
        Ok(self.objects.delete_prefix(&format!("{key}/")).await?)
    }
}

#[async_trait::async_trait]
impl Reactor for Janitor {
    fn name(&self) -> &'static str {
        CHECKPOINT
    }

    async fn react(&self, events: &[RecordedEvent]) -> Result<(), Cause> {
        for e in events {
            if let Some(data) = e.decode_if::<DataEvent>() {
                if let DataEvent::DataItemsDeleted {
                    project_id, items, ..
                } = data?
                {
                    self.deleted_items(&project_id, &items).await?;
                }
            } else if let Some(task) = e.decode_if::<TaskEvent>() {
                match task? {
                    // What the task recorded, and what jobs still in flight
                    // wrote before they saw the cancel.
                    TaskEvent::TaskCancelled { .. } => {
                        if let Some(t) = self.fold::<Task>(&e.stream_id).await? {
                            self.folder(&format!("{}/{}", t.s3_prefix, t.task_id))
                                .await?;
                        }
                    }
                    // What a job wrote after the folder was removed.
                    TaskEvent::OutputsDiscarded { s3_keys, .. } => {
                        self.objects.delete(&self.keys(&s3_keys)).await?;
                    }
                    _ => {}
                }
            } else if let Some(project) = e.decode_if::<ProjectEvent>() {
                if let ProjectEvent::ProjectDeleted { .. } = project? {
                    if let Some(p) = self.fold::<Project>(&e.stream_id).await? {
                        let n = self.folder(&p.s3_prefix).await?;
                        tracing::info!(project_id = %e.stream_id, objects = n, "removed deleted project's objects");
                    }
                }
            } else if let Some(download) = e.decode_if::<DownloadEvent>() {
                if let DownloadEvent::DownloadFinished { .. }
                | DownloadEvent::DownloadFailed { .. } = download?
                {
                    // The spec (an object key) has done its work; the zip stays.
                    if let Some(d) = self.fold::<Download>(&e.stream_id).await? {
                        self.objects
                            .delete(std::slice::from_ref(&d.spec_key))
                            .await?;
                    }
                }
            }
        }
        Ok(())
    }
}
