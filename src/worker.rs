//! The worker loop: take generation jobs from the bus, run them against
//! object storage, publish the batch result, then acknowledge. Runs inside
//! `tessera serve` (the embedded default) or in `tessera worker` processes;
//! either way it sees only the bus and object storage.

use std::sync::Arc;
use std::time::Duration;

use tessera_domain::bus::{Bus, ConsumerConfig, Delivery, Job};
use tessera_domain::task::{GenerateJob, GenerateResult};
use tessera_workers::generate::{ObjectError, Objects};
use tessera_workers::imaging::DecodeLimits;
use tokio::sync::watch;

use crate::generation::{job_subject, RESULTS_SUBJECT};
use crate::storage::{ObjectStore, StorageError};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub consumer: ConsumerConfig,
    /// For logs.
    pub slot: usize,
}

impl WorkerConfig {
    /// A slot consuming the generation jobs of `pool`.
    pub fn generate(pool: &str, slot: usize, ack_wait: Duration) -> WorkerConfig {
        WorkerConfig {
            consumer: ConsumerConfig {
                ack_wait,
                max_deliver: 5,
                ..ConsumerConfig::new(format!("workers-generate-{pool}"), job_subject(pool))
            },
            slot,
        }
    }
}

#[async_trait::async_trait]
impl Objects for ObjectStore {
    async fn get(&self, key: &str) -> Result<Vec<u8>, ObjectError> {
        match self.size(key).await {
            Ok(None) => return Err(ObjectError::Missing(key.to_owned())),
            Ok(Some(_)) => {}
            Err(e) => return Err(ObjectError::Unavailable(e.to_string())),
        }
        ObjectStore::get(self, key)
            .await
            .map_err(|e| ObjectError::Unavailable(e.to_string()))
    }

    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), ObjectError> {
        ObjectStore::put(self, key, body, content_type)
            .await
            .map_err(|e: StorageError| ObjectError::Unavailable(e.to_string()))
    }
}

async fn publish_result(bus: &dyn Bus, result: &GenerateResult) -> Result<(), String> {
    let payload = serde_json::to_vec(result).map_err(|e| e.to_string())?;
    bus.publish(Job {
        subject: RESULTS_SUBJECT.into(),
        dedup_id: format!("result:{}:{}", result.task_id, result.batch_no),
        payload,
    })
    .await
    .map_err(|e| e.to_string())
}

async fn handle(delivery: Delivery, bus: &dyn Bus, objects: &ObjectStore, config: &WorkerConfig) {
    let job: GenerateJob = match serde_json::from_slice(&delivery.payload) {
        Ok(j) => j,
        Err(e) => {
            let _ = delivery
                .acker
                .dead_letter(&format!("not a generation job: {e}"))
                .await;
            return;
        }
    };
    tracing::info!(task_id = %job.task_id, batch = job.batch_no, attempt = delivery.attempt, slot = config.slot, "generation job");
    let acker = &delivery.acker;
    let outcome =
        tessera_workers::generate::run_job(&job, objects, DecodeLimits::default(), || async {
            let _ = acker.progress().await;
        })
        .await;
    match outcome {
        Ok(result) => match publish_result(bus, &result).await {
            Ok(()) => {
                let _ = acker.ack().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot publish a batch result; the job will run again");
                let _ = acker.nak(Duration::from_secs(1)).await;
            }
        },
        Err(e) if delivery.attempt >= config.consumer.max_deliver => {
            // The last try: tell the core the batch failed for good.
            let failed = GenerateResult {
                task_id: job.task_id.clone(),
                batch_no: job.batch_no,
                outputs: Vec::new(),
                failures: Vec::new(),
                error: Some(e.to_string()),
            };
            let _ = publish_result(bus, &failed).await;
            let _ = acker.dead_letter(&e.to_string()).await;
        }
        Err(e) => {
            tracing::warn!(error = %e, task_id = %job.task_id, batch = job.batch_no, "generation job failed; retrying later");
            let _ = acker
                .nak(Duration::from_millis(
                    500 * u64::from(delivery.attempt.max(1)),
                ))
                .await;
        }
    }
}

/// Runs jobs until `shutdown` flips (the current job finishes first).
pub async fn run(
    config: WorkerConfig,
    bus: Arc<dyn Bus>,
    objects: ObjectStore,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut consumer = loop {
        match bus.consumer(config.consumer.clone()).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(error = %e, "worker cannot consume jobs; retrying");
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
            Ok(Some(delivery)) => handle(delivery, bus.as_ref(), &objects, &config).await,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "worker cannot fetch jobs; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// `tessera worker`: job slots on the shared bus until SIGTERM / SIGINT.
pub async fn main(args: crate::cli::WorkerArgs) -> Result<(), String> {
    if let Some(kind) = args
        .jobs
        .iter()
        .find(|j| !matches!(j.as_str(), "generate" | "compress"))
    {
        return Err(format!(
            "unknown job kind {kind}; known: generate, compress"
        ));
    }
    if !args.jobs.iter().any(|j| j == "generate") {
        return Err("this worker takes generation jobs only so far: --jobs generate".into());
    }
    let bus = crate::bus::nats::NatsBus::connect(&args.nats_url)
        .await
        .map_err(|e| format!("NATS at {}: {e}", crate::store::redact(&args.nats_url)))?;
    let bus: Arc<dyn Bus> = Arc::new(bus);
    let config = match args
        .storage
        .s3_endpoint
        .as_deref()
        .filter(|e| !e.is_empty())
    {
        Some(endpoint) => crate::storage::StorageConfig {
            endpoint: endpoint.to_owned(),
            bucket: args.storage.bucket.clone(),
            region: args.storage.s3_region.clone(),
            access_key: args
                .storage
                .s3_access_key
                .clone()
                .ok_or("S3_ACCESS_KEY_ID is required with S3_ENDPOINT")?,
            secret_key: args
                .storage
                .s3_secret_key
                .clone()
                .ok_or("S3_SECRET_ACCESS_KEY is required with S3_ENDPOINT")?,
        },
        None => {
            let addr = std::fs::read_to_string(args.data_dir.join("s3.addr")).map_err(|e| {
                format!(
                    "no S3_ENDPOINT and no embedded endpoint in {} ({e}); start `tessera serve` with this data dir first",
                    args.data_dir.display()
                )
            })?;
            let secrets =
                crate::identity::secrets::Secrets::load(args.secret.as_deref(), &args.data_dir)
                    .map_err(|e| e.to_string())?;
            let key = crate::serve::embedded_server_key(&secrets);
            crate::storage::StorageConfig {
                endpoint: format!("http://{}", addr.trim()),
                bucket: args.storage.bucket.clone(),
                region: args.storage.s3_region.clone(),
                access_key: key.access_key,
                secret_key: key.secret_key,
            }
        }
    };
    let objects = ObjectStore::new(&config);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut slots = Vec::new();
    for slot in 0..args.slots.max(1) {
        slots.push(tokio::spawn(run(
            WorkerConfig::generate(
                &args.pool,
                slot,
                Duration::from_secs(args.ack_wait_secs.max(1)),
            ),
            bus.clone(),
            objects.clone(),
            stop_rx.clone(),
        )));
    }
    tracing::info!(pool = %args.pool, slots = args.slots, storage = %config.endpoint, "worker started");
    crate::serve::wait_for_signal().await;
    tracing::info!("worker stopping after the current jobs");
    let _ = stop_tx.send(true);
    for s in slots {
        let _ = s.await;
    }
    Ok(())
}
