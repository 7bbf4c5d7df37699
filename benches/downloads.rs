//! Compress-download export throughput and worker memory.
//!
//! A `tessera serve` with the embedded S3 endpoint holds about 2 GB of JPEGs
//! (`BENCH_EXPORT_MB`, default 2048). The export runs the worker's own code
//! (`tessera_workers::compress::run_export` over the `ObjectStore` adapter:
//! GETs over HTTP, multipart upload back), in this process. In the same run,
//! on the same files as the store keeps them on local disk:
//! - `zip -0 -r` (Info-ZIP, stored entries, written to local disk);
//! - a raw copy: read every file and append it to one output file, synced.
//!
//! Throughput is input MB/s. The export runs in a child process of its own
//! (this bench binary started again with `BENCH_EXPORT_CHILD`), which holds
//! nothing but the export, like a `tessera worker`: its peak memory is that
//! process's VmHWM, read when the export is done.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tessera::adapters::storage::{ObjectStore, StorageConfig};
use tessera_domain::download::{ExportEntry, ExportSpec, ManifestEntry};
use tessera_workers::compress::Multipart;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    match std::env::var("BENCH_EXPORT_CHILD") {
        Ok(spec) => runtime.block_on(export_child(Path::new(&spec))),
        Err(_) => runtime.block_on(run()),
    }
}

/// The child: runs one export of the spec at `spec_path` against the store
/// named in the environment, then prints `<seconds> <VmHWM MB>`.
async fn export_child(spec_path: &Path) {
    let spec: ExportSpec = serde_json::from_slice(&std::fs::read(spec_path).unwrap()).unwrap();
    let var = |name: &str| std::env::var(name).unwrap();
    let store: Arc<dyn Multipart> = Arc::new(ObjectStore::new(&StorageConfig {
        endpoint: var("BENCH_S3_ENDPOINT"),
        bucket: "bench".into(),
        region: "us-east-1".into(),
        access_key: var("BENCH_S3_ACCESS_KEY"),
        secret_key: var("BENCH_S3_SECRET_KEY"),
    }));
    let t = Instant::now();
    tessera_workers::compress::run_export(&spec, store, || async {})
        .await
        .unwrap();
    let elapsed = t.elapsed().as_secs_f64();
    println!("{elapsed} {}", status_mb("VmHWM:"));
}

/// Runs the export in a child process; returns its time and peak memory.
fn export_in_child(spec_path: &Path, endpoint: &str, key: &StorageConfig) -> (Duration, f64) {
    let out = Command::new(std::env::current_exe().unwrap())
        .env("BENCH_EXPORT_CHILD", spec_path)
        .env("BENCH_S3_ENDPOINT", endpoint)
        .env("BENCH_S3_ACCESS_KEY", &key.access_key)
        .env("BENCH_S3_SECRET_KEY", &key.secret_key)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "the export child failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut words = text.split_whitespace();
    let seconds: f64 = words.next().unwrap().parse().unwrap();
    let peak: f64 = words.next().unwrap().parse().unwrap();
    (Duration::from_secs_f64(seconds), peak)
}

fn status_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

/// A photo-like JPEG of about 2.5 MB (gradients plus noise), seeded.
fn photo(seed: u32) -> Vec<u8> {
    let (w, h) = (3000u32, 2000u32);
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    let img = image::RgbImage::from_fn(w, h, |px, py| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        // Every value below is reduced to 0..=255 before it becomes a byte.
        let byte = |v: u64| u8::try_from(v % 256).unwrap_or(0);
        let n = byte(u64::from(x % 64));
        image::Rgb([
            byte(u64::from(px * 255 / w)).wrapping_add(n),
            byte(u64::from(py * 255 / h)).wrapping_add(n / 2),
            byte(u64::from(px + py + seed)).wrapping_add(n / 3),
        ])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&img)
        .unwrap();
    out
}

fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn raw_copy(files: &[std::path::PathBuf], out: &Path) -> u64 {
    let mut sink = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(out).unwrap());
    let mut n = 0;
    for f in files {
        n += std::io::copy(&mut std::fs::File::open(f).unwrap(), &mut sink).unwrap();
    }
    sink.flush().unwrap();
    sink.get_ref().sync_all().unwrap();
    n
}

/// Writes back what earlier contenders left dirty, outside any timing, so no
/// contender pays for another's writes. Each pays for its own: the store
/// syncs an object before it is placed, the raw copy syncs its file, and
/// `zip -0` is followed by a `sync`.
fn settle() {
    Command::new("sync").status().unwrap();
}

