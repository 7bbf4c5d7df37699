//! The one command pipeline: load the aggregate (fold its stream), read what
//! else the decision needs (an inline read model), decide, append with the
//! version it loaded, and on a lost race do it all again after a jittered
//! back-off. Every command of every service runs through
//! [`Executor::execute`] or [`Executor::execute_with`]; the retry loop
//! exists once, in [`Executor::retrying`].
//!
//! Writers of one stream in this process queue on a per-stream lock instead
//! of racing each other into conflicts; other processes are kept out by the
//! expected version alone.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tessera_domain::{
    aggregate::encode_all, Aggregate, Decision, DomainError, DomainEvent, EventStore,
    ExpectedVersion, Metadata, NewEvent, RecordedEvent, StreamRef,
};

use super::error::Result;
use crate::adapters::store::SqlEventStore;

/// How often and how patiently a command re-decides after losing a race.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// The back-off before try `n` is drawn from `0..base·2ⁿ` (full
    /// jitter), capped at `cap`.
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 8,
            base: Duration::from_millis(5),
            cap: Duration::from_millis(320),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.cap);
        let millis = u64::try_from(ceiling.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Duration::from_millis(rand::random::<u64>() % millis)
    }
}

/// A command's decision as the executor appends it: the aggregate's events
/// and answer, and facts for other streams that must commit with them
/// (appended with `ExpectedVersion::Any`: facts that cannot conflict, such
/// as a task's outputs on its project's data stream).
pub struct Change<E, T = ()> {
    pub decision: Decision<E, T>,
    pub also: Vec<(StreamRef, Vec<NewEvent>)>,
}

impl<E, T> Change<E, T> {
    /// Also appends `events` to stream `stream_id` of `D`'s type, in the
    /// same transaction (only when this change has events of its own).
    pub fn also<D: DomainEvent>(mut self, stream_id: &str, events: &[D]) -> Result<Self> {
        if !events.is_empty() {
            self.also.push((
                StreamRef::new(D::STREAM_TYPE, stream_id),
                encode_all(events)?,
            ));
        }
        Ok(self)
    }
}

impl<E, T> From<Decision<E, T>> for Change<E, T> {
    fn from(decision: Decision<E, T>) -> Self {
        Change {
            decision,
            also: Vec::new(),
        }
    }
}

impl<E> From<Vec<E>> for Change<E> {
    fn from(events: Vec<E>) -> Self {
        Decision::ok(events).into()
    }
}

impl<E> From<std::result::Result<Vec<E>, DomainError>> for Change<E> {
    fn from(r: std::result::Result<Vec<E>, DomainError>) -> Self {
        Decision::from(r).into()
    }
}

/// A stream as a command finds it.
pub struct Loaded<A: Aggregate> {
    /// The fold (`None`: no such aggregate yet, or a stream only versioned).
    pub state: Option<A>,
    pub events: Vec<A::Event>,
    /// The stream's version (0: empty), the guard of the append.
    pub version: i64,
}

/// What a command did. Its events are appended even when the decision
/// refused (a refusal may record facts), so the refusal is in `outcome`
/// rather than an `Err` of the call.
pub struct Executed<A: Aggregate, T> {
    /// The aggregate after the appended events (`None` for a stream only
    /// versioned).
    pub state: Option<A>,
    /// The events appended to the aggregate's own stream.
    pub events: Vec<A::Event>,
    pub outcome: std::result::Result<T, DomainError>,
}

impl<A: Aggregate, T> Executed<A, T> {
    /// The answer, or the refusal as an error.
    pub fn output(self) -> Result<T> {
        Ok(self.outcome?)
    }

    /// The state after the command, or the refusal as an error.
    pub fn state(self) -> Result<Option<A>> {
        self.outcome?;
        Ok(self.state)
    }
}

/// Runs commands: see the module documentation.
pub struct Executor {
    store: SqlEventStore,
    locks: StreamLocks,
    policy: RetryPolicy,
}

impl Executor {
    pub fn new(store: SqlEventStore) -> Executor {
        Executor {
            store,
            locks: StreamLocks::default(),
            policy: RetryPolicy::default(),
        }
    }

    pub fn store(&self) -> &SqlEventStore {
        &self.store
    }

    /// The retry loop: runs `attempt` until it does not lose a race (see
    /// [`ServiceError::lost_race`]), sleeping a jittered back-off between
    /// tries. Exhaustion is a 429: the caller may try again.
    pub async fn retrying<T, F, Fut>(&self, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        for n in 0..self.policy.attempts {
            if n > 0 {
                tokio::time::sleep(self.policy.backoff(n)).await;
            }
            match attempt().await {
                Err(e) if e.lost_race() => {
                    tracing::debug!(attempt = n, error = %e, "command lost a race; deciding again");
                }
                done => return done,
            }
        }
        Err(DomainError::TooManyRequests(
            "Too many concurrent changes to the same resource; retry.".into(),
        )
        .into())
    }

