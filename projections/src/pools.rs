//! `pools` (inline): worker pools (capacity, running) and their members. One
//! pool per user (`pool_members`' primary key), so two assignments of the
//! same user, even racing into different pools, leave one.

use async_trait::async_trait;
use sqlx::{AnyConnection, Row};
use tessera_domain::pool::PoolEvent;
use tessera_domain::RecordedEvent;

use crate::{Projection, ProjectionError};

/// The constraint a second pool assignment of the same user trips over.
pub const ONE_POOL: &str = "pool_members_pkey";

pub struct Pools;

/// A pool row ensured with the defaults of an unconfigured pool.
async fn ensure(conn: &mut AnyConnection, pool: &str, at: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO worker_pools (name, capacity, running, updated_at) VALUES ($1, -1, 1, $2) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(pool)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

async fn set_running(
    conn: &mut AnyConnection,
    pool: &str,
    running: bool,
    at: i64,
) -> Result<(), sqlx::Error> {
    ensure(conn, pool, at).await?;
    sqlx::query("UPDATE worker_pools SET running = $1, updated_at = $2 WHERE name = $3")
        .bind(i64::from(running))
        .bind(at)
        .bind(pool)
        .execute(conn)
        .await?;
    Ok(())
}

#[async_trait]
impl Projection for Pools {
    fn name(&self) -> &'static str {
        "pools"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["worker_pools", "pool_members"]
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        if !event.is::<PoolEvent>() {
            return Ok(());
        }
        match event.decode::<PoolEvent>()? {
            PoolEvent::WorkerPoolCapacitySet { pool, capacity, at } => {
                ensure(conn, &pool, at).await?;
                sqlx::query(
                    "UPDATE worker_pools SET capacity = $1, updated_at = $2 WHERE name = $3",
                )
                .bind(i64::from(capacity))
                .bind(at)
                .bind(&pool)
                .execute(conn)
                .await?;
            }
            PoolEvent::WorkerPoolAssigned { pool, user_id, at } => {
                ensure(conn, &pool, at).await?;
                let event_id = event.event_id.to_string();
                let existing: Option<String> =
                    sqlx::query_scalar("SELECT event_id FROM pool_members WHERE user_id = $1")
                        .bind(&user_id)
                        .fetch_optional(&mut *conn)
                        .await?;
                if existing.as_deref() != Some(event_id.as_str()) {
                    // A plain insert: a user who already has a pool trips the
                    // primary key and the append is refused.
                    sqlx::query(
                        "INSERT INTO pool_members (user_id, pool, event_id, assigned_at) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(&user_id)
                    .bind(&pool)
                    .bind(&event_id)
                    .bind(at)
                    .execute(conn)
                    .await?;
                }
            }
            PoolEvent::WorkerPoolStarted { pool, at, .. } => {
                set_running(conn, &pool, true, at).await?;
            }
            PoolEvent::WorkerPoolStopped { pool, at, .. } => {
                set_running(conn, &pool, false, at).await?;
            }
        }
        Ok(())
    }
}

/// The pool a user was assigned to, if any.
pub async fn pool_of(
    conn: &mut AnyConnection,
    user_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT pool FROM pool_members WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(conn)
        .await
}

/// Whether a pool takes jobs (an unknown pool does).
pub async fn is_running(conn: &mut AnyConnection, pool: &str) -> Result<bool, sqlx::Error> {
    let running: Option<i64> =
        sqlx::query_scalar("SELECT running FROM worker_pools WHERE name = $1")
            .bind(pool)
            .fetch_optional(conn)
            .await?;
    Ok(running.is_none_or(|r| r != 0))
}

/// Named pools with room for another member, smallest name first.
pub async fn with_room(conn: &mut AnyConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT p.name FROM worker_pools p \
         WHERE p.capacity >= 0 \
           AND p.capacity > (SELECT COUNT(*) FROM pool_members m WHERE m.pool = p.name) \
         ORDER BY p.name",
    )
    .fetch_all(conn)
    .await
}

/// The members of a pool, by username (user id when the user is gone).
pub async fn members(conn: &mut AnyConnection, pool: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COALESCE(u.username, m.user_id) FROM pool_members m \
         LEFT JOIN users u ON u.user_id = m.user_id \
         WHERE m.pool = $1 ORDER BY m.assigned_at, m.user_id",
    )
    .bind(pool)
    .fetch_all(conn)
    .await
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolRow {
    pub name: String,
    /// `None`: no limit.
    pub capacity: Option<i64>,
    pub running: bool,
    pub members: i64,
    /// Unfinished generation tasks whose jobs go to this pool, and the
    /// outputs they still have to make.
    pub tasks_waiting: i64,
    pub images_left: i64,
}

/// Every pool that was configured or used, and always the default one, with
/// its queue of work (the default pool's includes the tasks of users who
/// never registered).
pub async fn all(
    conn: &mut AnyConnection,
    default_pool: &str,
) -> Result<Vec<PoolRow>, sqlx::Error> {
    let rows = sqlx::query(
        "WITH open AS ( \
           SELECT COALESCE(m.pool, CAST($1 AS TEXT)) AS pool, t.number_gen_images - t.number_finished AS left_ \
           FROM tasks t LEFT JOIN pool_members m ON m.user_id = t.owner \
           WHERE t.active_project IS NOT NULL) \
         SELECT p.name, p.capacity, p.running, \
           (SELECT COUNT(*) FROM pool_members m WHERE m.pool = p.name), \
           (SELECT COUNT(*) FROM open o WHERE o.pool = p.name), \
           (SELECT CAST(COALESCE(SUM(o.left_), 0) AS BIGINT) FROM open o WHERE o.pool = p.name) \
         FROM (SELECT name, capacity, running FROM worker_pools \
               UNION ALL SELECT CAST($1 AS TEXT), CAST(-1 AS BIGINT), CAST(1 AS BIGINT) \
               WHERE NOT EXISTS (SELECT 1 FROM worker_pools WHERE name = $1)) p \
         ORDER BY p.name",
    )
    .bind(default_pool)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            let capacity: i64 = r.try_get(1)?;
            let running: i64 = r.try_get(2)?;
            Ok(PoolRow {
                name: r.try_get(0)?,
                capacity: (capacity >= 0).then_some(capacity),
                running: running != 0,
                members: r.try_get(3)?,
                tasks_waiting: r.try_get(4)?,
                images_left: r.try_get(5)?,
            })
        })
        .collect()
}
