//! Projections: one batch of an asynchronous projection (what
//! [`super::run`] repeats), and the operator commands `status`, `rebuild`
//! and `verify`.
//!
//! **Architecture Invariant:** a projection's rows and its checkpoint change in
//! the same transaction, so a crash between batches replays nothing twice and
//! skips nothing.

use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use sqlx::AnyConnection;
use tessera_domain::{EventStore, LogPosition, StoreError};
use tessera_projections::Projection;

use super::{advance, checkpoint, CheckpointLock, BATCH};
use crate::adapters::store::{Dialect, SqlEventStore};

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("read model database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Projection(#[from] tessera_projections::ProjectionError),
    #[error("no projection named {0:?}; known: {1}")]
    Unknown(String, String),
}

/// Where one projection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionStatus {
    pub name: String,
    pub inline: bool,
    pub position: LogPosition,
    /// Events in the log after the checkpoint.
    pub lag: i64,
}

/// One table whose live rows differ from a fresh replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub projection: String,
    pub table: String,
    /// Live rows a replay does not produce.
    pub only_live: i64,
    /// Rows a replay produces that the live table lacks.
    pub only_replayed: i64,
}

/// Makes sure every asynchronous projection has a checkpoint row (so it can be
/// locked) before runners start.
pub async fn ensure_checkpoints(store: &SqlEventStore) -> Result<(), RunnerError> {
    let mut conn = store.pool().acquire().await?;
    for p in tessera_projections::asynchronous() {
        advance(&mut conn, p.name(), LogPosition::START).await?;
    }
    Ok(())
}

/// Applies one batch after the checkpoint; returns how many events it applied.
pub async fn catch_up_once(
    store: &SqlEventStore,
    projection: &dyn Projection,
) -> Result<usize, RunnerError> {
    let mut tx = store.begin_write().await?;
    let from = checkpoint(&mut tx, projection.name(), CheckpointLock::ForUpdate, store).await?;
    let events = store.read_all_on(&mut tx, from, BATCH, true).await?;
    let Some(last) = events.last().map(|e| e.log_position) else {
        return Ok(0);
    };
    for e in &events {
        projection.apply(&mut tx, e).await?;
    }
    advance(&mut tx, projection.name(), last).await?;
    tx.commit().await?;
    Ok(events.len())
}

/// Position and lag of every projection. Inline projections are always current.
pub async fn status(store: &SqlEventStore) -> Result<Vec<ProjectionStatus>, RunnerError> {
    let head = store.head().await?;
    let mut out = Vec::new();
    for p in store.inline_projections() {
        out.push(ProjectionStatus {
            name: p.name().to_owned(),
            inline: true,
            position: head,
            lag: 0,
        });
    }
    let mut conn = store.pool().acquire().await?;
    for p in tessera_projections::asynchronous() {
        let at = checkpoint(&mut conn, p.name(), CheckpointLock::Shared, store).await?;
        out.push(ProjectionStatus {
            name: p.name().to_owned(),
            inline: false,
            position: at,
            lag: store.count_after(at).await?,
        });
    }
    Ok(out)
}

/// A projection and whether it is inline.
type Selected = (Arc<dyn Projection>, bool);

fn select(store: &SqlEventStore, name: Option<&str>) -> Result<Vec<Selected>, RunnerError> {
    let mut all: Vec<Selected> = store
        .inline_projections()
        .iter()
        .map(|p| (p.clone(), true))
        .collect();
    all.extend(
        tessera_projections::asynchronous()
            .into_iter()
            .map(|p| (p, false)),
    );
    match name {
        None => Ok(all),
        Some(n) => {
            let known = all
                .iter()
                .map(|(p, _)| p.name())
                .collect::<Vec<_>>()
                .join(", ");
            let chosen: Vec<_> = all.into_iter().filter(|(p, _)| p.name() == n).collect();
            if chosen.is_empty() {
                Err(RunnerError::Unknown(n.to_owned(), known))
            } else {
                Ok(chosen)
            }
        }
    }
}

