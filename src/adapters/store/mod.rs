//! The event store: one sqlx adapter per dialect behind the domain's
//! [`EventStore`] port, chosen by `DATABASE_URL`.
//!
//! Both dialects share the statements that are the same in each; what differs
//! (schema, how the log is followed safely, notifications) lives in
//! [`postgres`] and [`sqlite`].

pub mod postgres;
pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Row};
use tessera_domain::{
    AppendOutcome, EventStore, ExpectedVersion, LogPosition, Metadata, NewEvent, RecordedEvent,
    StoreError, StreamRef, Upcasters,
};
use tessera_projections::{Projection, ProjectionError};
use tokio::sync::watch;
use uuid::Uuid;

/// Which SQL dialect a database speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    pub fn from_url(url: &str) -> Option<Dialect> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Dialect::Postgres)
        } else if url.starts_with("sqlite:") {
            Some(Dialect::Sqlite)
        } else {
            None
        }
    }

    /// The statement that opens a write transaction. SQLite must take the write
    /// lock up front, or two deferred transactions deadlock on upgrade.
    pub fn begin_write(self) -> &'static str {
        match self {
            Dialect::Postgres => "BEGIN",
            Dialect::Sqlite => "BEGIN IMMEDIATE",
        }
    }

    /// Clause that locks selected rows until the transaction ends.
    pub fn row_lock(self) -> &'static str {
        self.sql().for_update
    }

    /// Name of the schema that holds the live tables.
    pub fn live_schema(self) -> &'static str {
        match self {
            Dialect::Postgres => "public",
            Dialect::Sqlite => "main",
        }
    }

    fn sql(self) -> &'static DialectSql {
        match self {
            Dialect::Postgres => &postgres::SQL,
            Dialect::Sqlite => &sqlite::SQL,
        }
    }
}

/// The statements that differ between dialects.
pub struct DialectSql {
    /// Columns selected for a [`RecordedEvent`], in `decode_row` order.
    pub select_columns: &'static str,
    /// `WHERE` clause for following: `$1` commit, `$2` position; only events
    /// a follower may read now.
    pub follow_filter: &'static str,
    /// The same without the in-flight guard: everything the current snapshot sees.
    pub snapshot_filter: &'static str,
    /// Head of the followable log.
    pub head: &'static str,
    /// One row of the insert's VALUES with `{}` where the parameter numbers go.
    pub insert_prefix: &'static str,
    pub insert_row: fn(first_param: usize) -> String,
    /// `RETURNING …` of the insert (position, tx id, event id, recorded_at), or
    /// `None` where positions are known without it (SQLite hands out
    /// consecutive rowids to one statement's rows).
    pub insert_returning: Option<&'static str>,
    /// Locks a checkpoint row for the transaction (empty on SQLite).
    pub for_update: &'static str,
}

/// A connection string with any password replaced, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// The sqlx-backed event store, for either dialect.
#[derive(Clone)]
pub struct SqlEventStore {
    pool: AnyPool,
    url: String,
    dialect: Dialect,
    upcasters: Arc<Upcasters>,
    inline: Arc<Vec<Arc<dyn Projection>>>,
    appended: Arc<watch::Sender<u64>>,
}

