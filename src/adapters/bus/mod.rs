//! Adapters of the domain's job-bus port. The in-process one is the embedded
//! default; NATS JetStream and RabbitMQ are chosen by `NATS_URL` / `AMQP_URL`.

pub mod memory;
pub mod nats;
pub mod rabbit;

pub use memory::MemoryBus;

use std::sync::Arc;

use tessera_domain::bus::{Bus, BusError};

/// The shared broker the configuration names, for processes that need one
/// (`tessera worker`): RabbitMQ when `amqp_url` is set (it wins, as in
/// `serve`), else NATS JetStream; `None` when neither is set.
pub async fn connect_broker(
    nats_url: Option<&str>,
    amqp_url: Option<&str>,
) -> Result<Option<Arc<dyn Bus>>, String> {
    let redact = crate::adapters::store::redact;
    if let Some(url) = amqp_url.filter(|u| !u.is_empty()) {
        let bus = rabbit::RabbitBus::connect(url)
            .await
            .map_err(|e: BusError| format!("RabbitMQ at {}: {e}", redact(url)))?;
        return Ok(Some(Arc::new(bus)));
    }
    if let Some(url) = nats_url.filter(|u| !u.is_empty()) {
        let bus = nats::NatsBus::connect(url)
            .await
            .map_err(|e| format!("NATS at {}: {e}", redact(url)))?;
        return Ok(Some(Arc::new(bus)));
    }
    Ok(None)
}
