//! The job-bus port: how the core hands work to stateless workers.
//!
//! The semantics are those of a durable work queue (NATS JetStream work-queue
//! stream, RabbitMQ durable queue): every job is delivered to one consumer at a
//! time; the consumer acks it when done, naks it to have it redelivered after a
//! delay, or sends progress to say it is still alive. A job that is neither acked
//! nor kept alive within `ack_wait` is redelivered. After `max_deliver` deliveries
//! it is dead-lettered with a reason. Publishing twice with the same `dedup_id`
//! (within the broker's duplicate window) delivers the job once.

use std::time::Duration;

use async_trait::async_trait;

/// A job to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// For example `tessera.jobs.generate.default` or `tessera.jobs.compress`.
    pub subject: String,
    /// The publisher's idempotency key (event id + batch number).
    pub dedup_id: String,
    pub payload: Vec<u8>,
}

/// How a durable consumer behaves. Consumers of one bus must have disjoint filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Durable name: a consumer created again with this name resumes where the
    /// previous one stopped.
    pub name: String,
    /// Subject filter; `*` matches one token, `>` the rest.
    pub filter: String,
    /// How long a delivery may stay unacknowledged without progress.
    pub ack_wait: Duration,
    /// Deliveries before the job is dead-lettered.
    pub max_deliver: u32,
}

impl ConsumerConfig {
    pub fn new(name: impl Into<String>, filter: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            filter: filter.into(),
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
        }
    }
}

/// A job that could not be processed, kept with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub subject: String,
    pub dedup_id: String,
    pub payload: Vec<u8>,
    pub reason: String,
    pub deliveries: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("message bus unavailable: {0}")]
    Unavailable(String),
    #[error("invalid bus request: {0}")]
    Invalid(String),
    #[error("consumer closed")]
    Closed,
}

/// The acknowledgement handle of one delivery.
#[async_trait]
pub trait Acker: Send + Sync {
    /// Done: never deliver this job again.
    async fn ack(&self) -> Result<(), BusError>;
    /// Failed for now: deliver again after `delay`.
    async fn nak(&self, delay: Duration) -> Result<(), BusError>;
    /// Still working: restart the `ack_wait` clock.
    async fn progress(&self) -> Result<(), BusError>;
    /// Failed for good: move to the dead letters with `reason`.
    async fn dead_letter(&self, reason: &str) -> Result<(), BusError>;
}

/// One delivery of a job.
pub struct Delivery {
    pub subject: String,
    pub dedup_id: String,
    pub payload: Vec<u8>,
    /// 1 on first delivery, 2 on the first redelivery, …
    pub attempt: u32,
    pub acker: Box<dyn Acker>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("subject", &self.subject)
            .field("dedup_id", &self.dedup_id)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

/// A durable pull consumer.
#[async_trait]
pub trait Consumer: Send {
    /// Waits up to `timeout` for the next delivery.
    async fn next(&mut self, timeout: Duration) -> Result<Option<Delivery>, BusError>;
}

/// The bus.
#[async_trait]
pub trait Bus: Send + Sync {
    /// Publishes durably: when this returns Ok the broker has the job.
    async fn publish(&self, job: Job) -> Result<(), BusError>;
    /// Creates or resumes the durable consumer `config.name`.
    async fn consumer(&self, config: ConsumerConfig) -> Result<Box<dyn Consumer>, BusError>;
    /// Jobs that could not be processed, oldest first.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, BusError>;
    /// Jobs waiting (not yet acknowledged) whose subject matches `filter`.
    async fn pending(&self, filter: &str) -> Result<u64, BusError>;
    /// Checks the broker answers.
    async fn ping(&self) -> Result<(), BusError>;
    /// The adapter's name, for logs and readiness output.
    fn name(&self) -> &'static str;
}

/// Whether `subject` matches a NATS-style `filter` (`*` one token, `>` the rest).
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::subject_matches;

    #[test]
    fn subject_filters() {
        assert!(subject_matches(
            "tessera.jobs.>",
            "tessera.jobs.generate.default"
        ));
        assert!(subject_matches(
            "tessera.jobs.generate.*",
            "tessera.jobs.generate.gpu"
        ));
        assert!(!subject_matches(
            "tessera.jobs.generate.*",
            "tessera.jobs.compress"
        ));
        assert!(subject_matches(
            "tessera.jobs.compress",
            "tessera.jobs.compress"
        ));
        assert!(!subject_matches(
            "tessera.jobs.compress",
            "tessera.jobs.compress.x"
        ));
        assert!(!subject_matches("tessera.jobs.>", "tessera.jobs"));
    }
}