async fn run() {
    let target_mb: u64 = std::env::var("BENCH_EXPORT_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2048);
    let dir = std::env::temp_dir().join(format!("tessera-bench-downloads-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let _server = Server(
        Command::new(env!("CARGO_BIN_EXE_tessera"))
            .arg("serve")
            .arg("--data-dir")
            .arg(&dir)
            .env("TESSERA_LISTEN", "127.0.0.1:0")
            .env("TESSERA_S3_LISTEN", "127.0.0.1:0")
            .env("TESSERA_EMBEDDED_WORKERS", "false")
            .env("S3_BUCKET", "bench")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    let s3_addr = loop {
        if let Ok(a) = std::fs::read_to_string(dir.join("s3.addr")) {
            if !a.is_empty() {
                break a;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let secrets = tessera::adapters::secrets::Secrets::load(None, &dir).unwrap();
    let key = tessera::adapters::storage::embedded::server_key(&secrets);
    let endpoint = format!("http://{}", s3_addr.trim());
    let config = StorageConfig {
        endpoint: endpoint.clone(),
        bucket: "bench".into(),
        region: "us-east-1".into(),
        access_key: key.access_key,
        secret_key: key.secret_key,
    };
    let store = ObjectStore::new(&config);

    // The data: distinct photos, repeated under new names up to the target.
    let photos: Vec<Arc<Vec<u8>>> = (0..12).map(|i| Arc::new(photo(i))).collect();
    let avg = photos.iter().map(|p| p.len() as u64).sum::<u64>() / photos.len() as u64;
    let count = usize::try_from((target_mb * 1_000_000).div_ceil(avg)).unwrap();
    let names: Vec<(String, Arc<Vec<u8>>)> = (0..count)
        .map(|i| {
            (
                format!("u/p/img_{i:05}.jpg"),
                photos[i % photos.len()].clone(),
            )
        })
        .collect();
    futures::stream::iter(names.iter().map(|(k, b)| {
        let store = store.clone();
        async move { store.put(k, b.to_vec(), "image/jpeg").await.unwrap() }
    }))
    .buffer_unordered(8)
    .collect::<Vec<()>>()
    .await;
    drop(photos);
    let total: u64 = names.iter().map(|(_, b)| b.len() as u64).sum();
    let entries: Vec<ExportEntry> = names
        .iter()
        .map(|(k, b)| ExportEntry {
            key: k.clone(),
            path: format!("ORIGINAL/{}", k.rsplit('/').next().unwrap()),
            size: b.len() as u64,
        })
        .collect();
    let manifest: BTreeMap<String, ManifestEntry> = entries
        .iter()
        .map(|e| {
            (
                e.path.clone(),
                ManifestEntry {
                    name: e.path.clone(),
                    type_of_image: "ORIGINAL".into(),
                    class: Some("TRAIN".into()),
                    method_to_create: vec![],
                    size: e.size,
                    name_of_project: "bench".into(),
                },
            )
        })
        .collect();
    drop(names);
    let spec = ExportSpec {
        zip_key: "u/p/download/bench.zip".into(),
        entries,
        manifest,
    };
    let spec_path = dir.join("spec.json");
    std::fs::write(&spec_path, serde_json::to_vec(&spec).unwrap()).unwrap();
    let folder = dir.join("objects").join("bench").join("u").join("p");
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert_eq!(files.len(), count);
    let out_dir = dir.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    // Warm the page cache for every contender alike.
    raw_copy(&files, &out_dir.join("warm"));
    std::fs::remove_file(out_dir.join("warm")).unwrap();

    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mut ours = Vec::new();
    let mut zip0 = Vec::new();
    let mut raw = Vec::new();
    let mut peak = 0f64;
    for _ in 0..rounds {
        settle();
        let (took, child_peak) = export_in_child(&spec_path, &endpoint, &config);
        ours.push(took);
        peak = peak.max(child_peak);
        let size = std::fs::metadata(
            dir.join("objects")
                .join("bench")
                .join("u/p/download/bench.zip"),
        )
        .unwrap()
        .len();
        assert!(size > total);

        let zip_out = out_dir.join("peer.zip");
        let _ = std::fs::remove_file(&zip_out);
        settle();
        let t = Instant::now();
        let status = Command::new("zip")
            .args(["-0", "-r", "-q"])
            .arg(&zip_out)
            .arg("p")
            .current_dir(folder.parent().unwrap())
            .status()
            .unwrap();
        assert!(status.success());
        settle();
        zip0.push(t.elapsed());
        std::fs::remove_file(&zip_out).unwrap();

        settle();
        let t = Instant::now();
        assert_eq!(raw_copy(&files, &out_dir.join("raw")), total);
        raw.push(t.elapsed());
        std::fs::remove_file(out_dir.join("raw")).unwrap();
    }
    let each = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.0}", mb_per_s(total, *d)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "MB/s per round: export {}; zip -0 {}; raw copy {}",
        each(&ours),
        each(&zip0),
        each(&raw)
    );
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (o, z, r) = (median(&mut ours), median(&mut zip0), median(&mut raw));
    let (o, z, r) = (mb_per_s(total, o), mb_per_s(total, z), mb_per_s(total, r));
    println!(
        "{count} JPEGs, {:.0} MB; median of {rounds} rounds",
        total as f64 / 1e6
    );
    println!("| what | MB/s | ours ÷ it |");
    println!("|---|---|---|");
    println!("| export (worker code, S3 GETs → zip → multipart upload) | {o:.0} | 1.00× |");
    println!("| `zip -0 -r` from local disk | {z:.0} | {:.2}× |", o / z);
    println!(
        "| raw read + write of the same bytes | {r:.0} | {:.2}× |",
        o / r
    );
    println!("export peak memory (VmHWM of the exporting child process): {peak:.0} MB");
    let _ = std::fs::remove_dir_all(&dir);
}
