//! Generation workers: image methods against albumentations, end to end
//! against libjpeg-turbo, and the peak memory of two concurrent jobs.
//!
//! `cargo bench -p tessera-workers --bench imaging`
//!
//! 1. Methods: photo-like images are written as PNG to a temp dir; our
//!    methods run on the decoded pixels in memory, one thread, then
//!    `benches/peers/albumentations_methods.py` loads the same PNGs and runs
//!    albumentations with the same fixed parameters. Images/s per method and
//!    the ratio, then the geometric mean of the ratios.
//! 2. End to end: 12-megapixel photo-like JPEGs; decode → AUG-011 → encode →
//!    store through `generate::run_job` on one core, beside Pillow and OpenCV
//!    (both libjpeg-turbo) decoding and re-encoding the same files at the same
//!    quality and chroma subsampling.
//! 3. Memory: a child process runs two jobs at once on 4000×4000 JPEGs and
//!    reports its peak RSS (VmHWM).
//!
//! The Python peers live in a venv under `~/.cache/tessera-bench-py`, created
//! (pip: albumentations, opencv-python-headless, pillow, numpy) when missing.
//! `TESSERA_BENCH_SECONDS` sets the minimum time per measurement (default 1.5);
//! `TESSERA_BENCH_ROUNDS` how often both sides are measured, alternately
//! (default 3; each side's best round counts, which keeps a noisy
//! neighbour on the virtual machine from deciding a ratio);
//! `TESSERA_BENCH_ONLY=methods,e2e,memory` runs only the parts named, and
//! `TESSERA_BENCH_METHODS=AUG-003,PRE-001` only those methods.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use image::metadata::Orientation;
use image::{Rgb, RgbImage};
use serde_json::{json, Value};
use tessera_domain::generation::{ParamValue, Params, SampledMethod, SplitMix64};
use tessera_domain::project::data::ClassType;
use tessera_domain::task::{GenerateJob, JobItem, JobOutput, TaskKind};
use tessera_workers::generate::{self, ObjectError, Objects};
use tessera_workers::imaging::{self, encode, Context, DecodeLimits, OutputFormat};

/// Images of the method comparison: 1920×1080, a common dataset size.
const METHOD_SIZE: (u32, u32) = (1920, 1080);
const METHOD_IMAGES: u64 = 4;
/// 12 megapixels, 4:3.
const PHOTO_SIZE: (u32, u32) = (4000, 3000);
const PHOTOS: u64 = 4;
const MEMORY_SIZE: (u32, u32) = (4000, 4000);
const MEMORY_TARGET_MB: f64 = 600.0;

