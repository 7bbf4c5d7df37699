//! `tessera serve`: wires the adapters, starts the API and the projection
//! runners, and shuts everything down gracefully on SIGTERM / SIGINT.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use metrics_exporter_prometheus::PrometheusBuilder;
use tessera_domain::bus::Bus;
use tokio::sync::watch;

use crate::adapters::bus::MemoryBus;
use crate::adapters::mail::{FileMailer, SmtpMailer};
use crate::adapters::storage::{ObjectStore, StorageConfig};
use crate::adapters::store::{postgres, Dialect, SqlEventStore};
use crate::app::executor::Executor;
use crate::app::identity::{Identity, IdentityConfig};
use crate::follow::{self, dispatch, projections, Follower};
use crate::http::{self, AppState, HttpLimits};
use crate::shell::cli::{IdentityArgs, ServeArgs, StorageArgs, StoreArgs};
use crate::shell::signal::wait_for_signal;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] tessera_domain::StoreError),
    #[error(transparent)]
    Runner(#[from] projections::RunnerError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot install the metrics recorder: {0}")]
    Metrics(String),
    #[error("HTTP server failed: {0}")]
    Http(std::io::Error),
    #[error(transparent)]
    Secrets(#[from] crate::adapters::secrets::SecretsError),
    #[error("mail configuration: {0}")]
    Mail(String),
    #[error("message bus: {0}")]
    Bus(String),
    #[error(transparent)]
    Embedded(#[from] crate::adapters::storage::embedded::EmbeddedError),
    #[error("object storage: {0}")]
    Storage(String),
}

/// Connects object storage: the external S3 when `S3_ENDPOINT` is set, else
/// the embedded endpoint (started here, stopped by `shutdown`).
pub async fn build_storage(
    args: &StorageArgs,
    data_dir: &std::path::Path,
    secrets: &crate::adapters::secrets::Secrets,
    identity: Arc<Identity>,
    max_put_bytes: u64,
    shutdown: watch::Receiver<bool>,
    background: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<ObjectStore, ServeError> {
    let config = match args.s3_endpoint.as_deref().filter(|e| !e.is_empty()) {
        Some(endpoint) => {
            let (Some(access_key), Some(secret_key)) =
                (args.s3_access_key.clone(), args.s3_secret_key.clone())
            else {
                return Err(ServeError::Storage(
                    "S3_ENDPOINT needs S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY".into(),
                ));
            };
            StorageConfig {
                endpoint: endpoint.to_owned(),
                bucket: args.bucket.clone(),
                region: args.s3_region.clone(),
                access_key,
                secret_key,
            }
        }
        None => {
            let server = crate::adapters::storage::embedded::server_key(secrets);
            let (addr, serve) = crate::adapters::storage::embedded::bind(
                crate::adapters::storage::embedded::EmbeddedConfig {
                    root: &data_dir.join("objects"),
                    listen: &args.s3_listen,
                    bucket: &args.bucket,
                    server: server.clone(),
                    max_put_bytes,
                },
                identity,
                shutdown,
            )
            .await?;
            background.push(tokio::spawn(serve));
            let _ = std::fs::write(data_dir.join("s3.addr"), addr.to_string());
            tracing::info!(%addr, "embedded S3 endpoint listening");
            StorageConfig {
                endpoint: format!("http://{addr}"),
                bucket: args.bucket.clone(),
                region: args.s3_region.clone(),
                access_key: server.access_key,
                secret_key: server.secret_key,
            }
        }
    };
    let objects = ObjectStore::new(&config);
    objects.ensure_bucket().await.map_err(|e| {
        ServeError::Storage(format!("{} at {}: {e}", config.bucket, config.endpoint))
    })?;
    tracing::info!(endpoint = %config.endpoint, bucket = %config.bucket, "object storage ready");
    Ok(objects)
}

/// The invitation mail unless `TESSERA_INVITE_TEMPLATE_FILE` says otherwise.
const DEFAULT_INVITE: &str =
    "Hello,\n\n{username} invites you to tessera, where image datasets are \
uploaded, preprocessed, augmented and downloaded in a few clicks.\n\nSign up at {link}\n";

/// The identity core as configured; `bound` is the API's address (the default
/// public URL).
pub fn build_identity(
    a: &IdentityArgs,
    store_args: &StoreArgs,
    exec: &Arc<Executor>,
    bound: std::net::SocketAddr,
) -> Result<Identity, ServeError> {
    let secrets =
        crate::adapters::secrets::Secrets::load(a.secret.as_deref(), &store_args.data_dir)?;
    let from: lettre::message::Mailbox = a
        .mail_from
        .parse()
        .map_err(|e| ServeError::Mail(format!("TESSERA_MAIL_FROM: {e}")))?;
    let mailer: Arc<dyn tessera_domain::mail::Mailer> = match a.smtp_url.as_deref() {
        Some(url) if !url.is_empty() => {
            Arc::new(SmtpMailer::new(url, from).map_err(|e| ServeError::Mail(e.to_string()))?)
        }
        _ => Arc::new(
            FileMailer::new(store_args.data_dir.join("mail"), from)
                .map_err(|e| ServeError::Mail(e.to_string()))?,
        ),
    };
    let invite_template = match &a.invite_template_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| ServeError::Mail(format!("{}: {e}", path.display())))?,
        None => DEFAULT_INVITE.to_owned(),
    };
    let config = IdentityConfig {
        public_url: a
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}")),
        region: a.region.clone(),
        issuer: "tessera".into(),
        audience: "tessera-api".into(),
        invite_template,
        mail_from: a.mail_from.clone(),
    };
    let google = crate::adapters::google::GoogleVerifier::new(
        a.google_client_id.clone(),
        a.google_jwks_url.clone(),
    );
    let previous = a
        .previous_secrets
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| crate::adapters::secrets::Secrets::load(Some(s), &store_args.data_dir))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Identity::new(
        exec.clone(),
        &secrets,
        &previous,
        mailer,
        config,
        google,
    ))
}

