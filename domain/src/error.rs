//! Domain errors: what a command can refuse, in the business's words. The HTTP
//! layer maps each to a status once (`src/http/error.rs`).

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// A value is malformed or out of range.
    #[error("{0}")]
    Invalid(String),
    /// The password breaks the password policy.
    #[error("{0}")]
    InvalidPassword(String),
    /// Username or email already registered.
    #[error("{0}")]
    UsernameExists(String),
    /// Wrong credentials, or a token that is not (or no longer) valid.
    #[error("{0}")]
    NotAuthorized(String),
    /// The account exists but its email is not confirmed yet.
    #[error("User is not confirmed.")]
    NotConfirmed,
    /// The code does not match.
    #[error("Invalid verification code provided, please try again.")]
    CodeMismatch,
    /// The code expired, was used, or was tried too often.
    #[error("Invalid code provided, please request a code again.")]
    ExpiredCode,
    /// A per-account limit was reached (lockout, daily caps).
    #[error("{0}")]
    LimitExceeded(String),
    /// Too many requests from one client; retry later.
    #[error("{0}")]
    TooManyRequests(String),
    /// No such resource (or not the caller's).
    #[error("{0}")]
    NotFound(String),
    /// The owner already has something of that name (a project).
    #[error("{0}")]
    NameTaken(String),
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// The caller may not do this (their role does not allow it).
    #[error("{0}")]
    Forbidden(String),
}
