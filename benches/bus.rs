//! Bus benchmark: job round trip (publish → consumer acks) latency p50/p99 and
//! sustained jobs/s, per adapter, beside a bare client doing the same work in
//! the same run: for NATS, async-nats alone (JetStream publish with ack, pull
//! fetch of one message, double ack) on the same stream; for RabbitMQ, lapin
//! alone (persistent publish under confirms to the same exchange, a quorum
//! queue, prefetch 1, manual ack); for the in-process bus, a tokio channel.
//!
//! Run: `cargo bench --bench bus` (NATS when TESSERA_BENCH_NATS_URL or
//! TESSERA_TEST_NATS_URL is set, RabbitMQ when TESSERA_BENCH_AMQP_URL or
//! TESSERA_TEST_AMQP_URL is). Prints a Markdown table.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tessera::adapters::bus::nats::NatsBus;
use tessera::adapters::bus::rabbit::RabbitBus;
use tessera::adapters::bus::MemoryBus;
use tessera_domain::bus::{Bus, ConsumerConfig, Job};

const ROUND_TRIPS: usize = 1000;
const SUSTAINED: usize = 5000;

struct Result {
    name: String,
    p50_us: f64,
    p99_us: f64,
    per_sec: f64,
}

/// Times `ROUND_TRIPS` single round trips, then `SUSTAINED` jobs back to back.
/// `publish(i)` sends job `i`; `done` yields once per job the consumer acked.
async fn measure<F, Fut>(
    name: &str,
    publish: F,
    done: &mut tokio::sync::mpsc::UnboundedReceiver<()>,
) -> Result
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut lat = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..ROUND_TRIPS {
        let t = Instant::now();
        publish(i).await;
        done.recv().await.unwrap();
        lat.push(t.elapsed());
    }
    let t = Instant::now();
    for i in 0..SUSTAINED {
        publish(ROUND_TRIPS + i).await;
    }
    for _ in 0..SUSTAINED {
        done.recv().await.unwrap();
    }
    let per_sec = SUSTAINED as f64 / t.elapsed().as_secs_f64();
    let (p50_us, p99_us) = percentiles(lat);
    Result {
        name: name.into(),
        p50_us,
        p99_us,
        per_sec,
    }
}

fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    // The sample at `percent` of the sorted run, in µs.
    let at = |percent: usize| v[(v.len() - 1) * percent / 100].as_secs_f64() * 1e6;
    (at(50), at(99))
}

/// The adapter's run, on consumer `bench<id>`.
async fn ours(bus: Arc<dyn Bus>, name: &str, id: String) -> Result {
    let subject = format!("tessera.jobs.bench{id}");
    let mut consumer = bus
        .consumer(ConsumerConfig::new(format!("bench{id}"), subject.clone()))
        .await
        .unwrap();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let worker = tokio::spawn(async move {
        while let Ok(Some(d)) = consumer.next(Duration::from_secs(5)).await {
            d.acker.ack().await.unwrap();
            if done_tx.send(()).is_err() {
                break;
            }
        }
    });
    let result = measure(
        name,
        |i| {
            let (bus, subject, id) = (bus.clone(), subject.clone(), id.clone());
            async move {
                bus.publish(Job {
                    subject,
                    dedup_id: format!("{id}-{i}"),
                    payload: vec![0; 256],
                })
                .await
                .unwrap();
            }
        },
        &mut done_rx,
    )
    .await;
    drop(done_rx);
    worker.abort();
    result
}

/// The RabbitMQ adapter's run, whose durable queue is removed afterwards.
async fn ours_rabbit(bus: RabbitBus) -> Result {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let result = ours(
        Arc::new(bus.clone()),
        "tessera RabbitMQ adapter",
        id.clone(),
    )
    .await;
    bus.delete_consumer(&format!("bench{id}")).await.unwrap();
    result
}

