//! Test harness: backends from the environment, a real `tessera serve` process
//! per test on a random port with a fresh database.
//!
//! `TESSERA_TEST_POSTGRES_URL` (a server URL whose database can `CREATE DATABASE`)
//! adds PostgreSQL to the backends; `TESSERA_TEST_REQUIRE_SERVICES=1` (set by
//! `.ci/run`) turns a missing or unreachable service into a failure instead of a skip.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::Connection;

pub fn require_services() -> bool {
    std::env::var("TESSERA_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1" || v == "true")
}

/// A database for one test.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    Postgres(String),
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

/// The backends this run covers: SQLite always; PostgreSQL when configured.
pub fn backends() -> Vec<Backend> {
    let mut out = vec![Backend::Sqlite];
    match std::env::var("TESSERA_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => out.push(Backend::Postgres(url)),
        _ if require_services() => {
            panic!("TESSERA_TEST_REQUIRE_SERVICES is set but TESSERA_TEST_POSTGRES_URL is not")
        }
        _ => eprintln!("note: TESSERA_TEST_POSTGRES_URL unset; PostgreSQL tests skipped"),
    }
    out
}

pub fn postgres_url() -> Option<String> {
    backends().into_iter().find_map(|b| match b {
        Backend::Postgres(u) => Some(u),
        Backend::Sqlite => None,
    })
}

/// A fresh scratch directory.
pub fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tessera-test-{label}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Creates a fresh database on the backend and returns its URL.
pub async fn fresh_database(backend: &Backend, dir: &Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}?mode=rwc", dir.join("tessera.db").display()),
        Backend::Postgres(server) => {
            let name = format!("tessera_test_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(server)
                .await
                .unwrap_or_else(|e| panic!("PostgreSQL at {server} unreachable: {e}"));
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .unwrap();
            let base = match server.rfind('/') {
                Some(i) if server[..i].contains("://") && i > server.find("://").unwrap() + 2 => {
                    &server[..i]
                }
                _ => server.as_str(),
            };
            format!("{base}/{name}")
        }
    }
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_tessera")
}

/// A running `tessera serve`.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    pub database_url: String,
}

impl Server {
    pub async fn start(backend: &Backend) -> Server {
        Self::start_with(backend, &[]).await
    }

    pub async fn start_with(backend: &Backend, env: &[(&str, &str)]) -> Server {
        let data_dir = temp_dir(backend.name());
        let database_url = fresh_database(backend, &data_dir).await;
        Self::spawn(data_dir, database_url, env).await
    }

