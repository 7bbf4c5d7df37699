//! The application services: each command loads its state, asks the domain
//! to decide and appends the events through the one
//! [`executor::Executor`]; queries read the read models.

pub mod downloads;
pub mod error;
pub mod executor;
pub mod generation;
pub mod identity;
pub mod pools;
pub mod projects;
pub mod sample;

pub use error::ServiceError;
pub use identity::tokens::{Principal, TokenUse};