/// The methods both sides have, with fixed parameters. PRE-009 resizes to
/// the reference's size; its `width`/`height` are the reference's, for the
/// peer.
fn method_cases() -> Vec<(&'static str, &'static str, Params)> {
    let f = |pairs: &[(&str, f64)]| {
        pairs
            .iter()
            .fold(Params::new(), |p, (k, v)| p.with(k, ParamValue::Float(*v)))
    };
    let i = |pairs: &[(&str, i64)], extra: &[(&str, f64)]| {
        let p = pairs
            .iter()
            .fold(Params::new(), |p, (k, v)| p.with(k, ParamValue::Int(*v)));
        extra
            .iter()
            .fold(p, |p, (k, v)| p.with(k, ParamValue::Float(*v)))
    };
    vec![
        ("AUG-000", "rotate 30°", f(&[("degrees", 30.0)])),
        ("AUG-001", "scale ×1.5", f(&[("scale", 1.5)])),
        (
            "AUG-002",
            "translate 10%, 10%",
            f(&[("translate_x", 0.1), ("translate_y", 0.1)]),
        ),
        ("AUG-003", "horizontal flip", Params::new()),
        ("AUG-004", "vertical flip", Params::new()),
        (
            "AUG-005",
            "crop 512×512 (centre)",
            i(
                &[("width", 512), ("height", 512)],
                &[("x", 0.5), ("y", 0.5)],
            ),
        ),
        (
            "AUG-007",
            "erase 10%, aspect 1",
            i(
                &[("value", 0)],
                &[("area", 0.1), ("aspect", 1.0), ("x", 0.5), ("y", 0.5)],
            ),
        ),
        (
            "AUG-008",
            "gaussian noise σ 0.1",
            f(&[("mean", 0.0), ("std", 0.1)]),
        ),
        (
            "AUG-009",
            "gaussian blur 7, σ 2",
            i(&[("kernel_size", 7)], &[("sigma", 2.0)]),
        ),
        ("AUG-010", "sharpness ×2 (≈ Sharpen)", f(&[("factor", 2.0)])),
        ("AUG-011", "brightness ×1.5", f(&[("factor", 1.5)])),
        ("AUG-012", "hue +0.1 turn", f(&[("shift", 0.1)])),
        ("AUG-013", "saturation ×1.5", f(&[("factor", 1.5)])),
        ("AUG-014", "contrast ×1.5", f(&[("factor", 1.5)])),
        (
            "AUG-015",
            "solarize at 0.5",
            f(&[("threshold", 0.5), ("addition", 0.0)]),
        ),
        ("AUG-016", "posterize 4 bits", i(&[("bits", 4)], &[])),
        ("AUG-017", "upscale ×2 (Lanczos)", i(&[("factor", 2)], &[])),
        ("PRE-001", "grayscale", Params::new()),
        (
            "PRE-008",
            "equalize histogram",
            f(&[("low_contrast_fraction", 1.0)]),
        ),
        ("PRE-009", "resize to 1280×720 (Lanczos)", Params::new()),
    ]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--memory-child") {
        memory_child(Path::new(&args[pos + 1]));
        return;
    }
    let min_seconds: f64 = std::env::var("TESSERA_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.5);
    let rounds: usize = std::env::var("TESSERA_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let dir = std::env::temp_dir().join(format!("tessera-imaging-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let python = python_env();

    println!("# Generation workers\n");
    println!(
        "machine: {}, {} CPUs available; one thread per side; best of {rounds} alternating rounds per side",
        cpu_model(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    // `TESSERA_BENCH_ONLY=methods,e2e,memory` picks parts (all by default).
    let only = std::env::var("TESSERA_BENCH_ONLY").unwrap_or_default();
    let wanted = |part: &str| only.is_empty() || only.split(',').any(|p| p == part);
    if wanted("methods") {
        methods(&dir, &python, min_seconds, rounds);
    }
    if wanted("e2e") {
        end_to_end(&dir, &python, min_seconds, rounds);
    }
    if wanted("memory") {
        memory(&dir);
    }
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------------- inputs

/// A photo-like image: smooth shading and colour at several scales, hard
/// region edges, fine texture and per-pixel sensor noise, so that JPEG sizes
/// and codec work are those of real photos.
#[expect(
    clippy::cast_possible_truncation,
    reason = "noise in −1..1 as f32, grid cells of non-negative positions, channels clamped to 0..=255"
)]
fn photo(w: u32, h: u32, seed: u64) -> RgbImage {
    let mut rng = SplitMix64::new(seed);
    // One value-noise field: a random grid, smoothly interpolated.
    struct Field {
        cell: f32,
        cols: usize,
        grid: Vec<f32>,
    }
    let mut field = |cell: u32| {
        let cols = (w / cell + 3) as usize;
        let rows = (h / cell + 3) as usize;
        let grid = (0..cols * rows)
            .map(|_| rng.next_f64() as f32 * 2.0 - 1.0)
            .collect();
        Field {
            cell: cell as f32,
            cols,
            grid,
        }
    };
    let at = |f: &Field, x: u32, y: u32| {
        let (fx, fy) = (x as f32 / f.cell, y as f32 / f.cell);
        let (ix, iy) = (fx as usize, fy as usize);
        let (tx, ty) = (fx - ix as f32, fy - iy as f32);
        let (sx, sy) = (tx * tx * (3.0 - 2.0 * tx), ty * ty * (3.0 - 2.0 * ty));
        let g = |c: usize, r: usize| f.grid[r * f.cols + c];
        let top = g(ix, iy) + (g(ix + 1, iy) - g(ix, iy)) * sx;
        let bottom = g(ix, iy + 1) + (g(ix + 1, iy + 1) - g(ix, iy + 1)) * sx;
        top + (bottom - top) * sy
    };
    let luma = [field(400), field(97), field(23), field(5), field(2)];
    let amp = [70.0, 35.0, 18.0, 10.0, 6.0];
    let regions = field(180);
    let chroma = [field(300), field(300), field(61), field(61)];
    let mut noise = SplitMix64::new(seed ^ 0x5EED);
    RgbImage::from_fn(w, h, |x, y| {
        let mut l = 120.0;
        for (f, a) in luma.iter().zip(amp) {
            l += a * at(f, x, y);
        }
        // Objects: regions with their own brightness, with sharp borders.
        let r = at(&regions, x, y);
        l += if r > 0.25 {
            35.0
        } else if r < -0.3 {
            -30.0
        } else {
            0.0
        };
        let cb = 40.0 * at(&chroma[0], x, y) + 12.0 * at(&chroma[2], x, y);
        let cr = 40.0 * at(&chroma[1], x, y) + 12.0 * at(&chroma[3], x, y);
        let bits = noise.next_u64();
        let n = |k: u32| ((bits >> (16 * k)) & 0xFF) as f32 / 255.0 * 10.0 - 5.0;
        Rgb([
            (l + 1.4 * cr + n(0)).round().clamp(0.0, 255.0) as u8,
            (l - 0.34 * cb - 0.71 * cr + n(1)).round().clamp(0.0, 255.0) as u8,
            (l + 1.77 * cb + n(2)).round().clamp(0.0, 255.0) as u8,
        ])
    })
}

fn write_png(path: &Path, img: &RgbImage) {
    std::fs::write(path, encode(img, OutputFormat::Png).unwrap()).unwrap();
}

// ---------------------------------------------------------------- timing

/// Items per second of `f` over `items`, repeated for at least `min_seconds`
/// after one warm-up call.
fn rate<T>(items: &[T], min_seconds: f64, mut f: impl FnMut(&T)) -> f64 {
    f(&items[0]);
    let start = Instant::now();
    let mut done = 0usize;
    loop {
        for item in items {
            f(item);
        }
        done += items.len();
        let elapsed = start.elapsed().as_secs_f64();
        if elapsed >= min_seconds {
            return done as f64 / elapsed;
        }
    }
}

fn geo_mean(values: &[f64]) -> f64 {
    (values.iter().map(|v| v.ln()).sum::<f64>() / values.len() as f64).exp()
}

// ---------------------------------------------------------------- python

fn python_env() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let venv = PathBuf::from(home).join(".cache/tessera-bench-py");
    let python = venv.join("bin/python");
    let ready = python.exists()
        && Command::new(&python)
            .args(["-c", "import albumentations, cv2, PIL, numpy"])
            .status()
            .is_ok_and(|s| s.success());
    if !ready {
        eprintln!("creating the peer venv in {}", venv.display());
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "python3 -m venv failed");
        let ok = Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "-q",
                "albumentations",
                "opencv-python-headless",
                "pillow",
                "numpy",
            ])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "pip install of the peers failed");
    }
    python
}