pub async fn serve(args: ServeArgs) -> Result<(), ServeError> {
    let data_dir = &args.store.data_dir;
    std::fs::create_dir_all(data_dir).map_err(|source| ServeError::DataDir {
        path: data_dir.display().to_string(),
        source,
    })?;
    let metrics = PrometheusBuilder::new()
        .set_buckets(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ])
        .map_err(|e| ServeError::Metrics(e.to_string()))?
        .install_recorder()
        .map_err(|e| ServeError::Metrics(e.to_string()))?;

    let url = args.store.database_url();
    let store = SqlEventStore::connect(&url, args.store.db_connections).await?;
    tracing::info!(database = %crate::adapters::store::redact(&url), "event store ready");
    projections::ensure_checkpoints(&store).await?;
    // One executor for every command of this process: its stream locks
    // queue writers of the same stream.
    let exec = Arc::new(Executor::new(store.clone()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut background = Vec::new();
    // Every follower of the event log runs the same loop.
    let follow_log = |follower: Follower| {
        tokio::spawn(follow::run(
            store.clone(),
            follower,
            store.appended(),
            stop_rx.clone(),
        ))
    };
    // NATS carries the event relay whenever it is configured; the job bus is
    // RabbitMQ when AMQP_URL is set (it wins over NATS_URL), else NATS, else
    // the in-process queue.
    let nats = match args.nats_url.as_deref().filter(|u| !u.is_empty()) {
        Some(url) => {
            let bus = crate::adapters::bus::nats::NatsBus::connect(url)
                .await
                .map_err(|e| {
                    ServeError::Bus(format!(
                        "NATS at {}: {e}",
                        crate::adapters::store::redact(url)
                    ))
                })?;
            tracing::info!("relaying events to tessera.events.> on NATS");
            let relay = crate::follow::relay::Relay::new(bus.client().clone(), store.clone())
                .await
                .map_err(|e| ServeError::Bus(format!("events stream: {e}")))?;
            background.push(follow_log(Follower::Reactor(Arc::new(relay))));
            Some(bus)
        }
        None => None,
    };
    let bus: Arc<dyn Bus> = match (args.amqp_url.as_deref().filter(|u| !u.is_empty()), nats) {
        (Some(url), _) => {
            let bus = crate::adapters::bus::rabbit::RabbitBus::connect(url)
                .await
                .map_err(|e| {
                    ServeError::Bus(format!(
                        "RabbitMQ at {}: {e}",
                        crate::adapters::store::redact(url)
                    ))
                })?;
            tracing::info!("job bus: RabbitMQ");
            Arc::new(bus)
        }
        (None, Some(nats)) => {
            tracing::info!("job bus: NATS JetStream");
            Arc::new(nats)
        }
        (None, None) => Arc::new(MemoryBus::new()),
    };
    for projection in tessera_projections::asynchronous() {
        background.push(follow_log(Follower::Projection(projection)));
    }
    if store.dialect() == Dialect::Postgres {
        background.push(tokio::spawn(postgres::forward_notifications(
            url.clone(),
            store.clone(),
            stop_rx.clone(),
        )));
    }

    // Bind first: the bound address (port 0 picks one) is the default public URL.
    let listener =
        std::net::TcpListener::bind(&args.listen).map_err(|source| ServeError::Listen {
            addr: args.listen.clone(),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: args.listen.clone(),
        source,
    })?;
    let identity = Arc::new(build_identity(&args.identity, &args.store, &exec, bound)?);
    let secrets =
        crate::adapters::secrets::Secrets::load(args.identity.secret.as_deref(), data_dir)?;
    let objects = build_storage(
        &args.storage,
        data_dir,
        &secrets,
        identity.clone(),
        args.max_upload_bytes,
        stop_rx.clone(),
        &mut background,
    )
    .await?;
    background.push(follow_log(Follower::Reactor(Arc::new(
        crate::follow::janitor::Janitor {
            store: store.clone(),
            objects: objects.clone(),
        },
    ))));
    background.push(follow_log(Follower::Reactor(Arc::new(
        dispatch::SignOuts {
            identity: identity.clone(),
        },
    ))));
    let projects = Arc::new(crate::app::projects::Projects::new(
        exec.clone(),
        tessera_domain::project::ProjectLimits {
            max_projects_per_user: args.max_projects,
            max_originals_per_project: args.max_originals,
            max_upload_bytes: args.max_upload_bytes,
            ..Default::default()
        },
        objects.clone(),
    ));
    let generation = Arc::new(crate::app::generation::Generation::new(
        exec.clone(),
        projects.clone(),
        bus.clone(),
        tessera_domain::task::RunLimits {
            max_augment_runs: args.max_augment_runs,
            max_preprocess_runs: args.max_preprocess_runs,
            ..Default::default()
        },
    ));
    let default_pool = tessera_domain::pool::parse_name(&args.pool)
        .map_err(|e| ServeError::Bus(format!("TESSERA_WORKER_POOL: {e}")))?;
    let pools = Arc::new(crate::app::pools::Pools::new(exec.clone(), &default_pool));
    // Jobs of tasks that were running when the last process stopped.
    match generation.redispatch_unfinished(&pools).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(jobs = n, "re-dispatched the jobs of unfinished tasks"),
        Err(e) => tracing::warn!(error = %e, "cannot re-dispatch unfinished tasks"),
    }
    background.push(follow_log(Follower::Reactor(Arc::new(
        dispatch::GenerationDispatcher {
            generation: generation.clone(),
            pools: pools.clone(),
        },
    ))));
    background.push(tokio::spawn(follow::results::generation(
        bus.clone(),
        generation.clone(),
        stop_rx.clone(),
    )));
    let downloads = Arc::new(crate::app::downloads::Downloads::new(
        exec.clone(),
        projects.clone(),
        bus.clone(),
        identity.mailer(),
    ));
    match downloads.redispatch_running().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(jobs = n, "re-dispatched running downloads"),
        Err(e) => tracing::warn!(error = %e, "cannot re-dispatch running downloads"),
    }
    background.push(follow_log(Follower::Reactor(Arc::new(
        dispatch::DownloadDispatcher {
            downloads: downloads.clone(),
        },
    ))));
    background.push(tokio::spawn(follow::results::downloads(
        bus.clone(),
        downloads.clone(),
        stop_rx.clone(),
    )));
    if args.embedded_workers && !args.no_workers {
        background.push(tokio::spawn(crate::jobs::run(
            crate::jobs::WorkerConfig::compress(0, Duration::from_secs(args.ack_wait_secs.max(1))),
            bus.clone(),
            objects.clone(),
            stop_rx.clone(),
        )));
        for n in 0..args.worker_slots.max(1) {
            background.push(tokio::spawn(crate::jobs::run(
                crate::jobs::WorkerConfig::generate(
                    &args.pool,
                    n,
                    Duration::from_secs(args.ack_wait_secs.max(1)),
                ),
                bus.clone(),
                objects.clone(),
                stop_rx.clone(),
            )));
        }
    }
    let state = web::Data::new(AppState {
        store: store.clone(),
        bus,
        metrics,
        identity,
        projects,
        generation,
        downloads,
        pools,
        auth_limits: crate::http::auth::AuthLimits::new(
            args.identity.trusted_proxies.clone(),
            args.identity.auth_rate_per_ip,
            args.identity.auth_rate_per_account,
        ),
    });
    let limits = HttpLimits {
        max_body_bytes: args.max_body_bytes,
    };
    let mut server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(http::observe::limit_body))
            .wrap(actix_web::middleware::from_fn(http::observe::observe))
            .configure(|cfg| http::configure(cfg, state.clone(), limits))
            .default_service(web::to(http::not_found))
    })
    .disable_signals()
    .shutdown_timeout(args.shutdown_grace_secs);
    if args.http_workers > 0 {
        server = server.workers(args.http_workers);
    }
    let server = server
        .listen(listener)
        .map_err(|source| ServeError::Listen {
            addr: args.listen.clone(),
            source,
        })?;
    let addrs = server.addrs();
    if let Some(addr) = addrs.first() {
        // Other processes and tests find the API here (port 0 picks a free one).
        let _ = std::fs::write(data_dir.join("http.addr"), addr.to_string());
        tracing::info!(%addr, "HTTP API listening");
    }
    let server = server.run();
    let handle = server.handle();
    let server_task = tokio::spawn(server);

    wait_for_signal().await;
    tracing::info!("shutting down: no new requests, finishing in-flight ones");
    handle.stop(true).await;
    // Runners finish their current batch (checkpoint and rows commit together).
    let _ = stop_tx.send(true);
    for task in background {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    match server_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(ServeError::Http(e)),
        Err(e) => tracing::error!(error = %e, "HTTP server task failed"),
    }
    store.pool().close().await;
    tracing::info!("stopped");
    Ok(())
}
