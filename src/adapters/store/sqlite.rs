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
