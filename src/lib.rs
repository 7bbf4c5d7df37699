//! The composition root of tessera. The tree shows the layers:
//!
//! - [`app`]: the application services: command handlers over one
//!   [`app::executor::Executor`] (load → decide → append → retry) and the
//!   queries the API answers from the read models.
//! - [`adapters`]: what plugs into the domain's ports: the event store (sqlx),
//!   the bus (in-process, NATS, RabbitMQ), object storage (aws-sdk-s3 and the
//!   embedded S3 endpoint), mail, Google sign-in.
//! - [`follow`]: the loops that follow the log (projection runners,
//!   reactors) and the bus (result consumers).
//! - [`jobs`]: the worker side: generation and compress jobs from the bus,
//!   run against object storage.
//! - [`http`]: the HTTP API, one route module per document.
//! - [`shell`]: the process: command line, `serve`, `worker`, signals.

pub mod adapters;
pub mod app;
pub mod follow;
pub mod http;
pub mod jobs;
pub mod shell;
