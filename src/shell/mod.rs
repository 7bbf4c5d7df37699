//! The process shell: configuration, `tessera serve`, `tessera worker`,
//! signals.

pub mod cli;
pub mod serve;
pub mod signal;
pub mod worker;
