//! Adapters of the domain's job-bus port. The in-process one is the embedded
//! default; NATS JetStream and RabbitMQ are chosen by `NATS_URL` / `AMQP_URL`.

pub mod memory;
pub mod nats;

pub use memory::MemoryBus;
