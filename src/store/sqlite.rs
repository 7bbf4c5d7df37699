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
