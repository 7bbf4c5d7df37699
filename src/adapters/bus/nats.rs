//! NATS JetStream adapter of the bus port.
//!
//! Jobs live in the work-queue stream `TESSERA_JOBS` (`tessera.jobs.>`): a
//! message is removed when acknowledged, and JetStream refuses two consumers
//! with overlapping filters. Each durable pull consumer fetches one message at
//! a time, so a worker never holds jobs it has not started (their `ack_wait`
//! would run out). Publishing sets `Nats-Msg-Id`, so the stream's duplicate
//! window delivers a job published twice only once. A job delivered more than
//! `max_deliver` times is copied to `TESSERA_DEAD` (`tessera.dead.>`) with the
//! reason in a header, then removed from the work queue.
//!
//! Streams are created or updated idempotently when the bus connects.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream, AckKind};
use async_nats::HeaderMap;
use async_trait::async_trait;
use futures::StreamExt;
use tessera_domain::bus::{
    Acker, Bus, BusError, Consumer, ConsumerConfig, DeadLetter, Delivery, Job,
};

pub const JOBS_STREAM: &str = "TESSERA_JOBS";
pub const DEAD_STREAM: &str = "TESSERA_DEAD";
const DEAD_PREFIX: &str = "tessera.dead.";
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

/// `nats://user:pass@host:port` → (`nats://host:port`, credentials).
pub fn split_credentials(url: &str) -> (String, Option<(String, String)>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), None);
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            (
                format!("{scheme}://{host}"),
                Some((user.to_owned(), password.to_owned())),
            )
        }
        None => (url.to_owned(), None),
    }
}

#[derive(Clone)]
pub struct NatsBus {
    client: async_nats::Client,
    js: jetstream::Context,
}

impl NatsBus {
    /// Connects (credentials may be in the URL: `nats://user:pass@host:4222`)
    /// and makes sure both streams exist with the expected settings.
    pub async fn connect(url: &str) -> Result<NatsBus, BusError> {
        let (address, credentials) = split_credentials(url);
        let mut options = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None);
        if let Some((user, password)) = credentials {
            options = options.user_and_password(user, password);
        }
        let client = options.connect(address).await.map_err(unavailable)?;
        let js = jetstream::new(client.clone());
        let bus = NatsBus { client, js };
        bus.ensure_streams().await?;
        Ok(bus)
    }

    async fn ensure_streams(&self) -> Result<(), BusError> {
        let jobs = stream::Config {
            name: JOBS_STREAM.into(),
            // Jobs, and the results workers report back (nats.conf lets
            // workers publish results but never jobs).
            subjects: vec!["tessera.jobs.>".into(), "tessera.results.>".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        };
        let dead = stream::Config {
            name: DEAD_STREAM.into(),
            subjects: vec![format!("{DEAD_PREFIX}>")],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_age: Duration::from_secs(30 * 24 * 3600),
            ..Default::default()
        };
        for config in [jobs, dead] {
            let name = config.name.clone();
            match self.js.get_stream(&name).await {
                // Workers may not change streams (nats.conf): the API server,
                // which may, keeps them up to date.
                Ok(existing) => {
                    let current = &existing.cached_info().config;
                    let same = current.subjects == config.subjects
                        && current.retention == config.retention
                        && current.duplicate_window == config.duplicate_window
                        && current.max_age == config.max_age;
                    if !same {
                        if let Err(e) = self.js.update_stream(config).await {
                            tracing::warn!(stream = %name, error = %e, "stream left as it is");
                        }
                    }
                }
                Err(_) => {
                    self.js.create_stream(config).await.map_err(unavailable)?;
                }
            }
        }
        Ok(())
    }

    pub fn client(&self) -> &async_nats::Client {
        // (used by the event relay, which shares the connection)
        &self.client
    }
}