    /// Loads a stream: the fold of its events of `A`'s stream type, or for
    /// a stream only versioned, its version.
    pub async fn load<A: Aggregate>(&self, stream_id: &str) -> Result<Loaded<A>> {
        if !A::FOLDED {
            return Ok(Loaded {
                state: None,
                events: Vec::new(),
                version: self.store.stream_version(stream_id).await?,
            });
        }
        let recorded = self.store.read_stream(stream_id).await?;
        let version = recorded.last().map_or(0, |e| e.stream_version);
        // Stream ids are unique across stream types: an id of another
        // aggregate holds none of this one (and its version guards it).
        let events = recorded
            .iter()
            .filter(|e| e.is::<A::Event>())
            .map(RecordedEvent::decode)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Loaded {
            state: A::fold(stream_id, &events),
            events,
            version,
        })
    }

    /// One try of a command on stream `stream_id`: load, `read` the rest of
    /// its state (after the load, so a read model is at least as new as the
    /// version the append is guarded by), `decide`, append. Not retried:
    /// for commands that choose their stream from a read, inside their own
    /// [`Executor::retrying`].
    pub async fn attempt<A, V, T, R, RF, D, C>(
        &self,
        stream_id: &str,
        actor: &str,
        read: R,
        decide: D,
    ) -> Result<Executed<A, T>>
    where
        A: Aggregate,
        R: FnOnce(Option<&A>) -> RF,
        RF: Future<Output = Result<V>>,
        D: FnOnce(Option<&A>, &V) -> Result<C>,
        C: Into<Change<A::Event, T>>,
    {
        let _turn = self.locks.lock(stream_id).await;
        let loaded = self.load::<A>(stream_id).await?;
        let view = read(loaded.state.as_ref()).await?;
        let Change { decision, also } = decide(loaded.state.as_ref(), &view)?.into();
        let Decision { events, outcome } = decision;
        let mut state = loaded.state;
        if !events.is_empty() {
            let stream = StreamRef::new(A::Event::STREAM_TYPE, stream_id);
            let mut writes = vec![(
                stream,
                ExpectedVersion::Exact(loaded.version),
                with_actor(encode_all(&events)?, actor),
            )];
            writes.extend(
                also.into_iter()
                    .map(|(s, e)| (s, ExpectedVersion::Any, with_actor(e, actor))),
            );
            self.store.append_many(&writes).await?;
            if A::FOLDED {
                let mut all = loaded.events;
                let first_new = all.len();
                all.extend(events);
                state = A::fold(stream_id, &all);
                let events = all.split_off(first_new);
                return Ok(Executed {
                    state,
                    events,
                    outcome,
                });
            }
        }
        Ok(Executed {
            state,
            events,
            outcome,
        })
    }

    /// Runs a command that decides from its aggregate alone.
    pub async fn execute<A, T, D, C>(
        &self,
        stream_id: &str,
        actor: &str,
        decide: D,
    ) -> Result<Executed<A, T>>
    where
        A: Aggregate,
        D: Fn(Option<&A>) -> Result<C>,
        C: Into<Change<A::Event, T>>,
    {
        self.execute_with(
            stream_id,
            actor,
            |_| async { Ok(()) },
            |a, _: &()| decide(a),
        )
        .await
    }

    /// Runs a command whose decision also reads a second state source (an
    /// inline read model): `read` runs after every load, and may look at the
    /// loaded state to decide what to read (it copies out what it needs: the
    /// future it returns cannot borrow the state).
    pub async fn execute_with<A, V, T, R, RF, D, C>(
        &self,
        stream_id: &str,
        actor: &str,
        read: R,
        decide: D,
    ) -> Result<Executed<A, T>>
    where
        A: Aggregate,
        R: Fn(Option<&A>) -> RF,
        RF: Future<Output = Result<V>>,
        D: Fn(Option<&A>, &V) -> Result<C>,
        C: Into<Change<A::Event, T>>,
    {
        self.retrying(|| self.attempt(stream_id, actor, &read, &decide))
            .await
    }
}

fn with_actor(events: Vec<NewEvent>, actor: &str) -> Vec<NewEvent> {
    events
        .into_iter()
        .map(|e| {
            e.with_metadata(Metadata {
                actor: Some(actor.to_owned()),
                ..Default::default()
            })
        })
        .collect()
}

/// Per-stream locks of one process: writers of the same stream queue here
/// instead of racing to conflicts.
#[derive(Default)]
struct StreamLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl StreamLocks {
    async fn lock(&self, stream_id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = match self.locks.lock() {
                Ok(l) => l,
                Err(p) => p.into_inner(),
            };
            if locks.len() > 1024 {
                locks.retain(|_, l| Arc::strong_count(l) > 1);
            }
            locks.entry(stream_id.to_owned()).or_default().clone()
        };
        lock.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_its_ceiling() {
        let p = RetryPolicy::default();
        for n in 1..20 {
            let ceiling = p.base.saturating_mul(1 << n.min(16)).min(p.cap);
            for _ in 0..50 {
                assert!(p.backoff(n) < ceiling.max(Duration::from_millis(1)));
            }
        }
    }
}
