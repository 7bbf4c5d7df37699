//! Reactors: followers that act outside the database (publish to the bus,
//! delete objects, drop caches). No transaction is held while the outside
//! world answers (on SQLite that would hold the write lock and stall every
//! append); a reactor that dies between its effects and its checkpoint sees
//! the batch again, so reactions must be idempotent.

use async_trait::async_trait;
use tessera_domain::{Cause, LogPosition, RecordedEvent};

use super::{advance, checkpoint, CheckpointLock, BATCH};
use crate::adapters::store::SqlEventStore;

#[async_trait]
pub trait Reactor: Send + Sync {
    /// The follower's name; for a durable reactor, its checkpoint row.
    fn name(&self) -> &'static str;

    /// Whether the position is kept in the database (the default) or in
    /// this process only, starting at the log's head: for reactions that
    /// concern this process alone (dropping its caches).
    fn durable(&self) -> bool {
        true
    }

    /// What the log says, in order; an error retries the same batch later.
    async fn react(&self, events: &[RecordedEvent]) -> Result<(), Cause>;
}

/// Reads, reacts to and checkpoints one batch; returns its size. `at` is the
/// position of a reactor that is not durable.
pub async fn react_once(
    store: &SqlEventStore,
    reactor: &dyn Reactor,
    at: &mut Option<LogPosition>,
) -> Result<usize, Cause> {
    let mut conn = store.pool().acquire().await?;
    let from = match (reactor.durable(), *at) {
        (true, _) => checkpoint(&mut conn, reactor.name(), CheckpointLock::Shared, store).await?,
        (false, Some(at)) => at,
        (false, None) => {
            let head = tessera_domain::EventStore::head(store).await?;
            *at = Some(head);
            head
        }
    };
    let events = store.read_all_on(&mut conn, from, BATCH, true).await?;
    drop(conn);
    let Some(last) = events.last().map(|e| e.log_position) else {
        return Ok(0);
    };
    reactor.react(&events).await?;
    if reactor.durable() {
        advance(&mut *store.pool().acquire().await?, reactor.name(), last).await?;
    } else {
        *at = Some(last);
    }
    Ok(events.len())
}

/// Where a durable reactor stands.
pub async fn position(store: &SqlEventStore, name: &str) -> Result<LogPosition, sqlx::Error> {
    let mut conn = store.pool().acquire().await?;
    checkpoint(&mut conn, name, CheckpointLock::Shared, store).await
}
