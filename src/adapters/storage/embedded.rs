//! The embedded S3 endpoint: a real S3 API (s3s, with SigV4 for headers and
//! presigned URLs) over `<data dir>/objects` ([`super::disk`]), served on
//! `TESSERA_S3_LISTEN`.
//!
//! Two kinds of caller:
//! - the server itself, with its own key pair: every operation;
//! - a signed-in user, with the temporary credentials login hands out
//!   (`access_key`, `secret_key`, and `session_key` as the security token):
//!   object operations and listings under `<bucket>/<identity_id>/` only, while
//!   the grant has not expired and the login session is alive.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::path::S3Path;
use s3s::service::S3ServiceBuilder;
use s3s::{s3_error, S3Result};
use tokio::sync::watch;

/// What a user's credentials may do (bucket-level operations other than
/// listing, and batch deletes whose keys hide in the body, are refused).
const USER_OPERATIONS: &[&str] = &[
    "GetObject",
    "HeadObject",
    "PutObject",
    "DeleteObject",
    "ListObjects",
    "ListObjectsV2",
    "CreateMultipartUpload",
    "UploadPart",
    "CompleteMultipartUpload",
    "AbortMultipartUpload",
    "ListParts",
];

/// The server's own key pair.
#[derive(Clone)]
pub struct ServerKey {
    pub access_key: String,
    pub secret_key: String,
}

/// The embedded endpoint's key pair for the server itself, derived from the
/// master secret, so every process of one data dir (API, workers) shares it.
pub fn server_key(secrets: &crate::adapters::secrets::Secrets) -> ServerKey {
    ServerKey {
        access_key: "tessera-server".into(),
        secret_key: hex::encode(secrets.derive("embedded-s3-server")),
    }
}

/// What the endpoint asks the identity core about users' temporary login
/// credentials (it holds no rule of its own about them).
#[async_trait::async_trait]
pub trait LoginCredentials: Send + Sync {
    /// The secret key of a temporary access key, when it is one.
    fn secret_for(&self, access_key: &str) -> Option<String>;
    /// The storage identity (`<region>:<uuid>`) that `session_token` grants
    /// to `access_key` at `now`: `Ok(None)` when the token is invalid or
    /// expired or its login session has ended.
    async fn identity_of(
        &self,
        access_key: &str,
        session_token: &str,
        now: i64,
    ) -> Result<Option<String>, String>;
}

struct Auth {
    server: ServerKey,
    identity: Arc<dyn LoginCredentials>,
}

#[async_trait::async_trait]
impl S3Auth for Auth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        if access_key == self.server.access_key {
            return Ok(SecretKey::from(self.server.secret_key.as_str()));
        }
        match self.identity.secret_for(access_key) {
            Some(secret) => Ok(SecretKey::from(secret)),
            None => Err(s3_error!(InvalidAccessKeyId)),
        }
    }
}

struct Access {
    server_access_key: String,
    bucket: String,
    max_put_bytes: u64,
    identity: Arc<dyn LoginCredentials>,
}

fn query_param(cx: &S3AccessContext<'_>, name: &str) -> Option<String> {
    let query = cx.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let Some(creds) = cx.credentials() else {
            return Err(s3_error!(AccessDenied, "Authentication required"));
        };
        if creds.access_key == self.server_access_key {
            return Ok(());
        }
        let access_key = creds.access_key.clone();
        let token = cx
            .headers()
            .get("x-amz-security-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| query_param(cx, "X-Amz-Security-Token"))
            .ok_or_else(|| s3_error!(AccessDenied, "The security token is missing"))?;
        let now = chrono::Utc::now().timestamp();
        let identity_id = match self.identity.identity_of(&access_key, &token, now).await {
            Ok(Some(id)) => id,
            Ok(None) => {
                return Err(s3_error!(
                    ExpiredToken,
                    "The security token is invalid or expired, or its session has ended"
                ))
            }
            Err(e) => return Err(s3_error!(InternalError, "{e}")),
        };
        let op = cx.s3_op().name();
        if !USER_OPERATIONS.contains(&op) {
            return Err(s3_error!(AccessDenied, "{op} is not allowed"));
        }
        let own = format!("{identity_id}/");
        let allowed = match cx.s3_path() {
            S3Path::Object { bucket, key } => {
                **bucket == *self.bucket && key.starts_with(&own) && super::check_key(key).is_ok()
            }
            S3Path::Bucket { bucket } => {
                **bucket == *self.bucket
                    && op.starts_with("ListObjects")
                    && query_param(cx, "prefix").is_some_and(|p| p.starts_with(&own))
            }
            S3Path::Root => false,
        };
        if !allowed {
            return Err(s3_error!(AccessDenied, "Outside your storage prefix"));
        }
        if op == "PutObject" || op == "UploadPart" {
            let declared = cx
                .headers()
                .get(hyper::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > self.max_put_bytes) {
                return Err(s3_error!(EntityTooLarge));
            }
            // One part at most, so an object made of parts is bounded like a
            // PUT (a user's uploads are images, far below the 5 MiB parts
            // that more than one part would take).
            if op == "UploadPart" && query_param(cx, "partNumber").as_deref() != Some("1") {
                return Err(s3_error!(
                    AccessDenied,
                    "With login credentials a multipart upload has one part of at most {} bytes",
                    self.max_put_bytes
                ));
            }
        }
        Ok(())
    }
}

/// What the endpoint needs to start.
pub struct EmbeddedConfig<'a> {
    pub root: &'a Path,
    pub listen: &'a str,
    pub bucket: &'a str,
    pub server: ServerKey,
    /// Largest single PUT a user's credentials may make.
    pub max_put_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("cannot open the object folder {path}: {reason}")]
    Root { path: String, reason: String },
    #[error("cannot listen for S3 on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// Binds the endpoint; the returned future serves until `shutdown` flips.
pub async fn bind(
    config: EmbeddedConfig<'_>,
    identity: Arc<dyn LoginCredentials>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, impl std::future::Future<Output = ()>), EmbeddedError> {
    let root_err = |reason: String| EmbeddedError::Root {
        path: config.root.display().to_string(),
        reason,
    };
    std::fs::create_dir_all(config.root.join(config.bucket))
        .map_err(|e| root_err(e.to_string()))?;
    let fs = super::disk::Disk::new(config.root).map_err(|e| root_err(e.to_string()))?;
    let mut builder = S3ServiceBuilder::new(fs);
    builder.set_auth(Auth {
        server: config.server.clone(),
        identity: identity.clone(),
    });
    builder.set_access(Access {
        server_access_key: config.server.access_key.clone(),
        bucket: config.bucket.to_owned(),
        max_put_bytes: config.max_put_bytes,
        identity,
    });
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| EmbeddedError::Listen {
            addr: config.listen.to_owned(),
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| EmbeddedError::Listen {
            addr: config.listen.to_owned(),
            source,
        })?;
    let serve = async move {
        let http = ConnBuilder::new(TokioExecutor::new());
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        loop {
            let socket = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((socket, _)) => socket,
                    Err(e) => {
                        tracing::warn!(error = %e, "S3 endpoint cannot accept");
                        continue;
                    }
                },
                _ = shutdown.changed() => break,
            };
            // Small responses (HEAD, errors) must not wait for Nagle.
            let _ = socket.set_nodelay(true);
            let conn = http.serve_connection(TokioIo::new(socket), service.clone());
            let conn = graceful.watch(conn.into_owned());
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), graceful.shutdown()).await;
    };
    Ok((addr, serve))
}
