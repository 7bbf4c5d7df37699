//! Separate worker processes on NATS: `tessera serve --no-workers` plus two
//! `tessera worker` processes; one is killed (SIGKILL) in the middle of a job,
//! and the task still finishes with exactly the expected outputs, once each.

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