impl SqlEventStore {
    /// Connects, migrates and returns the store. `url` is a `postgres://` or
    /// `sqlite:` URL.
    pub async fn connect(url: &str, max_connections: u32) -> Result<SqlEventStore, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::from_url(url).ok_or_else(|| {
            StoreError::failed(format!(
                "DATABASE_URL must start with postgres:// or sqlite:, got {}",
                redact(url)
            ))
        })?;
        let mut options = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10));
        if dialect == Dialect::Sqlite {
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    for pragma in sqlite::CONNECTION_PRAGMAS {
                        sqlx::Executor::execute(&mut *conn, *pragma).await?;
                    }
                    Ok(())
                })
            });
        }
        let pool = options.connect(url).await.map_err(|e| {
            let why = format!("cannot connect to {}: {e}", redact(url)).into();
            match classify(e) {
                StoreError::Unavailable(_) => StoreError::Unavailable(why),
                _ => StoreError::Failed(why),
            }
        })?;
        let store = SqlEventStore {
            pool,
            url: url.to_owned(),
            dialect,
            upcasters: Arc::new(Upcasters::business()),
            inline: Arc::new(tessera_projections::inline()),
            appended: Arc::new(watch::channel(0).0),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Replaces the upcaster registry (tests register their own schema changes).
    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = Arc::new(upcasters);
        self
    }

    /// Replaces the inline projections.
    pub fn with_inline(mut self, inline: Vec<Arc<dyn Projection>>) -> Self {
        self.inline = Arc::new(inline);
        self
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.dialect {
            Dialect::Postgres => &postgres::MIGRATOR,
            Dialect::Sqlite => &sqlite::MIGRATOR,
        };
        migrator
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Failed(Box::new(e)))
    }

    /// The connection string (with its password: never log it, see [`redact`]).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub fn inline_projections(&self) -> &[Arc<dyn Projection>] {
        &self.inline
    }

    /// Changes after every append made through this process (and, on
    /// PostgreSQL, by any process: see [`postgres::forward_notifications`]).
    pub fn appended(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Signals followers that the log grew.
    pub fn signal_appended(&self) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Opens a write transaction in the dialect's way.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        self.pool.begin_with(self.dialect.begin_write()).await
    }

    /// The read-model DDL (migrations whose name starts with `read_models`), for
    /// building scratch copies of the read models.
    pub fn read_model_ddl(&self) -> Vec<String> {
        let migrator = match self.dialect {
            Dialect::Postgres => &postgres::MIGRATOR,
            Dialect::Sqlite => &sqlite::MIGRATOR,
        };
        migrator
            .iter()
            .filter(|m| m.description.starts_with("read models"))
            .map(|m| m.sql.to_string())
            .collect()
    }

    /// Checks the database answers.
    /// Appends to several streams in one transaction: all or none (a command
    /// whose facts belong to different aggregates, e.g. a task's batch and the
    /// project's new data items).
    pub async fn append_many(
        &self,
        writes: &[(StreamRef, ExpectedVersion, Vec<NewEvent>)],
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        let mut tx = self.begin_write().await.map_err(classify)?;
        let mut outcomes = Vec::with_capacity(writes.len());
        for (stream, expected, events) in writes.iter().filter(|w| !w.2.is_empty()) {
            outcomes.push(self.append_in(&mut tx, stream, *expected, events).await?);
        }
        tx.commit().await.map_err(classify)?;
        let n: usize = writes.iter().map(|w| w.2.len()).sum();
        metrics::counter!("tessera_events_appended_total").increment(n as u64);
        self.signal_appended();
        Ok(outcomes)
    }

    /// The version of one stream (0 when it has no events): the guard a
    /// command that decides from read models appends with.
    pub async fn stream_version(&self, stream_id: &str) -> Result<i64, StoreError> {
        sqlx::query_scalar(
            "SELECT COALESCE(MAX(stream_version), 0) FROM events WHERE stream_id = $1",
        )
        .bind(stream_id)
        .fetch_one(&self.pool)
        .await
        .map_err(classify)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(classify)
    }

    /// Reads up to `limit` events after `after` on a given connection (inside a
    /// projection's transaction). `follow` = true applies the in-flight guard;
    /// false reads all the connection's snapshot sees.
    pub async fn read_all_on(
        &self,
        conn: &mut AnyConnection,
        after: LogPosition,
        limit: u32,
        follow: bool,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = self.dialect.sql();
        let filter = if follow {
            sql.follow_filter
        } else {
            sql.snapshot_filter
        };
        let query = format!(
            "SELECT {} FROM events WHERE {} ORDER BY tx_id, global_position LIMIT $3",
            sql.select_columns, filter
        );
        // Rows are decoded as they arrive, while the server is still sending.
        use futures::TryStreamExt;
        let mut rows = sqlx::query(&query)
            .bind(after.commit)
            .bind(after.position)
            .bind(i64::from(limit))
            .fetch(conn);
        let mut out = Vec::with_capacity(limit.min(10_000) as usize);
        while let Some(row) = rows.try_next().await.map_err(classify)? {
            out.push(self.decode_row(&row)?);
        }
        Ok(out)
    }

    /// Number of events after `after` (for lag and progress bars).
    pub async fn count_after(&self, after: LogPosition) -> Result<i64, StoreError> {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM events WHERE (tx_id, global_position) > ($1, $2)",
        )
        .bind(after.commit)
        .bind(after.position)
        .fetch_one(&self.pool)
        .await
        .map_err(classify)
    }

    fn decode_row(&self, row: &AnyRow) -> Result<RecordedEvent, StoreError> {
        let event_id: String = row.try_get(2).map_err(classify)?;
        let corrupt = |reason: String| StoreError::Corrupt {
            event_id: event_id.clone(),
            reason,
        };
        let payload: String = row.try_get(8).map_err(classify)?;
        let metadata: String = row.try_get(9).map_err(classify)?;
        let recorded_us: i64 = row.try_get(10).map_err(classify)?;
        let event_type: String = row.try_get(6).map_err(classify)?;
        let stored_version: i32 = row.try_get(7).map_err(classify)?;
        let payload = serde_json::from_str(&payload).map_err(|e| corrupt(e.to_string()))?;
        let (event_version, payload) = self.upcasters.upcast(&event_type, stored_version, payload);
        Ok(RecordedEvent {
            global_position: row.try_get(0).map_err(classify)?,
            log_position: LogPosition {
                commit: row.try_get(1).map_err(classify)?,
                position: row.try_get(0).map_err(classify)?,
            },
            event_id: Uuid::parse_str(&event_id).map_err(|e| corrupt(e.to_string()))?,
            stream_type: row.try_get(3).map_err(classify)?,
            stream_id: row.try_get(4).map_err(classify)?,
            stream_version: row.try_get(5).map_err(classify)?,
            event_type,
            event_version,
            payload,
            metadata: serde_json::from_str::<Metadata>(&metadata)
                .map_err(|e| corrupt(e.to_string()))?,
            recorded_at: DateTime::<Utc>::from_timestamp_micros(recorded_us)
                .ok_or_else(|| corrupt(format!("bad timestamp {recorded_us}")))?,
        })
    }

    async fn append_in(
        &self,
        tx: &mut AnyConnection,
        stream: &StreamRef,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendOutcome, StoreError> {
        let actual: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(stream_version), 0) FROM events WHERE stream_id = $1",
        )
        .bind(&stream.stream_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(classify)?;
        if !expected.admits(actual) {
            return Err(StoreError::Conflict {
                stream_id: stream.stream_id.clone(),
                expected,
                actual,
            });
        }
        let sql = self.dialect.sql();
        let now_us = Utc::now().timestamp_micros();
        let mut statement = String::from(sql.insert_prefix);
        for i in 0..events.len() {
            if i > 0 {
                statement.push(',');
            }
            statement.push_str(&(sql.insert_row)(i * 9 + 1));
        }
        if let Some(returning) = sql.insert_returning {
            statement.push_str(returning);
        }
        let mut query = sqlx::query(&statement);
        let mut version = actual;
        for e in events {
            version += 1;
            let metadata = serde_json::to_string(&e.metadata)
                .map_err(|err| StoreError::Failed(Box::new(err)))?;
            query = query
                .bind(e.event_id.to_string())
                .bind(&stream.stream_type)
                .bind(&stream.stream_id)
                .bind(version)
                .bind(&e.event_type)
                .bind(e.event_version)
                .bind(e.payload.to_string())
                .bind(metadata)
                .bind(now_us);
        }
        let conflict = |e| conflict_or_classify(e, stream, expected, actual);
        // (position, commit, recorded_at) of each event, in order.
        let mut assigned: Vec<(i64, i64, i64)> = Vec::with_capacity(events.len());
        if sql.insert_returning.is_some() {
            let rows = query.fetch_all(&mut *tx).await.map_err(conflict)?;
            // Returned rows are matched to events by id (one parse per row).
            let mut by_id = std::collections::HashMap::with_capacity(rows.len());
            for row in &rows {
                let id: String = row.try_get(2).map_err(classify)?;
                by_id.insert(id, row);
            }
            for e in events {
                let row = by_id
                    .get(&e.event_id.to_string())
                    .ok_or_else(|| StoreError::failed("insert returned fewer rows"))?;
                assigned.push((
                    row.try_get(0).map_err(classify)?,
                    row.try_get(1).map_err(classify)?,
                    row.try_get(3).map_err(classify)?,
                ));
            }
        } else {
            query.execute(&mut *tx).await.map_err(conflict)?;
            // (sqlx's Any driver drops SQLite's last rowid, so ask for it.)
            let last: i64 = sqlx::query_scalar("SELECT last_insert_rowid()")
                .fetch_one(&mut *tx)
                .await
                .map_err(classify)?;
            let first = last - events.len() as i64 + 1;
            assigned.extend((0..events.len() as i64).map(|i| (first + i, 0, now_us)));
        }
        let mut recorded = Vec::with_capacity(events.len());
        for (i, (e, (position, commit, recorded_us))) in events.iter().zip(assigned).enumerate() {
            recorded.push(RecordedEvent {
                log_position: LogPosition { commit, position },
                global_position: position,
                event_id: e.event_id,
                stream_type: stream.stream_type.clone(),
                stream_id: stream.stream_id.clone(),
                stream_version: actual + 1 + i as i64,
                event_type: e.event_type.clone(),
                event_version: e.event_version,
                payload: e.payload.clone(),
                metadata: e.metadata.clone(),
                recorded_at: DateTime::<Utc>::from_timestamp_micros(recorded_us)
                    .unwrap_or_else(Utc::now),
            });
        }
        for projection in self.inline.iter() {
            for event in &recorded {
                projection
                    .apply(&mut *tx, event)
                    .await
                    .map_err(projection_error)?;
            }
        }
        if self.dialect == Dialect::Postgres {
            sqlx::query(postgres::NOTIFY)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        }
        Ok(AppendOutcome {
            stream_version: version,
            events: recorded,
        })
    }
}