fn progress_bar(total: u64, label: &str, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>20} [{bar:40}] {pos}/{len} events ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label.to_owned());
    bar
}

/// Truncates the projection's tables and replays the whole log into them, in one
/// transaction: readers see the old rows until the new ones are complete.
pub async fn rebuild(
    store: &SqlEventStore,
    name: Option<&str>,
    show_progress: bool,
) -> Result<Vec<(String, u64)>, RunnerError> {
    let mut done = Vec::new();
    for (projection, inline) in select(store, name)? {
        let total = store.count_after(LogPosition::START).await?;
        let bar = progress_bar(total.max(0) as u64, projection.name(), show_progress);
        let mut tx = store.begin_write().await?;
        if inline && store.dialect() == Dialect::Postgres {
            // Inline rows are written by appends; keep appends out meanwhile.
            sqlx::query("LOCK TABLE events IN EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await?;
        }
        for table in projection.tables() {
            sqlx::query(&format!("DELETE FROM {table}"))
                .execute(&mut *tx)
                .await?;
        }
        let mut at = LogPosition::START;
        let mut applied = 0u64;
        loop {
            let events = store.read_all_on(&mut tx, at, BATCH, !inline).await?;
            let Some(last) = events.last().map(|e| e.log_position) else {
                break;
            };
            for e in &events {
                projection.apply(&mut tx, e).await?;
            }
            applied += events.len() as u64;
            bar.inc(events.len() as u64);
            at = last;
        }
        if !inline {
            advance(&mut tx, projection.name(), at).await?;
        }
        tx.commit().await?;
        bar.finish();
        done.push((projection.name().to_owned(), applied));
    }
    Ok(done)
}

/// Replays the log into scratch copies of the read models and compares them with
/// the live tables, row by row, at one consistent point of the log. Nothing live
/// is changed.
pub async fn verify(store: &SqlEventStore) -> Result<Vec<Difference>, RunnerError> {
    match store.dialect() {
        Dialect::Postgres => verify_postgres(store).await,
        Dialect::Sqlite => verify_sqlite(store).await,
    }
}

/// Where each projection's replay stops: async ones at their checkpoint, inline
/// ones at everything the snapshot sees.
async fn replay_bounds(
    store: &SqlEventStore,
    conn: &mut AnyConnection,
) -> Result<Vec<(Arc<dyn Projection>, Option<LogPosition>)>, RunnerError> {
    let mut out = Vec::new();
    for (p, inline) in select(store, None)? {
        let bound = if inline {
            None
        } else {
            Some(checkpoint(conn, p.name(), CheckpointLock::Shared, store).await?)
        };
        out.push((p, bound));
    }
    Ok(out)
}

fn within(bound: Option<LogPosition>, at: LogPosition) -> bool {
    bound.is_none_or(|b| at <= b)
}

async fn diff_table(
    conn: &mut AnyConnection,
    projection: &str,
    table: &str,
    live: &str,
    scratch: &str,
) -> Result<Option<Difference>, RunnerError> {
    let count = |a: &str, b: &str| {
        format!(
            "SELECT COUNT(*) FROM (SELECT * FROM {a}.{table} EXCEPT SELECT * FROM {b}.{table}) d"
        )
    };
    let only_live: i64 = sqlx::query_scalar(&count(live, scratch))
        .fetch_one(&mut *conn)
        .await?;
    let only_replayed: i64 = sqlx::query_scalar(&count(scratch, live))
        .fetch_one(&mut *conn)
        .await?;
    let rows = |s: &str| format!("SELECT COUNT(*) FROM {s}.{table}");
    let live_rows: i64 = sqlx::query_scalar(&rows(live))
        .fetch_one(&mut *conn)
        .await?;
    let scratch_rows: i64 = sqlx::query_scalar(&rows(scratch))
        .fetch_one(&mut *conn)
        .await?;
    if only_live == 0 && only_replayed == 0 && live_rows == scratch_rows {
        return Ok(None);
    }
    Ok(Some(Difference {
        projection: projection.to_owned(),
        table: table.to_owned(),
        only_live: only_live.max(live_rows - scratch_rows),
        only_replayed: only_replayed.max(scratch_rows - live_rows),
    }))
}

/// PostgreSQL: everything on one connection in one REPEATABLE READ transaction.
/// Scratch tables live in a throw-away schema placed first on the search path,
/// so the projections' unqualified SQL writes there; the transaction is rolled
/// back at the end, taking the schema with it.
async fn verify_postgres(store: &SqlEventStore) -> Result<Vec<Difference>, RunnerError> {
    let mut tx = store
        .pool()
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await?;
    let bounds = replay_bounds(store, &mut tx).await?;
    let scratch = format!("tessera_verify_{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(&format!(
        "CREATE SCHEMA {scratch}; SET LOCAL search_path TO {scratch}, public"
    ))
    .execute(&mut *tx)
    .await?;
    for ddl in store.read_model_ddl() {
        sqlx::raw_sql(&ddl).execute(&mut *tx).await?;
    }
    let mut differences = Vec::new();
    for (projection, bound) in bounds {
        let mut at = LogPosition::START;
        loop {
            let events = store.read_all_on(&mut tx, at, BATCH, false).await?;
            let Some(last) = events.last().map(|e| e.log_position) else {
                break;
            };
            for e in events.iter().filter(|e| within(bound, e.log_position)) {
                projection.apply(&mut tx, e).await?;
            }
            at = last;
        }
        for table in projection.tables() {
            if let Some(d) =
                diff_table(&mut tx, projection.name(), table, "public", &scratch).await?
            {
                differences.push(d);
            }
        }
    }
    tx.rollback().await?;
    Ok(differences)
}

