//! Worker pools: what the balancer API's `register_ec2` and `receiver` mean
//! here. A pool is a named group of workers that take the generation jobs on
//! `tessera.jobs.generate.<pool>`. Users are assigned to a pool with free
//! capacity (else to the default pool, which has no limit) once, for good;
//! a pool's members can stop and start it. Generation jobs of a stopped
//! pool's members wait in the log and are handed to the bus when it starts.
//!
//! One stream per pool (`pool/<name>`): its capacity, assignments and
//! start/stop. Capacity is guarded by the stream's version; "one pool per
//! user" by the inline `pool_members` read model's unique key.

use serde::{Deserialize, Serialize};

use crate::DomainError;

pub const STREAM_TYPE: &str = "worker_pool";

/// The stream of a pool.
pub fn stream_id(pool: &str) -> String {
    format!("pool/{pool}")
}

/// A pool name is a subject token on NATS and a routing-key word on
/// RabbitMQ: lowercase letters, digits and `-`, at most 64.
pub fn parse_name(raw: &str) -> Result<String, DomainError> {
    let ok = !raw.is_empty()
        && raw.len() <= 64
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(DomainError::Invalid(format!(
            "pool name {raw:?}: use 1 to 64 of a-z, 0-9 and -"
        )))
    }
}

/// `receiver`'s action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
}

