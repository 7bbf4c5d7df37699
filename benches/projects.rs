//! Project API latency on PostgreSQL, over HTTP to a running `tessera serve`
//! (release build, embedded S3 endpoint):
//! - `list_info` for a user with 5 projects and 100,000 data items;
//! - `upload_update` of 500 items (500 HEADs against storage, one event,
//!   500 read-model rows) into a project of 20,000 items;
//!
//! beside a minimal actix-web JSON handler measured by the same client loop in
//! the same run (the ceiling for one HTTP round trip).
//!
//! Run: `cargo bench --bench projects` (PostgreSQL at
//! `TESSERA_BENCH_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`).
//! Prints a Markdown table. `BENCH_SERVER_LOG=warn,s3s::service=debug` logs
//! the S3 endpoint's per-request times into the server log; `BENCH_KEEP=1`
//! keeps the data dir.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use sqlx::Connection;
use tessera::adapters::store::SqlEventStore;
use tessera_domain::project::data::{
    data_stream_id, DataEvent, DataItem, DataKind, Uploaded, DATA_STREAM_TYPE,
};
use tessera_domain::{EventStore, ExpectedVersion, StreamRef};

const PROJECTS: usize = 5;
const ITEMS_PER_PROJECT: usize = 20_000;
const LIST_INFO_CALLS: usize = 2_000;
const UPLOAD_CALLS: usize = 100;
const BATCH: usize = 500;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

