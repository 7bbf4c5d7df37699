//! RabbitMQ adapter of the bus port (AMQP 0-9-1 over lapin).
//!
//! Topology, declared idempotently when the bus connects:
//!
//! - `tessera.jobs`: a durable topic exchange. A job is published to it with
//!   its subject as routing key, persistent, under publisher confirms, so
//!   `publish` returns once the broker has stored it.
//! - `tessera.consumer.<name>`: one durable quorum queue per consumer name,
//!   bound to `tessera.jobs` with the consumer's filter (NATS `*` is AMQP `*`,
//!   NATS `>` is AMQP `#`). Every consumer handle opens its own channel with a
//!   prefetch of one and acknowledges by hand.
//! - `tessera.unrouted`: the alternate exchange of `tessera.jobs` and a queue
//!   behind it. A job whose subject no consumer queue is bound to yet waits
//!   there (a work-queue stream keeps it too); a consumer created later moves
//!   the jobs its filter matches into its own queue.
//! - `tessera.delay.<name>.<ms>`: a classic queue per consumer and nak delay,
//!   with `x-message-ttl` = the delay and dead-lettering back into the
//!   consumer's queue. One TTL per queue, so a long delay never holds up a
//!   short one. Unused delay queues expire (`x-expires`).
//! - `tessera.dead`: a fanout exchange and a queue; dead letters carry the
//!   reason, the subject and the delivery count in headers. It is also the
//!   consumer queues' dead-letter exchange, so anything the broker itself
//!   dead-letters lands there too. `dead_letters` reads the queue without
//!   consuming it.
//!
//! Deliveries and `ack_wait`: the adapter keeps the clock. A delivery handed
//! out by `next` gets a deadline of `ack_wait`; `progress` moves it. A watchdog
//! redelivers a delivery whose deadline passes: it publishes a copy into the
//! consumer's queue with the delivery count raised, then acknowledges the
//! original. RabbitMQ's own `consumer_timeout` (30 minutes by default) closes
//! the whole channel instead and knows nothing of heartbeats, so a job must
//! finish within it: raise it in `rabbitmq.conf` for longer jobs. Every delivery
//! is settled once: ack, nak, dead letter or the watchdog, whichever comes
//! first; the later ones are ignored, as with the other adapters.
//!
//! Delivery count: the `tessera-deliveries` header counts the deliveries before
//! the copy was published (nak and expiry republish); the quorum queue's
//! `x-delivery-count` adds the returns the broker made itself (a consumer whose
//! connection died holding the job). `attempt` is their sum plus one, so a job
//! that crashes its worker every time is dead-lettered too. A delivery past
//! `max_deliver` goes to `tessera.dead` instead of the consumer.
//!
//! De-duplication: RabbitMQ has none built in. The dedup id travels as the AMQP
//! `message_id`. Publishing an id this bus published in the last two minutes is
//! a no-op (like JetStream's duplicate window), and a delivery whose id a
//! consumer of this bus acknowledged or dead-lettered in the last two minutes
//! is acknowledged without being handed out. Both windows live in the process:
//! duplicates published by two processes, or consumed by two processes, can
//! still be delivered twice. That is at-least-once, which the job handlers
//! allow for (a batch's results are recorded once, keyed by batch number).
//!
//! Disjoint filters are checked among the consumers created through this bus
//! (AMQP cannot list another process's bindings). `pending` counts the jobs
//! waiting in `tessera.unrouted` whose subject matches, plus the ready and
//! delayed jobs of the consumer queues this bus created whose filter falls
//! under the one asked for, plus the deliveries this process holds unsettled.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use tessera_domain::bus::{
    subject_matches, Acker, Bus, BusError, Consumer, ConsumerConfig, DeadLetter, Delivery, Job,
};
use tokio::time::Instant;

pub const JOBS_EXCHANGE: &str = "tessera.jobs";
pub const UNROUTED: &str = "tessera.unrouted";
pub const DEAD: &str = "tessera.dead";
pub const CONSUMER_QUEUE_PREFIX: &str = "tessera.consumer.";
const DELAY_QUEUE_PREFIX: &str = "tessera.delay.";
const DEDUP_WINDOW: Duration = Duration::from_secs(120);
/// Upper bound of remembered dedup ids per window, so a flood cannot grow
/// memory without limit.
const DEDUP_CAPACITY: usize = 200_000;
const DEAD_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long an unused delay queue outlives its TTL.
const DELAY_QUEUE_EXPIRY: Duration = Duration::from_secs(600);
const PERSISTENT: u8 = 2;

