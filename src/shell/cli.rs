//! Command line and configuration: every flag is also an environment variable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "tessera",
    version,
    about = "Image-dataset projects: upload, preprocess, augment, download.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `tessera` with no subcommand is `tessera serve`.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
// Parsed once at start-up: the size of the variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run the API, the projections and job dispatch (the default).
    Serve(ServeArgs),
    /// Inspect and repair read models.
    Projections {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        action: ProjectionsAction,
    },
    /// Run job workers: they take jobs from the shared bus and work on object
    /// storage, never on the database.
    Worker(WorkerArgs),
    /// Watch the event stream on NATS.
    Events {
        #[command(subcommand)]
        action: EventsAction,
    },
    /// Operator tasks.
    Admin {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        identity: IdentityArgs,
        #[command(subcommand)]
        action: AdminAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsAction {
    /// Print every message on the subject as it arrives: one line each,
    /// `<subject> <json>`.
    Tail {
        /// Subject filter, for example `tessera.events.user.>`.
        #[arg(long, default_value = "tessera.events.>")]
        subject: String,
        /// NATS server (an operator's credentials suffice).
        #[arg(long, env = "NATS_URL", hide_env_values = true)]
        nats_url: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminAction {
    /// Create a confirmed user with a role (the only way to create an admin).
    CreateUser {
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: String,
        /// user, merchant or admin.
        #[arg(long, default_value = "user")]
        role: String,
        /// The password (prefer the environment variable: arguments are visible
        /// to other users of the machine).
        #[arg(long, env = "TESSERA_ADMIN_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// Worker pools: list them (members, running, waiting work), or set a
    /// named pool's capacity (the number of users it takes).
    Pools {
        #[command(subcommand)]
        action: Option<PoolsAction>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// The default pool (as the server's TESSERA_WORKER_POOL).
        #[arg(long, env = "TESSERA_WORKER_POOL", default_value = "default")]
        default_pool: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PoolsAction {
    /// Set how many users a named pool takes (creates the pool).
    SetCapacity { name: String, capacity: u32 },
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsAction {
    /// Position and lag of every projection.
    Status,
    /// Truncate and replay one projection (or all), with a progress bar.
    Rebuild {
        /// Projection name; all when absent.
        name: Option<String>,
    },
    /// Replay into scratch tables and compare with the live ones; exits non-zero
    /// on any difference.
    Verify,
}

#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Where the embedded parts keep their files (SQLite, objects, mail).
    #[arg(long, env = "TESSERA_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// `postgres://…` or `sqlite:…`; absent: a SQLite file in the data dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Connections in the database pool.
    #[arg(long, env = "TESSERA_DB_CONNECTIONS", default_value_t = 10)]
    pub db_connections: u32,
}

impl StoreArgs {
    /// The database to use: `DATABASE_URL`, else `<data dir>/tessera.db`.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) if !url.trim().is_empty() => url.clone(),
            _ => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("tessera.db").display()
            ),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address of the HTTP API (port 0 picks a free port; the bound address is
    /// written to `<data dir>/http.addr`).
    #[arg(long, env = "TESSERA_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "TESSERA_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// HTTP worker threads (0: one per core).
    #[arg(long, env = "TESSERA_HTTP_WORKERS", default_value_t = 0)]
    pub http_workers: usize,
    /// Seconds in-flight requests get to finish on shutdown.
    #[arg(long, env = "TESSERA_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,
    #[command(flatten)]
    pub identity: IdentityArgs,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Largest number of projects per user.
    #[arg(long, env = "TESSERA_MAX_PROJECTS", default_value_t = 5)]
    pub max_projects: usize,
    /// Largest number of original images per project.
    #[arg(long, env = "TESSERA_MAX_ORIGINALS", default_value_t = 1000)]
    pub max_originals: u64,
    /// Largest uploaded image, in bytes.
    #[arg(long, env = "TESSERA_MAX_UPLOAD_BYTES", default_value_t = 5 * 1024 * 1024)]
    pub max_upload_bytes: u64,
    /// Augmentation runs per project.
    #[arg(long, env = "TESSERA_MAX_AUGMENT_RUNS", default_value_t = 5)]
    pub max_augment_runs: i64,
    /// Preprocessing runs per project.
    #[arg(long, env = "TESSERA_MAX_PREPROCESS_RUNS", default_value_t = 5)]
    pub max_preprocess_runs: i64,
    /// Run job workers inside this process (`false`: leave jobs to
    /// `tessera worker` processes).
    #[arg(long, env = "TESSERA_EMBEDDED_WORKERS", default_value_t = true, action = clap::ArgAction::Set)]
    pub embedded_workers: bool,
    /// The same as `--embedded-workers false`.
    #[arg(long)]
    pub no_workers: bool,
    /// Jobs the embedded workers run at once.
    #[arg(long, env = "TESSERA_WORKER_SLOTS", default_value_t = 2)]
    pub worker_slots: usize,
    /// The worker pool generation jobs go to.
    #[arg(long, env = "TESSERA_WORKER_POOL", default_value = "default")]
    pub pool: String,
    /// Seconds without a heartbeat after which a job is given to another
    /// worker.
    #[arg(long, env = "TESSERA_JOB_ACK_WAIT_SECS", default_value_t = 30)]
    pub ack_wait_secs: u64,
    /// NATS server with JetStream for jobs (`nats://[user:pass@]host:4222`);
    /// absent: the in-process bus.
    #[arg(long, env = "NATS_URL", hide_env_values = true)]
    pub nats_url: Option<String>,
    /// RabbitMQ for jobs (`amqp://user:pass@host:5672/%2f`); wins over
    /// NATS_URL for jobs, which then carries the event relay only.
    #[arg(long, env = "AMQP_URL", hide_env_values = true)]
    pub amqp_url: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// The server's data dir: with the embedded S3 endpoint, the worker finds
    /// its address (`s3.addr`) and key (`secret.key`) there.
    #[arg(long, env = "TESSERA_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// The shared bus: NATS with JetStream (`nats://[user:pass@]host:4222`).
    #[arg(long, env = "NATS_URL", hide_env_values = true)]
    pub nats_url: Option<String>,
    /// The shared bus on RabbitMQ (`amqp://user:pass@host:5672/%2f`); wins
    /// over NATS_URL, as in `serve`.
    #[arg(long, env = "AMQP_URL", hide_env_values = true)]
    pub amqp_url: Option<String>,
    /// The master secret, when the server was given one.
    #[arg(long, env = "TESSERA_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Job kinds to take: generate, compress.
    #[arg(long, value_delimiter = ',', default_value = "generate,compress")]
    pub jobs: Vec<String>,
    /// The worker pool whose generation jobs to take.
    #[arg(long, env = "TESSERA_WORKER_POOL", default_value = "default")]
    pub pool: String,
    /// Jobs run at once.
    #[arg(long, env = "TESSERA_WORKER_SLOTS", default_value_t = 2)]
    pub slots: usize,
    /// Seconds without a heartbeat after which a job is given to another
    /// worker.
    #[arg(long, env = "TESSERA_JOB_ACK_WAIT_SECS", default_value_t = 30)]
    pub ack_wait_secs: u64,
}

/// Object storage: an external S3 (`S3_ENDPOINT` and keys) or, by default, the
/// embedded endpoint over `<data dir>/objects`.
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// Bucket of every project's data (`s3_prefix` starts with it).
    #[arg(long, env = "S3_BUCKET", default_value = "tessera")]
    pub bucket: String,
    /// An external S3 endpoint (MinIO, AWS S3, ...); absent: the embedded one.
    #[arg(long, env = "S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    #[arg(long, env = "S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    /// The server's key pair at the external endpoint.
    #[arg(long, env = "S3_ACCESS_KEY_ID", hide_env_values = true)]
    pub s3_access_key: Option<String>,
    #[arg(long, env = "S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_key: Option<String>,
    /// Address of the embedded S3 endpoint (port 0 picks one; the bound address
    /// is written to `<data dir>/s3.addr`).
    #[arg(long, env = "TESSERA_S3_LISTEN", default_value = "127.0.0.1:9000")]
    pub s3_listen: String,
}

#[derive(Debug, Clone, Args)]
pub struct IdentityArgs {
    /// Public base URL of the API, used in mailed links (never taken from the
    /// request's Host header). Default: http://<listen address>.
    #[arg(long, env = "TESSERA_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Master secret for tokens and codes (>= 32 chars). Default: a random key
    /// kept in <data dir>/secret.key.
    #[arg(long, env = "TESSERA_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Earlier master secrets (comma-separated): tokens they signed stay valid
    /// until they expire, so the secret can be rotated without logging anyone out.
    #[arg(
        long,
        env = "TESSERA_PREVIOUS_SECRETS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub previous_secrets: Vec<String>,
    /// SMTP relay (smtp://[user:password@]host[:port]); absent: mail is written
    /// as .eml files to <data dir>/mail/.
    #[arg(long, env = "SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Sender of every mail.
    #[arg(
        long,
        env = "TESSERA_MAIL_FROM",
        default_value = "tessera <no-reply@tessera.local>"
    )]
    pub mail_from: String,
    /// Region part of each user's identity_id.
    #[arg(long, env = "TESSERA_REGION", default_value = "us-east-2")]
    pub region: String,
    /// Proxies whose X-Forwarded-For is believed (comma-separated IPs).
    #[arg(long, env = "TESSERA_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Auth requests per minute per client address.
    #[arg(long, env = "TESSERA_AUTH_RATE_PER_IP", default_value_t = 60)]
    pub auth_rate_per_ip: u32,
    /// Auth requests per minute per account name.
    #[arg(long, env = "TESSERA_AUTH_RATE_PER_ACCOUNT", default_value_t = 20)]
    pub auth_rate_per_account: u32,
    /// OAuth client id that Google ID tokens must be issued to (`aud`);
    /// absent: Google sign-in is off.
    #[arg(long, env = "TESSERA_GOOGLE_CLIENT_ID")]
    pub google_client_id: Option<String>,
    /// Where Google's signing keys (JWKS) are fetched.
    #[arg(
        long,
        env = "TESSERA_GOOGLE_JWKS_URL",
        default_value = "https://www.googleapis.com/oauth2/v3/certs"
    )]
    pub google_jwks_url: String,
    /// File with the invitation mail template ({username}, {link}).
    #[arg(long, env = "TESSERA_INVITE_TEMPLATE_FILE")]
    pub invite_template_file: Option<std::path::PathBuf>,
}