struct Stats {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    // The sample at `percent` of the sorted run.
    let at = |percent: usize| samples[(samples.len() * percent / 100).min(samples.len() - 1)];
    Stats {
        p50: at(50),
        p99: at(99),
        mean: samples.iter().sum::<Duration>() / u32::try_from(samples.len()).unwrap(),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> Duration {
    let started = Instant::now();
    let r = http.post(url).json(body).send().await.unwrap();
    let status = r.status();
    let bytes = r.bytes().await.unwrap();
    let took = started.elapsed();
    assert!(
        status.is_success(),
        "{url}: {}",
        String::from_utf8_lossy(&bytes)
    );
    took
}

struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn run() {
    let admin_url = std::env::var("TESSERA_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let db = format!("tessera_bench_projects_{}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    sqlx::query(&format!("DROP DATABASE IF EXISTS {db}"))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let database_url = format!("{base}/{db}");
    let dir = std::env::temp_dir().join(format!("tessera-bench-projects-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    let binary = env!("CARGO_BIN_EXE_tessera");
    let password = "a long and unusual passphrase";
    let created = Command::new(binary)
        .args([
            "admin",
            "create-user",
            "--username",
            "bench",
            "--email",
            "bench@example.com",
        ])
        .env("TESSERA_DATA_DIR", &dir)
        .env("DATABASE_URL", &database_url)
        .env("TESSERA_ADMIN_PASSWORD", password)
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let _server = Server {
        child: Command::new(binary)
            .arg("serve")
            .arg("--data-dir")
            .arg(&dir)
            .env("DATABASE_URL", &database_url)
            .env("TESSERA_LISTEN", "127.0.0.1:0")
            .env("TESSERA_S3_LISTEN", "127.0.0.1:0")
            .env("TESSERA_HTTP_WORKERS", "2")
            .env("TESSERA_MAX_ORIGINALS", "1000000")
            .env("TESSERA_AUTH_RATE_PER_IP", "100000")
            .env("TESSERA_AUTH_RATE_PER_ACCOUNT", "100000")
            .env(
                "RUST_LOG",
                std::env::var("BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    };
    let addr_file = dir.join("http.addr");
    let started = Instant::now();
    let api = loop {
        if let Ok(a) = std::fs::read_to_string(&addr_file) {
            if !a.is_empty() {
                break format!("http://{a}");
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let s3_endpoint = format!(
        "http://{}",
        std::fs::read_to_string(dir.join("s3.addr")).unwrap()
    );
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{api}/user_login"))
        .json(&json!({"username": "bench", "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let login = login["data"].clone();
    let token = login["id_token"].as_str().unwrap().to_owned();

    // Five projects, 20,000 items each, recorded straight into the log (the
    // same events `upload_update` appends; the inline projections fill the
    // read models).
    let store = SqlEventStore::connect(&database_url, 4).await.unwrap();
    let mut projects = Vec::new();
    for p in 0..PROJECTS {
        let r: Value = http
            .post(format!("{api}/projects/create"))
            .json(&json!({"id_token": token, "project_name": format!("bench_{p}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let pid = r["data"]["project_id"].as_str().unwrap().to_owned();
        let prefix = r["data"]["s3_prefix"].as_str().unwrap().to_owned();
        for chunk in 0..ITEMS_PER_PROJECT / BATCH {
            let items: Vec<Uploaded> = (0..BATCH)
                .map(|i| {
                    let name = format!("seed_{chunk:03}_{i:03}.jpg");
                    Uploaded {
                        item: DataItem {
                            s3_key: format!("{prefix}/{name}"),
                            filename: name,
                            size: 150_000 + i as u64,
                            hash: "h".into(),
                            kind: DataKind::Original,
                            gen_id: String::new(),
                            classtype: None,
                        },
                        replaces: None,
                    }
                })
                .collect();
            let event = DataEvent::DataItemsUploaded {
                project_id: pid.clone(),
                items,
                at: 0,
            };
            store
                .append(
                    &StreamRef::new(DATA_STREAM_TYPE, data_stream_id(&pid)),
                    ExpectedVersion::Any,
                    vec![tessera_domain::aggregate::encode(&event).unwrap()],
                )
                .await
                .unwrap();
        }
        projects.push((pid, prefix));
    }

    // 500 real objects for upload_update, put with the login credentials.
    let s3 = {
        use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&s3_endpoint)
            .credentials_provider(Credentials::new(
                login["access_key"].as_str().unwrap(),
                login["secret_key"].as_str().unwrap(),
                login["session_key"].as_str().map(str::to_owned),
                None,
                "bench",
            ))
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    };
    let (pid, prefix) = projects[0].clone();
    let (bucket, key_prefix) = prefix.split_once('/').unwrap();
    let body = vec![7u8; 2048];
    for i in 0..BATCH {
        s3.put_object()
            .bucket(bucket)
            .key(format!("{key_prefix}/up_{i:03}.jpg"))
            .body(body.clone().into())
            .send()
            .await
            .unwrap();
    }
    let batch: Vec<Value> = (0..BATCH)
        .map(|i| json!({"s3_key": format!("{prefix}/up_{i:03}.jpg"), "filename": format!("up_{i:03}.jpg"), "hash": "h", "size": body.len(), "is_ori": true}))
        .collect();
    let upload = json!({"id_token": token, "project_id": pid, "project_name": "bench_0", "ls_object_info": batch});
    let list_info = json!({"id_token": token});

    // The ceiling: a minimal actix-web JSON handler, same client, same loop.
    let ceiling = actix_web::HttpServer::new(|| {
        actix_web::App::new().route(
            "/",
            actix_web::web::post().to(|_body: actix_web::web::Json<Value>| async {
                actix_web::HttpResponse::Ok()
                    .json(json!({"data": [], "error": false, "success": true, "message": null}))
            }),
        )
    })
    .workers(2)
    .bind("127.0.0.1:0")
    .unwrap();
    let ceiling_url = format!("http://{}/", ceiling.addrs()[0]);
    let ceiling = ceiling.run();
    let ceiling_handle = ceiling.handle();
    tokio::spawn(ceiling);

    // Warm up every path, then measure.
    for _ in 0..50 {
        post(&http, &format!("{api}/projects/list_info"), &list_info).await;
        post(&http, &ceiling_url, &list_info).await;
    }
    post(&http, &format!("{api}/projects/upload_update"), &upload).await;
    let mut list_samples = Vec::with_capacity(LIST_INFO_CALLS);
    let mut ceiling_samples = Vec::with_capacity(LIST_INFO_CALLS);
    for _ in 0..LIST_INFO_CALLS {
        list_samples.push(post(&http, &format!("{api}/projects/list_info"), &list_info).await);
        ceiling_samples.push(post(&http, &ceiling_url, &list_info).await);
    }
    // The storage part alone: 500 HEADs, 32 in flight, as upload_update does.
    let mut head_samples = Vec::with_capacity(UPLOAD_CALLS);
    for _ in 0..UPLOAD_CALLS {
        let started = Instant::now();
        let heads = (0..BATCH).map(|i| {
            s3.head_object()
                .bucket(bucket)
                .key(format!("{key_prefix}/up_{i:03}.jpg"))
                .send()
        });
        let done: Vec<_> = futures::stream::iter(heads).buffered(32).collect().await;
        assert!(done.iter().all(Result::is_ok));
        head_samples.push(started.elapsed());
    }
    let mut upload_samples = Vec::with_capacity(UPLOAD_CALLS);
    for _ in 0..UPLOAD_CALLS {
        upload_samples.push(post(&http, &format!("{api}/projects/upload_update"), &upload).await);
    }
    let check: Value = http
        .post(format!("{api}/projects/list_info"))
        .json(&list_info)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let total: i64 = check["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["groups"]["ORIGINAL"]["count"].as_i64().unwrap())
        .sum();
    assert_eq!(
        usize::try_from(total).unwrap(),
        PROJECTS * ITEMS_PER_PROJECT + BATCH
    );
    ceiling_handle.stop(true).await;

    let list = stats(list_samples);
    let ceil = stats(ceiling_samples);
    let up = stats(upload_samples);
    let heads = stats(head_samples);
    println!(
        "| operation (PostgreSQL, {} items in {PROJECTS} projects) | p50 | p99 | mean | p50 vs ceiling |",
        total
    );
    println!("|---|---|---|---|---|");
    println!(
        "| minimal actix JSON handler (ceiling) | {} | {} | {} | 1.00× |",
        ms(ceil.p50),
        ms(ceil.p99),
        ms(ceil.mean)
    );
    println!(
        "| `list_info` (5 projects with groups) | {} | {} | {} | {:.2}× |",
        ms(list.p50),
        ms(list.p99),
        ms(list.mean),
        list.p50.as_secs_f64() / ceil.p50.as_secs_f64()
    );
    println!(
        "| `upload_update`, 500 items (1 ranged listing, 1 event, 500 rows) | {} | {} | {} | {:.2}× |",
        ms(up.p50),
        ms(up.p99),
        ms(up.mean),
        up.p50.as_secs_f64() / ceil.p50.as_secs_f64()
    );
    println!(
        "| of which: 500 HEADs to the embedded S3 endpoint, 32 in flight (aws-sdk-s3 client) | {} | {} | {} | {:.2}× |",
        ms(heads.p50),
        ms(heads.p99),
        ms(heads.mean),
        heads.p50.as_secs_f64() / ceil.p50.as_secs_f64()
    );
    store.pool().close().await;
    drop(_server);
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .execute(&mut admin)
        .await;
    if std::env::var("BENCH_KEEP").is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
