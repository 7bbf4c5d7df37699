//! The generation job: for each source of a batch, read it from object
//! storage, run each output's steps, write the output back, and report what
//! was made (name, key, size, hash) and which images failed and why.
//!
//! A problem with one image (corrupt, too large, a method's limit) fails that
//! image only. A problem with storage fails the whole job, which the bus then
//! redelivers; outputs are deterministic, so a rerun writes the same bytes to
//! the same keys.
//!
//! A measuring job (before a preprocessing run whose reference images are
//! the medians) reads and decodes each source and reports its metric per
//! method; a source that cannot be read is left out (its generation batch
//! will report it).

use std::collections::BTreeMap;
use std::sync::Arc;

use sha2::Digest;
use tessera_domain::project::data::{DataItem, DataKind};
use tessera_domain::task::{
    GenerateJob, GenerateResult, ImageFailure, JobItem, Measurement, Stage, TaskKind,
};

use crate::imaging::methods::normalize::reference_metric;
use crate::imaging::{self, DecodeLimits};

/// Why an object could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    #[error("{0} is not in storage")]
    Missing(String),
    #[error("object storage: {0}")]
    Unavailable(String),
}

/// The object storage a worker sees.
#[async_trait::async_trait]
pub trait Objects: Send + Sync {
    async fn get(&self, key: &str) -> Result<Vec<u8>, ObjectError>;
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), ObjectError>;
}

/// Runs one job. `heartbeat` is called after every image, so a long job is
/// not taken for a dead one. An error means the job should be retried.
pub async fn run_job<F, Fut>(
    job: &GenerateJob,
    objects: &dyn Objects,
    limits: DecodeLimits,
    heartbeat: F,
) -> Result<GenerateResult, ObjectError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    if job.stage == Stage::Measure {
        return measure_job(job, objects, limits, heartbeat).await;
    }
    let kind = match job.kind {
        TaskKind::Augment => DataKind::Augment,
        TaskKind::Preprocess => DataKind::Preprocess,
    };
    // Reference images, decoded once per job.
    let mut references = BTreeMap::new();
    let mut reference_error = None;
    for (method, key) in &job.references {
        let bytes = objects.get(key).await?;
        match tokio::task::spawn_blocking(move || imaging::decode(&bytes, &limits)).await {
            Ok(Ok(decoded)) => {
                references.insert(method.clone(), decoded.image);
            }
            Ok(Err(e)) => reference_error = Some(format!("reference image of {method}: {e}")),
            Err(e) => return Err(ObjectError::Unavailable(e.to_string())),
        }
    }
    let references = Arc::new(references);
    let mut outputs = Vec::new();
    let mut failures = Vec::new();
    for item in &job.items {
        if let Some(reason) = &reference_error {
            failures.push(ImageFailure {
                filename: item.filename.clone(),
                reason: reason.clone(),
            });
            continue;
        }
        let Some(source) = read_source(objects, item, &mut failures).await? else {
            continue;
        };
        if item.outputs.is_empty() {
            continue;
        }
        // Decoded once; every output of the image starts from it.
        let decoded = tokio::task::spawn_blocking(move || imaging::decode(&source, &limits))
            .await
            .map_err(|e| ObjectError::Unavailable(format!("image work stopped: {e}")))?;
        let decoded = match decoded {
            Ok(decoded) => Arc::new(decoded),
            Err(e) => {
                failures.push(ImageFailure {
                    filename: item.filename.clone(),
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let mut made = Vec::with_capacity(item.outputs.len());
        let mut failed = None;
        for out in &item.outputs {
            let steps = out.steps.clone();
            let source = decoded.clone();
            let refs = references.clone();
            let rendered = tokio::task::spawn_blocking(move || {
                imaging::render(&source, &steps, |m| refs.get(m))
            })
            .await
            .map_err(|e| ObjectError::Unavailable(format!("image work stopped: {e}")))?;
            let format = decoded.format;
            match rendered {
                Ok(bytes) => {
                    let hash = hex::encode(sha2::Sha256::digest(&bytes));
                    let size = bytes.len() as u64;
                    objects.put(&out.key, bytes, format.content_type()).await?;
                    made.push(DataItem {
                        filename: out.filename.clone(),
                        s3_key: out.s3_key.clone(),
                        size,
                        hash,
                        kind,
                        gen_id: out
                            .steps
                            .iter()
                            .map(|s| s.method_id.as_str())
                            .collect::<Vec<_>>()
                            .join(","),
                        classtype: Some(item.classtype),
                    });
                }
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            }
            heartbeat().await;
        }
        if let Ok(done) = Arc::try_unwrap(decoded) {
            imaging::buffers::give(done.image.into_raw());
        }
        match failed {
            // An image fails whole: none of its outputs are reported.
            Some(reason) => failures.push(ImageFailure {
                filename: item.filename.clone(),
                reason,
            }),
            None => outputs.extend(made),
        }
    }
    Ok(GenerateResult {
        task_id: job.task_id.clone(),
        batch_no: job.batch_no,
        outputs,
        failures,
        error: None,
        stage: Stage::Generate,
        measurements: Vec::new(),
    })
}

/// A source's bytes; `None` (and a failure of that image) when it is no
/// longer in storage. Other storage errors fail the job.
async fn read_source(
    objects: &dyn Objects,
    item: &JobItem,
    failures: &mut Vec<ImageFailure>,
) -> Result<Option<Vec<u8>>, ObjectError> {
    match objects.get(&item.key).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(ObjectError::Missing(_)) => {
            failures.push(ImageFailure {
                filename: item.filename.clone(),
                reason: "the source image is no longer in storage".into(),
            });
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Measures each source of a measuring job for every method it names.
async fn measure_job<F, Fut>(
    job: &GenerateJob,
    objects: &dyn Objects,
    limits: DecodeLimits,
    heartbeat: F,
) -> Result<GenerateResult, ObjectError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut measurements = Vec::with_capacity(job.items.len());
    let mut failures = Vec::new();
    for item in &job.items {
        let Some(bytes) = read_source(objects, item, &mut failures).await? else {
            continue;
        };
        let methods = job.measure.clone();
        let measured = tokio::task::spawn_blocking(move || {
            let decoded = imaging::decode(&bytes, &limits)?;
            let metrics = methods
                .iter()
                .map(|m| (m.clone(), reference_metric(m, &decoded.image)))
                .filter(|(_, v)| v.is_finite())
                .collect();
            imaging::buffers::give(decoded.image.into_raw());
            Ok::<_, imaging::ImagingError>(metrics)
        })
        .await
        .map_err(|e| ObjectError::Unavailable(format!("image work stopped: {e}")))?;
        match measured {
            Ok(metrics) => measurements.push(Measurement {
                filename: item.filename.clone(),
                metrics,
            }),
            Err(e) => failures.push(ImageFailure {
                filename: item.filename.clone(),
                reason: e.to_string(),
            }),
        }
        heartbeat().await;
    }
    Ok(GenerateResult {
        task_id: job.task_id.clone(),
        batch_no: job.batch_no,
        outputs: Vec::new(),
        failures,
        error: None,
        stage: Stage::Measure,
        measurements,
    })
}
