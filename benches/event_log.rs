//! Event-log benchmark: append throughput (single-event and 100-event commits)
//! and full replay speed, on SQLite and PostgreSQL, each beside the raw SQL doing
//! the same work in the same run.
//!
//! PostgreSQL peers: `pgbench` running the same INSERT (one row, and 100 rows per
//! transaction) and `COPY (SELECT …) TO STDOUT` into /dev/null for reading.
//! SQLite peers: the same statements through a bare sqlx connection.
//!
//! Run: `cargo bench --bench event_log` (PostgreSQL when TESSERA_BENCH_POSTGRES_URL
//! or TESSERA_TEST_POSTGRES_URL is set). Prints a Markdown table.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::Command;
use std::time::Instant;

use serde_json::json;
use sqlx::Connection;
use tessera::adapters::store::SqlEventStore;
use tessera_domain::{EventStore, ExpectedVersion, LogPosition, NewEvent, StreamRef};

const SINGLE_COMMITS: usize = 2_000;
const BATCH_COMMITS: usize = 300;
const BATCH: usize = 100;
const REPLAY_EVENTS: usize = 200_000;

fn payload(i: usize) -> serde_json::Value {
    // ~500 bytes of JSON, the size of a typical data-item event.
    json!({
        "project_id": "project_A_c02ea544e58c4fbf89ef310b13f05621",
        "filename": format!("image_{i:08}.jpg"),
        "s3_key": format!("client-data/us-east-2:b7a49377-572d-45bd-bc80-6038a5933579/project_A_c02ea544e58c4fbf89ef310b13f05621/image_{i:08}.jpg"),
        "size": 123_456 + i,
        "hash": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "type_method": "ORIGINAL",
        "classtype": "TRAIN",
        "gen_id": "",
        "is_ori": true,
        "note": "x".repeat(120),
    })
}

fn event(i: usize) -> NewEvent {
    NewEvent::new("DataItemUploaded", 1, payload(i))
}

struct Row {
    backend: &'static str,
    what: &'static str,
    ours: f64,
    peer: f64,
    peer_name: String,
}

async fn measure_ours(store: &SqlEventStore) -> (f64, f64, f64) {
    // Single-event commits, one stream per commit (no contention).
    let started = Instant::now();
    for i in 0..SINGLE_COMMITS {
        let stream = StreamRef::new("bench", format!("single-{i}"));
        store
            .append(&stream, ExpectedVersion::NoStream, vec![event(i)])
            .await
            .unwrap();
    }
    let single = SINGLE_COMMITS as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    for c in 0..BATCH_COMMITS {
        let stream = StreamRef::new("bench", format!("batch-{c}"));
        let events = (0..BATCH).map(|i| event(c * BATCH + i)).collect();
        store
            .append(&stream, ExpectedVersion::NoStream, events)
            .await
            .unwrap();
    }
    let batched = (BATCH_COMMITS * BATCH) as f64 / started.elapsed().as_secs_f64();

    // Fill up to REPLAY_EVENTS, then replay everything in log order.
    let mut have = SINGLE_COMMITS + BATCH_COMMITS * BATCH;
    let mut c = 0;
    while have < REPLAY_EVENTS {
        let stream = StreamRef::new("bench", format!("fill-{c}"));
        let events = (0..1000).map(|i| event(have + i)).collect();
        store
            .append(&stream, ExpectedVersion::NoStream, events)
            .await
            .unwrap();
        have += 1000;
        c += 1;
    }
    let started = Instant::now();
    let mut at = LogPosition::START;
    let mut n = 0usize;
    loop {
        let batch = store.read_all(at, 5000).await.unwrap();
        let Some(last) = batch.last() else { break };
        at = last.log_position;
        n += batch.len();
    }
    let replay = n as f64 / started.elapsed().as_secs_f64();
    (single, batched, replay)
}

const COLUMNS: &str = "INSERT INTO events (event_id, stream_type, stream_id, stream_version, event_type, event_version, payload, metadata, recorded_at) VALUES ";

