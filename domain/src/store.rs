//! The event-log port. Adapters: PostgreSQL and SQLite (in `src/store`).

use async_trait::async_trait;

use crate::event::{ExpectedVersion, LogPosition, NewEvent, RecordedEvent, StreamRef};

/// A failure's cause, kept whole (its text is part of the error's message).
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// What can go wrong when talking to the event log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended to the stream first.
    #[error("stream {stream_id} is at version {actual}, expected {expected:?}")]
    Conflict {
        stream_id: String,
        expected: ExpectedVersion,
        actual: i64,
    },
    /// An inline projection's uniqueness rule refused the events (for
    /// example a second user with the same email). `constraint` is the
    /// rule's name as the read model declares it, whatever the dialect
    /// reported: callers map it in one line.
    #[error("{constraint} is already taken")]
    Duplicate { constraint: String },
    /// The database cannot be reached or has no room now (connection
    /// refused or lost, pool exhausted, busy): worth retrying later.
    #[error("event store unavailable: {0}")]
    Unavailable(Cause),
    /// The database refused a statement (a bug or a schema mismatch, not
    /// an outage), or the store is configured wrongly.
    #[error("event store failed: {0}")]
    Failed(Cause),
    /// A stored row could not be decoded.
    #[error("corrupt event {event_id}: {reason}")]
    Corrupt { event_id: String, reason: String },
}

impl StoreError {
    /// A failure described in words (no error value to keep).
    pub fn failed(message: impl Into<String>) -> StoreError {
        StoreError::Failed(message.into().into())
    }

    /// Whether `Duplicate` of the named constraint.
    pub fn is_duplicate_of(&self, name: &str) -> bool {
        matches!(self, StoreError::Duplicate { constraint } if constraint == name)
    }
}

/// The result of a successful append.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendOutcome {
    /// The stream's version after the append.
    pub stream_version: i64,
    /// The events as stored (positions assigned).
    pub events: Vec<RecordedEvent>,
}

/// The event log: one table of facts, appended with an optimistic-concurrency guard.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends `events` to `stream` if its version satisfies `expected`, running the
    /// inline projections in the same transaction. All or nothing.
    async fn append(
        &self,
        stream: &StreamRef,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError>;

    /// Every event of one stream, oldest first.
    async fn read_stream(&self, stream_id: &str) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Up to `limit` events strictly after `after`, in log order. Never returns an
    /// event while an older transaction that could still insert before it is open.
    async fn read_all(
        &self,
        after: LogPosition,
        limit: u32,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The log position of the newest event a follower may read now.
    async fn head(&self) -> Result<LogPosition, StoreError>;
}