/// Runs the peer script in `mode` with `spec`; returns its JSON lines.
fn peer(python: &Path, dir: &Path, mode: &str, spec: &Value) -> Vec<Value> {
    let spec_path = dir.join(format!("{mode}.json"));
    std::fs::write(&spec_path, serde_json::to_vec(spec).unwrap()).unwrap();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/peers/albumentations_methods.py");
    let out = Command::new(python)
        .arg(script)
        .arg(mode)
        .arg(&spec_path)
        .env("OMP_NUM_THREADS", "1")
        .env("OPENBLAS_NUM_THREADS", "1")
        .env("MKL_NUM_THREADS", "1")
        .env("OPENCV_FOR_THREADS_NUM", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "peer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn peer_rate(lines: &[Value], id: &str) -> f64 {
    lines
        .iter()
        .find(|l| l["id"] == id)
        .and_then(|l| l["ips"].as_f64())
        .unwrap_or_else(|| panic!("the peer did not report {id}"))
}

// ---------------------------------------------------------------- 1. methods

fn methods(dir: &Path, python: &Path, min_seconds: f64, rounds: usize) {
    let (w, h) = METHOD_SIZE;
    let images: Vec<RgbImage> = (0..METHOD_IMAGES).map(|i| photo(w, h, 100 + i)).collect();
    let mut paths = Vec::new();
    for (i, img) in images.iter().enumerate() {
        let p = dir.join(format!("method_{i}.png"));
        write_png(&p, img);
        paths.push(p.display().to_string());
    }
    let reference = RgbImage::new(1280, 720);
    // `TESSERA_BENCH_METHODS=AUG-003,PRE-001` measures only those.
    let picked = std::env::var("TESSERA_BENCH_METHODS").unwrap_or_default();
    let cases: Vec<_> = method_cases()
        .into_iter()
        .filter(|(id, _, _)| picked.is_empty() || picked.split(',').any(|p| p == *id))
        .collect();

    let spec = json!({
        "images": paths,
        "min_seconds": min_seconds,
        "methods": cases.iter().map(|(id, _, params)| {
            let mut p = serde_json::to_value(params).unwrap();
            if *id == "PRE-009" {
                p = json!({ "width": reference.width(), "height": reference.height() });
            }
            json!({ "id": id, "params": p })
        }).collect::<Vec<_>>(),
    });
    let mut ours = vec![0.0f64; cases.len()];
    let mut best_peer = vec![0.0f64; cases.len()];
    let mut lines = Vec::new();
    for _ in 0..rounds {
        for ((id, _, params), best) in cases.iter().zip(ours.iter_mut()) {
            let ctx = Context {
                reference: Some(&reference),
                orientation: Orientation::NoTransforms,
            };
            let ips = rate(&images, min_seconds, |img| {
                let mut rng = SplitMix64::new(7);
                let out = black_box(imaging::apply(id, params, img, &ctx, &mut rng).unwrap());
                // As `run_pipeline` does with each step's input.
                imaging::buffers::give(out.into_raw());
            });
            *best = best.max(ips);
        }
        lines = peer(python, dir, "methods", &spec);
        for ((id, _, _), best) in cases.iter().zip(best_peer.iter_mut()) {
            *best = best.max(peer_rate(&lines, id));
        }
    }
    println!("\n## Methods ({w}×{h}, {METHOD_IMAGES} photo-like images, decoded, one thread)\n");
    println!("peer: {}\n", lines[0]);
    println!("| method | parameters | tessera (img/s) | albumentations (img/s) | ratio |");
    println!("|---|---|---:|---:|---:|");
    let mut ratios = Vec::new();
    for (((id, label, _), ours), theirs) in cases.iter().zip(&ours).zip(&best_peer) {
        let ratio = ours / theirs;
        ratios.push(ratio);
        println!("| {id} | {label} | {ours:.1} | {theirs:.1} | {ratio:.2} |");
    }
    let (worst_i, worst) = ratios
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, r)| (i, *r))
        .unwrap();
    let gm = geo_mean(&ratios);
    println!(
        "\ngeometric mean of the ratios: {gm:.2} (target ≥ 1.5: {}); lowest: {} {worst:.2} (target ≥ 0.8: {})",
        met(gm >= 1.5),
        cases[worst_i].0,
        met(worst >= 0.8)
    );
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

