//! Everything that follows a log: projection runners and reactors follow the
//! event log from their checkpoints ([`run`], the one loop), result
//! consumers follow the bus ([`consume`]).
//!
//! **Architecture Invariant:** a checkpoint only moves forward, and only
//! after what it covers is done: a projection's rows commit with it; a
//! reactor's effects (messages, deletions) happen before it, so a crash
//! repeats a batch and never skips one (reactions are idempotent).

pub mod consume;
pub mod dispatch;
pub mod janitor;
pub mod projections;
pub mod reactor;
pub mod relay;
pub mod results;

use std::sync::Arc;
use std::time::Duration;

use sqlx::{AnyConnection, Row};
use tessera_domain::{Cause, LogPosition};
use tessera_projections::Projection;
use tokio::sync::watch;

use crate::adapters::store::SqlEventStore;
use reactor::Reactor;

/// Events per batch (one transaction of a projection).
pub const BATCH: u32 = 1000;

/// Followers poll this often even without a wake-up (another process may
/// have appended).
const POLL: Duration = Duration::from_millis(500);

/// How a checkpoint is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointLock {
    /// A plain read (status, reactors, replay bounds).
    Shared,
    /// Locked until the reading transaction ends, so two runners (in two
    /// processes) never apply the same batch. SQLite's write transaction
    /// already holds the whole database.
    ForUpdate,
}

/// Where the follower `name` stands (the log's start when it has no row).
pub async fn checkpoint(
    conn: &mut AnyConnection,
    name: &str,
    lock: CheckpointLock,
    store: &SqlEventStore,
) -> Result<LogPosition, sqlx::Error> {
    let clause = match lock {
        CheckpointLock::Shared => "",
        CheckpointLock::ForUpdate => store.dialect().row_lock(),
    };
    let row = sqlx::query(&format!(
        "SELECT commit_id, position FROM projection_checkpoints WHERE name = $1{clause}"
    ))
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        Some(r) => LogPosition {
            commit: r.try_get(0)?,
            position: r.try_get(1)?,
        },
        None => LogPosition::START,
    })
}

/// Moves the checkpoint `name` to `to`, never back: a slower follower in
/// another process leaves a newer checkpoint alone. With `LogPosition::START`
/// it only makes sure the row exists (so it can be locked).
pub async fn advance(
    conn: &mut AnyConnection,
    name: &str,
    to: LogPosition,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO projection_checkpoints (name, commit_id, position) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET commit_id = excluded.commit_id, position = excluded.position \
         WHERE (projection_checkpoints.commit_id, projection_checkpoints.position) \
               < (excluded.commit_id, excluded.position)",
    )
    .bind(name)
    .bind(to.commit)
    .bind(to.position)
    .execute(conn)
    .await?;
    Ok(())
}

/// What follows the event log: a projection (rows and checkpoint in one
/// transaction) or a reactor (effects outside the database, then the
/// checkpoint).
#[derive(Clone)]
pub enum Follower {
    Projection(Arc<dyn Projection>),
    Reactor(Arc<dyn Reactor>),
}

impl Follower {
    pub fn name(&self) -> &'static str {
        match self {
            Follower::Projection(p) => p.name(),
            Follower::Reactor(r) => r.name(),
        }
    }

    /// One batch after the follower's position; how many events it held.
    async fn step(
        &self,
        store: &SqlEventStore,
        at: &mut Option<LogPosition>,
    ) -> Result<usize, Cause> {
        match self {
            Follower::Projection(p) => Ok(projections::catch_up_once(store, p.as_ref()).await?),
            Follower::Reactor(r) => reactor::react_once(store, r.as_ref(), at).await,
        }
    }
}

/// Follows the log until `shutdown` flips, woken by appends (and every
/// [`POLL`]). A failing batch is logged with its cause and retried after a
/// growing pause; the position never moves past it.
pub async fn run(
    store: SqlEventStore,
    follower: Follower,
    mut appended: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = follower.name();
    tracing::info!(follower = name, "following the log");
    // The position of a follower without a checkpoint row (see
    // [`Reactor::durable`]).
    let mut at = None;
    let mut failures = 0u32;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let wait = match follower.step(&store, &mut at).await {
            Ok(n) if n >= usize::try_from(BATCH).unwrap_or(usize::MAX) => {
                failures = 0;
                continue;
            }
            Ok(_) => {
                failures = 0;
                POLL
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = POLL.saturating_mul(failures.min(20));
                tracing::warn!(
                    follower = name,
                    error = %crate::app::error::chain(e.as_ref()),
                    retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "batch failed; retrying"
                );
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
        };
        tokio::select! {
            _ = appended.changed() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
    }
    tracing::info!(follower = name, "stopped");
}
