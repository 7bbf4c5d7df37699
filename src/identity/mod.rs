//! The identity core's adapters and service: password hashing, tokens, storage
//! credentials, mail, and the command handlers every auth dialect calls.

pub mod credentials;
pub mod google;
pub mod mail;
pub mod passwords;
pub mod secrets;
pub mod service;
pub mod tokens;

pub use crate::service::ServiceError;
pub use service::{Identity, IdentityConfig, LoginOutcome};
pub use tokens::{Principal, TokenUse};