const H_DELIVERIES: &str = "tessera-deliveries";
const H_SUBJECT: &str = "tessera-subject";
const H_REASON: &str = "tessera-reason";

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

/// NATS filter → AMQP binding key.
pub fn binding_key(filter: &str) -> String {
    filter
        .split('.')
        .map(|t| if t == ">" { "#" } else { t })
        .collect::<Vec<_>>()
        .join(".")
}

fn consumer_queue(name: &str) -> String {
    format!("{CONSUMER_QUEUE_PREFIX}{name}")
}

fn delay_queue(name: &str, delay: Duration) -> String {
    format!("{DELAY_QUEUE_PREFIX}{name}.{}", delay.as_millis())
}

fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

fn millis(d: Duration) -> AMQPValue {
    AMQPValue::LongLongInt(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn header_string(props: &BasicProperties, name: &str) -> Option<String> {
    match props.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn header_u32(props: &BasicProperties, name: &str) -> u32 {
    let value = props.headers().as_ref().and_then(|h| h.inner().get(name));
    let n: i64 = match value {
        Some(AMQPValue::ShortShortInt(v)) => i64::from(*v),
        Some(AMQPValue::ShortShortUInt(v)) => i64::from(*v),
        Some(AMQPValue::ShortInt(v)) => i64::from(*v),
        Some(AMQPValue::ShortUInt(v)) => i64::from(*v),
        Some(AMQPValue::LongInt(v)) => i64::from(*v),
        Some(AMQPValue::LongUInt(v)) => i64::from(*v),
        Some(AMQPValue::LongLongInt(v)) => *v,
        Some(AMQPValue::LongString(s)) => {
            String::from_utf8_lossy(s.as_bytes()).parse().unwrap_or(0)
        }
        _ => 0,
    };
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// Ids seen within a time window, oldest first.
#[derive(Default)]
struct Recent {
    ids: HashMap<String, Instant>,
    order: VecDeque<(Instant, String)>,
}

impl Recent {
    fn forget_old(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < DEDUP_WINDOW && self.order.len() <= DEDUP_CAPACITY {
                break;
            }
            if let Some((at, id)) = self.order.pop_front() {
                if self.ids.get(&id) == Some(&at) {
                    self.ids.remove(&id);
                }
            }
        }
    }

    /// Remembers `id`; false when it was already remembered.
    fn insert(&mut self, id: &str) -> bool {
        let now = Instant::now();
        self.forget_old(now);
        if self.ids.contains_key(id) {
            return false;
        }
        self.ids.insert(id.to_owned(), now);
        self.order.push_back((now, id.to_owned()));
        true
    }

    fn contains(&mut self, id: &str) -> bool {
        self.forget_old(Instant::now());
        self.ids.contains_key(id)
    }

    fn remove(&mut self, id: &str) {
        self.ids.remove(id);
    }
}

/// A consumer queue this bus created.
struct QueueInfo {
    filter: String,
    delays: BTreeSet<u64>,
    in_flight: Arc<AtomicU64>,
}

struct Inner {
    url: String,
    connection: tokio::sync::Mutex<Option<Connection>>,
    publisher: tokio::sync::Mutex<Option<Channel>>,
    published: Mutex<Recent>,
    settled: Mutex<Recent>,
    queues: Mutex<HashMap<String, QueueInfo>>,
}

/// Returns every message this channel read (up to the delivery tag `last`)
/// to its queue, in its place: a peek, not a consume.
async fn put_back(channel: &Channel, last: Option<u64>) -> Result<(), BusError> {
    if let Some(tag) = last {
        channel
            .basic_nack(
                tag,
                BasicNackOptions {
                    multiple: true,
                    requeue: true,
                },
            )
            .await
            .map_err(unavailable)?;
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every mutation under these locks is complete or absent; a panic elsewhere
    // leaves usable data.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The RabbitMQ bus. Cloning shares the connection.
#[derive(Clone)]
pub struct RabbitBus {
    inner: Arc<Inner>,
}

impl RabbitBus {
    /// Connects (`amqp://user:pass@host:5672/%2f`) and declares the exchanges
    /// and queues every consumer shares.
    pub async fn connect(url: &str) -> Result<RabbitBus, BusError> {
        let bus = RabbitBus {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                connection: tokio::sync::Mutex::new(None),
                publisher: tokio::sync::Mutex::new(None),
                published: Mutex::new(Recent::default()),
                settled: Mutex::new(Recent::default()),
                queues: Mutex::new(HashMap::new()),
            }),
        };
        let channel = tokio::time::timeout(Duration::from_secs(10), bus.channel())
            .await
            .map_err(|_| BusError::Unavailable("connection timed out".into()))??;
        declare_topology(&channel).await?;
        let _ = channel.close(200, "declared".into()).await;
        Ok(bus)
    }

    /// A new channel, on a new connection when the last one was lost.
    async fn channel(&self) -> Result<Channel, BusError> {
        let mut connection = self.inner.connection.lock().await;
        if let Some(c) = connection.as_ref() {
            if c.status().connected() {
                return c.create_channel().await.map_err(unavailable);
            }
        }
        let properties =
            ConnectionProperties::default().with_connection_name("tessera".to_owned().into());
        let c = Connection::connect(&self.inner.url, properties)
            .await
            .map_err(unavailable)?;
        let channel = c.create_channel().await.map_err(unavailable)?;
        *connection = Some(c);
        Ok(channel)
    }

    /// Publishes under confirms on the shared publishing channel and waits for
    /// the broker's acknowledgement.
    async fn send(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
        properties: BasicProperties,
    ) -> Result<(), BusError> {
        let confirm = {
            let mut publisher = self.inner.publisher.lock().await;
            let channel = match publisher.as_ref() {
                Some(c) if c.status().connected() => c.clone(),
                _ => {
                    let c = self.channel().await?;
                    c.confirm_select(ConfirmSelectOptions::default())
                        .await
                        .map_err(unavailable)?;
                    *publisher = Some(c.clone());
                    c
                }
            };
            channel
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    BasicPublishOptions::default(),
                    payload,
                    properties.with_delivery_mode(PERSISTENT),
                )
                .await
                .map_err(unavailable)?
        };
        match confirm.await.map_err(unavailable)? {
            Confirmation::Ack(_) | Confirmation::NotRequested => Ok(()),
            Confirmation::Nack(_) => Err(BusError::Unavailable(
                "the broker refused the message".into(),
            )),
        }
    }

    async fn dead_letter(
        &self,
        subject: &str,
        dedup_id: &str,
        payload: &[u8],
        reason: &str,
        deliveries: u32,
    ) -> Result<(), BusError> {
        let mut headers = FieldTable::default();
        headers.insert(H_SUBJECT.into(), long_string(subject));
        headers.insert(
            H_REASON.into(),
            long_string(&reason.replace(['\r', '\n'], " ")),
        );
        headers.insert(
            H_DELIVERIES.into(),
            AMQPValue::LongLongInt(i64::from(deliveries)),
        );
        let properties = BasicProperties::default()
            .with_message_id(ShortString::from(dedup_id))
            .with_headers(headers);
        self.send(DEAD, subject, payload, properties).await?;
        lock(&self.inner.settled).insert(dedup_id);
        Ok(())
    }

    /// Moves the jobs waiting in `tessera.unrouted` that `filter` matches into
    /// `queue`; the others stay where they were.
    async fn claim_unrouted(&self, queue: &str, filter: &str) -> Result<(), BusError> {
        let channel = self.channel().await?;
        let waiting = channel
            .queue_declare(
                UNROUTED.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?
            .message_count();
        let mut last_kept = None;
        for _ in 0..waiting {
            let Some(m) = channel
                .basic_get(UNROUTED.into(), BasicGetOptions { no_ack: false })
                .await
                .map_err(unavailable)?
            else {
                break;
            };
            let subject = m.delivery.routing_key.as_str();
            if subject_matches(filter, subject) {
                let mut headers = m.delivery.properties.headers().clone().unwrap_or_default();
                headers.insert(H_SUBJECT.into(), long_string(subject));
                let properties = m.delivery.properties.clone().with_headers(headers);
                self.send("", queue, &m.delivery.data, properties).await?;
                m.delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await
                    .map_err(unavailable)?;
            } else {
                last_kept = Some(m.delivery.delivery_tag);
            }
        }
        if let Some(tag) = last_kept {
            // Every delivery up to `tag` not acknowledged above goes back, in place.
            channel
                .basic_nack(
                    tag,
                    BasicNackOptions {
                        multiple: true,
                        requeue: true,
                    },
                )
                .await
                .map_err(unavailable)?;
        }
        let _ = channel.close(200, "claimed".into()).await;
        Ok(())
    }

    /// Removes the durable consumer `name`: its queue, with the jobs in it, and
    /// its delay queues this bus knows of. Creating it again starts empty.
    pub async fn delete_consumer(&self, name: &str) -> Result<(), BusError> {
        let queue = consumer_queue(name);
        let delays = lock(&self.inner.queues)
            .remove(&queue)
            .map(|q| q.delays)
            .unwrap_or_default();
        let channel = self.channel().await?;
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .map_err(unavailable)?;
        for ms in delays {
            channel
                .queue_delete(
                    delay_queue(name, Duration::from_millis(ms)).as_str().into(),
                    QueueDeleteOptions::default(),
                )
                .await
                .map_err(unavailable)?;
        }
        let _ = channel.close(200, "deleted".into()).await;
        Ok(())
    }

    /// Counts the ready messages of `queue` (0 when it does not exist).
    async fn ready(&self, queue: &str) -> Result<u64, BusError> {
        // A passive declare of a missing queue closes the channel: use a spare one.
        let channel = self.channel().await?;
        let count = match channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
        {
            Ok(q) => u64::from(q.message_count()),
            Err(_) => 0,
        };
        let _ = channel.close(200, "counted".into()).await;
        Ok(count)
    }
}

async fn declare_topology(channel: &Channel) -> Result<(), BusError> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let durable_queue = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            UNROUTED.into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
    channel
        .queue_declare(UNROUTED.into(), durable_queue, FieldTable::default())
        .await
        .map_err(unavailable)?;
    channel
        .queue_bind(
            UNROUTED.into(),
            UNROUTED.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
    let mut jobs_args = FieldTable::default();
    jobs_args.insert("alternate-exchange".into(), long_string(UNROUTED));
    channel
        .exchange_declare(
            JOBS_EXCHANGE.into(),
            ExchangeKind::Topic,
            durable,
            jobs_args,
        )
        .await
        .map_err(unavailable)?;
    channel
        .exchange_declare(
            DEAD.into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
    let mut dead_args = FieldTable::default();
    dead_args.insert("x-message-ttl".into(), millis(DEAD_TTL));
    channel
        .queue_declare(DEAD.into(), durable_queue, dead_args)
        .await
        .map_err(unavailable)?;
    channel
        .queue_bind(
            DEAD.into(),
            DEAD.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
    Ok(())
}

fn valid_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject.len() <= 255
        && !subject.contains(['*', '>', '#', ' '])
        && subject.split('.').all(|t| !t.is_empty())
}

#[async_trait]
impl Bus for RabbitBus {
    async fn publish(&self, job: Job) -> Result<(), BusError> {
        if !valid_subject(&job.subject) {
            return Err(BusError::Invalid(format!(
                "bad job subject {:?}",
                job.subject
            )));
        }
        if ShortString::try_new(job.dedup_id.clone()).is_err() {
            return Err(BusError::Invalid("dedup id longer than 255 bytes".into()));
        }
        if !lock(&self.inner.published).insert(&job.dedup_id) {
            return Ok(());
        }
        let properties =
            BasicProperties::default().with_message_id(ShortString::from(job.dedup_id.as_str()));
        let sent = self
            .send(JOBS_EXCHANGE, &job.subject, &job.payload, properties)
            .await;
        if sent.is_err() {
            // Not stored: a retry must not be taken for a duplicate.
            lock(&self.inner.published).remove(&job.dedup_id);
        }
        sent
    }

    async fn consumer(&self, config: ConsumerConfig) -> Result<Box<dyn Consumer>, BusError> {
        if config.max_deliver == 0 || config.ack_wait.is_zero() {
            return Err(BusError::Invalid(
                "max_deliver and ack_wait must be positive".into(),
            ));
        }
        if config.name.is_empty() || config.name.contains([' ', '*', '>', '#']) {
            return Err(BusError::Invalid(format!(
                "bad consumer name {:?}",
                config.name
            )));
        }
        let queue = consumer_queue(&config.name);
        let in_flight = {
            let mut queues = lock(&self.inner.queues);
            let clash = queues.iter().find(|(name, q)| {
                if **name == queue {
                    q.filter != config.filter
                } else {
                    subject_matches(&q.filter, &config.filter)
                        || subject_matches(&config.filter, &q.filter)
                }
            });
            if let Some((name, _)) = clash {
                return Err(BusError::Invalid(format!(
                    "consumer {} overlaps the filter of {name}",
                    config.name
                )));
            }
            queues
                .entry(queue.clone())
                .or_insert_with(|| QueueInfo {
                    filter: config.filter.clone(),
                    delays: BTreeSet::new(),
                    in_flight: Arc::new(AtomicU64::new(0)),
                })
                .in_flight
                .clone()
        };
        let channel = self.channel().await?;
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), long_string("quorum"));
        args.insert("x-dead-letter-exchange".into(), long_string(DEAD));
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                args,
            )
            .await
            .map_err(unavailable)?;
        channel
            .queue_bind(
                queue.as_str().into(),
                JOBS_EXCHANGE.into(),
                binding_key(&config.filter).into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        let _ = channel.close(200, "declared".into()).await;
        self.claim_unrouted(&queue, &config.filter).await?;
        Ok(Box::new(RabbitConsumer {
            bus: self.clone(),
            config,
            queue,
            in_flight,
            stream: None,
        }))
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, BusError> {
        let channel = self.channel().await?;
        let mut out = Vec::new();
        let mut last = None;
        while out.len() < limit {
            let Some(m) = channel
                .basic_get(DEAD.into(), BasicGetOptions { no_ack: false })
                .await
                .map_err(unavailable)?
            else {
                break;
            };
            let d = &m.delivery;
            last = Some(d.delivery_tag);
            out.push(DeadLetter {
                subject: header_string(&d.properties, H_SUBJECT)
                    .unwrap_or_else(|| d.routing_key.as_str().to_owned()),
                dedup_id: d
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
                payload: d.data.clone(),
                reason: header_string(&d.properties, H_REASON)
                    .unwrap_or_else(|| "dead-lettered by the broker".into()),
                deliveries: header_u32(&d.properties, H_DELIVERIES),
            });
        }
        put_back(&channel, last).await?;
        let _ = channel.close(200, "read".into()).await;
        Ok(out)
    }

    async fn pending(&self, filter: &str) -> Result<u64, BusError> {
        let mut total = 0u64;
        // Waiting for a consumer: look at each subject.
        let channel = self.channel().await?;
        let mut last = None;
        loop {
            let Some(m) = channel
                .basic_get(UNROUTED.into(), BasicGetOptions { no_ack: false })
                .await
                .map_err(unavailable)?
            else {
                break;
            };
            last = Some(m.delivery.delivery_tag);
            if subject_matches(filter, m.delivery.routing_key.as_str()) {
                total += 1;
            }
        }
        put_back(&channel, last).await?;
        let _ = channel.close(200, "counted".into()).await;
        // In consumer queues (and their delay queues) whose filter is covered.
        let covered: Vec<(String, Vec<u64>, u64)> = lock(&self.inner.queues)
            .iter()
            .filter(|(_, q)| subject_matches(filter, &q.filter))
            .map(|(name, q)| {
                (
                    name.clone(),
                    q.delays.iter().copied().collect(),
                    q.in_flight.load(Ordering::Relaxed),
                )
            })
            .collect();
        for (queue, delays, in_flight) in covered {
            total += self.ready(&queue).await? + in_flight;
            let name = queue.strip_prefix(CONSUMER_QUEUE_PREFIX).unwrap_or(&queue);
            for ms in delays {
                total += self
                    .ready(&delay_queue(name, Duration::from_millis(ms)))
                    .await?;
            }
        }
        Ok(total)
    }

    async fn ping(&self) -> Result<(), BusError> {
        let channel = self.channel().await?;
        channel
            .exchange_declare(
                JOBS_EXCHANGE.into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        let _ = channel.close(200, "pinged".into()).await;
        Ok(())
    }

    fn name(&self) -> &'static str {
        "rabbitmq"
    }
}

struct RabbitConsumer {
    bus: RabbitBus,
    config: ConsumerConfig,
    queue: String,
    in_flight: Arc<AtomicU64>,
    /// The channel and its consumer; opened on first use and after a failure.
    stream: Option<(Channel, lapin::Consumer)>,
}

impl RabbitConsumer {
    async fn open(&mut self) -> Result<(), BusError> {
        if self.stream.is_some() {
            return Ok(());
        }
        let channel = self.bus.channel().await?;
        // One job at a time per handle, as the NATS adapter pulls one.
        channel
            .basic_qos(1, BasicQosOptions::default())
            .await
            .map_err(unavailable)?;
        let consumer = channel
            .basic_consume(
                self.queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        self.stream = Some((channel, consumer));
        Ok(())
    }
}

#[async_trait]
impl Consumer for RabbitConsumer {
    async fn next(&mut self, timeout: Duration) -> Result<Option<Delivery>, BusError> {
        let give_up = Instant::now() + timeout;
        loop {
            self.open().await?;
            let Some((channel, consumer)) = self.stream.as_mut() else {
                return Err(BusError::Closed);
            };
            let m = match tokio::time::timeout_at(give_up, consumer.next()).await {
                Err(_) => return Ok(None),
                Ok(Some(Ok(m))) => m,
                Ok(Some(Err(e))) => {
                    self.stream = None;
                    return Err(unavailable(e));
                }
                Ok(None) => {
                    self.stream = None;
                    return Err(BusError::Unavailable(
                        "the broker cancelled the consumer".into(),
                    ));
                }
            };
            let channel = channel.clone();
            let props = &m.properties;
            let dedup_id = props
                .message_id()
                .as_ref()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default();
            // A copy put straight into the queue (redelivery, a job that waited
            // for its consumer) has the subject in a header.
            let subject = header_string(props, H_SUBJECT)
                .unwrap_or_else(|| m.routing_key.as_str().to_owned());
            let before = header_u32(props, H_DELIVERIES);
            let returned = header_u32(props, "x-delivery-count");
            let attempt = before.saturating_add(returned).saturating_add(1);
            if before == 0 && returned == 0 && lock(&self.bus.inner.settled).contains(&dedup_id) {
                // A duplicate of a job already done here.
                m.acker
                    .ack(BasicAckOptions::default())
                    .await
                    .map_err(unavailable)?;
                continue;
            }
            if attempt > self.config.max_deliver {
                let reason = format!("not acknowledged after {} deliveries", attempt - 1);
                self.bus
                    .dead_letter(&subject, &dedup_id, &m.data, &reason, attempt - 1)
                    .await?;
                m.acker
                    .ack(BasicAckOptions::default())
                    .await
                    .map_err(unavailable)?;
                continue;
            }
            let held = Arc::new(Held {
                bus: self.bus.clone(),
                queue: self.queue.clone(),
                _channel: channel,
                subject: subject.clone(),
                dedup_id: dedup_id.clone(),
                payload: m.data.clone(),
                attempt,
                ack_wait: self.config.ack_wait,
                max_deliver: self.config.max_deliver,
                acker: m.acker,
                state: Mutex::new(HeldState {
                    settled: false,
                    deadline: Instant::now() + self.config.ack_wait,
                }),
                settled: tokio::sync::Notify::new(),
                in_flight: self.in_flight.clone(),
            });
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(watch(held.clone()));
            return Ok(Some(Delivery {
                subject,
                dedup_id,
                payload: m.data,
                attempt,
                acker: Box::new(RabbitAcker { held }),
            }));
        }
    }
}

struct HeldState {
    settled: bool,
    deadline: Instant,
}

/// One delivery handed out and not yet settled.
struct Held {
    bus: RabbitBus,
    queue: String,
    /// Keeps the delivery's channel open until the delivery is settled.
    _channel: Channel,
    subject: String,
    dedup_id: String,
    payload: Vec<u8>,
    attempt: u32,
    ack_wait: Duration,
    max_deliver: u32,
    acker: lapin::Acker,
    state: Mutex<HeldState>,
    /// Wakes the watchdog when the delivery is settled.
    settled: tokio::sync::Notify,
    in_flight: Arc<AtomicU64>,
}

impl Held {
    /// Takes the right to settle this delivery; false when it is settled already.
    fn settle(&self) -> bool {
        let mut state = lock(&self.state);
        if state.settled {
            return false;
        }
        state.settled = true;
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.settled.notify_one();
        true
    }

    async fn ack_original(&self) -> Result<(), BusError> {
        self.acker
            .ack(BasicAckOptions::default())
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    /// Gives the job back to the broker: into the consumer's queue after `delay`
    /// with this delivery counted, then lets go of the original.
    async fn redeliver(&self, delay: Duration) -> Result<(), BusError> {
        let mut headers = FieldTable::default();
        headers.insert(
            H_DELIVERIES.into(),
            AMQPValue::LongLongInt(i64::from(self.attempt)),
        );
        headers.insert(H_SUBJECT.into(), long_string(&self.subject));
        let properties = BasicProperties::default()
            .with_message_id(ShortString::from(self.dedup_id.as_str()))
            .with_headers(headers);
        let sent = if delay.is_zero() {
            self.bus
                .send("", &self.queue, &self.payload, properties)
                .await
        } else {
            let name = self
                .queue
                .strip_prefix(CONSUMER_QUEUE_PREFIX)
                .unwrap_or(&self.queue);
            let delay_queue = delay_queue(name, delay);
            let declared = async {
                let channel = self.bus.channel().await?;
                let mut args = FieldTable::default();
                args.insert("x-message-ttl".into(), millis(delay));
                args.insert("x-expires".into(), millis(delay + DELAY_QUEUE_EXPIRY));
                args.insert("x-dead-letter-exchange".into(), long_string(""));
                args.insert("x-dead-letter-routing-key".into(), long_string(&self.queue));
                channel
                    .queue_declare(
                        delay_queue.as_str().into(),
                        QueueDeclareOptions {
                            durable: true,
                            ..Default::default()
                        },
                        args,
                    )
                    .await
                    .map_err(unavailable)?;
                let _ = channel.close(200, "declared".into()).await;
                Ok::<(), BusError>(())
            }
            .await;
            match declared {
                Ok(()) => {
                    if let Some(q) = lock(&self.bus.inner.queues).get_mut(&self.queue) {
                        q.delays
                            .insert(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
                    }
                    self.bus
                        .send("", &delay_queue, &self.payload, properties)
                        .await
                }
                Err(e) => Err(e),
            }
        };
        match sent {
            Ok(()) => self.ack_original().await,
            Err(e) => {
                // The broker gives the original back itself (and counts it).
                let _ = self
                    .acker
                    .nack(BasicNackOptions {
                        multiple: false,
                        requeue: true,
                    })
                    .await;
                Err(e)
            }
        }
    }

    async fn dead_letter(&self, reason: &str) -> Result<(), BusError> {
        self.bus
            .dead_letter(
                &self.subject,
                &self.dedup_id,
                &self.payload,
                reason,
                self.attempt,
            )
            .await?;
        self.ack_original().await
    }
}

/// Redelivers (or, on the last delivery, dead-letters) a delivery whose
/// deadline passes without ack, nak or progress.
async fn watch(held: Arc<Held>) {
    loop {
        let deadline = lock(&held.state).deadline;
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            _ = held.settled.notified() => {}
        }
        {
            let state = lock(&held.state);
            if state.settled {
                return;
            }
            if Instant::now() < state.deadline {
                continue;
            }
        }
        if !held.settle() {
            return;
        }
        let outcome = if held.attempt >= held.max_deliver {
            let reason = format!("not acknowledged after {} deliveries", held.attempt);
            held.dead_letter(&reason).await
        } else {
            held.redeliver(Duration::ZERO).await
        };
        if let Err(e) = outcome {
            tracing::warn!(subject = %held.subject, error = %e,
                "cannot redeliver an expired job; the broker returns it when the channel closes");
        }
        return;
    }
}

struct RabbitAcker {
    held: Arc<Held>,
}

#[async_trait]
impl Acker for RabbitAcker {
    async fn ack(&self) -> Result<(), BusError> {
        if !self.held.settle() {
            return Ok(());
        }
        lock(&self.held.bus.inner.settled).insert(&self.held.dedup_id);
        self.held.ack_original().await
    }

    async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        if !self.held.settle() {
            return Ok(());
        }
        self.held.redeliver(delay).await
    }

    async fn progress(&self) -> Result<(), BusError> {
        let mut state = lock(&self.held.state);
        if !state.settled {
            state.deadline = Instant::now() + self.held.ack_wait;
        }
        Ok(())
    }

    async fn dead_letter(&self, reason: &str) -> Result<(), BusError> {
        if !self.held.settle() {
            return Ok(());
        }
        self.held.dead_letter(reason).await
    }
}
