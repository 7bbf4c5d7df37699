//! The bus contract suite. Every adapter of the bus port must pass it: the
//! in-process adapter, NATS JetStream and RabbitMQ, through `adapters()`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera::adapters::bus::nats::NatsBus;
use tessera::adapters::bus::rabbit::RabbitBus;
use tessera::adapters::bus::MemoryBus;
use tessera_domain::bus::{Bus, ConsumerConfig, Job};

/// Every adapter this run covers: in-process always; NATS when
/// `TESSERA_TEST_NATS_URL` is set, RabbitMQ when `TESSERA_TEST_AMQP_URL` is set
/// (each required under `TESSERA_TEST_REQUIRE_SERVICES`).
async fn adapters() -> Vec<Arc<dyn Bus>> {
    let mut out: Vec<Arc<dyn Bus>> = vec![Arc::new(MemoryBus::new())];
    match std::env::var("TESSERA_TEST_NATS_URL") {
        Ok(url) if !url.is_empty() => out.push(Arc::new(
            NatsBus::connect(&url)
                .await
                .unwrap_or_else(|e| panic!("NATS at {url}: {e}")),
        )),
        _ if common::require_services() => panic!("TESSERA_TEST_NATS_URL is required"),
        _ => eprintln!("note: TESSERA_TEST_NATS_URL unset; NATS bus tests skipped"),
    }
    if let Some(bus) = rabbit().await {
        out.push(Arc::new(bus));
    }
    out
}

async fn rabbit() -> Option<RabbitBus> {
    match std::env::var("TESSERA_TEST_AMQP_URL") {
        Ok(url) if !url.is_empty() => Some(
            RabbitBus::connect(&url)
                .await
                .unwrap_or_else(|e| panic!("RabbitMQ at {url}: {e}")),
        ),
        _ if common::require_services() => panic!("TESSERA_TEST_AMQP_URL is required"),
        _ => {
            eprintln!("note: TESSERA_TEST_AMQP_URL unset; RabbitMQ bus tests skipped");
            None
        }
    }
}

fn job(subject: &str, id: &str) -> Job {
    Job {
        subject: subject.into(),
        dedup_id: id.into(),
        payload: id.as_bytes().to_vec(),
    }
}

fn config(name: &str, filter: &str, ack_wait_ms: u64, max_deliver: u32) -> ConsumerConfig {
    ConsumerConfig {
        // Durable names may not contain dots.
        name: name.replace('.', "_"),
        filter: filter.into(),
        ack_wait: Duration::from_millis(ack_wait_ms),
        max_deliver,
    }
}

const WAIT: Duration = Duration::from_secs(5);

async fn publish_consume_ack(bus: &dyn Bus, p: &str) {
    let mut c = bus
        .consumer(config(&format!("{p}-a"), &format!("{p}.a.>"), 2000, 3))
        .await
        .unwrap();
    bus.publish(job(&format!("{p}.a.x"), &format!("{p}-1")))
        .await
        .unwrap();
    bus.publish(job(&format!("{p}.b.x"), &format!("{p}-other")))
        .await
        .unwrap();
    let d = c.next(WAIT).await.unwrap().expect("a delivery");
    assert_eq!(d.payload, format!("{p}-1").as_bytes());
    assert_eq!(d.attempt, 1);
    d.acker.ack().await.unwrap();
    // The other subject is not ours; nothing else is delivered.
    assert!(c.next(Duration::from_millis(300)).await.unwrap().is_none());
    assert_eq!(bus.pending(&format!("{p}.a.>")).await.unwrap(), 0);
    assert_eq!(bus.pending(&format!("{p}.b.>")).await.unwrap(), 1);
}

async fn nak_redelivers_after_delay(bus: &dyn Bus, p: &str) {
    let mut c = bus
        .consumer(config(&format!("{p}-n"), &format!("{p}.n"), 2000, 5))
        .await
        .unwrap();
    bus.publish(job(&format!("{p}.n"), &format!("{p}-n1")))
        .await
        .unwrap();
    let d = c.next(WAIT).await.unwrap().unwrap();
    let naked = Instant::now();
    d.acker.nak(Duration::from_millis(400)).await.unwrap();
    let d = c.next(WAIT).await.unwrap().unwrap();
    assert!(
        naked.elapsed() >= Duration::from_millis(350),
        "redelivered before the delay"
    );
    assert_eq!(d.attempt, 2);
    d.acker.ack().await.unwrap();
}