/// The one way a database error becomes a [`StoreError`]: an outage (the
/// connection is gone or the server has no room) is `Unavailable`, a
/// uniqueness refusal is `Duplicate` under the constraint's declared name,
/// anything else is `Failed` (a statement we got wrong), cause kept.
pub fn classify(e: sqlx::Error) -> StoreError {
    if let Some(constraint) = unique_violation(&e) {
        return StoreError::Duplicate { constraint };
    }
    if is_outage(&e) {
        StoreError::Unavailable(Box::new(e))
    } else {
        StoreError::Failed(Box::new(e))
    }
}

fn is_outage(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                sqlite::is_outage_code(&code)
            } else {
                postgres::is_outage_code(&code)
            }
        }
        _ => false,
    }
}

/// The declared name of the constraint a unique violation broke, the same
/// on both dialects (SQLite names only the columns: its adapter maps them).
fn unique_violation(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => Some(match db.constraint() {
            Some(name) => name.to_owned(),
            None => sqlite::constraint_of(db.message())
                .map_or_else(|| db.message().to_owned(), str::to_owned),
        }),
        _ => None,
    }
}

/// The optimistic guard (unique stream id and version) is a concurrency
/// conflict; anything else is classified as usual.
fn conflict_or_classify(
    e: sqlx::Error,
    stream: &StreamRef,
    expected: ExpectedVersion,
    actual: i64,
) -> StoreError {
    match classify(e) {
        StoreError::Duplicate { constraint } if constraint == STREAM_VERSION => {
            StoreError::Conflict {
                stream_id: stream.stream_id.clone(),
                expected,
                actual: actual + 1,
            }
        }
        other => other,
    }
}

