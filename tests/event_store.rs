//! The event-log contract suite, run on every backend: append, conflicts,
//! ordering, reading after a position, gap safety, upcasting.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::json;
use tessera::adapters::store::SqlEventStore;
use tessera_domain::{
    EventStore, ExpectedVersion, LogPosition, Metadata, NewEvent, StoreError, StreamRef, Upcasters,
};

async fn store_for(backend: &common::Backend) -> SqlEventStore {
    let dir = common::temp_dir("store");
    let url = common::fresh_database(backend, &dir).await;
    SqlEventStore::connect(&url, 16).await.unwrap()
}

fn note(n: i64) -> NewEvent {
    NewEvent::new("NoteAdded", 2, json!({"n": n, "text": "x".repeat(40)}))
}

async fn append_read_and_conflicts(store: &SqlEventStore) {
    let stream = StreamRef::new("note", format!("note-{}", uuid::Uuid::new_v4()));
    let meta = Metadata {
        correlation_id: Some(uuid::Uuid::new_v4()),
        causation_id: Some(uuid::Uuid::new_v4()),
        actor: Some("user-1".into()),
        request_id: Some("req-1".into()),
    };
    let out = store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![note(1).with_metadata(meta.clone()), note(2)],
        )
        .await
        .unwrap();
    assert_eq!(out.stream_version, 2);
    assert!(out.events[0].global_position < out.events[1].global_position);

    // NoStream on an existing stream, a stale Exact and a future Exact all conflict.
    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(1),
        ExpectedVersion::Exact(5),
    ] {
        match store.append(&stream, expected, vec![note(9)]).await {
            Err(StoreError::Conflict { actual, .. }) => assert_eq!(actual, 2),
            other => panic!("expected a conflict for {expected:?}, got {other:?}"),
        }
    }
    store
        .append(&stream, ExpectedVersion::Exact(2), vec![note(3)])
        .await
        .unwrap();
    store
        .append(&stream, ExpectedVersion::Any, vec![note(4)])
        .await
        .unwrap();

    let events = store.read_stream(&stream.stream_id).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(
        events
            .iter()
            .map(|e| e.payload["n"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(events[0].metadata, meta);
    assert_eq!(events[0].event_id, out.events[0].event_id);
    assert_eq!(events[0].stream_type, "note");
    assert!(store
        .read_stream("no-such-stream")
        .await
        .unwrap()
        .is_empty());
}

async fn concurrent_appends_to_one_stream_have_one_winner(store: &SqlEventStore) {
    let stream = StreamRef::new("note", format!("race-{}", uuid::Uuid::new_v4()));
    store
        .append(&stream, ExpectedVersion::NoStream, vec![note(0)])
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        let stream = stream.clone();
        tasks.push(tokio::spawn(async move {
            store
                .append(&stream, ExpectedVersion::Exact(1), vec![note(i)])
                .await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(won, 1, "exactly one writer may win the race for version 2");
    assert_eq!(store.read_stream(&stream.stream_id).await.unwrap().len(), 2);
}

async fn read_all_in_batches(store: &SqlEventStore) {
    let start = store.head().await.unwrap();
    let mut ids = Vec::new();
    for s in 0..5 {
        let stream = StreamRef::new("note", format!("batch-{s}-{}", uuid::Uuid::new_v4()));
        let events: Vec<_> = (0..7).map(note).collect();
        ids.extend(events.iter().map(|e| e.event_id));
        store
            .append(&stream, ExpectedVersion::NoStream, events)
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut at = start;
    loop {
        let batch = store.read_all(at, 4).await.unwrap();
        assert!(batch.len() <= 4);
        let Some(last) = batch.last() else { break };
        for w in batch.windows(2) {
            assert!(
                w[0].log_position < w[1].log_position,
                "log order is strictly increasing"
            );
        }
        assert!(batch[0].log_position > at);
        at = last.log_position;
        seen.extend(batch.iter().map(|e| e.event_id));
    }
    assert_eq!(seen, ids);
    assert_eq!(store.head().await.unwrap(), at);
}

async fn upcasting(store: &SqlEventStore) {
    fn v1_to_v2(mut p: serde_json::Value) -> serde_json::Value {
        let old = p["name"].take();
        p.as_object_mut().unwrap().remove("name");
        p["title"] = old;
        p
    }
    let stream = StreamRef::new("note", format!("old-{}", uuid::Uuid::new_v4()));
    store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![NewEvent::new("NoteRenamed", 1, json!({"name": "first"}))],
        )
        .await
        .unwrap();
    let upcasting =
        store
            .clone()
            .with_upcasters(Upcasters::new().register("NoteRenamed", 1, v1_to_v2));
    let events = upcasting.read_stream(&stream.stream_id).await.unwrap();
    assert_eq!(events[0].event_version, 2);
    assert_eq!(events[0].payload, json!({"title": "first"}));
    // The stored row keeps its original schema.
    let raw = store.read_stream(&stream.stream_id).await.unwrap();
    assert_eq!(raw[0].event_version, 1);
    assert_eq!(raw[0].payload, json!({"name": "first"}));
}

/// Many writers append concurrently (some transactions held open so they commit
/// after later positions) while a follower reads by log position. The follower
/// must see every event exactly once, in increasing log order, and every stream's
/// events in version order.
async fn gap_safety(store: &SqlEventStore, writers: usize, per_writer: usize) {
    let start = store.head().await.unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let follower = {
        let store = store.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut at = start;
            let mut seen = Vec::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                let batch = store.read_all(at, 50).await.unwrap();
                if batch.is_empty() {
                    if finished {
                        break;
                    }
                    tokio::task::yield_now().await;
                    continue;
                }
                for e in &batch {
                    assert!(e.log_position > at, "follower went backwards");
                    at = e.log_position;
                    seen.push((e.event_id, e.stream_id.clone(), e.stream_version));
                }
            }
            seen
        })
    };
    let mut tasks = Vec::new();
    let mut expected = HashSet::new();
    for w in 0..writers {
        let store = store.clone();
        let events: Vec<Vec<NewEvent>> = (0..per_writer)
            .map(|i| vec![note(i as i64), note(-(i as i64))])
            .collect();
        for batch in &events {
            expected.extend(batch.iter().map(|e| e.event_id));
        }
        tasks.push(tokio::spawn(async move {
            let stream = StreamRef::new("note", format!("gap-{w}-{}", uuid::Uuid::new_v4()));
            let mut version = 0;
            for batch in events {
                let out = store
                    .append(&stream, ExpectedVersion::Exact(version), batch)
                    .await
                    .unwrap();
                version = out.stream_version;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let seen = follower.await.unwrap();
    let ids: HashSet<_> = seen.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(ids.len(), seen.len(), "an event was delivered twice");
    assert_eq!(ids, expected, "the follower missed events");
    let mut last: HashMap<String, i64> = HashMap::new();
    for (_, stream, version) in &seen {
        let prev = last.insert(stream.clone(), *version).unwrap_or(0);
        assert_eq!(*version, prev + 1, "stream {stream} out of order");
    }
}

/// PostgreSQL only: a transaction takes a position, then stays open while later
/// positions commit. A follower must not pass the open transaction's event.
async fn late_commit_is_not_skipped(url: &str, store: &SqlEventStore) {
    use sqlx::Connection;
    let start = store.head().await.unwrap();
    let mut slow = sqlx::PgConnection::connect(url).await.unwrap();
    let mut tx = slow.begin().await.unwrap();
    let slow_id = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO events (event_id, stream_type, stream_id, stream_version, event_type, event_version, payload, metadata) \
         VALUES ($1::uuid, 'note', $2, 1, 'NoteAdded', 2, '{}', '{}')",
    )
    .bind(slow_id.to_string())
    .bind(format!("slow-{slow_id}"))
    .execute(&mut *tx)
    .await
    .unwrap();
    let fast = StreamRef::new("note", format!("fast-{}", uuid::Uuid::new_v4()));
    let out = store
        .append(&fast, ExpectedVersion::NoStream, vec![note(1)])
        .await
        .unwrap();
    let first = store.read_all(start, 100).await.unwrap();
    assert!(
        first.iter().all(|e| e.event_id != out.events[0].event_id),
        "the follower read past a transaction still in flight"
    );
    tx.commit().await.unwrap();
    let after = store.read_all(start, 100).await.unwrap();
    let ids: Vec<_> = after.iter().map(|e| e.event_id).collect();
    let slow_at = ids
        .iter()
        .position(|i| *i == slow_id)
        .expect("late commit visible");
    let fast_at = ids
        .iter()
        .position(|i| *i == out.events[0].event_id)
        .expect("fast visible");
    assert!(
        slow_at < fast_at,
        "the older transaction's event comes first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_log_contract() {
    for backend in common::backends() {
        eprintln!("event log contract on {}", backend.name());
        let store = store_for(&backend).await;
        append_read_and_conflicts(&store).await;
        concurrent_appends_to_one_stream_have_one_winner(&store).await;
        read_all_in_batches(&store).await;
        upcasting(&store).await;
        gap_safety(&store, 8, 25).await;
        if let common::Backend::Postgres(_) = backend {
            late_commit_is_not_skipped(&store_url(&store), &store).await;
        }
        let head = store.head().await.unwrap();
        assert!(head > LogPosition::START);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gap_safety_under_many_concurrent_postgres_writers() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    let backend = common::Backend::Postgres(server);
    let store = store_for(&backend).await;
    gap_safety(&store, 32, 60).await;
}

fn store_url(store: &SqlEventStore) -> String {
    store.url().to_owned()
}

#[tokio::test]
async fn bad_database_url_is_a_clear_error() {
    let err = SqlEventStore::connect("mysql://nobody@127.0.0.1/x", 1)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("postgres:// or sqlite:"), "{err}");
    let err = SqlEventStore::connect("postgres://u:secret@127.0.0.1:1/none", 1)
        .await
        .err()
        .unwrap();
    let text = err.to_string();
    assert!(text.contains("cannot connect"), "{text}");
    assert!(!text.contains("secret"), "the password leaked: {text}");
}
