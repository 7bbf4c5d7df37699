//! `event_counts`: events per (stream type, event type).

use async_trait::async_trait;
use sqlx::{AnyConnection, Row};
use tessera_domain::RecordedEvent;

use crate::{Projection, ProjectionError};

pub struct EventCounts;

#[async_trait]
impl Projection for EventCounts {
    fn name(&self) -> &'static str {
        "event_counts"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["event_counts"]
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        // The position guard makes a second application of the same event a no-op.
        sqlx::query(
            "INSERT INTO event_counts (stream_type, event_type, events, last_commit, last_position) \
             VALUES ($1, $2, 1, $3, $4) \
             ON CONFLICT (stream_type, event_type) DO UPDATE SET \
               events = event_counts.events + 1, \
               last_commit = excluded.last_commit, \
               last_position = excluded.last_position \
             WHERE (event_counts.last_commit, event_counts.last_position) \
                   < (excluded.last_commit, excluded.last_position)",
        )
        .bind(&event.stream_type)
        .bind(&event.event_type)
        .bind(event.log_position.commit)
        .bind(event.log_position.position)
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// One row of the read model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCount {
    pub stream_type: String,
    pub event_type: String,
    pub events: i64,
}

/// All counts, by stream type then event type.
pub async fn list(conn: &mut AnyConnection) -> Result<Vec<EventCount>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT stream_type, event_type, events FROM event_counts ORDER BY stream_type, event_type",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(EventCount {
                stream_type: r.try_get(0)?,
                event_type: r.try_get(1)?,
                events: r.try_get(2)?,
            })
        })
        .collect()
}
