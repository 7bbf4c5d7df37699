//! Separate worker processes on NATS: `tessera serve --no-workers` plus two
//! `tessera worker` processes; one is killed (SIGKILL) in the middle of a job,
//! and the task still finishes with exactly the expected outputs, once each.
//! A compress worker killed after the first part of its zip leaves no zip
//! visible, and the redelivered job builds a valid one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const PASSWORD: &str = "a long and unusual passphrase";

fn nats_url() -> Option<String> {
    match std::env::var("TESSERA_TEST_NATS_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ if common::require_services() => panic!("TESSERA_TEST_NATS_URL is required"),
        _ => {
            eprintln!("note: TESSERA_TEST_NATS_URL unset; worker process tests skipped");
            None
        }
    }
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

fn worker(server: &common::Server, nats: &str, pool: &str, bucket: &str, n: usize) -> Child {
    let log = std::fs::File::create(server.data_dir.join(format!("worker{n}.log"))).unwrap();
    Command::new(common::binary())
        .arg("worker")
        .arg("--data-dir")
        .arg(&server.data_dir)
        .args(["--jobs", "generate"])
        .env("NATS_URL", nats)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_worker_loses_and_duplicates_nothing() {
    let Some(nats) = nats_url() else { return };
    let backend = common::backends().pop().unwrap();
    let pool = format!("t{}", uuid::Uuid::new_v4().simple());
    let bucket = format!("w{}", uuid::Uuid::new_v4().simple());
    let server = common::Server::start_with(
        &backend,
        &[
            ("NATS_URL", &nats),
            ("TESSERA_EMBEDDED_WORKERS", "false"),
            ("TESSERA_WORKER_POOL", &pool),
            ("TESSERA_JOB_ACK_WAIT_SECS", "3"),
            ("S3_BUCKET", &bucket),
        ],
    )
    .await;
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
        worker(&server, &nats, &pool, &bucket, 0),
        worker(&server, &nats, &pool, &bucket, 1),
    ]);
    let body = call(&server, "/generate/images", json!({"id_token": token, "project_id": pid, "project_name": "k", "ls_method_id": ["AUG-000", "AUG-009"], "num_aug_p_img": 3, "data_number": [12, 0, 0]})).await;
    let task = body["data"]["task_id"].as_str().unwrap().to_owned();

    // Kill worker 0 as soon as it is inside a job.
    let started = Instant::now();
    while !log_of(&server, 0).contains("generation job") {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "worker 0 never got a job:\n{}",
            log_of(&server, 0)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    workers.0[0].kill().unwrap();
    workers.0[0].wait().unwrap();
    let progress = call(
        &server,
        "/generate/task_progress",
        json!({"id_token": token, "task_id": task}),
    )
    .await;
    eprintln!(
        "killed worker 0 at {}/{} outputs",
        progress["data"]["number_finished"], progress["data"]["number_gen_images"]
    );
    workers.0.push(worker(&server, &nats, &pool, &bucket, 2));

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
}

/// The first part file of an open multipart upload in the embedded store.
fn uploaded_part(data_dir: &std::path::Path) -> bool {
    let Ok(uploads) = std::fs::read_dir(data_dir.join("objects").join(".uploads")) else {
        return false;
    };
    uploads.flatten().any(|u| {
        std::fs::read_dir(u.path())
            .map(|parts| parts.flatten().any(|p| p.file_name() != "upload.json"))
            .unwrap_or(false)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_compress_worker_leaves_no_broken_zip() {
    let Some(nats) = nats_url() else { return };
    let backend = common::backends().pop().unwrap();
    let bucket = format!("z{}", uuid::Uuid::new_v4().simple());
    let server = common::Server::start_with(
        &backend,
        &[
            ("NATS_URL", &nats),
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
                    x as u8
                })
                .collect();
            (format!("z{i:02}.jpg"), bytes)
        })
        .collect();
    let p = common::project_with(&server, &login, "z", &files).await;
    let compress_worker = |n: usize| {
        let log = std::fs::File::create(server.data_dir.join(format!("worker{n}.log"))).unwrap();
        Command::new(common::binary())
            .arg("worker")
            .arg("--data-dir")
            .arg(&server.data_dir)
            .args(["--jobs", "compress"])
            .env("NATS_URL", &nats)
            .env("TESSERA_JOB_ACK_WAIT_SECS", "3")
            .env("S3_BUCKET", &bucket)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap()
    };
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