// ---------------------------------------------------------------- storage

/// Object storage in memory. With `discard_puts`, outputs are counted and
/// dropped, as an upload would free them.
#[derive(Default)]
struct MemoryObjects {
    objects: Mutex<HashMap<String, Vec<u8>>>,
    discard_puts: bool,
}

#[async_trait::async_trait]
impl Objects for MemoryObjects {
    async fn get(&self, key: &str) -> Result<Vec<u8>, ObjectError> {
        self.objects
            .lock()
            .unwrap()
            .get(key)
            .cloned()
            .ok_or_else(|| ObjectError::Missing(key.to_owned()))
    }

    async fn put(&self, key: &str, body: Vec<u8>, _content_type: &str) -> Result<(), ObjectError> {
        if self.discard_puts {
            black_box(body);
            return Ok(());
        }
        self.objects.lock().unwrap().insert(key.to_owned(), body);
        Ok(())
    }
}

fn step(method_id: &str, params: Params, seed: u64) -> SampledMethod {
    SampledMethod {
        method_id: method_id.to_owned(),
        params,
        pixel_seed: seed,
    }
}

fn job(task: &str, keys: &[String], outputs: &[Vec<SampledMethod>]) -> GenerateJob {
    GenerateJob {
        task_id: task.to_owned(),
        batch_no: 0,
        kind: TaskKind::Augment,
        items: keys
            .iter()
            .enumerate()
            .map(|(i, key)| JobItem {
                filename: format!("{i}.jpg"),
                key: key.clone(),
                classtype: ClassType::Train,
                outputs: outputs
                    .iter()
                    .enumerate()
                    .map(|(n, steps)| JobOutput {
                        filename: format!("{i}_{n}.jpg"),
                        s3_key: format!("bucket/{task}/{i}_{n}.jpg"),
                        key: format!("{task}/{i}_{n}.jpg"),
                        steps: steps.clone(),
                    })
                    .collect(),
            })
            .collect(),
        references: BTreeMap::new(),
        stage: Default::default(),
        measure: Vec::new(),
    }
}

