//! Read models: one module per read model, each an `apply(event)` plus its queries.
//!
//! A projection turns the event log into tables the API reads. Every projection
//! is rebuildable: truncating its tables and replaying the whole log gives the
//! same rows (`tessera projections rebuild`, checked by `tessera projections verify`).
//!
//! SQL here is written once for both dialects (PostgreSQL and SQLite through
//! sqlx's `Any` driver): `$n` placeholders, `ON CONFLICT` upserts, integer and
//! text columns only.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::AnyConnection;
use tessera_domain::RecordedEvent;

pub mod data_items;
pub mod downloads;
pub mod event_counts;
pub mod pools;
pub mod projects;
pub mod tasks;
pub mod users;

/// `$first, $first+1, …` for `n` values: the inside of an `IN (…)` list.
pub fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a projection could not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("read model database error")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Codec(#[from] tessera_domain::CodecError),
    #[error("event {event_id} ({event_type}) cannot be applied: {reason}")]
    BadEvent {
        event_id: String,
        event_type: String,
        reason: String,
    },
}

/// A read model fed by the event log.
#[async_trait]
pub trait Projection: Send + Sync {
    /// Stable name: the checkpoint key and the CLI argument.
    fn name(&self) -> &'static str;
    /// The tables this projection owns (truncated by rebuild, compared by verify).
    fn tables(&self) -> &'static [&'static str];
    /// Applies one event. Must be idempotent: applying the same event twice leaves
    /// the same rows as applying it once.
    async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError>;
}

/// Projections written in the same transaction as the append: only those a
/// command needs strongly consistent (uniqueness, credential lookups).
pub fn inline() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(users::Users),
        Arc::new(projects::Projects),
        Arc::new(data_items::DataItems),
        Arc::new(tasks::Tasks),
        Arc::new(downloads::Downloads),
        Arc::new(pools::Pools),
    ]
}

/// Projections that follow the log asynchronously, each with its own checkpoint.
pub fn asynchronous() -> Vec<Arc<dyn Projection>> {
    vec![Arc::new(event_counts::EventCounts)]
}

/// Every projection, inline first.
pub fn all() -> Vec<Arc<dyn Projection>> {
    let mut all = inline();
    all.extend(asynchronous());
    all
}