#[async_trait]
impl Bus for NatsBus {
    async fn publish(&self, job: Job) -> Result<(), BusError> {
        let in_stream =
            job.subject.starts_with("tessera.jobs.") || job.subject.starts_with("tessera.results.");
        if !in_stream || job.subject.contains(['*', '>', ' ']) {
            return Err(BusError::Invalid(format!(
                "bad job subject {:?}",
                job.subject
            )));
        }
        let publish = jetstream::message::PublishMessage::build()
            .payload(job.payload.into())
            .message_id(job.dedup_id);
        self.js
            .send_publish(job.subject, publish)
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn consumer(&self, config: ConsumerConfig) -> Result<Box<dyn Consumer>, BusError> {
        if config.max_deliver == 0 || config.ack_wait.is_zero() {
            return Err(BusError::Invalid(
                "max_deliver and ack_wait must be positive".into(),
            ));
        }
        let stream = self.js.get_stream(JOBS_STREAM).await.map_err(unavailable)?;
        let consumer_config = pull::Config {
            durable_name: Some(config.name.clone()),
            filter_subject: config.filter.clone(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: config.ack_wait,
            // Dead-lettering is ours (it keeps the reason); JetStream redelivers.
            max_deliver: -1,
            ..Default::default()
        };
        // Creating a durable consumer again with the same settings resumes it.
        let consumer = match stream.create_consumer(consumer_config).await {
            Ok(c) => c,
            Err(create) => match stream.get_consumer::<pull::Config>(&config.name).await {
                Ok(existing) if existing.cached_info().config.filter_subject == config.filter => {
                    tracing::warn!(consumer = %config.name, error = %create,
                        "consumer exists with other settings; resuming it as it is");
                    existing
                }
                _ => return Err(BusError::Invalid(create.to_string())),
            },
        };
        Ok(Box::new(NatsConsumer {
            bus: self.clone(),
            config,
            consumer,
        }))
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, BusError> {
        let mut stream = self.js.get_stream(DEAD_STREAM).await.map_err(unavailable)?;
        let state = stream.info().await.map_err(unavailable)?.state.clone();
        let mut out = Vec::new();
        if state.messages == 0 {
            return Ok(out);
        }
        for seq in state.first_sequence..=state.last_sequence {
            if out.len() >= limit {
                break;
            }
            let Ok(m) = stream.get_raw_message(seq).await else {
                continue;
            };
            let header = |name: &str| {
                m.headers
                    .get(name)
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default()
            };
            out.push(DeadLetter {
                subject: header("Tessera-Subject"),
                dedup_id: header("Tessera-Dedup-Id"),
                payload: m.payload.to_vec(),
                reason: header("Tessera-Reason"),
                deliveries: header("Tessera-Deliveries").parse().unwrap_or(0),
            });
        }
        Ok(out)
    }

    async fn pending(&self, filter: &str) -> Result<u64, BusError> {
        let stream = self.js.get_stream(JOBS_STREAM).await.map_err(unavailable)?;
        let mut info = stream
            .info_with_subjects(filter)
            .await
            .map_err(unavailable)?;
        let mut total = 0u64;
        while let Some(entry) = info.next().await {
            let (_, count) = entry.map_err(unavailable)?;
            total += count as u64;
        }
        Ok(total)
    }

    async fn ping(&self) -> Result<(), BusError> {
        self.js
            .get_stream(JOBS_STREAM)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    fn name(&self) -> &'static str {
        "nats"
    }
}

struct NatsConsumer {
    bus: NatsBus,
    config: ConsumerConfig,
    consumer: jetstream::consumer::Consumer<pull::Config>,
}

#[async_trait]
impl Consumer for NatsConsumer {
    async fn next(&mut self, timeout: Duration) -> Result<Option<Delivery>, BusError> {
        let give_up = tokio::time::Instant::now() + timeout;
        loop {
            // One message per pull request: nothing waits in a client buffer
            // while its ack_wait runs.
            let left = give_up.saturating_duration_since(tokio::time::Instant::now());
            let mut batch = self
                .consumer
                .fetch()
                .max_messages(1)
                .expires(left.max(Duration::from_millis(20)))
                .messages()
                .await
                .map_err(unavailable)?;
            let m = match batch.next().await {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "JetStream fetch failed");
                    if tokio::time::Instant::now() >= give_up {
                        return Ok(None);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                None => {
                    if tokio::time::Instant::now() >= give_up {
                        return Ok(None);
                    }
                    continue;
                }
            };
            let attempt = m
                .info()
                .map(|i| u32::try_from(i.delivered.max(1)).unwrap_or(u32::MAX))
                .unwrap_or(1);
            let dedup_id = m
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            let subject = m.subject.to_string();
            if attempt > self.config.max_deliver {
                let reason = format!("not acknowledged after {} deliveries", attempt - 1);
                dead_letter(
                    &self.bus,
                    &subject,
                    &dedup_id,
                    &m.payload,
                    &reason,
                    attempt - 1,
                )
                .await?;
                m.ack_with(AckKind::Term).await.map_err(unavailable)?;
                continue;
            }
            return Ok(Some(Delivery {
                subject: subject.clone(),
                dedup_id: dedup_id.clone(),
                payload: m.payload.to_vec(),
                attempt,
                acker: Box::new(NatsAcker {
                    bus: self.bus.clone(),
                    message: m,
                    subject,
                    dedup_id,
                    attempt,
                }),
            }));
        }
    }
}

async fn dead_letter(
    bus: &NatsBus,
    subject: &str,
    dedup_id: &str,
    payload: &[u8],
    reason: &str,
    deliveries: u32,
) -> Result<(), BusError> {
    let mut headers = HeaderMap::new();
    headers.insert("Tessera-Subject", subject);
    headers.insert("Tessera-Dedup-Id", dedup_id);
    // Header values are single lines.
    headers.insert("Tessera-Reason", reason.replace(['\r', '\n'], " ").as_str());
    headers.insert("Tessera-Deliveries", deliveries.to_string().as_str());
    let dead_subject = format!(
        "{DEAD_PREFIX}{}",
        subject.strip_prefix("tessera.jobs.").unwrap_or(subject)
    );
    bus.js
        .publish_with_headers(
            dead_subject,
            headers,
            bytes::Bytes::copy_from_slice(payload),
        )
        .await
        .map_err(unavailable)?
        .await
        .map_err(unavailable)?;
    Ok(())
}

struct NatsAcker {
    bus: NatsBus,
    message: jetstream::Message,
    subject: String,
    dedup_id: String,
    attempt: u32,
}

#[async_trait]
impl Acker for NatsAcker {
    async fn ack(&self) -> Result<(), BusError> {
        // Double ack: the server confirms, so "acked" means the job is gone.
        self.message.double_ack().await.map_err(unavailable)
    }

    async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        self.message
            .ack_with(AckKind::Nak(Some(delay)))
            .await
            .map_err(unavailable)
    }

    async fn progress(&self) -> Result<(), BusError> {
        self.message
            .ack_with(AckKind::Progress)
            .await
            .map_err(unavailable)
    }

    async fn dead_letter(&self, reason: &str) -> Result<(), BusError> {
        dead_letter(
            &self.bus,
            &self.subject,
            &self.dedup_id,
            &self.message.payload,
            reason,
            self.attempt,
        )
        .await?;
        self.message
            .ack_with(AckKind::Term)
            .await
            .map_err(unavailable)
    }
}