/// The event log's own uniqueness rule: one event per stream version.
const STREAM_VERSION: &str = "events_stream_version";

fn projection_error(e: ProjectionError) -> StoreError {
    match e {
        ProjectionError::Db(db) => classify(db),
        other => StoreError::Failed(Box::new(other)),
    }
}

#[async_trait]
impl EventStore for SqlEventStore {
    async fn append(
        &self,
        stream: &StreamRef,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        if events.is_empty() {
            return Err(StoreError::failed("append of no events"));
        }
        let mut tx = self.begin_write().await.map_err(classify)?;
        let outcome = self.append_in(&mut tx, stream, expected, &events).await?;
        tx.commit().await.map_err(|e| {
            // A serialisation failure at commit is a lost race like any other.
            conflict_or_classify(
                e,
                stream,
                expected,
                outcome.stream_version - events.len() as i64,
            )
        })?;
        metrics::counter!("tessera_events_appended_total").increment(events.len() as u64);
        self.signal_appended();
        Ok(outcome)
    }

    async fn read_stream(&self, stream_id: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        let query = format!(
            "SELECT {} FROM events WHERE stream_id = $1 ORDER BY stream_version",
            self.dialect.sql().select_columns
        );
        let rows = sqlx::query(&query)
            .bind(stream_id)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter().map(|r| self.decode_row(r)).collect()
    }

    async fn read_all(
        &self,
        after: LogPosition,
        limit: u32,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(classify)?;
        self.read_all_on(&mut conn, after, limit, true).await
    }

    async fn head(&self) -> Result<LogPosition, StoreError> {
        let row = sqlx::query(self.dialect.sql().head)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        match row {
            None => Ok(LogPosition::START),
            Some(r) => Ok(LogPosition {
                commit: r.try_get(0).map_err(classify)?,
                position: r.try_get(1).map_err(classify)?,
            }),
        }
    }
}
