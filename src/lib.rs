//! The composition root of tessera: CLI, HTTP API and the adapters (event store,
//! bus, object storage, mail) that plug into the domain's ports.

pub mod bus;
pub mod cli;
pub mod consume;
pub mod downloads;
pub mod generation;
pub mod http;
pub mod identity;
pub mod pools;
pub mod projects;
pub mod reactor;
pub mod relay;
pub mod runner;
pub mod serve;
pub mod service;
pub mod storage;
pub mod store;
pub mod worker;
