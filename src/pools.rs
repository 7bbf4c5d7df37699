//! Worker pools (the balancer API): assignment of users to pools, start and
//! stop, admins' capacity, and where a user's generation jobs go. The pure
//! decisions are `tessera_domain::pool`; the `pools` read model answers who
//! is where. A stopped pool's new tasks are held (not dispatched) and are
//! handed to the bus when the pool starts; jobs already on the bus finish.

use tessera_domain::pool::{self, Action, Pool, PoolEvent, STREAM_TYPE};
use tessera_domain::{EventStore, ExpectedVersion, StoreError, StreamRef};
use tessera_projections::pools as read;

use crate::service::{encode, ServiceError};
use crate::store::SqlEventStore;

type Result<T> = std::result::Result<T, ServiceError>;

/// How often a command re-decides after losing a race for a pool's stream.
const ATTEMPTS: usize = 16;

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub struct Pools {
    store: SqlEventStore,
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
    pub fn new(store: SqlEventStore, default_pool: &str) -> Pools {
        Pools {
            store,
            default_pool: default_pool.to_owned(),
        }
    }

    pub fn default_pool(&self) -> &str {
        &self.default_pool
    }

    async fn load(&self, name: &str) -> Result<(Pool, i64)> {
        let recorded = self.store.read_stream(&pool::stream_id(name)).await?;
        let version = recorded.last().map_or(0, |e| e.stream_version);
        let events = recorded
            .iter()
            .filter(|e| e.stream_type == STREAM_TYPE)
            .map(tessera_projections::decode::<PoolEvent>)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        Ok((Pool::fold(name, &events), version))
    }

    async fn append(&self, name: &str, version: i64, event: &PoolEvent, actor: &str) -> Result<()> {
        self.store
            .append(
                &StreamRef::new(STREAM_TYPE, pool::stream_id(name)),
                ExpectedVersion::Exact(version),
                vec![encode(event, event.event_type(), actor)?],
            )
            .await?;
        Ok(())
    }

    /// The user's pool; `None` before `register`.
    pub async fn pool_of(&self, user_id: &str) -> Result<Option<String>> {
        let mut conn = self.store.pool().acquire().await?;
        Ok(read::pool_of(&mut conn, user_id).await?)
    }

    /// `register_ec2`: the user's pool, assigning one the first time: a named
    /// pool with room, else the default pool. Idempotent, also when the same
    /// user registers twice at the same moment.
    pub async fn register(&self, user_id: &str) -> Result<String> {
        for _ in 0..ATTEMPTS {
            if let Some(pool) = self.pool_of(user_id).await? {
                return Ok(pool);
            }
            let candidates = {
                let mut conn = self.store.pool().acquire().await?;
                read::with_room(&mut conn).await?
            };
            let name = candidates
                .into_iter()
                .find(|c| *c != self.default_pool)
                .unwrap_or_else(|| self.default_pool.clone());
            let (pool, version) = self.load(&name).await?;
            let event = match pool.assign(user_id, now()) {
                Ok(e) => e,
                // Filled up since the read model was read: look again.
                Err(_) => continue,
            };
            match self.append(&name, version, &event, user_id).await {
                Ok(()) => {
                    tracing::info!(pool = %name, user_id, "user assigned to a worker pool");
                    return Ok(name);
                }
                Err(ServiceError::Store(StoreError::Conflict { .. })) => continue,
                // The same user was assigned by a concurrent request.
                Err(ServiceError::Store(StoreError::Duplicate { .. })) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ServiceError::Internal(
            "worker pools kept changing; try again".into(),
        ))
    }

    /// `receiver`: starts or stops the user's pool (assigning one first if
    /// needed). The default pool is stopped by admins only.
    pub async fn act(&self, user_id: &str, admin: bool, action: Action) -> Result<String> {
        let name = self.register(user_id).await?;
        for _ in 0..ATTEMPTS {
            let (pool, version) = self.load(&name).await?;
            let shared = name == self.default_pool;
            let Some(event) = pool.act(action, user_id, shared, admin, now())? else {
                return Ok(name);
            };
            match self.append(&name, version, &event, user_id).await {
                Ok(()) => {
                    tracing::info!(pool = %name, ?action, by = user_id, "worker pool");
                    return Ok(name);
                }
                Err(ServiceError::Store(StoreError::Conflict { .. })) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ServiceError::Internal(
            "worker pool kept changing; try again".into(),
        ))
    }

    /// An admin's capacity for a named pool (created by its first capacity).
    pub async fn set_capacity(&self, name: &str, capacity: u32) -> Result<()> {
        let name = pool::parse_name(name)?;
        for _ in 0..ATTEMPTS {
            let (pool, version) = self.load(&name).await?;
            let Some(event) = pool.set_capacity(capacity, name == self.default_pool, now())? else {
                return Ok(());
            };
            match self.append(&name, version, &event, "admin").await {
                Ok(()) => return Ok(()),
                Err(ServiceError::Store(StoreError::Conflict { .. })) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ServiceError::Internal(
            "worker pool kept changing; try again".into(),
        ))
    }

    /// Where the owner's generation jobs go now: `Some(pool)` when it runs,
    /// `None` when it is stopped (the task is held).
    pub async fn route(&self, owner: &str) -> Result<Option<String>> {
        let mut conn = self.store.pool().acquire().await?;
        let name = read::pool_of(&mut conn, owner)
            .await?
            .unwrap_or_else(|| self.default_pool.clone());
        Ok(read::is_running(&mut conn, &name).await?.then_some(name))
    }

    /// Every pool with its members and waiting work.
    pub async fn list(&self) -> Result<Vec<PoolView>> {
        let mut conn = self.store.pool().acquire().await?;
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
