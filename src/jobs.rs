//! The worker loop: take generation or compress jobs from the bus, run them
//! against object storage, publish the result, then acknowledge. Runs inside
//! `tessera serve` (the embedded default) or in `tessera worker` processes;
//! either way it sees only the bus and object storage.

use std::sync::Arc;
use std::time::Duration;

use tessera_domain::bus::{Bus, ConsumerConfig, Delivery, Job};
use tessera_domain::download::{
    CompressJob, CompressResult, ExportSpec, COMPRESS_RESULTS_SUBJECT, COMPRESS_SUBJECT,
};
use tessera_domain::task::{job_subject, GenerateJob, GenerateResult, RESULTS_SUBJECT};
use tessera_workers::compress::{ExportError, Multipart};
use tessera_workers::generate::{ObjectError, Objects};
use tessera_workers::imaging::DecodeLimits;
use tokio::sync::watch;

use crate::adapters::storage::{ObjectStore, StorageError};

/// The jobs a worker slot takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Generate,
    Compress,
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub kind: JobKind,
    pub consumer: ConsumerConfig,
    /// For logs.
    pub slot: usize,
}

impl WorkerConfig {
    /// A slot consuming the generation jobs of `pool`.
    pub fn generate(pool: &str, slot: usize, ack_wait: Duration) -> WorkerConfig {
        WorkerConfig {
            kind: JobKind::Generate,
            consumer: ConsumerConfig {
                ack_wait,
                max_deliver: 5,
                ..ConsumerConfig::new(format!("workers-generate-{pool}"), job_subject(pool))
            },
            slot,
        }
    }

    /// A slot consuming compress-download jobs.
    pub fn compress(slot: usize, ack_wait: Duration) -> WorkerConfig {
        WorkerConfig {
            kind: JobKind::Compress,
            consumer: ConsumerConfig {
                ack_wait,
                max_deliver: 5,
                ..ConsumerConfig::new("workers-compress", COMPRESS_SUBJECT)
            },
            slot,
        }
    }
}

#[async_trait::async_trait]
impl Objects for ObjectStore {
    async fn get(&self, key: &str) -> Result<Vec<u8>, ObjectError> {
        ObjectStore::get_if_exists(self, key)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| ObjectError::Missing(key.to_owned()))
    }

    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), ObjectError> {
        ObjectStore::put(self, key, body, content_type)
            .await
            .map_err(unavailable)
    }
}

#[async_trait::async_trait]
impl Multipart for ObjectStore {
    async fn create_multipart(&self, key: &str, content_type: &str) -> Result<String, ObjectError> {
        ObjectStore::create_multipart(self, key, content_type)
            .await
            .map_err(unavailable)
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Vec<u8>,
    ) -> Result<String, ObjectError> {
        ObjectStore::upload_part(self, key, upload_id, number, body)
            .await
            .map_err(unavailable)
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        etags: &[String],
    ) -> Result<(), ObjectError> {
        ObjectStore::complete_multipart(self, key, upload_id, etags)
            .await
            .map_err(unavailable)
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), ObjectError> {
        ObjectStore::abort_multipart(self, key, upload_id)
            .await
            .map_err(unavailable)
    }
}

fn unavailable(e: StorageError) -> ObjectError {
    ObjectError::Unavailable(e.to_string())
}

async fn publish(
    bus: &dyn Bus,
    subject: &str,
    dedup_id: String,
    result: &impl serde::Serialize,
) -> Result<(), String> {
    let payload = serde_json::to_vec(result).map_err(|e| e.to_string())?;
    bus.publish(Job {
        subject: subject.into(),
        dedup_id,
        payload,
    })
    .await
    .map_err(|e| e.to_string())
}

async fn publish_result(bus: &dyn Bus, result: &GenerateResult) -> Result<(), String> {
    let dedup_id = format!(
        "result:{}",
        result.stage.batch_id(&result.task_id, result.batch_no)
    );
    publish(bus, RESULTS_SUBJECT, dedup_id, result).await
}

async fn handle_generate(
    delivery: Delivery,
    bus: &dyn Bus,
    objects: &ObjectStore,
    config: &WorkerConfig,
) {
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
    tracing::info!(task_id = %job.task_id, batch = job.batch_no, stage = ?job.stage, attempt = delivery.attempt, slot = config.slot, "generation job");
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
            let failed = GenerateResult::failed(&job, e.to_string());
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

/// Builds one export. A missing or changed object fails the task at once
/// (retrying cannot bring it back); a storage or bus failure is retried, and
/// the last try reports the task failed.
async fn handle_compress(
    delivery: Delivery,
    bus: &dyn Bus,
    objects: &ObjectStore,
    config: &WorkerConfig,
) {
    let job: CompressJob = match serde_json::from_slice(&delivery.payload) {
        Ok(j) => j,
        Err(e) => {
            let _ = delivery
                .acker
                .dead_letter(&format!("not a compress job: {e}"))
                .await;
            return;
        }
    };
    tracing::info!(task_id = %job.task_id, attempt = delivery.attempt, slot = config.slot, "compress job");
    let acker = &delivery.acker;
    let outcome = async {
        let spec = Objects::get(objects, &job.spec_key).await?;
        let spec: ExportSpec = serde_json::from_slice(&spec)
            .map_err(|e| ExportError::Missing(format!("{} (unreadable: {e})", job.spec_key)))?;
        let store: Arc<dyn Multipart> = Arc::new(objects.clone());
        tessera_workers::compress::run_export(&spec, store, || async {
            let _ = acker.progress().await;
        })
        .await
    }
    .await;
    let report = |size: Option<u64>, error: Option<String>| CompressResult {
        task_id: job.task_id.clone(),
        size,
        error,
    };
    let dedup_id = format!("result:{}", job.task_id);
    let last_try = delivery.attempt >= config.consumer.max_deliver;
    let (result, retry) = match outcome {
        Ok(size) => (Some(report(Some(size), None)), false),
        Err(e) if e.is_final() || last_try => (Some(report(None, Some(e.to_string()))), false),
        Err(e) => {
            tracing::warn!(error = %e, task_id = %job.task_id, "compress job failed; retrying later");
            (None, true)
        }
    };
    if retry {
        let _ = acker
            .nak(Duration::from_millis(
                1000 * u64::from(delivery.attempt.max(1)),
            ))
            .await;
        return;
    }
    if let Some(result) = result {
        match publish(bus, COMPRESS_RESULTS_SUBJECT, dedup_id, &result).await {
            Ok(()) => {
                let _ = acker.ack().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot publish a compress result; the job will run again");
                let _ = acker.nak(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Runs jobs until `shutdown` flips (the current job finishes first).
pub async fn run(
    config: WorkerConfig,
    bus: Arc<dyn Bus>,
    objects: ObjectStore,
    shutdown: watch::Receiver<bool>,
) {
    let consumer = config.consumer.clone();
    crate::follow::consume::consume(bus.clone(), consumer, shutdown, |delivery| {
        let (bus, objects, config) = (bus.clone(), objects.clone(), config.clone());
        async move {
            match config.kind {
                JobKind::Generate => {
                    handle_generate(delivery, bus.as_ref(), &objects, &config).await
                }
                JobKind::Compress => {
                    handle_compress(delivery, bus.as_ref(), &objects, &config).await
                }
            }
        }
    })
    .await;
}
