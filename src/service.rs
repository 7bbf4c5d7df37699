//! What the command handlers (identity, projects, …) share: their error type
//! and the encoding of an aggregate's event for the log.

use serde::Serialize;
use tessera_domain::{DomainError, Metadata, NewEvent, StoreError};

use crate::identity::tokens::TokenError;

/// The error of every command handler: a refusal in the domain's words, a
/// store failure, or a bug.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<TokenError> for ServiceError {
    fn from(e: TokenError) -> Self {
        ServiceError::Domain(DomainError::NotAuthorized(match e {
            TokenError::Expired => "Access Token has expired".into(),
            TokenError::WrongUse => "Invalid token type".into(),
            TokenError::Invalid(_) => "Invalid Access Token".into(),
        }))
    }
}

impl From<sqlx::Error> for ServiceError {
    fn from(e: sqlx::Error) -> Self {
        ServiceError::Store(StoreError::Backend(e.to_string()))
    }
}

/// An aggregate event (an enum tagged `event_type` / `payload`) as a
/// [`NewEvent`] recorded as done by `actor`. [`tessera_projections::decode`]
/// is the way back.
pub fn encode<E: Serialize>(
    event: &E,
    event_type: &str,
    actor: &str,
) -> Result<NewEvent, ServiceError> {
    let v = serde_json::to_value(event).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let payload = v.get("payload").cloned().unwrap_or(serde_json::Value::Null);
    Ok(
        NewEvent::new(event_type, 1, payload).with_metadata(Metadata {
            actor: Some(actor.to_owned()),
            ..Default::default()
        }),
    )
}

/// How often a command re-decides after losing a race for its stream.
const ATTEMPTS: usize = 8;

/// Per-stream locks of one process: writers of the same stream queue here
/// instead of racing to conflicts (other processes are still kept out by the
/// expected version).
#[derive(Default)]
pub struct StreamLocks {
    locks:
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
}

impl StreamLocks {
    pub async fn lock(&self, stream_id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = match self.locks.lock() {
                Ok(l) => l,
                Err(p) => p.into_inner(),
            };
            if locks.len() > 1024 {
                locks.retain(|_, l| std::sync::Arc::strong_count(l) > 1);
            }
            locks.entry(stream_id.to_owned()).or_default().clone()
        };
        lock.lock_owned().await
    }
}

/// Decides from the current state (read models, guarded by the stream's
/// version) and appends, re-deciding when another process's writer got there
/// first. `decide` gets the version it decides at; no events means nothing to
/// do.
pub async fn decide_and_append<F, Fut>(
    store: &crate::store::SqlEventStore,
    locks: &StreamLocks,
    stream: &tessera_domain::StreamRef,
    mut decide: F,
) -> Result<Vec<tessera_domain::RecordedEvent>, ServiceError>
where
    F: FnMut(i64) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<NewEvent>, ServiceError>>,
{
    use tessera_domain::{EventStore, ExpectedVersion};
    let _turn = locks.lock(&stream.stream_id).await;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            let jitter = rand::random::<u64>() % (5 << attempt.min(6));
            tokio::time::sleep(std::time::Duration::from_millis(jitter)).await;
        }
        let version = store.stream_version(&stream.stream_id).await?;
        let events = decide(version).await?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        match store
            .append(stream, ExpectedVersion::Exact(version), events)
            .await
        {
            Ok(outcome) => return Ok(outcome.events),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(DomainError::TooManyRequests("Too many concurrent changes; retry.".into()).into())
}
