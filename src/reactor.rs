//! Reactors: processes that act on the event log outside the database (publish
//! to NATS, delete objects, ...) from their own checkpoint row, beside the
//! projections'. One loop serves them all: read a batch after the checkpoint,
//! react, then move the checkpoint forward. No transaction is held while the
//! outside world answers (on SQLite that would hold the write lock and stall
//! every append); a reactor that dies in between sees the batch again, so
//! reactions must be idempotent.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tessera_domain::{LogPosition, RecordedEvent};
use tokio::sync::watch;

use crate::store::SqlEventStore;

#[async_trait]
pub trait Reactor: Send + Sync {
    /// The checkpoint row's name (not a projection's name).
    fn checkpoint(&self) -> &'static str;
    /// What the log says, in order; an error retries the same batch later.
    async fn react(&self, events: &[RecordedEvent]) -> Result<(), String>;
}

const BATCH: u32 = 500;

/// Reads, reacts to and checkpoints one batch; returns its size.
pub async fn react_once(store: &SqlEventStore, reactor: &dyn Reactor) -> Result<usize, String> {
    let (from, events) = {
        let mut conn = store.pool().acquire().await.map_err(|e| e.to_string())?;
        let from = crate::runner::checkpoint(&mut conn, "", reactor.checkpoint())
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
    reactor.react(&events).await?;
    // Only forward: a slower reactor in another process never moves it back.
    sqlx::query(
        "INSERT INTO projection_checkpoints (name, commit_id, position) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET commit_id = excluded.commit_id, position = excluded.position \
         WHERE (projection_checkpoints.commit_id, projection_checkpoints.position) \
               < (excluded.commit_id, excluded.position)",
    )
    .bind(reactor.checkpoint())
    .bind(last.commit)
    .bind(last.position)
    .execute(store.pool())
    .await
    .map_err(|e| e.to_string())?;
    debug_assert!(from < last);
    Ok(events.len())
}

/// Reacts until `shutdown` flips, woken by appends (and every 500 ms).
pub async fn run(
    store: SqlEventStore,
    reactor: Arc<dyn Reactor>,
    mut appended: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = reactor.checkpoint();
    tracing::info!(reactor = name, "started");
    let mut failures = 0u32;
    loop {
        if *shutdown.borrow() {
            break;
        }
        match react_once(&store, reactor.as_ref()).await {
            Ok(n) if n as u32 >= BATCH => {
                failures = 0;
                continue;
            }
            Ok(_) => {
                failures = 0;
                tokio::select! {
                    _ = appended.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = Duration::from_millis(500 * u64::from(failures.min(20)));
                tracing::warn!(reactor = name, error = %e, retry_in_ms = wait.as_millis() as u64, "reaction failed");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
    tracing::info!(reactor = name, "stopped");
}

/// Where a reactor stands.
pub async fn position(store: &SqlEventStore, name: &str) -> Result<LogPosition, sqlx::Error> {
    let mut conn = store.pool().acquire().await?;
    crate::runner::checkpoint(&mut conn, "", name).await
}