/// SQLite: the scratch read models are a fresh database file attached to a live
/// connection. The live side is read in one transaction (one snapshot); the
/// replay writes through a second connection to the scratch file.
async fn verify_sqlite(store: &SqlEventStore) -> Result<Vec<Difference>, RunnerError> {
    use sqlx::Connection;
    let dir =
        std::env::temp_dir().join(format!("tessera-verify-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).map_err(|e| StoreError::Failed(Box::new(e)))?;
    let file = dir.join("scratch.db");
    let url = format!("sqlite://{}?mode=rwc", file.display());
    let result = async {
        let mut scratch = AnyConnection::connect(&url).await?;
        for ddl in store.read_model_ddl() {
            sqlx::raw_sql(&ddl).execute(&mut scratch).await?;
        }
        let mut live = store.pool().acquire().await?;
        sqlx::query("ATTACH DATABASE $1 AS scratch")
            .bind(file.display().to_string())
            .execute(&mut *live)
            .await?;
        let outcome = async {
            let mut tx = sqlx::Connection::begin(&mut *live).await?;
            let bounds = replay_bounds(store, &mut tx).await?;
            // Replay everything first, diff afterwards: the live transaction's
            // view of the scratch file starts at its first read of it.
            for (projection, bound) in &bounds {
                let mut at = LogPosition::START;
                let mut stx = scratch.begin().await?;
                loop {
                    let events = store.read_all_on(&mut tx, at, BATCH, false).await?;
                    let Some(last) = events.last().map(|e| e.log_position) else {
                        break;
                    };
                    for e in events.iter().filter(|e| within(*bound, e.log_position)) {
                        projection.apply(&mut stx, e).await?;
                    }
                    at = last;
                }
                stx.commit().await?;
            }
            let mut differences = Vec::new();
            for (projection, _) in &bounds {
                for table in projection.tables() {
                    if let Some(d) =
                        diff_table(&mut tx, projection.name(), table, "main", "scratch").await?
                    {
                        differences.push(d);
                    }
                }
            }
            tx.rollback().await?;
            Ok::<_, RunnerError>(differences)
        }
        .await;
        sqlx::query("DETACH DATABASE scratch")
            .execute(&mut *live)
            .await?;
        outcome
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}