async fn progress_keeps_a_slow_job(bus: &dyn Bus, p: &str) {
    let mut c = bus
        .consumer(config(&format!("{p}-s"), &format!("{p}.s"), 500, 5))
        .await
        .unwrap();
    bus.publish(job(&format!("{p}.s"), &format!("{p}-s1")))
        .await
        .unwrap();
    let d = c.next(WAIT).await.unwrap().unwrap();
    // Work for three ack-waits, heartbeating; no redelivery may happen meanwhile.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        d.acker.progress().await.unwrap();
        assert!(
            c.next(Duration::from_millis(1)).await.unwrap().is_none(),
            "redelivered a live job"
        );
    }
    d.acker.ack().await.unwrap();
    assert!(c.next(Duration::from_millis(800)).await.unwrap().is_none());
}

async fn silence_redelivers_then_dead_letters(bus: &dyn Bus, p: &str) {
    let mut c = bus
        .consumer(config(&format!("{p}-d"), &format!("{p}.d"), 200, 2))
        .await
        .unwrap();
    bus.publish(job(&format!("{p}.d"), &format!("{p}-d1")))
        .await
        .unwrap();
    let first = c.next(WAIT).await.unwrap().unwrap();
    assert_eq!(first.attempt, 1);
    let second = c.next(WAIT).await.unwrap().unwrap();
    assert_eq!(second.attempt, 2);
    drop(first);
    assert!(c.next(Duration::from_millis(600)).await.unwrap().is_none());
    let dead = bus.dead_letters(100_000).await.unwrap();
    let d = dead
        .iter()
        .find(|d| d.dedup_id == format!("{p}-d1"))
        .expect("dead-lettered");
    assert_eq!(d.deliveries, 2);
    assert!(!d.reason.is_empty());

    bus.publish(job(&format!("{p}.d"), &format!("{p}-d2")))
        .await
        .unwrap();
    let d = c.next(WAIT).await.unwrap().unwrap();
    d.acker.dead_letter("corrupt input").await.unwrap();
    let dead = bus.dead_letters(100_000).await.unwrap();
    assert!(dead
        .iter()
        .any(|d| d.dedup_id == format!("{p}-d2") && d.reason == "corrupt input"));
}

async fn duplicate_publish_is_delivered_once(bus: &dyn Bus, p: &str) {
    let mut c = bus
        .consumer(config(&format!("{p}-u"), &format!("{p}.u"), 2000, 3))
        .await
        .unwrap();
    for _ in 0..3 {
        bus.publish(job(&format!("{p}.u"), &format!("{p}-same")))
            .await
            .unwrap();
    }
    let d = c.next(WAIT).await.unwrap().unwrap();
    d.acker.ack().await.unwrap();
    assert!(c.next(Duration::from_millis(300)).await.unwrap().is_none());
}

async fn consumer_restart_resumes(bus: &dyn Bus, p: &str) {
    let name = format!("{p}-r");
    let filter = format!("{p}.r");
    let mut c = bus.consumer(config(&name, &filter, 300, 5)).await.unwrap();
    for i in 0..3 {
        bus.publish(job(&filter, &format!("{p}-r{i}")))
            .await
            .unwrap();
    }
    let d = c.next(WAIT).await.unwrap().unwrap();
    d.acker.ack().await.unwrap();
    // Takes one, then "crashes" without acking.
    let lost = c.next(WAIT).await.unwrap().unwrap();
    drop(lost);
    drop(c);
    let mut c = bus.consumer(config(&name, &filter, 300, 5)).await.unwrap();
    let mut got = Vec::new();
    while let Some(d) = c.next(Duration::from_secs(2)).await.unwrap() {
        got.push(String::from_utf8(d.payload.clone()).unwrap());
        d.acker.ack().await.unwrap();
    }
    got.sort();
    assert_eq!(got, vec![format!("{p}-r1"), format!("{p}-r2")]);
}

