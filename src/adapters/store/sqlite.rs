//! SQLite dialect of the event store (the embedded default).
//!
//! SQLite has one writer at a time and write transactions start with
//! `BEGIN IMMEDIATE`, so positions are handed out in commit order and a follower
//! reading by position cannot skip a late commit.

use sqlx::migrate::Migrator;

use super::DialectSql;

pub static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// Set on every new connection: WAL lets readers run beside the writer; the
/// busy timeout makes writers from other processes (the CLI) wait, not fail.
pub const CONNECTION_PRAGMAS: &[&str] = &[
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA busy_timeout = 10000",
    "PRAGMA foreign_keys = ON",
];

pub static SQL: DialectSql = DialectSql {
    select_columns: "global_position, tx_id, event_id, stream_type, stream_id, \
        stream_version, event_type, event_version, payload, metadata, recorded_at",
    follow_filter: "(tx_id, global_position) > ($1, $2)",
    snapshot_filter: "(tx_id, global_position) > ($1, $2)",
    head: "SELECT tx_id, global_position FROM events ORDER BY global_position DESC LIMIT 1",
    insert_prefix: "INSERT INTO events (event_id, stream_type, stream_id, stream_version, \
        event_type, event_version, payload, metadata, recorded_at) VALUES ",
    insert_row,
    insert_returning: None,
    for_update: "",
};

fn insert_row(p: usize) -> String {
    format!(
        "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
        p,
        p + 1,
        p + 2,
        p + 3,
        p + 4,
        p + 5,
        p + 6,
        p + 7,
        p + 8
    )
}

/// SQLite reports a unique violation by its columns
/// (`UNIQUE constraint failed: users.email_key`), never by the constraint's
/// name: this table gives the name the schema declares, as PostgreSQL
/// reports it, so callers match one name on both dialects.
const CONSTRAINTS: &[(&str, &str)] = &[
    (
        "events.stream_id, events.stream_version",
        "events_stream_version",
    ),
    (
        "users.username_key",
        tessera_projections::users::USERNAME_TAKEN,
    ),
    ("users.email_key", tessera_projections::users::EMAIL_TAKEN),
    (
        "projects.owner, projects.name_key",
        tessera_projections::projects::NAME_TAKEN,
    ),
    (
        "tasks.active_project",
        tessera_projections::tasks::ONE_ACTIVE,
    ),
    (
        "downloads.build_key",
        tessera_projections::downloads::ONE_BUILD,
    ),
    ("pool_members.user_id", tessera_projections::pools::ONE_POOL),
];

/// The declared constraint name behind a SQLite unique-violation message.
pub fn constraint_of(message: &str) -> Option<&'static str> {
    let columns = message.strip_prefix("UNIQUE constraint failed: ")?;
    CONSTRAINTS
        .iter()
        .find(|(cols, _)| *cols == columns)
        .map(|(_, name)| *name)
}

/// SQLITE_BUSY (5) and SQLITE_LOCKED (6), extended codes included: another
/// writer holds the database; later may work.
pub fn is_outage_code(code: &str) -> bool {
    code.parse::<u32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::store::{classify, SqlEventStore};
    use sqlx::Row;
    use tessera_domain::StoreError;

    /// Inserts two rows into `table` that differ in every column but
    /// `columns`, and returns the error the second one gets.
    /// (`tag` keeps the rows of one call apart from another's.)
    async fn second_row_error(
        store: &SqlEventStore,
        table: &str,
        columns: &[&str],
        tag: usize,
    ) -> StoreError {
        let info = sqlx::query(&format!(
            "SELECT name, pk, type FROM pragma_table_info('{table}')"
        ))
        .fetch_all(store.pool())
        .await
        .unwrap();
        // An INTEGER PRIMARY KEY is the rowid: left to SQLite.
        let names: Vec<String> = info
            .iter()
            .filter(|r| {
                !(r.get::<i64, _>(1) == 1 && r.get::<String, _>(2).eq_ignore_ascii_case("INTEGER"))
            })
            .map(|r| r.get::<String, _>(0))
            .collect();
        let insert = |row: &str| {
            let values: Vec<String> = names
                .iter()
                .map(|n| {
                    let v = if columns.contains(&n.as_str()) {
                        "same"
                    } else {
                        row
                    };
                    format!("'{v}-{tag}'")
                })
                .collect();
            format!(
                "INSERT INTO {table} ({}) VALUES ({})",
                names.join(", "),
                values.join(", ")
            )
        };
        sqlx::query(&insert("first"))
            .execute(store.pool())
            .await
            .unwrap();
        classify(
            sqlx::query(&insert("second"))
                .execute(store.pool())
                .await
                .unwrap_err(),
        )
    }

    #[tokio::test]
    async fn every_unique_rule_is_reported_by_its_declared_name() {
        let dir =
            std::env::temp_dir().join(format!("tessera-constraints-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("db.sqlite").display());
        let store = SqlEventStore::connect(&url, 1).await.unwrap();
        for (tag, (columns, name)) in CONSTRAINTS.iter().enumerate() {
            let (table, _) = columns.split_once('.').unwrap();
            let cols: Vec<&str> = columns
                .split(", ")
                .map(|c| c.split_once('.').unwrap().1)
                .collect();
            let e = second_row_error(&store, table, &cols, tag).await;
            assert!(e.is_duplicate_of(name), "{columns}: {e:?}");
        }
        store.pool().close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_bad_statement_is_a_failure_and_a_closed_pool_an_outage() {
        let store = SqlEventStore::connect("sqlite::memory:", 1).await.unwrap();
        let bad = sqlx::query("SELECT nothing FROM nowhere")
            .execute(store.pool())
            .await
            .unwrap_err();
        assert!(matches!(classify(bad), StoreError::Failed(_)));
        store.pool().close().await;
        let closed = sqlx::query("SELECT 1")
            .execute(store.pool())
            .await
            .unwrap_err();
        assert!(matches!(classify(closed), StoreError::Unavailable(_)));
    }

    #[test]
    fn busy_and_locked_are_outages_whatever_their_extended_code() {
        // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_BUSY_SNAPSHOT (517).
        assert!(is_outage_code("5") && is_outage_code("6") && is_outage_code("517"));
        // SQLITE_CONSTRAINT_UNIQUE (2067), SQLITE_ERROR.
        assert!(!is_outage_code("2067") && !is_outage_code("1"));
    }
}