async fn bare_nats(url: &str) -> Result {
    use async_nats::jetstream::{self, consumer::pull};
    let client = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(client);
    let id = uuid::Uuid::new_v4().simple().to_string();
    let subject = format!("tessera.jobs.bare{id}");
    let stream = js
        .get_stream(tessera::adapters::bus::nats::JOBS_STREAM)
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(format!("bare{id}")),
            filter_subject: subject.clone(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let worker = tokio::spawn(async move {
        loop {
            let mut batch = consumer
                .fetch()
                .max_messages(1)
                .expires(Duration::from_secs(5))
                .messages()
                .await
                .unwrap();
            match batch.next().await {
                Some(Ok(m)) => {
                    m.double_ack().await.unwrap();
                    if done_tx.send(()).is_err() {
                        break;
                    }
                }
                Some(Err(_)) => continue,
                None => continue,
            }
        }
    });
    let result = measure(
        "bare async-nats (same stream, fetch 1, double ack)",
        |i| {
            let (js, subject, id) = (js.clone(), subject.clone(), id.clone());
            async move {
                let p = jetstream::message::PublishMessage::build()
                    .payload(vec![0u8; 256].into())
                    .message_id(format!("{id}-{i}"));
                js.send_publish(subject, p).await.unwrap().await.unwrap();
            }
        },
        &mut done_rx,
    )
    .await;
    drop(done_rx);
    worker.abort();
    result
}

async fn bare_lapin(url: &str) -> Result {
    use lapin::options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
    };
    use lapin::types::{AMQPValue, FieldTable, LongString};
    use lapin::{BasicProperties, Connection, ConnectionProperties};
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let subject = format!("tessera.jobs.bare{id}");
    let queue = format!("bench.bare{id}");
    let setup = connection.create_channel().await.unwrap();
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from(b"quorum".to_vec())),
    );
    setup
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .unwrap();
    setup
        .queue_bind(
            queue.as_str().into(),
            tessera::adapters::bus::rabbit::JOBS_EXCHANGE.into(),
            subject.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let consume = connection.create_channel().await.unwrap();
    consume
        .basic_qos(1, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = consume
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let publisher = connection.create_channel().await.unwrap();
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let worker = tokio::spawn(async move {
        while let Some(Ok(m)) = consumer.next().await {
            m.acker.ack(BasicAckOptions::default()).await.unwrap();
            if done_tx.send(()).is_err() {
                break;
            }
        }
    });
    let result = measure(
        "bare lapin (same exchange, quorum queue, prefetch 1, confirms, ack)",
        |i| {
            let (publisher, subject, id) = (publisher.clone(), subject.clone(), id.clone());
            async move {
                publisher
                    .basic_publish(
                        tessera::adapters::bus::rabbit::JOBS_EXCHANGE.into(),
                        subject.as_str().into(),
                        BasicPublishOptions::default(),
                        &[0u8; 256],
                        BasicProperties::default()
                            .with_delivery_mode(2)
                            .with_message_id(format!("{id}-{i}").into()),
                    )
                    .await
                    .unwrap()
                    .await
                    .unwrap();
            }
        },
        &mut done_rx,
    )
    .await;
    drop(done_rx);
    worker.abort();
    setup
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    result
}

async fn bare_channel() -> Result {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let worker = tokio::spawn(async move {
        while let Some(_job) = rx.recv().await {
            if done_tx.send(()).is_err() {
                break;
            }
        }
    });
    let result = measure(
        "bare tokio channel",
        |_| {
            tx.send(vec![0; 256]).unwrap();
            async {}
        },
        &mut done_rx,
    )
    .await;
    drop(tx);
    worker.abort();
    result
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mut pairs = vec![(
        ours(
            Arc::new(MemoryBus::new()),
            "tessera in-process bus",
            uuid::Uuid::new_v4().simple().to_string(),
        )
        .await,
        bare_channel().await,
    )];
    let url = std::env::var("TESSERA_BENCH_NATS_URL")
        .or_else(|_| std::env::var("TESSERA_TEST_NATS_URL"))
        .ok();
    match url {
        Some(url) => {
            let bus = NatsBus::connect(&url).await.unwrap();
            pairs.push((
                ours(
                    Arc::new(bus),
                    "tessera NATS adapter",
                    uuid::Uuid::new_v4().simple().to_string(),
                )
                .await,
                bare_nats(&url).await,
            ));
        }
        None => eprintln!("NATS skipped: set TESSERA_BENCH_NATS_URL"),
    }
    let url = std::env::var("TESSERA_BENCH_AMQP_URL")
        .or_else(|_| std::env::var("TESSERA_TEST_AMQP_URL"))
        .ok();
    match url {
        Some(url) => {
            let bus = RabbitBus::connect(&url).await.unwrap();
            let ours = ours_rabbit(bus.clone()).await;
            pairs.push((ours, bare_lapin(&url).await));
        }
        None => eprintln!("RabbitMQ skipped: set TESSERA_BENCH_AMQP_URL"),
    }
    println!("| adapter | round trip p50 (µs) | p99 (µs) | sustained jobs/s | peer | peer p50 (µs) | peer p99 (µs) | peer jobs/s | throughput ratio |");
    println!("|---|---:|---:|---:|---|---:|---:|---:|---:|");
    for (a, b) in pairs {
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {} | {:.0} | {:.0} | {:.0} | {:.2} |",
            a.name,
            a.p50_us,
            a.p99_us,
            a.per_sec,
            b.name,
            b.p50_us,
            b.p99_us,
            b.per_sec,
            a.per_sec / b.per_sec
        );
    }
}
