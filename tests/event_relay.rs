//! The event relay: a plain NATS client subscribed to `tessera.events.>` sees
//! every event of a workflow exactly once, in order per stream; `tessera events
//! tail` prints them for operators.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;
use tessera::adapters::store::SqlEventStore;
use tessera_domain::{EventStore, LogPosition};

fn nats_url() -> Option<String> {
    match std::env::var("TESSERA_TEST_NATS_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                !common::require_services(),
                "TESSERA_TEST_NATS_URL is required"
            );
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_nats_once_in_stream_order() {
    let Some(nats) = nats_url() else { return };
    for backend in common::backends() {
        eprintln!("event relay on {}", backend.name());
        let client = async_nats::connect(&nats).await.unwrap();
        let mut sub = client.subscribe("tessera.events.>").await.unwrap();
        client.flush().await.unwrap();
        let server = common::Server::start_with(&backend, &[("NATS_URL", &nats)]).await;
        let mut tail = std::process::Command::new(common::binary())
            .args(["events", "tail", "--subject", "tessera.events.user.>"])
            .env("NATS_URL", &nats)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;

        // A scripted workflow: sign up, confirm, log in, log out.
        let username = format!("relay_{}", backend.name());
        let data =
            common::signed_up_user(&server, &username, "a long and unusual passphrase").await;
        let r = reqwest::Client::new()
            .post(server.url("/user_logout"))
            .bearer_auth(data["token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);

        let store = SqlEventStore::connect(&server.database_url, 2)
            .await
            .unwrap();
        let stored = store.read_all(LogPosition::START, 10_000).await.unwrap();
        assert!(
            stored.len() >= 6,
            "the workflow stored {} events",
            stored.len()
        );
        let ids: HashMap<String, (String, i64)> = stored
            .iter()
            .map(|e| {
                (
                    e.event_id.to_string(),
                    (e.stream_id.clone(), e.stream_version),
                )
            })
            .collect();

        let mut seen: Vec<(String, Value)> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while seen.len() < stored.len() && Instant::now() < deadline {
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(1), sub.next()).await {
                let body: Value = serde_json::from_slice(&m.payload).unwrap();
                if ids.contains_key(body["event_id"].as_str().unwrap_or_default()) {
                    seen.push((m.subject.to_string(), body));
                }
            }
        }
        // Nothing more arrives: no duplicates.
        while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(700), sub.next()).await {
            let body: Value = serde_json::from_slice(&m.payload).unwrap();
            assert!(
                !ids.contains_key(body["event_id"].as_str().unwrap_or_default()),
                "duplicate {body}"
            );
        }
        assert_eq!(seen.len(), stored.len(), "every stored event is relayed");
        let mut last_version: HashMap<String, i64> = HashMap::new();
        for (subject, body) in &seen {
            assert_eq!(
                subject,
                &format!(
                    "tessera.events.{}.{}",
                    body["stream_type"].as_str().unwrap(),
                    body["event_type"].as_str().unwrap()
                )
            );
            let stream = body["stream_id"].as_str().unwrap().to_owned();
            let version = body["stream_version"].as_i64().unwrap();
            let prev = last_version.insert(stream, version).unwrap_or(0);
            assert_eq!(version, prev + 1, "stream order broken at {body}");
        }
        assert!(seen
            .iter()
            .any(|(s, _)| s == "tessera.events.user.SignedOut"));
        // Secrets never travel: no password hash or code in clear, only hashes.
        assert!(seen
            .iter()
            .all(|(_, b)| !b.to_string().contains("a long and unusual passphrase")));

        // The operator's tail printed the user events.
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(tail.id().to_string())
            .status();
        let out = BufReader::new(tail.stdout.take().unwrap());
        let lines: Vec<String> = out.lines().map_while(Result::ok).collect();
        let _ = tail.wait();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("tessera.events.user.UserRegistered ")),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("tessera.events.user.SignedOut ")),
            "{lines:?}"
        );
    }
}

/// Live progress: a plain NATS client subscribed to `tessera.tasks.*.progress`
/// sees a generation task move forward and end, with the numbers
/// `task_progress` gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_progress_is_published_on_nats() {
    let Some(nats) = nats_url() else { return };
    let backend = common::backends().pop().unwrap();
    let client = async_nats::connect(&nats).await.unwrap();
    let mut sub = client.subscribe("tessera.tasks.*.progress").await.unwrap();
    client.flush().await.unwrap();
    // A pool of its own: the machine's NATS is shared with other tests.
    let pool = format!("r{}", uuid::Uuid::new_v4().simple());
    let server = common::Server::start_with(
        &backend,
        &[("NATS_URL", &nats), ("TESSERA_WORKER_POOL", &pool)],
    )
    .await;
    let login = common::signed_up_user(&server, "progress", "a long and unusual passphrase").await;
    let files: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| (format!("p{i}.png"), common::png(i, 320, 240)))
        .collect();
    let p = common::project_with(&server, &login, "live", &files).await;
    let (s, body) = common::call(
        &server,
        "/generate/images",
        serde_json::json!({"id_token": p.token, "project_id": p.id, "project_name": p.name,
            "ls_method_id": ["AUG-003"], "num_aug_p_img": 2, "data_number": [6, 0, 0]}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let task = body["data"]["task_id"].as_str().unwrap().to_owned();
    let end = common::wait_for_task(&server, &p.token, &task).await;
    assert_eq!(end["status"], "FINISH", "{end}");

    let subject = format!("tessera.tasks.{task}.progress");
    let mut seen: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(1), sub.next()).await {
            Ok(Some(m)) if m.subject.as_str() == subject => {
                let body: Value = serde_json::from_slice(&m.payload).unwrap();
                let done = body["status"] == "FINISH";
                seen.push(body);
                if done {
                    break;
                }
            }
            Ok(Some(_)) => {}
            _ => {}
        }
    }
    assert!(!seen.is_empty(), "no progress on {subject}");
    let last = seen.last().unwrap();
    assert_eq!(last["status"], "FINISH", "{seen:?}");
    assert_eq!(last["task_id"], task.as_str());
    assert_eq!(last["number_finished"], end["number_finished"]);
    assert_eq!(last["number_gen_images"], 12);
    let finished: Vec<i64> = seen
        .iter()
        .map(|b| b["number_finished"].as_i64().unwrap())
        .collect();
    assert!(
        finished.windows(2).all(|w| w[0] <= w[1]),
        "progress went back: {finished:?}"
    );
}
