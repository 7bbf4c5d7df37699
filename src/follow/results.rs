//! What workers report on the bus, recorded: generation batch results and
//! compress results. A report is acked once recorded (recording is
//! idempotent), nak'ed for redelivery when recording failed or names a task
//! this log does not hold (another deployment sharing the bus may), and
//! dead-lettered when it cannot be read.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tessera_domain::bus::{Bus, ConsumerConfig};
use tessera_domain::download::{CompressResult, COMPRESS_RESULTS_SUBJECT};
use tessera_domain::task::{GenerateResult, RESULTS_SUBJECT};
use tokio::sync::watch;

use crate::app::downloads::Downloads;
use crate::app::error::Result;
use crate::app::generation::Generation;

/// How long a delivery may take before the bus offers it again, and how
/// often.
fn config(name: &str, subject: &str) -> ConsumerConfig {
    ConsumerConfig {
        ack_wait: Duration::from_secs(60),
        max_deliver: 20,
        ..ConsumerConfig::new(name, subject)
    }
}

/// Records generation batch results until `shutdown` flips.
pub async fn generation(
    bus: Arc<dyn Bus>,
    generation: Arc<Generation>,
    shutdown: watch::Receiver<bool>,
) {
    let config = config("core-results", RESULTS_SUBJECT);
    record_each(bus, config, shutdown, move |r: GenerateResult| {
        let generation = generation.clone();
        async move { generation.record(&r).await }
    })
    .await;
}

/// Records compress results until `shutdown` flips.
pub async fn downloads(
    bus: Arc<dyn Bus>,
    downloads: Arc<Downloads>,
    shutdown: watch::Receiver<bool>,
) {
    let config = config("core-compress-results", COMPRESS_RESULTS_SUBJECT);
    record_each(bus, config, shutdown, move |r: CompressResult| {
        let downloads = downloads.clone();
        async move { downloads.record(&r).await }
    })
    .await;
}

/// The one handler of reports: decode, record, then ack, nak or
/// dead-letter.
async fn record_each<R, F, Fut>(
    bus: Arc<dyn Bus>,
    config: ConsumerConfig,
    shutdown: watch::Receiver<bool>,
    record: F,
) where
    R: DeserializeOwned,
    F: Fn(R) -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let consumer = config.name.clone();
    super::consume::consume(bus, config, shutdown, |delivery| {
        let recorded = serde_json::from_slice::<R>(&delivery.payload).map(&record);
        let consumer = consumer.clone();
        async move {
            let outcome = match recorded {
                Ok(recording) => recording.await,
                Err(e) => {
                    let _ = delivery
                        .acker
                        .dead_letter(&format!("not a report {consumer} reads: {e}"))
                        .await;
                    return;
                }
            };
            match outcome {
                Ok(true) => {
                    let _ = delivery.acker.ack().await;
                }
                Ok(false) => {
                    tracing::warn!(
                        consumer,
                        "a report for a task this log does not hold; leaving it to others"
                    );
                    let _ = delivery.acker.nak(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    tracing::warn!(
                        consumer,
                        error = %crate::app::error::chain(&e),
                        "recording a report failed; redelivering"
                    );
                    let _ = delivery.acker.nak(Duration::from_millis(500)).await;
                }
            }
        }
    })
    .await;
}
