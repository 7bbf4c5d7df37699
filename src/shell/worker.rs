//! `tessera worker`: job slots on the shared bus, in a process of their own.

use std::time::Duration;

use tokio::sync::watch;

use crate::adapters::storage::ObjectStore;
use crate::jobs::{run, WorkerConfig};

/// `tessera worker`: job slots on the shared bus until SIGTERM / SIGINT.
pub async fn main(args: crate::shell::cli::WorkerArgs) -> Result<(), String> {
    if let Some(kind) = args
        .jobs
        .iter()
        .find(|j| !matches!(j.as_str(), "generate" | "compress"))
    {
        return Err(format!(
            "unknown job kind {kind}; known: generate, compress"
        ));
    }
    let bus =
        crate::adapters::bus::connect_broker(args.nats_url.as_deref(), args.amqp_url.as_deref())
            .await?
            .ok_or("a worker needs the shared bus: set NATS_URL or AMQP_URL")?;
    let config = match args
        .storage
        .s3_endpoint
        .as_deref()
        .filter(|e| !e.is_empty())
    {
        Some(endpoint) => crate::adapters::storage::StorageConfig {
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
                crate::adapters::secrets::Secrets::load(args.secret.as_deref(), &args.data_dir)
                    .map_err(|e| e.to_string())?;
            let key = crate::adapters::storage::embedded::server_key(&secrets);
            crate::adapters::storage::StorageConfig {
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
    let ack_wait = Duration::from_secs(args.ack_wait_secs.max(1));
    let mut slots = Vec::new();
    for slot in 0..args.slots.max(1) {
        for kind in &args.jobs {
            let config = if kind == "compress" {
                WorkerConfig::compress(slot, ack_wait)
            } else {
                WorkerConfig::generate(&args.pool, slot, ack_wait)
            };
            slots.push(tokio::spawn(run(
                config,
                bus.clone(),
                objects.clone(),
                stop_rx.clone(),
            )));
        }
    }
    tracing::info!(pool = %args.pool, jobs = ?args.jobs, slots = args.slots, storage = %config.endpoint, "worker started");
    crate::shell::signal::wait_for_signal().await;
    tracing::info!("worker stopping after the current jobs");
    let _ = stop_tx.send(true);
    for s in slots {
        let _ = s.await;
    }
    Ok(())
}
