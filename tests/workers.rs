//! Separate worker processes on NATS and on RabbitMQ: `tessera serve
//! --no-workers` plus two `tessera worker` processes; one is killed (SIGKILL)
//! in the middle of a job, or the NATS server is killed and started again,
//! and the task still finishes with exactly the expected outputs, once each.
//! A compress worker killed after the first part of its zip leaves no zip
//! visible, and the redelivered job builds a valid one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const PASSWORD: &str = "a long and unusual passphrase";

/// A shared broker the server and its workers meet on: the environment
/// variable that names it and its URL.
#[derive(Clone)]
struct Broker {
    var: &'static str,
    url: String,
}

fn broker(var: &'static str, test_var: &str) -> Option<Broker> {
    match std::env::var(test_var) {
        Ok(url) if !url.is_empty() => Some(Broker { var, url }),
        _ if common::require_services() => panic!("{test_var} is required"),
        _ => {
            eprintln!("note: {test_var} unset; worker process tests on {var} skipped");
            None
        }
    }
}

fn nats() -> Option<Broker> {
    broker("NATS_URL", "TESSERA_TEST_NATS_URL")
}

fn rabbitmq() -> Option<Broker> {
    broker("AMQP_URL", "TESSERA_TEST_AMQP_URL")
}

async fn call(server: &common::Server, path: &str, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(server.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    body
}

fn worker(
    server: &common::Server,
    broker: &Broker,
    jobs: &str,
    pool: &str,
    bucket: &str,
    n: usize,
) -> Child {
    let log = std::fs::File::create(server.data_dir.join(format!("worker{n}.log"))).unwrap();
    Command::new(common::binary())
        .arg("worker")
        .arg("--data-dir")
        .arg(&server.data_dir)
        .args(["--jobs", jobs])
        .env(broker.var, &broker.url)
        .env("TESSERA_WORKER_POOL", pool)
        .env("TESSERA_WORKER_SLOTS", "1")
        .env("TESSERA_JOB_ACK_WAIT_SECS", "3")
        .env("S3_BUCKET", bucket)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap()
}

/// Worker processes, killed when the test ends (also when it fails).
struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for w in &mut self.0 {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

fn log_of(server: &common::Server, n: usize) -> String {
    std::fs::read_to_string(server.data_dir.join(format!("worker{n}.log"))).unwrap_or_default()
}

/// Waits (at most a minute) until worker `n`'s log contains `needle`.
async fn wait_for_log(server: &common::Server, n: usize, needle: &str) {
    let started = Instant::now();
    while !log_of(server, n).contains(needle) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "worker {n} never logged {needle:?}:\n{}",
            log_of(server, n)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_worker_loses_and_duplicates_nothing_on_nats() {
    let Some(broker) = nats() else { return };
    generation_survives(broker, Disruption::KillWorker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_worker_loses_and_duplicates_nothing_on_rabbitmq() {
    let Some(broker) = rabbitmq() else { return };
    generation_survives(broker, Disruption::KillWorker).await;
}

/// The NATS server itself is killed in the middle of a run and started
/// again on the same port and store: the server, both workers and the jobs
/// in the stream carry on, and every output is recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nats_restart_mid_run_loses_and_duplicates_nothing() {
    if nats().is_none() {
        return;
    }
    let Some(nats) = common::OwnNats::start() else {
        return;
    };
    let broker = Broker {
        var: "NATS_URL",
        url: nats.url(),
    };
    generation_survives(broker, Disruption::RestartNats(nats)).await;
}

enum Disruption {
    /// SIGKILL worker 0 inside a job and start a third worker.
    KillWorker,
    /// Kill the NATS server inside a job and start it again.
    RestartNats(common::OwnNats),
}

/// `tessera serve` on `broker` with no workers of its own and a fresh
/// worker pool and bucket: the server, the pool and the bucket.
async fn serve_without_workers(broker: &Broker) -> (common::Server, String, String) {
    let backend = common::backends().pop().unwrap();
    let pool = format!("t{}", uuid::Uuid::new_v4().simple());
    let bucket = format!("w{}", uuid::Uuid::new_v4().simple());
    let server = common::Server::start_with(
        &backend,
        &[
            (broker.var, &broker.url),
            ("TESSERA_EMBEDDED_WORKERS", "false"),
            ("TESSERA_WORKER_POOL", &pool),
            ("TESSERA_JOB_ACK_WAIT_SECS", "3"),
            ("S3_BUCKET", &bucket),
        ],
    )
    .await;
    (server, pool, bucket)
}

/// `tessera serve --no-workers` and two `tessera worker` processes on
/// `broker` run a generation task of 12 images × 3 outputs; `disruption`
/// strikes as soon as worker 0 is inside a job. The task must finish with
/// exactly 36 outputs, each recorded and stored once.
async fn generation_survives(broker: Broker, mut disruption: Disruption) {
    let (server, pool, bucket) = serve_without_workers(&broker).await;
    let login = common::signed_up_user(&server, "kim", PASSWORD).await;
    let token = login["id_token"].as_str().unwrap().to_owned();
    let created = call(
        &server,
        "/projects/create",
        json!({"id_token": token, "project_name": "k"}),
    )
    .await;
    let pid = created["data"]["project_id"].as_str().unwrap().to_owned();
    let prefix = created["data"]["s3_prefix"].as_str().unwrap().to_owned();
    let files: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| (format!("k{i:02}.png"), common::png(i, 700, 500)))
        .collect();
    common::put_presigned(&server, &token, &pid, &files).await;
    let infos = common::infos(&prefix, &files);
    call(
        &server,
        "/projects/upload_update",
        json!({"id_token": token, "project_id": pid, "project_name": "k", "ls_object_info": infos}),
    )
    .await;

    let mut workers = Workers(vec![
        worker(&server, &broker, "generate", &pool, &bucket, 0),
        worker(&server, &broker, "generate", &pool, &bucket, 1),
    ]);
    let body = call(&server, "/generate/images", json!({"id_token": token, "project_id": pid, "project_name": "k", "ls_method_id": ["AUG-000", "AUG-009"], "num_aug_p_img": 3, "data_number": [12, 0, 0]})).await;
    let task = body["data"]["task_id"].as_str().unwrap().to_owned();

    // Kill worker 0 as soon as it is inside a job.
    let started = Instant::now();
    wait_for_log(&server, 0, "generation job").await;
    match &mut disruption {
        Disruption::KillWorker => {
            workers.0[0].kill().unwrap();
            workers.0[0].wait().unwrap();
        }
        Disruption::RestartNats(nats) => nats.restart(Duration::from_secs(2)),
    }
    let progress = call(
        &server,
        "/generate/task_progress",
        json!({"id_token": token, "task_id": task}),
    )
    .await;
    eprintln!(
        "disrupted at {}/{} outputs",
        progress["data"]["number_finished"], progress["data"]["number_gen_images"]
    );
    if matches!(disruption, Disruption::KillWorker) {
        workers
            .0
            .push(worker(&server, &broker, "generate", &pool, &bucket, 2));
    }

    let end = loop {
        let p = call(
            &server,
            "/generate/task_progress",
            json!({"id_token": token, "task_id": task}),
        )
        .await;
        let status = p["data"]["status"].as_str().unwrap().to_owned();
        if matches!(
            status.as_str(),
            "FINISH" | "FINISH_ERROR" | "ERROR" | "CANCEL"
        ) {
            break p["data"].clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "stuck: {p}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(end["status"], "FINISH", "{end}");
    assert_eq!(end["number_finished"], 36);
    let listed = call(
        &server,
        "/projects/list_data",
        json!({"id_token": token, "project_id": pid, "type_method": "AUGMENT", "num_limit": 500}),
    )
    .await;
    let items = listed["data"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 36);
    let unique: std::collections::HashSet<&str> = items
        .iter()
        .map(|i| i["filename"].as_str().unwrap())
        .collect();
    assert_eq!(unique.len(), 36);
    // Storage holds exactly the recorded outputs: nothing extra, nothing half-written.
    let folder = server.data_dir.join("objects").join(&prefix).join(&task);
    let on_disk = std::fs::read_dir(&folder).unwrap().count();
    assert_eq!(on_disk, 36);
    drop(workers);
    drop(disruption);
}

/// Whether an open multipart upload in the embedded store has its first part
/// (a part's file or in-place marker is named `<part number>.<etag>…`).
fn uploaded_part(data_dir: &std::path::Path) -> bool {
    let Ok(uploads) = std::fs::read_dir(data_dir.join("objects").join(".uploads")) else {
        return false;
    };
    uploads.flatten().any(|u| {
        std::fs::read_dir(u.path())
            .map(|parts| {
                parts
                    .flatten()
                    .any(|p| p.file_name().to_string_lossy().starts_with("00001."))
            })
            .unwrap_or(false)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_compress_worker_leaves_no_broken_zip() {
    let Some(nats) = nats() else { return };
    let backend = common::backends().pop().unwrap();
    let bucket = format!("z{}", uuid::Uuid::new_v4().simple());
    let server = common::Server::start_with(
        &backend,
        &[
            (nats.var, &nats.url),
            ("TESSERA_EMBEDDED_WORKERS", "false"),
            ("S3_BUCKET", &bucket),
        ],
    )
    .await;
    let login = common::signed_up_user(&server, "zed", PASSWORD).await;
    // 48 files of 1 MB of noise: the zip spans several 8 MiB parts.
    let files: Vec<(String, Vec<u8>)> = (0..48u64)
        .map(|i| {
            let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let bytes = (0..1_000_000)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x.to_le_bytes()[0]
                })
                .collect();
            (format!("z{i:02}.jpg"), bytes)
        })
        .collect();
    let p = common::project_with(&server, &login, "z", &files).await;
    let compress_worker = |n: usize| worker(&server, &nats, "compress", "default", &bucket, n);
    let mut workers = Workers(vec![compress_worker(0)]);
    let body = call(
        &server,
        "/projects/download_create",
        json!({"id_token": p.token, "project_id": p.id, "project_name": p.name, "down_type": "ORIGINAL"}),
    )
    .await;
    let task = body["data"]["task_id"].as_str().unwrap().to_owned();

    // Kill the worker once the first part of the zip is uploaded.
    let started = Instant::now();
    while !uploaded_part(&server.data_dir) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the worker never uploaded a part:\n{}",
            log_of(&server, 0)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    workers.0[0].kill().unwrap();
    workers.0[0].wait().unwrap();
    let identity = login["identity_id"].as_str().unwrap();
    let downloads = server
        .data_dir
        .join("objects")
        .join(&bucket)
        .join(identity)
        .join(&p.id)
        .join("download");
    let zips = |dir: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".zip"))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        zips(&downloads).is_empty(),
        "no zip may be visible mid-build"
    );
    let running = call(
        &server,
        "/projects/download_update",
        json!({"id_token": p.token, "task_id": task}),
    )
    .await;
    assert_eq!(running["data"]["status"], "RUNNING");

    workers.0.push(compress_worker(1));
    let done = loop {
        let d = call(
            &server,
            "/projects/download_update",
            json!({"id_token": p.token, "task_id": task}),
        )
        .await;
        if d["data"]["status"] != "RUNNING" {
            break d["data"].clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "stuck: {d}\n{}",
            log_of(&server, 1)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(done["status"], "FINISH", "{done}");
    assert_eq!(zips(&downloads).len(), 1);
    let zip = reqwest::get(done["presign_url"].as_str().unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let path = server.data_dir.join("export.zip");
    std::fs::write(&path, &zip).unwrap();
    let checked = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nassert z.testzip() is None\nprint(len(z.namelist()))",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&checked.stdout).trim(), "49");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip.to_vec())).unwrap();
    for (name, bytes) in &files {
        let mut out = Vec::new();
        std::io::Read::read_to_end(
            &mut archive.by_name(&format!("ORIGINAL/{name}")).unwrap(),
            &mut out,
        )
        .unwrap();
        assert_eq!(&out, bytes, "{name}");
    }
    drop(workers);
}

/// A named worker pool on NATS: a user assigned to it stops it, and their
/// new task is held (nothing reaches the pool's worker); when they start it
/// again the task runs on that pool's worker and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_pool_holds_its_jobs_until_started() {
    let Some(broker) = nats() else { return };
    let backend = common::backends().pop().unwrap();
    let default_pool = format!("t{}", uuid::Uuid::new_v4().simple());
    let gpu = format!("g{}", uuid::Uuid::new_v4().simple());
    let bucket = format!("p{}", uuid::Uuid::new_v4().simple());
    let server = common::Server::start_with(
        &backend,
        &[
            (broker.var, &broker.url),
            ("TESSERA_EMBEDDED_WORKERS", "false"),
            ("TESSERA_WORKER_POOL", &default_pool),
            ("S3_BUCKET", &bucket),
        ],
    )
    .await;
    let out = server.cli(&["admin", "pools", "set-capacity", &gpu, "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let login = common::signed_up_user(&server, "gia", PASSWORD).await;
    let files: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| (format!("g{i}.png"), common::png(i, 400, 300)))
        .collect();
    let p = common::project_with(&server, &login, "g", &files).await;
    call(
        &server,
        "/balancer/register_ec2",
        json!({"id_token": p.token}),
    )
    .await;
    call(
        &server,
        "/balancer/receiver",
        json!({"id_token": p.token, "action": "STOP"}),
    )
    .await;
    let _workers = Workers(vec![worker(&server, &broker, "generate", &gpu, &bucket, 0)]);

    let body = call(&server, "/generate/images", json!({"id_token": p.token, "project_id": p.id, "project_name": p.name, "ls_method_id": ["AUG-004"], "num_aug_p_img": 2, "data_number": [4, 0, 0]})).await;
    let task = body["data"]["task_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = call(
        &server,
        "/generate/task_progress",
        json!({"id_token": p.token, "task_id": task}),
    )
    .await;
    assert_eq!(held["data"]["status"], "PREPARING_DATA", "{held}");
    assert_eq!(held["data"]["number_finished"], 0);
    assert!(
        !log_of(&server, 0).contains("generation job"),
        "a stopped pool's worker got a job:\n{}",
        log_of(&server, 0)
    );
    let out = server.cli(&["admin", "pools", "--json"]);
    let pools: Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed = pools
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == gpu.as_str())
        .unwrap();
    assert_eq!(listed["running"], false);
    assert_eq!(listed["tasks_waiting"], 1);
    assert_eq!(listed["images_left"], 8);

    call(
        &server,
        "/balancer/receiver",
        json!({"id_token": p.token, "action": "START"}),
    )
    .await;
    let end = common::wait_for_task(&server, &p.token, &task).await;
    assert_eq!(end["status"], "FINISH", "{end}");
    assert_eq!(end["number_finished"], 8);
    assert!(
        log_of(&server, 0).contains("generation job"),
        "the pool's own worker did not run the jobs"
    );
    assert_eq!(common::items(&server, &p, "AUGMENT").await.len(), 8);
}

/// A worker SIGKILLed while it measures the sources of a preprocessing run
/// (the stage before the first generation batch, when the normalisation has
/// no picked reference) loses nothing: its measuring batch is redelivered
/// and recorded once, the references are chosen once, and every output is
/// brought to the brightness of the same reference image.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_while_measuring_loses_nothing() {
    let Some(broker) = nats() else { return };
    let (server, pool, bucket) = serve_without_workers(&broker).await;
    let login = common::signed_up_user(&server, "moe", PASSWORD).await;
    let s3 = common::user_s3(&server, &login);
    // Blue is 11 × the seed: twelve brightness levels.
    let files: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| (format!("m{i:02}.png"), common::png(i, 900, 600)))
        .collect();
    let p = common::project_with(&server, &login, "m", &files).await;
    let mut workers = Workers(vec![
        worker(&server, &broker, "generate", &pool, &bucket, 0),
        worker(&server, &broker, "generate", &pool, &bucket, 1),
    ]);
    let body = call(&server, "/generate/images", json!({"id_token": p.token, "project_id": p.id, "project_name": p.name, "ls_method_id": ["PRE-002"], "data_number": [12, 0, 0]})).await;
    let task = body["data"]["task_id"].as_str().unwrap().to_owned();

    wait_for_log(&server, 0, "Measure").await;
    workers.0[0].kill().unwrap();
    workers.0[0].wait().unwrap();
    workers
        .0
        .push(worker(&server, &broker, "generate", &pool, &bucket, 2));

    let end = common::wait_for_task(&server, &p.token, &task).await;
    assert_eq!(end["status"], "FINISH", "{end}");
    assert_eq!(end["number_finished"], 12);
    let items = common::items(&server, &p, "PREPROCESS").await;
    assert_eq!(items.len(), 12);
    let mut means = Vec::new();
    for item in &items {
        let bytes = common::object(&s3, &bucket, item["s3_key"].as_str().unwrap()).await;
        let img = image::load_from_memory(&bytes).unwrap().to_rgb8();
        let luma: f64 = img
            .pixels()
            .map(|p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]))
            .sum::<f64>()
            / f64::from(img.width() * img.height());
        means.push(luma);
    }
    let (lo, hi) = means
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), m| (lo.min(*m), hi.max(*m)));
    assert!(hi - lo < 1.5, "one reference for all: mean luma {means:?}");
    drop(workers);
}
