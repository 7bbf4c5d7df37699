//! The event relay: every stored event is published to
//! `tessera.events.<stream_type>.<event_type>` on NATS, in log order, from a
//! checkpoint (a [`Reactor`]). The message id is the event id, so after a crash
//! between publishing and saving the checkpoint the stream's duplicate window
//! drops the replays. Operators watch with any NATS client: `tessera.events.>`.
//!
//! After a batch of events, each generation or download task the batch
//! touched has its progress, as its read model now holds it, published to
//! `tessera.tasks.<task_id>.progress` (plain NATS, not kept: a live view; the
//! API's `task_progress` is the record).

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use serde_json::json;
use tessera_domain::download::DownloadEvent;
use tessera_domain::task::TaskEvent;
use tessera_domain::{Cause, LogPosition, RecordedEvent};

use crate::adapters::store::SqlEventStore;
use crate::follow::reactor::Reactor;

pub const EVENTS_STREAM: &str = "TESSERA_EVENTS";
/// The checkpoint row of the relay (beside the projections').
pub const CHECKPOINT: &str = "relay:nats";

/// The subject of an event. Tokens are the stream and event types, which are
/// our own identifiers (no dots or wildcards).
pub fn subject(e: &RecordedEvent) -> String {
    format!("tessera.events.{}.{}", e.stream_type, e.event_type)
}

/// The message body: the event envelope as JSON.
pub fn body(e: &RecordedEvent) -> Vec<u8> {
    json!({
        "event_id": e.event_id,
        "global_position": e.global_position,
        "stream_type": e.stream_type,
        "stream_id": e.stream_id,
        "stream_version": e.stream_version,
        "event_type": e.event_type,
        "event_version": e.event_version,
        "payload": e.payload,
        "metadata": e.metadata,
        "recorded_at": e.recorded_at,
    })
    .to_string()
    .into_bytes()
}

/// Creates or updates the events stream (limits retention: kept for a week).
pub async fn ensure_stream(js: &jetstream::Context) -> Result<(), String> {
    let config = stream::Config {
        name: EVENTS_STREAM.into(),
        subjects: vec!["tessera.events.>".into()],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        max_age: Duration::from_secs(7 * 24 * 3600),
        duplicate_window: Duration::from_secs(600),
        ..Default::default()
    };
    match js.get_stream(EVENTS_STREAM).await {
        Ok(_) => js.update_stream(config).await.map(|_| ()),
        Err(_) => js.create_stream(config).await.map(|_| ()),
    }
    .map_err(|e| e.to_string())
}

/// The subject of a task's live progress.
pub fn progress_subject(task_id: &str) -> String {
    format!("tessera.tasks.{task_id}.progress")
}

/// A task's progress message, from its read model.
async fn progress(
    conn: &mut sqlx::AnyConnection,
    kind: Task,
    task_id: &str,
) -> Result<Option<serde_json::Value>, sqlx::Error> {
    Ok(match kind {
        Task::Generation => tessera_projections::tasks::by_task(conn, task_id)
            .await?
            .map(|t| {
                json!({
                    "task_id": t.task_id,
                    "project_id": t.project_id,
                    "kind": t.kind,
                    "status": t.status,
                    "number_finished": t.number_finished,
                    "number_gen_images": t.number_gen_images,
                    "failures": t.failures,
                    "error": t.error,
                    "updated_at": t.updated_at,
                })
            }),
        Task::Download => tessera_projections::downloads::by_task(conn, task_id)
            .await?
            .map(|d| {
                json!({
                    "task_id": d.task_id,
                    "project_id": d.project_id,
                    "kind": "download",
                    "status": d.status,
                    "files": d.files,
                    "size": d.size,
                    "error": d.error,
                    "updated_at": d.updated_at,
                })
            }),
    })
}

/// Publishes each event, then waits for every acknowledgement; then the
/// progress of the tasks the batch touched.
pub struct Relay {
    client: async_nats::Client,
    js: jetstream::Context,
    store: SqlEventStore,
}

impl Relay {
    /// Creates or updates the events stream and returns the relay.
    pub async fn new(client: async_nats::Client, store: SqlEventStore) -> Result<Relay, String> {
        let js = jetstream::new(client.clone());
        ensure_stream(&js).await?;
        Ok(Relay { client, js, store })
    }

    async fn publish_progress(&self, events: &[RecordedEvent]) -> Result<(), Cause> {
        let mut tasks: Vec<(Task, &str)> = events
            .iter()
            .filter_map(|e| {
                let kind = if e.is::<TaskEvent>() {
                    Task::Generation
                } else if e.is::<DownloadEvent>() {
                    Task::Download
                } else {
                    return None;
                };
                Some((kind, e.stream_id.as_str()))
            })
            .collect();
        tasks.sort_unstable();
        tasks.dedup();
        if tasks.is_empty() {
            return Ok(());
        }
        let mut conn = self.store.pool().acquire().await?;
        for (kind, task_id) in tasks {
            if let Some(body) = progress(&mut conn, kind, task_id).await? {
                self.client
                    .publish(progress_subject(task_id), body.to_string().into())
                    .await?;
            }
        }
        Ok(self.client.flush().await?)
    }
}

/// The two kinds of task whose progress is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Task {
    Generation,
    Download,
}

#[async_trait::async_trait]
impl Reactor for Relay {
    fn name(&self) -> &'static str {
        CHECKPOINT
    }

    async fn react(&self, events: &[RecordedEvent]) -> Result<(), Cause> {
        let mut acks = Vec::with_capacity(events.len());
        for e in events {
            let publish = jetstream::message::PublishMessage::build()
                .payload(body(e).into())
                .message_id(e.event_id.to_string());
            acks.push(self.js.send_publish(subject(e), publish).await?);
        }
        for ack in acks {
            ack.await?;
        }
        self.publish_progress(events).await
    }
}

/// Where the relay stands.
pub async fn position(store: &SqlEventStore) -> Result<LogPosition, sqlx::Error> {
    crate::follow::reactor::position(store, CHECKPOINT).await
}
