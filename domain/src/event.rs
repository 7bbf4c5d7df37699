//! The event envelope: what every stored fact looks like, whatever its aggregate.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Who and what caused an event. Stored beside the payload, never inside it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The id shared by every event of one user-visible workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The event (or message) that directly caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// The user id, worker or operator that acted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The HTTP request that led to the command, for log correlation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// The stream an aggregate's events belong to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamRef {
    /// The aggregate kind: `user`, `project`, `task`, `worker_pool`.
    pub stream_type: String,
    /// Unique across all streams.
    pub stream_id: String,
}

impl StreamRef {
    pub fn new(stream_type: impl Into<String>, stream_id: impl Into<String>) -> Self {
        Self {
            stream_type: stream_type.into(),
            stream_id: stream_id.into(),
        }
    }
}

/// An event about to be appended.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    /// Past tense: `ProjectCreated`.
    pub event_type: String,
    /// Schema version of `payload`; upcasters lift old versions on read.
    pub event_version: i32,
    pub payload: Value,
    pub metadata: Metadata,
}

impl NewEvent {
    pub fn new(event_type: impl Into<String>, event_version: i32, payload: Value) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            event_version,
            payload,
            metadata: Metadata::default(),
        }
    }

    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }
}

/// Where a follower of the whole log stands.
///
/// The log is read in `(commit, position)` order. `commit` is the id of the
/// transaction that wrote the event (on SQLite, where writers are serialised, it
/// equals the position). Followers read only events whose transaction is older
/// than every transaction still in flight, so no event can later appear *before*
/// a position a follower has already passed: that is what makes following gap-safe
/// although `global_position` values are handed out before commit.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LogPosition {
    pub commit: i64,
    pub position: i64,
}

impl LogPosition {
    pub const START: LogPosition = LogPosition {
        commit: 0,
        position: 0,
    };
}

/// An event as stored, after upcasting to its current schema version.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub log_position: LogPosition,
    pub global_position: i64,
    pub event_id: Uuid,
    pub stream_type: String,
    pub stream_id: String,
    pub stream_version: i64,
    pub event_type: String,
    pub event_version: i32,
    pub payload: Value,
    pub metadata: Metadata,
    pub recorded_at: DateTime<Utc>,
}

/// The version a writer believes a stream is at: the optimistic-concurrency guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the stream holds (only for facts that cannot conflict).
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last version must be exactly this.
    Exact(i64),
}

impl ExpectedVersion {
    /// Whether a stream currently at `actual` (0 = no stream) satisfies this guard.
    pub fn admits(self, actual: i64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exact(v) => actual == v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_version_guards() {
        assert!(ExpectedVersion::Any.admits(7));
        assert!(ExpectedVersion::NoStream.admits(0));
        assert!(!ExpectedVersion::NoStream.admits(1));
        assert!(ExpectedVersion::Exact(3).admits(3));
        assert!(!ExpectedVersion::Exact(3).admits(4));
    }

    #[test]
    fn log_positions_order_by_commit_first() {
        let a = LogPosition {
            commit: 1,
            position: 9,
        };
        let b = LogPosition {
            commit: 2,
            position: 3,
        };
        assert!(a < b);
    }
}
