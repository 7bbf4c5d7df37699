//! The event relay: every stored event is published to
//! `tessera.events.<stream_type>.<event_type>` on NATS, in log order, from a
//! checkpoint (a [`Reactor`]). The message id is the event id, so after a crash
//! between publishing and saving the checkpoint the stream's duplicate window
//! drops the replays. Operators watch with any NATS client: `tessera.events.>`.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use serde_json::json;
use tessera_domain::{LogPosition, RecordedEvent};

use crate::reactor::Reactor;
use crate::store::SqlEventStore;

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

/// Publishes each event, then waits for every acknowledgement.
pub struct Relay {
    js: jetstream::Context,
}

impl Relay {
    /// Creates or updates the events stream and returns the relay.
    pub async fn new(client: async_nats::Client) -> Result<Relay, String> {
        let js = jetstream::new(client);
        ensure_stream(&js).await?;
        Ok(Relay { js })
    }
}

#[async_trait::async_trait]
impl Reactor for Relay {
    fn checkpoint(&self) -> &'static str {
        CHECKPOINT
    }

    async fn react(&self, events: &[RecordedEvent]) -> Result<(), String> {
        let mut acks = Vec::with_capacity(events.len());
        for e in events {
            let publish = jetstream::message::PublishMessage::build()
                .payload(body(e).into())
                .message_id(e.event_id.to_string());
            acks.push(
                self.js
                    .send_publish(subject(e), publish)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        for ack in acks {
            ack.await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Where the relay stands.
pub async fn position(store: &SqlEventStore) -> Result<LogPosition, sqlx::Error> {
    crate::reactor::position(store, CHECKPOINT).await
}
