//! Projections: the runner follows the log, `rebuild` reproduces the live rows,
//! `verify` passes on a faithful read model and fails on a tampered one. The
//! operator commands run as real processes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::Row;
use tessera::adapters::store::SqlEventStore;
use tessera::follow::{self, projections as runner};
use tessera_domain::{EventStore, ExpectedVersion, NewEvent, StreamRef};

async fn counts(store: &SqlEventStore) -> Vec<(String, String, i64)> {
    sqlx::query("SELECT stream_type, event_type, events FROM event_counts ORDER BY 1, 2")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

fn run_cli(dir: &std::path::Path, url: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(common::binary())
        .args(args)
        .env("TESSERA_DATA_DIR", dir)
        .env("DATABASE_URL", url)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rebuild_and_verify_after_thousands_of_events() {
    for backend in common::backends() {
        eprintln!("projections on {}", backend.name());
        let dir = common::temp_dir("projections");
        let url = common::fresh_database(&backend, &dir).await;
        let store = SqlEventStore::connect(&url, 8).await.unwrap();
        runner::ensure_checkpoints(&store).await.unwrap();

        // 3,000 events of four types over 300 streams.
        let mut expected = std::collections::BTreeMap::new();
        for s in 0..300 {
            let (stream_type, kinds) = if s % 3 == 0 {
                ("note", ["NoteAdded", "NoteEdited"])
            } else {
                ("ledger", ["EntryBooked", "EntryCleared"])
            };
            let stream = StreamRef::new(stream_type, format!("{stream_type}-{s}"));
            let events: Vec<_> = (0..10)
                .map(|i| NewEvent::new(kinds[i % 2], 1, json!({"i": i, "s": s})))
                .collect();
            for e in &events {
                *expected
                    .entry((stream_type.to_owned(), e.event_type.clone()))
                    .or_insert(0i64) += 1;
            }
            store
                .append(&stream, ExpectedVersion::NoStream, events)
                .await
                .unwrap();
        }
        let expected: Vec<_> = expected.into_iter().map(|((a, b), n)| (a, b, n)).collect();

        // A live runner catches up by itself.
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let projection = tessera_projections::asynchronous().remove(0);
        let task = tokio::spawn(follow::run(
            store.clone(),
            follow::Follower::Projection(projection),
            store.appended(),
            stop_rx,
        ));
        let started = Instant::now();
        while counts(&store).await != expected {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "runner never caught up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.send(true).unwrap();
        task.await.unwrap();
        let status = runner::status(&store).await.unwrap();
        assert_eq!(
            status
                .iter()
                .find(|s| s.name == "event_counts")
                .unwrap()
                .lag,
            0
        );

        // Idempotent apply: applying a batch again changes nothing.
        let again = store.read_all(Default::default(), 100).await.unwrap();
        let mut conn = store.pool().acquire().await.unwrap();
        for e in &again {
            use tessera_projections::Projection;
            tessera_projections::event_counts::EventCounts
                .apply(&mut conn, e)
                .await
                .unwrap();
        }
        drop(conn);
        assert_eq!(counts(&store).await, expected);

        // `status` as an operator sees it.
        let out = run_cli(&dir, &url, &["projections", "status"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("event_counts"), "{text}");

        // Rebuild yields the same rows.
        let out = run_cli(&dir, &url, &["projections", "rebuild", "event_counts"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("3000 events replayed"));
        assert_eq!(counts(&store).await, expected);

        let out = run_cli(&dir, &url, &["projections", "rebuild", "no_such"]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("no projection named"));

        // Verify passes, then fails once a row is tampered with, then passes again
        // after a rebuild.
        let out = run_cli(&dir, &url, &["projections", "verify"]);
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        sqlx::query(
            "UPDATE event_counts SET events = events + 1 WHERE event_type = 'EntryCleared'",
        )
        .execute(store.pool())
        .await
        .unwrap();
        let out = run_cli(&dir, &url, &["projections", "verify"]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("MISMATCH event_counts.event_counts"));
        sqlx::query("DELETE FROM event_counts WHERE event_type = 'NoteAdded'")
            .execute(store.pool())
            .await
            .unwrap();
        let out = run_cli(&dir, &url, &["projections", "verify"]);
        assert_eq!(out.status.code(), Some(1));
        let out = run_cli(&dir, &url, &["projections", "rebuild"]);
        assert!(out.status.success());
        let out = run_cli(&dir, &url, &["projections", "verify"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(counts(&store).await, expected);
    }
}