    pub async fn spawn(data_dir: PathBuf, database_url: String, env: &[(&str, &str)]) -> Server {
        let _ = std::fs::remove_file(data_dir.join("http.addr"));
        let log = std::fs::File::create(data_dir.join("serve.log")).unwrap();
        let mut cmd = Command::new(binary());
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&data_dir)
            .env("DATABASE_URL", &database_url)
            .env("TESSERA_HTTP_WORKERS", "2")
            .env("TESSERA_S3_LISTEN", "127.0.0.1:0")
            .env("TESSERA_AUTH_RATE_PER_IP", "100000")
            .env("TESSERA_AUTH_RATE_PER_ACCOUNT", "100000")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let started = Instant::now();
        let addr_file = data_dir.join("http.addr");
        let base = loop {
            if let Ok(addr) = std::fs::read_to_string(&addr_file) {
                if !addr.is_empty() {
                    break format!("http://{addr}");
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                let log = std::fs::read_to_string(data_dir.join("serve.log")).unwrap_or_default();
                panic!("server did not start:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let server = Server {
            child,
            base,
            data_dir,
            database_url,
        };
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(server.url("/healthz")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "healthz never answered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    /// The embedded S3 endpoint of this server.
    pub fn s3_endpoint(&self) -> String {
        let addr = std::fs::read_to_string(self.data_dir.join("s3.addr")).unwrap();
        format!("http://{addr}")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("serve.log")).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "server ignored SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs a `tessera` operator command against this server's data.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(binary())
            .args(args)
            .env("TESSERA_DATA_DIR", &self.data_dir)
            .env("DATABASE_URL", &self.database_url)
            .output()
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The mails written to `<data dir>/mail/` for `to`, oldest first.
pub fn mails_to(data_dir: &Path, to: &str) -> Vec<String> {
    let mut files: Vec<_> = std::fs::read_dir(data_dir.join("mail"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|m| decode_quoted_printable(&m))
        .filter(|m| {
            m.lines().any(|l| {
                l.to_lowercase().starts_with("to:") && l.to_lowercase().contains(&to.to_lowercase())
            })
        })
        .collect()
}

/// The 6-digit code in the newest mail to `to`.
pub fn latest_code(data_dir: &Path, to: &str) -> String {
    let mails = mails_to(data_dir, to);
    let mail = mails.last().unwrap_or_else(|| panic!("no mail to {to}"));
    let at = mail.find("code is ").expect("a code in the mail") + "code is ".len();
    mail[at..at + 6].to_owned()
}

/// Signs up and confirms a user through the platform API; returns the login data.
pub async fn signed_up_user(server: &Server, username: &str, password: &str) -> serde_json::Value {
    let http = reqwest::Client::new();
    let email = format!("{username}@example.com");
    let r = http
        .post(server.url("/user_signup"))
        .json(&serde_json::json!({"username": username, "email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let code = latest_code(&server.data_dir, &email);
    let r = http
        .post(server.url("/auth_confirm"))
        .json(&serde_json::json!({"username": username, "confirm_code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = http
        .post(server.url("/user_login"))
        .json(&serde_json::json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let body: serde_json::Value = r.json().await.unwrap();
    body["data"].clone()
}

/// Undoes quoted-printable encoding (soft line breaks and `=XX` escapes).
fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An S3 client at `endpoint` with the given keys (and session token).
pub fn s3_client(
    endpoint: &str,
    access_key: &str,
    secret_key: &str,
    token: Option<&str>,
) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            access_key,
            secret_key,
            token.map(str::to_owned),
            None,
            "test",
        ))
        .force_path_style(true)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// A client with the temporary credentials of a login response.
pub fn user_s3(server: &Server, login: &serde_json::Value) -> aws_sdk_s3::Client {
    s3_client(
        &server.s3_endpoint(),
        login["access_key"].as_str().unwrap(),
        login["secret_key"].as_str().unwrap(),
        login["session_key"].as_str(),
    )
}

/// A small real PNG, distinct per `seed`.
pub fn png(seed: u32, width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            low_byte(x.wrapping_mul(7).wrapping_add(seed)),
            low_byte(y.wrapping_mul(3).wrapping_add(seed * 5)),
            low_byte(seed.wrapping_mul(11)),
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// POSTs JSON to the server; the status and the JSON body (null if none).
pub async fn call(
    server: &Server,
    path: &str,
    body: serde_json::Value,
) -> (reqwest::StatusCode, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(server.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// PUTs each `(filename, bytes)` through presigned URLs from `upload_urls`.
pub async fn put_presigned(
    server: &Server,
    token: &str,
    project_id: &str,
    files: &[(String, Vec<u8>)],
) {
    use futures::StreamExt;
    let http = reqwest::Client::new();
    for chunk in files.chunks(500) {
        let names: Vec<&str> = chunk.iter().map(|(n, _)| n.as_str()).collect();
        let (s, body) = call(
            server,
            "/projects/upload_urls",
            serde_json::json!({"id_token": token, "project_id": project_id, "ls_filename": names}),
        )
        .await;
        assert_eq!(s, 200, "{body}");
        let urls: Vec<String> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["url"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(urls.len(), chunk.len());
        futures::stream::iter(urls.into_iter().zip(chunk))
            .map(|(url, (_, bytes))| {
                let http = http.clone();
                async move {
                    let r = http.put(url).body(bytes.clone()).send().await.unwrap();
                    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
    }
}

pub fn infos(prefix: &str, files: &[(String, Vec<u8>)]) -> Vec<serde_json::Value> {
    files
        .iter()
        .map(|(name, bytes)| {
            serde_json::json!({"s3_key": format!("{prefix}/{name}"), "filename": name, "hash": "h", "size": bytes.len(), "is_ori": true})
        })
        .collect()
}

/// A project of a signed-up user.
pub struct Project {
    pub token: String,
    pub id: String,
    pub prefix: String,
    pub name: String,
}

/// Creates a project and uploads `files` through presigned URLs.
pub async fn project_with(
    server: &Server,
    login: &serde_json::Value,
    name: &str,
    files: &[(String, Vec<u8>)],
) -> Project {
    let token = login["id_token"].as_str().unwrap().to_owned();
    let (s, body) = call(
        server,
        "/projects/create",
        serde_json::json!({"id_token": token, "project_name": name}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let id = body["data"]["project_id"].as_str().unwrap().to_owned();
    let prefix = body["data"]["s3_prefix"].as_str().unwrap().to_owned();
    put_presigned(server, &token, &id, files).await;
    let (s, body) = call(
        server,
        "/projects/upload_update",
        serde_json::json!({"id_token": token, "project_id": id, "project_name": name, "ls_object_info": infos(&prefix, files)}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    Project {
        token,
        id,
        prefix,
        name: name.to_owned(),
    }
}

/// Polls `generate/task_progress` until the task ends; returns its data.
pub async fn wait_for_task(server: &Server, token: &str, task_id: &str) -> serde_json::Value {
    let started = std::time::Instant::now();
    loop {
        let (s, body) = call(
            server,
            "/generate/task_progress",
            serde_json::json!({"id_token": token, "task_id": task_id}),
        )
        .await;
        assert_eq!(s, 200, "{body}");
        let status = body["data"]["status"].as_str().unwrap().to_owned();
        if matches!(
            status.as_str(),
            "FINISH" | "FINISH_ERROR" | "ERROR" | "CANCEL"
        ) {
            return body["data"].clone();
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "task stuck: {body}\n{}",
            server.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Every item of one kind of a project (one page: fewer than 500).
pub async fn items(server: &Server, p: &Project, kind: &str) -> Vec<serde_json::Value> {
    let (s, body) = call(
        server,
        "/projects/list_data",
        serde_json::json!({"id_token": p.token, "project_id": p.id, "type_method": kind, "num_limit": 500}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert!(body["data"]["next_token"].is_null());
    body["data"]["items"].as_array().unwrap().clone()
}

/// The bytes of an object named by its API key (`<bucket>/<key>`).
pub async fn object(s3: &aws_sdk_s3::Client, bucket: &str, s3_key: &str) -> Vec<u8> {
    let key = s3_key.strip_prefix(&format!("{bucket}/")).unwrap();
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

/// A NATS server (JetStream, file store) of the test's own, so that killing
/// or restarting it disturbs nobody. `None` when `nats-server` is not on the
/// PATH (a failure under `TESSERA_TEST_REQUIRE_SERVICES`).
pub struct OwnNats {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl OwnNats {
    pub fn start() -> Option<OwnNats> {
        if Command::new("nats-server")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(!require_services(), "nats-server is required on the PATH");
            eprintln!("note: no nats-server on the PATH; test skipped");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = temp_dir("nats");
        let child = OwnNats::spawn(port, &dir);
        Some(OwnNats { child, port, dir })
    }

    fn spawn(port: u16, dir: &Path) -> Child {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGTERM), keeps the port closed for `down`, and
    /// starts it again on the same port and store.
    pub fn restart(&mut self, down: Duration) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        std::thread::sleep(down);
        self.child = OwnNats::spawn(self.port, &self.dir);
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A RabbitMQ node of the test's own (its own node name, ports and data
/// dir), so that stopping it disturbs nobody. `None` when RabbitMQ is not
/// installed (a failure under `TESSERA_TEST_REQUIRE_SERVICES`).
pub struct OwnRabbit {
    node: String,
    pub port: u16,
    dist_port: u16,
    dir: PathBuf,
}

const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl OwnRabbit {
    pub fn start() -> Option<OwnRabbit> {
        if !Path::new(RABBITMQ_SERVER).exists() {
            assert!(
                !require_services(),
                "RabbitMQ ({RABBITMQ_SERVER}) is required"
            );
            eprintln!("note: RabbitMQ is not installed; test skipped");
            return None;
        }
        let r = OwnRabbit {
            node: format!(
                "tessera-{}@localhost",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            ),
            port: free_port(),
            dist_port: free_port(),
            dir: temp_dir("rabbitmq"),
        };
        r.run();
        Some(r)
    }

    fn run(&self) {
        let status = Command::new(RABBITMQ_SERVER)
            .arg("-detached")
            .current_dir(&self.dir)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", self.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.dir.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", self.dir.join("plugins"))
            .env("RABBITMQ_CONFIG_FILE", self.dir.join("none"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "rabbitmq-server did not start");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "RabbitMQ node {} did not open its port",
                self.node
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn stop(&self) {
        let _ = Command::new("rabbitmqctl")
            .args(["-n", &self.node, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Stops the node cleanly and starts it again on the same data.
    pub fn restart(&self) {
        self.stop();
        self.run();
    }
}

impl Drop for OwnRabbit {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The low byte of `v` (a pattern value wrapping at 256).
pub fn low_byte(v: u32) -> u8 {
    v.to_le_bytes()[0]
}
