//! The business of tessera, free of I/O.
//!
//! Aggregates, commands, events, errors and the ports (traits) that adapters
//! implement live here. **Architecture Invariant:** this crate compiles without
//! any I/O crate: no sqlx, no actix, no NATS, no AWS, no tokio runtime. A reader
//! learns the whole business from this crate alone.

pub mod aggregate;
pub mod bus;
pub mod convert;
pub mod download;
pub mod error;
pub mod event;
pub mod generation;
pub mod identity;
pub mod mail;
pub mod pool;
pub mod project;
pub mod store;
pub mod task;
pub mod upcast;

pub use aggregate::{Aggregate, CodecError, Decision, DomainEvent};
pub use error::DomainError;
pub use event::{ExpectedVersion, LogPosition, Metadata, NewEvent, RecordedEvent, StreamRef};
pub use store::{AppendOutcome, Cause, EventStore, StoreError};
pub use upcast::Upcasters;
