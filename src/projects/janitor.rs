//! Removes objects the log says are gone: the files of `DataItemsDeleted` and
//! everything under a deleted project's prefix or a cancelled task's folder. A reactor with its own
//! checkpoint, so removals interrupted by a crash or restart resume; deleting
//! an absent object is not an error, so a replayed batch is harmless. A file
//! that was recorded again after its deletion (same key) is left alone.

use tessera_domain::project::data::{DataEvent, DATA_STREAM_TYPE};
use tessera_domain::project::{ProjectEvent, STREAM_TYPE};
use tessera_domain::{EventStore, RecordedEvent};

use crate::reactor::Reactor;
use crate::storage::ObjectStore;
use crate::store::SqlEventStore;

pub const CHECKPOINT: &str = "janitor:objects";

pub struct Janitor {
    pub store: SqlEventStore,
    pub objects: ObjectStore,
}

impl Janitor {
    async fn project_prefix(&self, project_id: &str) -> Result<Option<String>, String> {
        let events = self
            .store
            .read_stream(project_id)
            .await
            .map_err(|e| e.to_string())?;
        for e in &events {
            if let Ok(ProjectEvent::ProjectCreated { s3_prefix, .. }) =
                tessera_projections::decode::<ProjectEvent>(e)
            {
                return Ok(Some(s3_prefix));
            }
        }
        Ok(None)
    }
}

#[async_trait::async_trait]
impl Reactor for Janitor {
    fn checkpoint(&self) -> &'static str {
        CHECKPOINT
    }

    async fn react(&self, events: &[RecordedEvent]) -> Result<(), String> {
        for e in events {
            if e.stream_type == DATA_STREAM_TYPE && e.event_type == "DataItemsDeleted" {
                let Ok(DataEvent::DataItemsDeleted {
                    project_id, items, ..
                }) = tessera_projections::decode::<DataEvent>(e)
                else {
                    continue;
                };
                // A file recorded again since (deleted, then uploaded anew
                // under the same key) keeps its new object.
                let names: Vec<&str> = items.iter().map(|d| d.filename.as_str()).collect();
                let live = {
                    let mut conn = self
                        .store
                        .pool()
                        .acquire()
                        .await
                        .map_err(|e| e.to_string())?;
                    tessera_projections::data_items::existing(&mut conn, &project_id, &names)
                        .await
                        .map_err(|e| e.to_string())?
                };
                let keys: Vec<String> = items
                    .iter()
                    .filter(|d| live.get(&d.filename).is_none_or(|l| l.s3_key != d.s3_key))
                    .filter_map(|d| self.objects.object_key(&d.s3_key).ok().map(str::to_owned))
                    .collect();
                self.objects
                    .delete(&keys)
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(files = keys.len(), "removed deleted files from storage");
            } else if e.stream_type == tessera_domain::task::STREAM_TYPE
                && e.event_type == "TaskCancelled"
            {
                // A cancelled task's folder: what it recorded, and what jobs
                // still in flight wrote.
                let events = self
                    .store
                    .read_stream(&e.stream_id)
                    .await
                    .map_err(|e| e.to_string())?;
                let Some(tessera_domain::task::TaskEvent::GenerationRequested {
                    s3_prefix, ..
                }) = events
                    .first()
                    .and_then(|f| tessera_projections::decode(f).ok())
                else {
                    continue;
                };
                if let Ok(key) = self.objects.object_key(&s3_prefix) {
                    let folder = format!("{key}/{}/", e.stream_id);
                    self.objects
                        .delete_prefix(&folder)
                        .await
                        .map_err(|e| e.to_string())?;
                }
            } else if e.stream_type == STREAM_TYPE && e.event_type == "ProjectDeleted" {
                let Some(prefix) = self.project_prefix(&e.stream_id).await? else {
                    continue;
                };
                let Ok(key) = self.objects.object_key(&prefix) else {
                    tracing::warn!(%prefix, "deleted project's prefix is not in this bucket");
                    continue;
                };
                let n = self
                    .objects
                    .delete_prefix(&format!("{key}/"))
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(project_id = %e.stream_id, objects = n, "removed deleted project's objects");
            }
        }
        Ok(())
    }
}