async fn overlapping_consumers_are_refused(bus: &dyn Bus, p: &str) {
    bus.consumer(config(&format!("{p}-o1"), &format!("{p}.o.>"), 1000, 3))
        .await
        .unwrap();
    assert!(bus
        .consumer(config(&format!("{p}-o2"), &format!("{p}.o.x"), 1000, 3))
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bus_contract() {
    for bus in adapters().await {
        eprintln!("bus contract on {}", bus.name());
        // Under the jobs subject space every broker adapter serves; unique per
        // run, so reruns on the same broker never meet an earlier run's jobs.
        let p = format!("tessera.jobs.t{}", uuid::Uuid::new_v4().simple());
        bus.ping().await.unwrap();
        publish_consume_ack(bus.as_ref(), &p).await;
        nak_redelivers_after_delay(bus.as_ref(), &p).await;
        progress_keeps_a_slow_job(bus.as_ref(), &p).await;
        silence_redelivers_then_dead_letters(bus.as_ref(), &p).await;
        duplicate_publish_is_delivered_once(bus.as_ref(), &p).await;
        consumer_restart_resumes(bus.as_ref(), &p).await;
        overlapping_consumers_are_refused(bus.as_ref(), &p).await;
        if bus.name() == "rabbitmq" {
            // A RabbitMQ consumer is a durable queue: remove this run's.
            let rabbit = rabbit().await.unwrap();
            for suffix in ["a", "n", "s", "d", "u", "r", "o1", "o2"] {
                rabbit
                    .delete_consumer(&config(&format!("{p}-{suffix}"), "", 1, 1).name)
                    .await
                    .unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_broker_restart_loses_nothing() {
    let Some(mut server) = common::OwnNats::start() else {
        return;
    };
    let bus = NatsBus::connect(&server.url()).await.unwrap();
    let mut c = bus
        .consumer(config("restart", "tessera.jobs.restart", 1000, 5))
        .await
        .unwrap();
    for i in 0..3 {
        bus.publish(job("tessera.jobs.restart", &format!("r{i}")))
            .await
            .unwrap();
    }
    let d = c.next(WAIT).await.unwrap().unwrap();
    d.acker.ack().await.unwrap();

    server.restart(Duration::ZERO);

    // The same client and consumer carry on: the two unacked jobs survive.
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < 2 && Instant::now() < deadline {
        if let Ok(Some(d)) = c.next(Duration::from_secs(2)).await {
            got.push(String::from_utf8(d.payload.clone()).unwrap());
            d.acker.ack().await.unwrap();
        }
    }
    got.sort();
    assert_eq!(got, vec!["r1".to_owned(), "r2".to_owned()]);
    // Publishing works again, and nothing is left over.
    bus.publish(job("tessera.jobs.restart", "r3"))
        .await
        .unwrap();
    let d = c.next(WAIT).await.unwrap().unwrap();
    assert_eq!(d.payload, b"r3");
    d.acker.ack().await.unwrap();
    assert_eq!(bus.pending("tessera.jobs.restart").await.unwrap(), 0);
}

/// RabbitMQ, stopped and started again under a live adapter: the unacked
/// jobs survive in their durable quorum queue, a consumer made again (as the
/// consumer loop does after an error) gets them, and publishing reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_broker_restart_loses_nothing() {
    let Some(server) = common::OwnRabbit::start() else {
        return;
    };
    let bus = RabbitBus::connect(&server.url()).await.unwrap();
    let cfg = config("restart", "tessera.jobs.restart", 1000, 5);
    let mut c = bus.consumer(cfg.clone()).await.unwrap();
    for i in 0..3 {
        bus.publish(job("tessera.jobs.restart", &format!("r{i}")))
            .await
            .unwrap();
    }
    let d = c.next(WAIT).await.unwrap().unwrap();
    assert_eq!(d.payload, b"r0");
    d.acker.ack().await.unwrap();

    server.restart();

    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < 2 && Instant::now() < deadline {
        match c.next(Duration::from_secs(2)).await {
            Ok(Some(d)) => {
                got.push(String::from_utf8(d.payload.clone()).unwrap());
                d.acker.ack().await.unwrap();
            }
            Ok(None) => {}
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if let Ok(again) = bus.consumer(cfg.clone()).await {
                    c = again;
                }
            }
        }
    }
    got.sort();
    assert_eq!(got, vec!["r1".to_owned(), "r2".to_owned()]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while bus
        .publish(job("tessera.jobs.restart", "r3"))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "publishing never came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let d = c.next(WAIT).await.unwrap().unwrap();
    assert_eq!(d.payload, b"r3");
    d.acker.ack().await.unwrap();
    assert!(c.next(Duration::from_millis(500)).await.unwrap().is_none());
}