// ---------------------------------------------------------------- 2. end to end

fn end_to_end(dir: &Path, python: &Path, min_seconds: f64, rounds: usize) {
    let (w, h) = PHOTO_SIZE;
    let mut files = Vec::new();
    let mut paths = Vec::new();
    for i in 0..PHOTOS {
        let bytes = encode(&photo(w, h, 200 + i), OutputFormat::Jpeg).unwrap();
        let p = dir.join(format!("photo_{i}.jpg"));
        std::fs::write(&p, &bytes).unwrap();
        paths.push(p.display().to_string());
        files.push(bytes);
    }
    let mean_size = files.iter().map(Vec::len).sum::<usize>() as f64 / files.len() as f64;

    // Ours: the job path, on a current-thread runtime (its blocking pool
    // runs one image at a time, so one core works).
    let store = Arc::new(MemoryObjects::default());
    let keys: Vec<String> = (0..files.len()).map(|i| format!("src/{i}.jpg")).collect();
    for (key, bytes) in keys.iter().zip(&files) {
        store
            .objects
            .lock()
            .unwrap()
            .insert(key.clone(), bytes.clone());
    }
    let brightness = step(
        "AUG-011",
        Params::new().with("factor", ParamValue::Float(1.2)),
        1,
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .build()
        .unwrap();
    let single: Vec<GenerateJob> = keys
        .iter()
        .map(|k| job("e2e", std::slice::from_ref(k), &[vec![brightness.clone()]]))
        .collect();
    // Jobs per second over `jobs`, each checked for `outputs` outputs.
    let job_rate = |jobs: &[GenerateJob], outputs: usize| {
        rate(jobs, min_seconds, |j| {
            let result = rt
                .block_on(generate::run_job(
                    j,
                    store.as_ref(),
                    DecodeLimits::default(),
                    || async {},
                ))
                .unwrap();
            assert_eq!(result.outputs.len(), outputs, "{:?}", result.failures);
        })
    };
    let run_ours = || job_rate(&single, 1);
    let spec = json!({
        "images": paths,
        "min_seconds": min_seconds,
        "quality": imaging::encode::JPEG_QUALITY,
        "pillow_subsampling": PILLOW_SUBSAMPLING,
        "opencv_sampling": OPENCV_SAMPLING,
    });
    // The job path and the peer's round trips, alternately; the rest below
    // only shows where the time goes.
    let (mut ours, mut pillow, mut opencv) = (0.0f64, 0.0f64, 0.0f64);
    let mut lines = Vec::new();
    for _ in 0..rounds {
        ours = ours.max(run_ours());
        lines = peer(python, dir, "codec", &spec);
        pillow = pillow.max(peer_rate(&lines, "pillow_roundtrip"));
        opencv = opencv.max(peer_rate(&lines, "opencv_roundtrip"));
    }
    let out_size = store.objects.lock().unwrap()["e2e/0_0.jpg"].len();
    // Three outputs per source, as `num_aug_p_img` 3 asks: one decode, three
    // pipelines and encodes. Output images per second.
    let three: Vec<Vec<SampledMethod>> = (1..=3)
        .map(|seed| vec![step("AUG-011", brightness.params.clone(), seed)])
        .collect();
    let triple: Vec<GenerateJob> = keys
        .iter()
        .map(|k| job("e2e3", std::slice::from_ref(k), &three))
        .collect();
    let ours_three = 3.0 * job_rate(&triple, 3);
    // Where our time goes.
    let decoded: Vec<RgbImage> = files
        .iter()
        .map(|f| imaging::decode(f, &DecodeLimits::default()).unwrap().image)
        .collect();
    // Each image gives its buffer back, as the job path does.
    let our_decode = rate(&files, min_seconds, |f| {
        let d = black_box(imaging::decode(f, &DecodeLimits::default()).unwrap());
        imaging::buffers::give(d.image.into_raw());
    });
    let our_encode = rate(&decoded, min_seconds, |img| {
        black_box(encode(img, OutputFormat::Jpeg).unwrap());
    });
    let mut rng = SplitMix64::new(1);
    let our_method = rate(&decoded, min_seconds, |img| {
        let out = black_box(
            imaging::apply(
                "AUG-011",
                &brightness.params,
                img,
                &Context::default(),
                &mut rng,
            )
            .unwrap(),
        );
        imaging::buffers::give(out.into_raw());
    });

    let pillow_bytes = lines
        .iter()
        .find(|l| l["id"] == "pillow_roundtrip")
        .and_then(|l| l["bytes"].as_u64())
        .unwrap_or(0);
    println!(
        "\n## End to end ({w}×{h} photo-like JPEGs, {PHOTOS} files, mean {:.2} MB, quality {}, chroma {SUBSAMPLING_LABEL}, one core)\n",
        mean_size / 1e6,
        imaging::encode::JPEG_QUALITY
    );
    println!("peer: {}\n", lines[0]);
    println!("| measurement | images/s |");
    println!("|---|---:|");
    println!("| tessera: decode → AUG-011 → encode → store (run_job) | {ours:.2} |");
    println!("| tessera: 3 outputs per source (one decode), outputs/s | {ours_three:.2} |");
    println!("| Pillow (libjpeg-turbo): decode → encode | {pillow:.2} |");
    println!("| OpenCV (libjpeg-turbo): imdecode → imencode | {opencv:.2} |");
    println!("| tessera decode alone | {our_decode:.2} |");
    println!(
        "| Pillow decode alone | {:.2} |",
        peer_rate(&lines, "pillow_decode")
    );
    println!("| tessera encode alone | {our_encode:.2} |");
    println!(
        "| Pillow encode alone | {:.2} |",
        peer_rate(&lines, "pillow_encode")
    );
    println!("| tessera AUG-011 alone | {our_method:.2} |");
    let ceiling = pillow.max(opencv);
    let ratio = ours / ceiling;
    println!(
        "\noutput size: tessera {:.2} MB, Pillow {:.2} MB",
        out_size as f64 / 1e6,
        pillow_bytes as f64 / 1e6
    );
    println!(
        "ratio to the codec ceiling (faster of Pillow and OpenCV): {ratio:.2} (target ≥ 0.9: {})",
        met(ratio >= 0.9)
    );
}

/// Chroma subsampling of our JPEG encoder (none: every component at full
/// resolution), told to the peers so they encode alike: Pillow's
/// `subsampling=0`, OpenCV's `IMWRITE_JPEG_SAMPLING_FACTOR_444`.
const SUBSAMPLING_LABEL: &str = "4:4:4";
const PILLOW_SUBSAMPLING: u32 = 0;
const OPENCV_SAMPLING: u32 = 0x0011_1111;

// ---------------------------------------------------------------- 3. memory

fn memory(dir: &Path) {
    let (w, h) = MEMORY_SIZE;
    for i in 0..3u64 {
        let bytes = encode(&photo(w, h, 300 + i), OutputFormat::Jpeg).unwrap();
        std::fs::write(dir.join(format!("mem_{i}.jpg")), bytes).unwrap();
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .arg("--memory-child")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "memory child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let value: Value = serde_json::from_str(text.trim()).unwrap();
    let peak = value["peak_mb"].as_f64().unwrap();
    println!("\n## Peak memory (2 concurrent jobs, {w}×{h} JPEGs)\n");
    println!(
        "each job: 3 sources × 2 outputs (rotate 30° → gaussian noise; scale ×1.5 → gaussian blur 7), through generate::run_job on a 2-thread runtime"
    );
    println!(
        "baseline RSS {:.0} MB (sources in memory), peak RSS (VmHWM) {peak:.0} MB, {:.1} s (target < {MEMORY_TARGET_MB} MB: {})",
        value["baseline_mb"].as_f64().unwrap(),
        value["seconds"].as_f64().unwrap(),
        met(peak < MEMORY_TARGET_MB)
    );
}

fn status_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn memory_child(dir: &Path) {
    let store = Arc::new(MemoryObjects {
        discard_puts: true,
        ..MemoryObjects::default()
    });
    let mut keys = Vec::new();
    for i in 0..3 {
        let bytes = std::fs::read(dir.join(format!("mem_{i}.jpg"))).unwrap();
        let key = format!("src/{i}.jpg");
        store.objects.lock().unwrap().insert(key.clone(), bytes);
        keys.push(key);
    }
    let outputs = vec![
        vec![
            step(
                "AUG-000",
                Params::new().with("degrees", ParamValue::Float(30.0)),
                1,
            ),
            step(
                "AUG-008",
                Params::new()
                    .with("mean", ParamValue::Float(0.0))
                    .with("std", ParamValue::Float(0.1)),
                2,
            ),
        ],
        vec![
            step(
                "AUG-001",
                Params::new().with("scale", ParamValue::Float(1.5)),
                3,
            ),
            step(
                "AUG-009",
                Params::new()
                    .with("kernel_size", ParamValue::Int(7))
                    .with("sigma", ParamValue::Float(2.0)),
                4,
            ),
        ],
    ];
    let jobs = [job("a", &keys, &outputs), job("b", &keys, &outputs)];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let baseline = status_mb("VmRSS:");
    let start = Instant::now();
    rt.block_on(async {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|j| {
                let store = store.clone();
                tokio::spawn(async move {
                    generate::run_job(&j, store.as_ref(), DecodeLimits::default(), || async {})
                        .await
                        .unwrap()
                })
            })
            .collect();
        for handle in handles {
            let result = handle.await.unwrap();
            assert_eq!(result.outputs.len(), 6, "{:?}", result.failures);
        }
    });
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "baseline_mb": baseline,
            "peak_mb": status_mb("VmHWM:"),
            "seconds": seconds,
        })
    );
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or_else(|| "unknown CPU".to_owned(), |m| m.trim().to_owned())
}
