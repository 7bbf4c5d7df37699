//! PostgreSQL dialect of the event store.
//!
//! Gap safety: `global_position` comes from a sequence, so a transaction that
//! took position 7 may commit after one that took 8. Each row also records its
//! transaction id (`pg_current_xact_id()`); followers read in
//! `(tx_id, global_position)` order and only rows whose transaction is older
//! than the oldest one still running (`pg_snapshot_xmin`). Every transaction
//! that could still add rows has an id at or above that bound, so nothing can
//! later appear before a key a follower has passed.

use sqlx::migrate::Migrator;

use super::DialectSql;

pub static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// Channel woken on every commit that appended events.
pub const CHANNEL: &str = "tessera_events";
pub const NOTIFY: &str = "SELECT pg_notify('tessera_events', '')";

pub static SQL: DialectSql = DialectSql {
    select_columns: "global_position, tx_id, event_id::text, stream_type, stream_id, \
        stream_version, event_type, event_version, payload::text, metadata::text, \
        (EXTRACT(EPOCH FROM recorded_at) * 1000000)::bigint",
    follow_filter: "(tx_id, global_position) > ($1, $2) \
        AND tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
    snapshot_filter: "(tx_id, global_position) > ($1, $2)",
    head: "SELECT tx_id, global_position FROM events \
        WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
        ORDER BY tx_id DESC, global_position DESC LIMIT 1",
    insert_prefix: "INSERT INTO events (event_id, stream_type, stream_id, stream_version, \
        event_type, event_version, payload, metadata, recorded_at) VALUES ",
    insert_row,
    insert_returning: Some(
        " RETURNING global_position, tx_id, event_id::text, \
        (EXTRACT(EPOCH FROM recorded_at) * 1000000)::bigint",
    ),
    for_update: " FOR UPDATE",
};

fn insert_row(p: usize) -> String {
    format!(
        "(${}::uuid, ${}, ${}, ${}, ${}, ${}, ${}::json, ${}::json, \
         to_timestamp(${}::double precision / 1000000.0))",
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

/// Turns PostgreSQL notifications of appends by any process into wake-ups of
/// this process's followers. Reconnects after errors; ends when `shutdown` flips.
pub async fn forward_notifications(
    url: String,
    store: super::SqlEventStore,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use sqlx::postgres::PgListener;
    loop {
        let listener = async {
            let mut l = PgListener::connect(&url).await?;
            l.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        }
        .await;
        match listener {
            Ok(mut l) => loop {
                tokio::select! {
                    n = l.recv() => match n {
                        Ok(_) => store.signal_appended(),
                        Err(e) => {
                            tracing::warn!(error = %e, "lost the notification connection");
                            break;
                        }
                    },
                    _ = shutdown.changed() => return,
                }
            },
            Err(e) => tracing::warn!(error = %e, "cannot listen for append notifications"),
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// SQLSTATE classes of an outage rather than a bad statement: 08 (connection
/// exception), 53 (insufficient resources), 57P01–57P03 (admin shutdown,
/// crash shutdown, cannot connect now).
pub fn is_outage_code(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("53") || matches!(code, "57P01" | "57P02" | "57P03")
}