impl Action {
    /// `START` | `STOP`; absent means `START`.
    pub fn parse(raw: Option<&str>) -> Result<Action, DomainError> {
        match raw.map(str::trim) {
            None | Some("") | Some("START") => Ok(Action::Start),
            Some("STOP") => Ok(Action::Stop),
            Some(other) => Err(DomainError::Invalid(format!(
                "action must be START or STOP, not {other:?}"
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum PoolEvent {
    /// An admin set how many users the pool takes (0: no new members).
    WorkerPoolCapacitySet {
        pool: String,
        capacity: u32,
        at: i64,
    },
    WorkerPoolAssigned {
        pool: String,
        user_id: String,
        at: i64,
    },
    WorkerPoolStarted {
        pool: String,
        by: String,
        at: i64,
    },
    WorkerPoolStopped {
        pool: String,
        by: String,
        at: i64,
    },
}

impl crate::aggregate::DomainEvent for PoolEvent {
    const STREAM_TYPE: &'static str = STREAM_TYPE;

    fn event_type(&self) -> &'static str {
        match self {
            PoolEvent::WorkerPoolCapacitySet { .. } => "WorkerPoolCapacitySet",
            PoolEvent::WorkerPoolAssigned { .. } => "WorkerPoolAssigned",
            PoolEvent::WorkerPoolStarted { .. } => "WorkerPoolStarted",
            PoolEvent::WorkerPoolStopped { .. } => "WorkerPoolStopped",
        }
    }
}

/// The folded state of one pool. A pool nobody configured is the default
/// kind: no capacity limit, running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    /// `None`: no limit (the default pool).
    pub capacity: Option<u32>,
    pub members: u32,
    pub running: bool,
}

impl crate::aggregate::Aggregate for Pool {
    type Event = PoolEvent;

    /// A pool exists by its name alone (a stream with no events is a
    /// default pool: running, no limit).
    fn fold(stream_id: &str, events: &[PoolEvent]) -> Option<Pool> {
        let name = stream_id.strip_prefix("pool/")?;
        Some(Pool::fold(name, events))
    }
}

impl Pool {
    pub fn fold<'a>(name: &str, events: impl IntoIterator<Item = &'a PoolEvent>) -> Pool {
        let mut p = Pool {
            name: name.to_owned(),
            capacity: None,
            members: 0,
            running: true,
        };
        for e in events {
            match e {
                PoolEvent::WorkerPoolCapacitySet { capacity, .. } => p.capacity = Some(*capacity),
                PoolEvent::WorkerPoolAssigned { .. } => p.members = p.members.saturating_add(1),
                PoolEvent::WorkerPoolStarted { .. } => p.running = true,
                PoolEvent::WorkerPoolStopped { .. } => p.running = false,
            }
        }
        p
    }

    pub fn has_room(&self) -> bool {
        self.capacity.is_none_or(|c| self.members < c)
    }

    /// Assigns a user who has no pool yet; a full pool refuses.
    pub fn assign(&self, user_id: &str, now: i64) -> Result<PoolEvent, DomainError> {
        if !self.has_room() {
            return Err(DomainError::Conflict(format!("pool {} is full", self.name)));
        }
        Ok(PoolEvent::WorkerPoolAssigned {
            pool: self.name.clone(),
            user_id: user_id.to_owned(),
            at: now,
        })
    }

    /// Starts or stops the pool; nothing when it already is so. Only an
    /// admin may stop a shared pool (`shared`: the default pool).
    pub fn act(
        &self,
        action: Action,
        by: &str,
        shared: bool,
        admin: bool,
        now: i64,
    ) -> Result<Option<PoolEvent>, DomainError> {
        match action {
            Action::Start if self.running => Ok(None),
            Action::Start => Ok(Some(PoolEvent::WorkerPoolStarted {
                pool: self.name.clone(),
                by: by.to_owned(),
                at: now,
            })),
            Action::Stop if shared && !admin => Err(DomainError::Forbidden(format!(
                "the shared pool {} is stopped by admins only",
                self.name
            ))),
            Action::Stop if !self.running => Ok(None),
            Action::Stop => Ok(Some(PoolEvent::WorkerPoolStopped {
                pool: self.name.clone(),
                by: by.to_owned(),
                at: now,
            })),
        }
    }

    /// An admin's new capacity (the default pool has none).
    pub fn set_capacity(
        &self,
        capacity: u32,
        shared: bool,
        now: i64,
    ) -> Result<Option<PoolEvent>, DomainError> {
        if shared {
            return Err(DomainError::Invalid(format!(
                "{} is the default pool; it takes everyone",
                self.name
            )));
        }
        if self.capacity == Some(capacity) {
            return Ok(None);
        }
        Ok(Some(PoolEvent::WorkerPoolCapacitySet {
            pool: self.name.clone(),
            capacity,
            at: now,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(events: &[PoolEvent]) -> Pool {
        Pool::fold("gpu", events)
    }

    fn capacity(n: u32) -> PoolEvent {
        PoolEvent::WorkerPoolCapacitySet {
            pool: "gpu".into(),
            capacity: n,
            at: 1,
        }
    }

    #[test]
    fn names_are_subject_tokens() {
        assert!(parse_name("gpu-1").is_ok());
        for bad in ["", "GPU", "a.b", "a*", "a>", "a b", &"x".repeat(65)] {
            assert!(parse_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn actions_default_to_start() {
        assert_eq!(Action::parse(None).unwrap(), Action::Start);
        assert_eq!(Action::parse(Some("STOP")).unwrap(), Action::Stop);
        assert!(Action::parse(Some("stop")).is_err());
    }

    #[test]
    fn a_full_pool_refuses_and_an_unconfigured_one_takes_everyone() {
        let p = pool(&[capacity(1)]);
        let assigned = p.assign("u1", 2).unwrap();
        let p = pool(&[capacity(1), assigned]);
        assert_eq!(p.members, 1);
        assert!(!p.has_room());
        assert!(p.assign("u2", 3).is_err());
        let default = Pool::fold("default", &[]);
        assert!(default.has_room());
    }

    #[test]
    fn start_and_stop_are_idempotent_and_the_shared_pool_is_admins_only() {
        let p = pool(&[capacity(2)]);
        assert_eq!(p.act(Action::Start, "u", false, false, 1).unwrap(), None);
        let stopped = p.act(Action::Stop, "u", false, false, 1).unwrap().unwrap();
        let p = pool(&[capacity(2), stopped]);
        assert!(!p.running);
        assert_eq!(p.act(Action::Stop, "u", false, false, 2).unwrap(), None);
        assert!(matches!(
            p.act(Action::Start, "u", false, false, 2).unwrap(),
            Some(PoolEvent::WorkerPoolStarted { .. })
        ));
        let default = Pool::fold("default", &[]);
        assert!(default.act(Action::Stop, "u", true, false, 1).is_err());
        assert!(default
            .act(Action::Stop, "admin", true, true, 1)
            .unwrap()
            .is_some());
    }

    #[test]
    fn capacity_is_for_named_pools() {
        let p = pool(&[capacity(2)]);
        assert_eq!(p.set_capacity(2, false, 1).unwrap(), None);
        assert!(p.set_capacity(3, false, 1).unwrap().is_some());
        assert!(Pool::fold("default", &[]).set_capacity(3, true, 1).is_err());
    }
}
