//! The event relay: every stored event is published to
//! `tessera.events.<stream_type>.<event_type>` on NATS, in log order, from a
//! checkpoint. The message id is the event id, so after a crash between
//! publishing and saving the checkpoint the stream's duplicate window drops
//! the replays. Operators watch with any NATS client: `tessera.events.>`.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use serde_json::json;
use tessera_domain::{LogPosition, RecordedEvent};
use tokio::sync::watch;

use crate::store::SqlEventStore;

pub const EVENTS_STREAM: &str = "TESSERA_EVENTS";
/// The checkpoint row of the relay (beside the projections').
pub const CHECKPOINT: &str = "relay:nats";
const BATCH: u32 = 500;

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

async fn relay_batch(store: &SqlEventStore, js: &jetstream::Context) -> Result<usize, String> {
    // No transaction is held while NATS answers (on SQLite that would hold the
    // write lock and stall every append): read, publish, then advance the
    // checkpoint. A relay that dies in between publishes the batch again and
    // the stream's duplicate window drops the repeats.
    let (from, events) = {
        let mut conn = store.pool().acquire().await.map_err(|e| e.to_string())?;
        let from = crate::runner::checkpoint(&mut conn, "", CHECKPOINT)
            .await
            .map_err(|e| e.to_string())?;
        let events = store
            .read_all_on(&mut conn, from, BATCH, true)
            .await
            .map_err(|e| e.to_string())?;
        (from, events)
    };
    let Some(last) = events.last().map(|e| e.log_position) else {
        return Ok(0);
    };
    let mut acks = Vec::with_capacity(events.len());
    for e in &events {
        let publish = jetstream::message::PublishMessage::build()
            .payload(body(e).into())
            .message_id(e.event_id.to_string());
        acks.push(
            js.send_publish(subject(e), publish)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    for ack in acks {
        ack.await.map_err(|e| e.to_string())?;
    }
    // Only forward: a slower relay in another process never moves it back.
    sqlx::query(
        "INSERT INTO projection_checkpoints (name, commit_id, position) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET commit_id = excluded.commit_id, position = excluded.position \
         WHERE (projection_checkpoints.commit_id, projection_checkpoints.position) \
               < (excluded.commit_id, excluded.position)",
    )
    .bind(CHECKPOINT)
    .bind(last.commit)
    .bind(last.position)
    .execute(store.pool())
    .await
    .map_err(|e| e.to_string())?;
    debug_assert!(from < last);
    Ok(events.len())
}

/// Relays until `shutdown` flips. New servers start from the beginning of the
/// log (the checkpoint is absent), so the events stream holds the history too.
pub async fn run(
    store: SqlEventStore,
    client: async_nats::Client,
    mut appended: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let js = jetstream::new(client);
    if let Err(e) = ensure_stream(&js).await {
        tracing::error!(error = %e, "cannot create the events stream; relay stopped");
        return;
    }
    tracing::info!("event relay started");
    loop {
        if *shutdown.borrow() {
            break;
        }
        match relay_batch(&store, &js).await {
            Ok(n) if n as u32 >= BATCH => continue,
            Ok(_) => {
                tokio::select! {
                    _ = appended.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "relaying events failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
    tracing::info!("event relay stopped");
}

/// Where the relay stands.
pub async fn position(store: &SqlEventStore) -> Result<LogPosition, sqlx::Error> {
    let mut conn = store.pool().acquire().await?;
    crate::runner::checkpoint(&mut conn, "", CHECKPOINT).await
}
