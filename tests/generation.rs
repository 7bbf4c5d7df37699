//! Generation over HTTP and S3 on every backend: the catalog, augmentation
//! with a split and several methods, reproduction from the recorded seed,
//! preprocessing (auto mode and the grayscale rule), per-image failures for
//! corrupt and oversized images, the median reference image of the
//! normalisations, and the checks of a request.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::call;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

const PASSWORD: &str = "a long and unusual passphrase";

/// A 1×1 PNG whose header claims 60000×60000 (CRC fixed, so only the size
/// gives it away).
fn forged_png() -> Vec<u8> {
    let mut png = common::png(1, 1, 1);
    // IHDR data starts at byte 16: width, height (big endian).
    png[16..20].copy_from_slice(&60000u32.to_be_bytes());
    png[20..24].copy_from_slice(&60000u32.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn augment_preprocess_and_reproduce() {
    for backend in common::backends() {
        eprintln!("generation on {}", backend.name());
        let bucket = format!("g{}", uuid::Uuid::new_v4().simple());
        let server = common::Server::start_with(&backend, &[("S3_BUCKET", &bucket)]).await;
        let login = common::signed_up_user(&server, "gina", PASSWORD).await;
        let s3 = common::user_s3(&server, &login);
        let files: Vec<(String, Vec<u8>)> = (0..30)
            .map(|i| (format!("img_{i:02}.png"), common::png(i, 64 + i, 48)))
            .collect();
        let p = common::project_with(&server, &login, "gen", &files).await;

        // The catalog.
        let (s, body) = call(
            &server,
            "/generate/list_method",
            json!({"id_token": p.token}),
        )
        .await;
        assert_eq!(s, 200);
        let aug: Vec<&str> = body["data"]["augmentation"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["method_id"].as_str().unwrap())
            .collect();
        let pre: Vec<&str> = body["data"]["preprocessing"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["method_id"].as_str().unwrap())
            .collect();
        assert_eq!(aug.len(), 18);
        assert!(!pre.contains(&"PRE-007") && pre.len() == 9, "{pre:?}");
        assert_eq!(
            body["data"]["augmentation"][0]["method_name"],
            "random_rotate"
        );

        // Requests that must be refused, each with nothing recorded.
        let base = json!({"id_token": p.token, "project_id": p.id, "project_name": p.name, "ls_method_id": ["AUG-003"], "num_aug_p_img": 1, "data_number": [20, 5, 5]});
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            b
        };
        for (bad, status) in [
            (with("ls_method_id", json!(["AUG-999"])), 400),
            (with("ls_method_id", json!(["PRE-007"])), 400),
            (with("ls_method_id", json!(["AUG-003", "PRE-001"])), 400),
            (with("data_number", json!([20, 20, 20])), 400),
            (with("data_number", json!([20, -1, 0])), 400),
            (with("data_number", json!([0, 5, 5])), 400),
            (with("data_number", json!([1, 2])), 400),
            (with("num_aug_p_img", json!(0)), 400),
            (with("num_aug_p_img", json!(6)), 400),
            (with("project_id", json!("someone_else_0123")), 404),
            (with("parameters", json!({"AUG-003": {"nope": 1}})), 400),
        ] {
            let (s, body) = call(&server, "/generate/images", bad.clone()).await;
            assert_eq!(s.as_u16(), status, "{bad} -> {body}");
        }

        // Augment: 20 TRAIN images × 3 outputs, several methods.
        let request = with(
            "ls_method_id",
            json!(["AUG-003", "AUG-011", "AUG-014", "AUG-000"]),
        );
        let request = {
            let mut r = request;
            r["num_aug_p_img"] = json!(3);
            r
        };
        let (s, body) = call(&server, "/generate/images", request.clone()).await;
        assert_eq!(s, 200, "{body}");
        let task = body["data"]["task_id"].as_str().unwrap().to_owned();
        let seed = body["data"]["seed"].as_u64().unwrap();
        assert_eq!(body["data"]["times_generated"], 1);
        let end = common::wait_for_task(&server, &p.token, &task).await;
        assert_eq!(end["status"], "FINISH", "{end}");
        assert_eq!(
            (
                end["number_finished"].as_i64(),
                end["number_gen_images"].as_i64()
            ),
            (Some(60), Some(60))
        );
        let augmented = common::items(&server, &p, "AUGMENT").await;
        assert_eq!(augmented.len(), 60);
        assert!(augmented.iter().all(|i| i["classtype"] == "TRAIN"));
        assert!(augmented.iter().all(|i| i["s3_key"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/{task}/", p.prefix))));
        let (_, info) = call(
            &server,
            "/projects/info",
            json!({"id_token": p.token, "project_name": p.name}),
        )
        .await;
        assert_eq!(
            info["data"]["groups"]["ORIGINAL"]["data_number"],
            json!([20, 5, 5])
        );
        assert_eq!(info["data"]["groups"]["AUGMENT"]["count"], 60);
        assert_eq!(info["data"]["times_generated"], 1);
        let originals = common::items(&server, &p, "ORIGINAL").await;
        let split: BTreeMap<&str, usize> = originals.iter().fold(BTreeMap::new(), |mut m, i| {
            *m.entry(i["classtype"].as_str().unwrap()).or_default() += 1;
            m
        });
        assert_eq!(
            split,
            BTreeMap::from([("TEST", 5), ("TRAIN", 20), ("VAL", 5)])
        );
        // Real images in storage, of the recorded size.
        for item in augmented.iter().take(6) {
            let bytes = common::object(&s3, &bucket, item["s3_key"].as_str().unwrap()).await;
            assert_eq!(bytes.len() as i64, item["size"].as_i64().unwrap());
            image::load_from_memory(&bytes).unwrap();
        }

        // The same seed on the same data: byte-identical outputs.
        let mut again = request.clone();
        again["seed"] = json!(seed);
        let (s, body) = call(&server, "/generate/images", again).await;
        assert_eq!(s, 200, "{body}");
        let task2 = body["data"]["task_id"].as_str().unwrap().to_owned();
        assert_eq!(
            common::wait_for_task(&server, &p.token, &task2).await["status"],
            "FINISH"
        );
        let by_task = |t: &str| -> BTreeMap<String, String> {
            let short: String = t
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(8)
                .collect();
            items_cache(&augmented, t, &short)
        };
        let all_aug = common::items(&server, &p, "AUGMENT").await;
        assert_eq!(all_aug.len(), 120);
        let first = by_task(&task);
        let second = items_cache(
            &all_aug,
            &task2,
            &task2
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(8)
                .collect::<String>(),
        );
        assert_eq!(first.len(), 60);
        assert_eq!(
            first.keys().collect::<Vec<_>>(),
            second.keys().collect::<Vec<_>>()
        );
        for (logical, key) in first.iter().take(12) {
            let a = common::object(&s3, &bucket, key).await;
            let b = common::object(&s3, &bucket, &second[logical]).await;
            assert!(a == b, "{logical} differs between runs with seed {seed}");
        }

        // Preprocessing, auto mode: every image once.
        let pre = json!({"id_token": p.token, "project_id": p.id, "project_name": p.name, "ls_method_id": [], "data_number": [30, 0, 0]});
        let (s, body) = call(&server, "/generate/images", pre).await;
        assert_eq!(s, 200, "{body}");
        let t = body["data"]["task_id"].as_str().unwrap().to_owned();
        assert_eq!(
            common::wait_for_task(&server, &p.token, &t).await["status"],
            "FINISH"
        );
        let pre_items = common::items(&server, &p, "PREPROCESS").await;
        assert_eq!(pre_items.len(), 30);
        assert!(!pre_items[0]["gen_id"].as_str().unwrap().contains("PRE-001"));
        // The grayscale rule: with PRE-001 only PRE-000/001/009 run; the
        // new set replaces the old one.
        let gray = json!({"id_token": p.token, "project_id": p.id, "project_name": p.name, "ls_method_id": ["PRE-001", "PRE-002"], "data_number": [30, 0, 0]});
        let (s, body) = call(&server, "/generate/images", gray).await;
        assert_eq!(s, 200, "{body}");
        let t = body["data"]["task_id"].as_str().unwrap().to_owned();
        assert_eq!(
            common::wait_for_task(&server, &p.token, &t).await["status"],
            "FINISH"
        );
        let pre_items = common::items(&server, &p, "PREPROCESS").await;
        assert_eq!(
            pre_items.len(),
            30,
            "the previous PREPROCESS set is replaced"
        );
        assert!(
            pre_items.iter().all(|i| i["gen_id"] == "PRE-001"),
            "{pre_items:?}"
        );
        let bytes = common::object(&s3, &bucket, pre_items[0]["s3_key"].as_str().unwrap()).await;
        let img = image::load_from_memory(&bytes).unwrap().to_rgb8();
        assert!(
            img.pixels().all(|p| p[0] == p[1] && p[1] == p[2]),
            "grayscale"
        );

        // Corrupt and oversized images fail alone; the task ends FINISH_ERROR.
        let mut mixed: Vec<(String, Vec<u8>)> = (0..4)
            .map(|i| (format!("ok_{i}.png"), common::png(50 + i, 20, 20)))
            .collect();
        mixed.push((
            "corrupt.png".into(),
            b"\x89PNG\r\n\x1a\nthis is not an image".to_vec(),
        ));
        mixed.push(("huge.png".into(), forged_png()));
        let q = common::project_with(&server, &login, "broken", &mixed).await;
        let req = json!({"id_token": q.token, "project_id": q.id, "project_name": q.name, "ls_method_id": ["AUG-004"], "num_aug_p_img": 2, "data_number": [6, 0, 0]});
        let (s, body) = call(&server, "/generate/images", req).await;
        assert_eq!(s, 200, "{body}");
        let t = body["data"]["task_id"].as_str().unwrap().to_owned();
        let end = common::wait_for_task(&server, &q.token, &t).await;
        assert_eq!(end["status"], "FINISH_ERROR", "{end}");
        assert_eq!(end["number_finished"], 8);
        let failed: Vec<&str> = end["failures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["filename"].as_str().unwrap())
            .collect();
        assert_eq!(failed, ["corrupt.png", "huge.png"]);
        assert_eq!(common::items(&server, &q, "AUGMENT").await.len(), 8);

        let out = server.cli(&["projections", "verify"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// Augment outputs of one task by their name without the task's short id.
fn items_cache(items: &[Value], task: &str, short: &str) -> BTreeMap<String, String> {
    items
        .iter()
        .filter(|i| i["s3_key"].as_str().unwrap().contains(&format!("/{task}/")))
        .map(|i| {
            (
                i["filename"].as_str().unwrap().replace(short, ""),
                i["s3_key"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// With no workers running, a task waits: a second one in the same project
/// and deleting the project are refused; cancel ends it; the live progress
/// stream reports it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_waiting_task_blocks_and_cancels() {
    let backend = common::backends().remove(0);
    let server =
        common::Server::start_with(&backend, &[("TESSERA_EMBEDDED_WORKERS", "false")]).await;
    let login = common::signed_up_user(&server, "hank", PASSWORD).await;
    let files: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| (format!("a{i}.png"), common::png(i, 10, 10)))
        .collect();
    let p = common::project_with(&server, &login, "waiting", &files).await;
    let req = json!({"id_token": p.token, "project_id": p.id, "project_name": p.name, "ls_method_id": ["AUG-003"], "data_number": [3, 0, 0]});
    let (s, body) = call(&server, "/generate/images", req.clone()).await;
    assert_eq!(s, 200, "{body}");
    let task = body["data"]["task_id"].as_str().unwrap().to_owned();
    let (s, body) = call(&server, "/generate/images", req.clone()).await;
    assert_eq!(s, 409, "{body}");
    let (s, body) = call(
        &server,
        "/projects/delete",
        json!({"id_token": p.token, "project_id": p.id}),
    )
    .await;
    assert_eq!(s, 409, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("1 tasks"),
        "{body}"
    );
    let (_, info) = call(
        &server,
        "/projects/info",
        json!({"id_token": p.token, "project_name": p.name}),
    )
    .await;
    assert_eq!(info["data"]["ls_task"], json!([task]));

    // The push channel: the first event is the current state.
    let url = server.url(&format!(
        "/generate/task_progress/stream?task_id={task}&id_token={}",
        p.token
    ));
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut r = r;
    let first = String::from_utf8(r.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    assert!(
        first.starts_with("data: ") && first.contains(&task),
        "{first}"
    );
    let other = common::signed_up_user(&server, "ivy", PASSWORD).await;
    let foreign = server.url(&format!(
        "/generate/task_progress/stream?task_id={task}&id_token={}",
        other["id_token"].as_str().unwrap()
    ));
    assert_eq!(reqwest::get(&foreign).await.unwrap().status(), 404);

    let (s, body) = call(
        &server,
        "/generate/cancel",
        json!({"id_token": p.token, "task_id": task}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    // The stream reports the end and closes.
    let mut rest = String::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), r.chunk())
        .await
        .unwrap()
        .unwrap()
    {
        rest.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(rest.contains("\"CANCEL\""), "{rest}");
    let (s, _) = call(
        &server,
        "/generate/cancel",
        json!({"id_token": p.token, "task_id": task}),
    )
    .await;
    assert_eq!(s, 409);
    let (s, body) = call(&server, "/generate/images", req).await;
    assert_eq!(s, 200, "a cancelled task no longer blocks: {body}");
}

/// A flat grey PNG.
fn grey_png(level: u8, width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(width, height, image::Rgb([level; 3]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn mean_level(bytes: &[u8]) -> f64 {
    let img = image::load_from_memory(bytes).unwrap().to_rgb8();
    img.as_raw().iter().map(|v| f64::from(*v)).sum::<f64>() / img.as_raw().len() as f64
}

/// PRE-002 without a picked reference brings every image to the brightness
/// of the project's image with the median brightness (measured by the
/// workers first, over the whole project); a picked reference wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn normalisation_uses_the_median_image_unless_one_is_picked() {
    for backend in common::backends() {
        eprintln!("median reference on {}", backend.name());
        let bucket = format!("m{}", uuid::Uuid::new_v4().simple());
        // Five images make two batches (four per job), so the measuring
        // spans two jobs.
        let server = common::Server::start_with(&backend, &[("S3_BUCKET", &bucket)]).await;
        let login = common::signed_up_user(&server, "mira", PASSWORD).await;
        let s3 = common::user_s3(&server, &login);
        // Names in another order than brightness; the median level is 120.
        let levels = [200u8, 30, 160, 120, 70];
        let files: Vec<(String, Vec<u8>)> = levels
            .iter()
            .enumerate()
            .map(|(i, l)| (format!("grey_{i}.png"), grey_png(*l, 24, 16)))
            .collect();
        let p = common::project_with(&server, &login, "median", &files).await;
        // The median is the project's, also when the run selects only part
        // of it (two images: their own median is 120 in 2 of 10 draws).
        for (picked, selected, want) in [
            (None, 5, 120.0),
            (Some("grey_1.png"), 5, 30.0),
            (None, 2, 120.0),
        ] {
            let mut req = json!({"id_token": p.token, "project_id": p.id, "project_name": p.name, "ls_method_id": ["PRE-002"], "data_number": [selected, 0, 0], "seed": 7});
            if let Some(name) = picked {
                req["reference_images"] = json!({"PRE-002": name});
            }
            let (s, body) = call(&server, "/generate/images", req).await;
            assert_eq!(s, 200, "{body}");
            let t = body["data"]["task_id"].as_str().unwrap().to_owned();
            let end = common::wait_for_task(&server, &p.token, &t).await;
            assert_eq!(end["status"], "FINISH", "{end}");
            let items = common::items(&server, &p, "PREPROCESS").await;
            assert_eq!(items.len(), selected);
            for item in &items {
                let bytes = common::object(&s3, &bucket, item["s3_key"].as_str().unwrap()).await;
                let level = mean_level(&bytes);
                assert!(
                    (level - want).abs() <= 1.0,
                    "{} has mean {level}, the reference {want} (picked: {picked:?})",
                    item["filename"]
                );
            }
        }
    }
}
