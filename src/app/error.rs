//! The error of every application service: a refusal in the domain's words,
//! an event-store failure, a lost race the executor retries, or a fault of
//! our own, which keeps its cause for the log.

use tessera_domain::{Cause, CodecError, DomainError, StoreError};

use crate::adapters::storage::StorageError;
use crate::app::identity::tokens::TokenError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// What a decision read changed before its events were appended:
    /// decide again (the executor does, within its retry policy).
    #[error("the state changed while the command decided")]
    Stale,
    /// A fault of ours or of a service we depend on; `source` is logged,
    /// never shown.
    #[error("{context}")]
    Internal {
        context: String,
        #[source]
        source: Option<Cause>,
    },
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

impl ServiceError {
    /// A fault with its cause.
    pub fn internal(context: impl Into<String>, source: impl Into<Cause>) -> ServiceError {
        ServiceError::Internal {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// A state that should not exist (a broken invariant), in words.
    pub fn bug(context: impl Into<String>) -> ServiceError {
        ServiceError::Internal {
            context: context.into(),
            source: None,
        }
    }

    /// Whether the command lost a race for its state: another writer
    /// appended first, or what it read changed. Deciding again may succeed.
    pub fn lost_race(&self) -> bool {
        matches!(
            self,
            ServiceError::Stale | ServiceError::Store(StoreError::Conflict { .. })
        )
    }

    /// Whether this is a uniqueness refusal of read model constraint `name`.
    pub fn is_duplicate_of(&self, name: &str) -> bool {
        matches!(self, ServiceError::Store(e) if e.is_duplicate_of(name))
    }

    /// The error `to` gives when this is a uniqueness refusal of the read
    /// model constraint `name`; any other error passes through.
    pub fn on_constraint(self, name: &str, to: impl FnOnce() -> ServiceError) -> ServiceError {
        match self {
            e if e.is_duplicate_of(name) => to(),
            other => other,
        }
    }
}

impl From<sqlx::Error> for ServiceError {
    fn from(e: sqlx::Error) -> Self {
        ServiceError::Store(crate::adapters::store::classify(e))
    }
}

impl From<CodecError> for ServiceError {
    fn from(e: CodecError) -> Self {
        ServiceError::internal("event codec", e)
    }
}

impl From<StorageError> for ServiceError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::BadKey(m) => DomainError::Invalid(m).into(),
            e @ StorageError::Backend(_) => ServiceError::internal("object storage", e),
        }
    }
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

/// An error and its sources, `: `-separated, for the log.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