fn pgbench(url: &str, script: &str, transactions: usize) -> f64 {
    let path = std::env::temp_dir().join(format!(
        "tessera-bench-{}.sql",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&path, script).unwrap();
    let out = Command::new("pgbench")
        .args(["-n", "-c", "1", "-t", &transactions.to_string(), "-f"])
        .arg(&path)
        .arg(url)
        .output()
        .expect("pgbench on PATH");
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&out.stdout);
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| {
            panic!(
                "pgbench failed: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    tps
}

async fn postgres(server: &str, rows: &mut Vec<Row>) {
    let name = format!("tessera_bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(server).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let base = &server[..server.rfind('/').unwrap()];
    let url = format!("{base}/{name}");
    let store = SqlEventStore::connect(&url, 4).await.unwrap();
    let (single, batched, replay) = measure_ours(&store).await;

    // The same INSERTs, by pgbench; pgbench variables make each row unique.
    let p = payload(1).to_string().replace('\'', "''");
    let single_script = format!(
        "{COLUMNS}(gen_random_uuid(), 'bench', gen_random_uuid()::text, 1, 'DataItemUploaded', 1, '{p}', '{{}}', now());\n"
    );
    let raw_single = pgbench(&url, &single_script, SINGLE_COMMITS);
    let mut batch_script = String::from("BEGIN;\n");
    batch_script.push_str(COLUMNS);
    for v in 0..BATCH {
        if v > 0 {
            batch_script.push(',');
        }
        batch_script.push_str(&format!(
            "(gen_random_uuid(), 'bench', 'rawb-' || :client_id || '-' || :random_stream, {}, 'DataItemUploaded', 1, '{p}', '{{}}', now())",
            v + 1
        ));
    }
    batch_script.push_str(";\nCOMMIT;\n");
    let batch_script = format!("\\set random_stream random(1, 1000000000000)\n{batch_script}");
    let raw_batch = pgbench(&url, &batch_script, BATCH_COMMITS) * BATCH as f64;

    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let started = Instant::now();
    let out = Command::new("psql")
        .arg(&url)
        .args(["-qAt", "-c", "COPY (SELECT global_position, tx_id, event_id, stream_type, stream_id, stream_version, event_type, event_version, payload, metadata, recorded_at FROM events ORDER BY tx_id, global_position) TO STDOUT"])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(out.success());
    let raw_read = total as f64 / started.elapsed().as_secs_f64();

    rows.push(Row {
        backend: "PostgreSQL",
        what: "append, 1 event per commit (events/s)",
        ours: single,
        peer: raw_single,
        peer_name: "pgbench, same INSERT".into(),
    });
    rows.push(Row {
        backend: "PostgreSQL",
        what: "append, 100 events per commit (events/s)",
        ours: batched,
        peer: raw_batch,
        peer_name: "pgbench, same 100-row INSERT".into(),
    });
    rows.push(Row {
        backend: "PostgreSQL",
        what: "full replay (events/s)",
        ours: replay,
        peer: raw_read,
        peer_name: format!("COPY TO /dev/null ({total} rows)"),
    });
    store.pool().close().await;
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
}

async fn sqlite(rows: &mut Vec<Row>) {
    let dir = std::env::temp_dir().join(format!("tessera-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("bench.db").display());
    let store = SqlEventStore::connect(&url, 4).await.unwrap();
    let (single, batched, replay) = measure_ours(&store).await;

    // The same parameterised INSERT on a bare sqlx SQLite connection with the
    // same pragmas: the statement our adapter sends, without the adapter.
    let mut raw = sqlx::SqliteConnection::connect(&url).await.unwrap();
    for pragma in tessera::adapters::store::sqlite::CONNECTION_PRAGMAS {
        sqlx::raw_sql(pragma).execute(&mut raw).await.unwrap();
    }
    // The adapter's own INSERT text for SQLite.
    let sql = &tessera::adapters::store::sqlite::SQL;
    let statement = |rows: usize| {
        let mut text = String::from(sql.insert_prefix);
        for r in 0..rows {
            if r > 0 {
                text.push(',');
            }
            text.push_str(&(sql.insert_row)(r * 9 + 1));
        }
        text
    };
    async fn insert(
        raw: &mut sqlx::SqliteConnection,
        sql: &str,
        first: usize,
        rows: usize,
        stream: &str,
    ) {
        let mut q = sqlx::query(sql);
        for v in 0..rows {
            q = q
                .bind(uuid::Uuid::now_v7().to_string())
                .bind("bench")
                .bind(stream.to_owned())
                .bind((v + 1) as i64)
                .bind("DataItemUploaded")
                .bind(1i32)
                .bind(payload(first + v).to_string())
                .bind("{}")
                .bind(0i64);
        }
        let mut tx = raw.begin_with("BEGIN IMMEDIATE").await.unwrap();
        q.execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
    }
    let one = statement(1);
    let started = Instant::now();
    for i in 0..SINGLE_COMMITS {
        insert(&mut raw, &one, i, 1, &format!("raw-{i}")).await;
    }
    let raw_single = SINGLE_COMMITS as f64 / started.elapsed().as_secs_f64();
    let hundred = statement(BATCH);
    let started = Instant::now();
    for c in 0..BATCH_COMMITS {
        insert(&mut raw, &hundred, c * BATCH, BATCH, &format!("rawb-{c}")).await;
    }
    let raw_batch = (BATCH_COMMITS * BATCH) as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let all = sqlx::query("SELECT global_position, tx_id, event_id, stream_type, stream_id, stream_version, event_type, event_version, payload, metadata, recorded_at FROM events ORDER BY tx_id, global_position")
        .fetch_all(&mut raw)
        .await
        .unwrap();
    let raw_read = all.len() as f64 / started.elapsed().as_secs_f64();
    rows.push(Row {
        backend: "SQLite",
        what: "append, 1 event per commit (events/s)",
        ours: single,
        peer: raw_single,
        peer_name: "bare sqlx, same parameterised INSERT".into(),
    });
    rows.push(Row {
        backend: "SQLite",
        what: "append, 100 events per commit (events/s)",
        ours: batched,
        peer: raw_batch,
        peer_name: "bare sqlx, same parameterised 100-row INSERT".into(),
    });
    rows.push(Row {
        backend: "SQLite",
        what: "full replay (events/s)",
        ours: replay,
        peer: raw_read,
        peer_name: format!("bare sqlx SELECT ({} rows)", all.len()),
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mut rows = Vec::new();
    sqlite(&mut rows).await;
    let pg = std::env::var("TESSERA_BENCH_POSTGRES_URL")
        .or_else(|_| std::env::var("TESSERA_TEST_POSTGRES_URL"))
        .ok();
    match pg {
        Some(url) => postgres(&url, &mut rows).await,
        None => eprintln!("PostgreSQL skipped: set TESSERA_BENCH_POSTGRES_URL"),
    }
    println!("| backend | measurement | tessera | peer | peer measured | ratio |");
    println!("|---|---|---:|---:|---|---:|");
    for r in rows {
        println!(
            "| {} | {} | {:.0} | {:.0} | {} | {:.2} |",
            r.backend,
            r.what,
            r.ours,
            r.peer,
            r.peer_name,
            r.ours / r.peer
        );
    }
}
