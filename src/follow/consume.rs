//! The one loop every bus consumer of this process runs: create the durable
//! consumer (retrying while the bus is down), then hand each delivery to a
//! handler, one at a time, until shutdown. The handler acks, naks or
//! dead-letters; the loop only fetches.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tessera_domain::bus::{Bus, ConsumerConfig, Delivery};
use tokio::sync::watch;

/// Consumes with `config` until `shutdown` flips; a delivery being handled
/// finishes first.
pub async fn consume<F, Fut>(
    bus: Arc<dyn Bus>,
    config: ConsumerConfig,
    mut shutdown: watch::Receiver<bool>,
    mut handle: F,
) where
    F: FnMut(Delivery) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut consumer = loop {
        match bus.consumer(config.clone()).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(error = %e, consumer = %config.name, "cannot consume; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    };
    loop {
        if *shutdown.borrow() {
            return;
        }
        let next = tokio::select! {
            d = consumer.next(Duration::from_millis(500)) => d,
            _ = shutdown.changed() => return,
        };
        match next {
            Ok(Some(delivery)) => handle(delivery).await,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, consumer = %config.name, "cannot fetch; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
