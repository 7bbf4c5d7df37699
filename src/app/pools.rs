//! Worker pools (the balancer API): assignment of users to pools, start and
//! stop, admins' capacity, and where a user's generation jobs go. The pure
//! decisions are `tessera_domain::pool`; the `pools` read model answers who
//! is where. A stopped pool's new tasks are held (not dispatched) and are
//! handed to the bus when the pool starts; jobs already on the bus finish.

use std::sync::Arc;

use tessera_domain::pool::{self, Action, Pool};
use tessera_projections::pools as read;

use crate::app::error::{Result, ServiceError};
use crate::app::executor::Executor;

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub struct Pools {
    exec: Arc<Executor>,
    /// The pool of everyone not assigned elsewhere (no capacity limit).
    default_pool: String,
}

/// A pool as `tessera admin pools` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PoolView {
    pub name: String,
    pub capacity: Option<i64>,
    pub running: bool,
    pub members: Vec<String>,
    pub tasks_waiting: i64,
    pub images_left: i64,
}

impl Pools {
    pub fn new(exec: Arc<Executor>, default_pool: &str) -> Pools {
        Pools {
            exec,
            default_pool: default_pool.to_owned(),
        }
    }

    pub fn default_pool(&self) -> &str {
        &self.default_pool
    }

    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>> {
        Ok(self.exec.store().pool().acquire().await?)
    }

    /// The user's pool; `None` before `register`.
    pub async fn pool_of(&self, user_id: &str) -> Result<Option<String>> {
        Ok(read::pool_of(&mut *self.conn().await?, user_id).await?)
    }

    /// `register_ec2`: the user's pool, assigning one the first time: a named
    /// pool with room, else the default pool. Idempotent, also when the same
    /// user registers twice at the same moment (the `pool_members` key
    /// admits one assignment: the loser finds the winner's on its next try).
    pub async fn register(&self, user_id: &str) -> Result<String> {
        self.exec
            .retrying(|| async {
                if let Some(pool) = self.pool_of(user_id).await? {
                    return Ok(pool);
                }
                let candidates = read::with_room(&mut *self.conn().await?).await?;
                let name = candidates
                    .into_iter()
                    .find(|c| *c != self.default_pool)
                    .unwrap_or_else(|| self.default_pool.clone());
                let at = now();
                self.exec
                    .attempt::<Pool, _, (), _, _, _, _>(
                        &pool::stream_id(&name),
                        user_id,
                        |_| async { Ok(()) },
                        |pool, _| match pool.map(|p| p.assign(user_id, at)) {
                            Some(Ok(assigned)) => Ok(vec![assigned]),
                            // Filled up since the read model was read: look again.
                            _ => Err(ServiceError::Stale),
                        },
                    )
                    .await
                    .map_err(|e| e.on_constraint(read::ONE_POOL, || ServiceError::Stale))?
                    .output()?;
                tracing::info!(pool = %name, user_id, "user assigned to a worker pool");
                Ok(name)
            })
            .await
    }

    /// `receiver`: starts or stops the user's pool (assigning one first if
    /// needed). The default pool is stopped by admins only.
    pub async fn act(&self, user_id: &str, admin: bool, action: Action) -> Result<String> {
        let name = self.register(user_id).await?;
        let shared = name == self.default_pool;
        let at = now();
        let done = self
            .exec
            .execute::<Pool, (), _, _>(&pool::stream_id(&name), user_id, |pool| {
                let pool = pool.ok_or_else(|| ServiceError::bug("a pool stream without a name"))?;
                Ok(Vec::from_iter(
                    pool.act(action, user_id, shared, admin, at)?,
                ))
            })
            .await?;
        if !done.events.is_empty() {
            tracing::info!(pool = %name, ?action, by = user_id, "worker pool");
        }
        done.output()?;
        Ok(name)
    }

    /// An admin's capacity for a named pool (created by its first capacity).
    pub async fn set_capacity(&self, name: &str, capacity: u32) -> Result<()> {
        let name = pool::parse_name(name)?;
        let shared = name == self.default_pool;
        let at = now();
        self.exec
            .execute::<Pool, (), _, _>(&pool::stream_id(&name), "admin", |pool| {
                let pool = pool.ok_or_else(|| ServiceError::bug("a pool stream without a name"))?;
                Ok(Vec::from_iter(pool.set_capacity(capacity, shared, at)?))
            })
            .await?
            .output()
    }

    /// Where the owner's generation jobs go now: `Some(pool)` when it runs,
    /// `None` when it is stopped (the task is held).
    pub async fn route(&self, owner: &str) -> Result<Option<String>> {
        let mut conn = self.conn().await?;
        let name = read::pool_of(&mut conn, owner)
            .await?
            .unwrap_or_else(|| self.default_pool.clone());
        Ok(read::is_running(&mut conn, &name).await?.then_some(name))
    }

    /// Every pool with its members and waiting work.
    pub async fn list(&self) -> Result<Vec<PoolView>> {
        let mut conn = self.conn().await?;
        let rows = read::all(&mut conn, &self.default_pool).await?;
        let mut views = Vec::with_capacity(rows.len());
        for r in rows {
            views.push(PoolView {
                members: read::members(&mut conn, &r.name).await?,
                name: r.name,
                capacity: r.capacity,
                running: r.running,
                tasks_waiting: r.tasks_waiting,
                images_left: r.images_left,
            });
        }
        Ok(views)
    }
}
