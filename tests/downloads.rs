//! Compress-download over HTTP and S3 on every backend: each `down_type` of a
//! project with originals, preprocessed and augmented items, downloaded
//! through the presigned URL, opened with Python's `zipfile` and compared byte
//! for byte with storage; the manifest; both API generations; reuse of an
//! unchanged export and one build for concurrent identical requests; the
//! finished mail; a missing object failing the task with no zip left visible;
//! bad requests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, Instant};

use common::call;
use serde_json::{json, Value};

const PASSWORD: &str = "a long and unusual passphrase";

async fn wait_download(server: &common::Server, token: &str, task_id: &str) -> Value {
    let started = Instant::now();
    loop {
        let (s, body) = call(
            server,
            "/projects/download_update",
            json!({"id_token": token, "task_id": task_id}),
        )
        .await;
        assert_eq!(s, 200, "{body}");
        if body["data"]["status"] != "RUNNING" {
            return body["data"].clone();
        }
        assert!(body["data"]["presign_url"].is_null());
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "download stuck: {body}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn create(
    server: &common::Server,
    p: &common::Project,
    path: &str,
    down_type: &str,
) -> (u16, Value) {
    let (s, body) = call(
        server,
        path,
        json!({"id_token": p.token, "project_id": p.id, "project_name": p.name, "down_type": down_type}),
    )
    .await;
    (s.as_u16(), body)
}

/// Python's `zipfile` opens the archive and checks every CRC; returns the
/// names it lists.
fn python_names(zip: &[u8]) -> Vec<String> {
    let path = common::temp_dir("zip").join("export.zip");
    std::fs::write(&path, zip).unwrap();
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nbad = z.testzip()\nassert bad is None, bad\nprint('\\n'.join(z.namelist()))",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_down_type_exports_a_valid_zip_once() {
    for backend in common::backends() {
        eprintln!("downloads on {}", backend.name());
        let bucket = format!("d{}", uuid::Uuid::new_v4().simple());
        let server = common::Server::start_with(&backend, &[("S3_BUCKET", &bucket)]).await;
        let login = common::signed_up_user(&server, "dora", PASSWORD).await;
        let s3 = common::user_s3(&server, &login);
        let http = reqwest::Client::new();
        let files: Vec<(String, Vec<u8>)> = (0..8)
            .map(|i| (format!("img_{i:02}.png"), common::png(i, 40 + i, 30)))
            .collect();
        let p = common::project_with(&server, &login, "dl", &files).await;

        // Bad requests first: nothing is started.
        assert_eq!(
            create(&server, &p, "/projects/download_create", "EVERYTHING")
                .await
                .0,
            400
        );
        let (s, body) = create(&server, &p, "/projects/download_create", "AUGMENT").await;
        assert_eq!(s, 400, "nothing to download: {body}");
        assert!(body["message"]
            .as_str()
            .unwrap()
            .contains("no AUGMENT images"));
        let (s, _) = call(
            &server,
            "/projects/download_create",
            json!({"id_token": p.token, "project_id": "someone_else_0123", "project_name": "x", "down_type": "ALL"}),
        )
        .await;
        assert_eq!(s, 404);

        // Preprocessed and augmented items.
        for methods in [json!(["PRE-001"]), json!(["AUG-000", "AUG-003"])] {
            let (s, body) = call(
                &server,
                "/generate/images",
                json!({"id_token": p.token, "project_id": p.id, "project_name": p.name, "ls_method_id": methods, "num_aug_p_img": 1, "data_number": [6, 1, 1]}),
            )
            .await;
            assert_eq!(s, 200, "{body}");
            let task = body["data"]["task_id"].as_str().unwrap().to_owned();
            let end = common::wait_for_task(&server, &p.token, &task).await;
            assert_eq!(end["status"], "FINISH", "{end}");
        }

        let mut tasks = BTreeMap::new();
        for (down_type, api) in [
            ("ALL", "/projects/download_create"),
            ("ORIGINAL", "/dataflow/create_compress_download_task"),
            ("PREPROCESS", "/projects/download_create"),
            ("AUGMENT", "/dataflow/create_compress_download_task"),
        ] {
            let (s, body) = create(&server, &p, api, down_type).await;
            assert_eq!(s, 200, "{body}");
            let task = body["data"]["task_id"].as_str().unwrap().to_owned();
            let done = wait_download(&server, &p.token, &task).await;
            assert_eq!(done["status"], "FINISH", "{done}\n{}", server.log());
            let s3_key = done["s3_key"].as_str().unwrap();
            let identity = login["identity_id"].as_str().unwrap();
            assert_eq!(
                s3_key,
                format!(
                    "{identity}/{}/download/{}_{down_type}_{task}.zip",
                    p.id, p.name
                )
            );
            let zip = http
                .get(done["presign_url"].as_str().unwrap())
                .send()
                .await
                .unwrap();
            assert_eq!(zip.status(), 200);
            let zip = zip.bytes().await.unwrap().to_vec();

            let kinds: Vec<&str> = match down_type {
                "ALL" => vec!["ORIGINAL", "PREPROCESS", "AUGMENT"],
                one => vec![one],
            };
            let mut expected = Vec::new();
            for kind in &kinds {
                expected.extend(
                    common::items(&server, &p, kind)
                        .await
                        .into_iter()
                        .map(|i| (kind.to_string(), i)),
                );
            }
            let mut names = python_names(&zip);
            names.sort();
            let mut want: Vec<String> = expected
                .iter()
                .map(|(k, i)| format!("{k}/{}", i["filename"].as_str().unwrap()))
                .chain(["manifest.json".to_owned()])
                .collect();
            want.sort();
            assert_eq!(names, want, "{down_type}");

            let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
            let mut manifest = String::new();
            archive
                .by_name("manifest.json")
                .unwrap()
                .read_to_string(&mut manifest)
                .unwrap();
            let manifest: BTreeMap<String, Value> = serde_json::from_str(&manifest).unwrap();
            assert_eq!(manifest.len(), expected.len());
            for (kind, item) in &expected {
                let path = format!("{kind}/{}", item["filename"].as_str().unwrap());
                let mut entry = archive.by_name(&path).unwrap();
                assert_eq!(
                    entry.compression(),
                    zip::CompressionMethod::Stored,
                    "{path}"
                );
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).unwrap();
                drop(entry);
                assert_eq!(
                    bytes,
                    common::object(&s3, &bucket, item["s3_key"].as_str().unwrap()).await,
                    "{path}"
                );
                let line = &manifest[&path];
                assert_eq!(line["name"], item["filename"]);
                assert_eq!(line["typeOfImage"], *kind);
                assert_eq!(line["size"], item["size"]);
                assert_eq!(line["nameOfProject"], p.name);
                assert_eq!(line["class"], item["classtype"]);
                let methods = line["methodToCreate"].as_array().unwrap();
                if kind == "ORIGINAL" {
                    assert!(methods.is_empty());
                } else {
                    assert!(!methods.is_empty(), "{line}");
                    assert!(
                        methods.iter().all(|m| !m.as_str().unwrap().contains('-')),
                        "names, not ids: {line}"
                    );
                }
            }
            tasks.insert(down_type, task);
        }

        // The full record of the newer API generation.
        let (s, body) = call(
            &server,
            "/dataflow/get_compress_download_task",
            json!({"id_token": p.token, "task_id": tasks["ORIGINAL"]}),
        )
        .await;
        assert_eq!(s, 200, "{body}");
        let d = &body["data"];
        for field in [
            "task_id",
            "down_type",
            "presign_url",
            "process_type",
            "project_id",
            "project_name",
            "s3_key",
            "status",
            "created_time",
            "updated_at",
            "updated_date",
            "updated_time",
        ] {
            assert!(!d[field].is_null(), "{field} in {d}");
        }
        assert_eq!(
            (d["down_type"].as_str(), d["status"].as_str()),
            (Some("ORIGINAL"), Some("FINISH"))
        );
        assert_eq!(d["project_name"], p.name);

        // Unchanged data: the same task and zip.
        let (_, again) = create(&server, &p, "/projects/download_create", "ALL").await;
        assert_eq!(again["data"]["task_id"], tasks["ALL"]);

        // Another user sees no such task.
        let other = common::signed_up_user(&server, "otto", PASSWORD).await;
        let (s, _) = call(
            &server,
            "/projects/download_update",
            json!({"id_token": other["id_token"], "task_id": tasks["ALL"]}),
        )
        .await;
        assert_eq!(s, 404);

        // Changed data: a new export; two identical requests at once build one.
        let more = vec![("img_99.png".to_owned(), common::png(99, 33, 33))];
        common::put_presigned(&server, &p.token, &p.id, &more).await;
        let (s, body) = call(
            &server,
            "/projects/upload_update",
            json!({"id_token": p.token, "project_id": p.id, "project_name": p.name, "ls_object_info": common::infos(&p.prefix, &more)}),
        )
        .await;
        assert_eq!(s, 200, "{body}");
        let (a, b) = tokio::join!(
            create(&server, &p, "/projects/download_create", "ORIGINAL"),
            create(
                &server,
                &p,
                "/dataflow/create_compress_download_task",
                "ORIGINAL"
            )
        );
        assert_eq!((a.0, b.0), (200, 200), "{a:?} {b:?}");
        assert_eq!(a.1["data"]["task_id"], b.1["data"]["task_id"]);
        assert_ne!(a.1["data"]["task_id"], tasks["ORIGINAL"]);
        let fresh = a.1["data"]["task_id"].as_str().unwrap().to_owned();
        assert_eq!(
            wait_download(&server, &p.token, &fresh).await["status"],
            "FINISH"
        );

        // The owner was told, once per finished zip.
        let ready = common::mails_to(&server.data_dir, "dora@example.com")
            .into_iter()
            .filter(|m| m.contains("Your download is ready"))
            .count();
        assert_eq!(ready, 5);

        // An object gone behind the server's back: ERROR with the reason,
        // no zip left visible.
        let gone = common::items(&server, &p, "ORIGINAL").await[0]["s3_key"]
            .as_str()
            .unwrap()
            .to_owned();
        s3.delete_object()
            .bucket(&bucket)
            .key(gone.strip_prefix(&format!("{bucket}/")).unwrap())
            .send()
            .await
            .unwrap();
        let (s, body) = create(&server, &p, "/projects/download_create", "ALL").await;
        assert_eq!(s, 200, "{body}");
        let failed = body["data"]["task_id"].as_str().unwrap().to_owned();
        assert_ne!(failed, tasks["ALL"]);
        let end = wait_download(&server, &p.token, &failed).await;
        assert_eq!(end["status"], "ERROR", "{end}");
        assert!(
            end["error"]
                .as_str()
                .unwrap()
                .contains("no longer in storage"),
            "{end}"
        );
        assert!(end["presign_url"].is_null() && end["s3_key"].is_null());
        let identity = login["identity_id"].as_str().unwrap();
        let listed = s3
            .list_objects_v2()
            .bucket(&bucket)
            .prefix(format!("{identity}/{}/download/", p.id))
            .send()
            .await
            .unwrap();
        let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
        assert!(
            !keys
                .iter()
                .any(|k| k.contains(&failed) && k.ends_with(".zip")),
            "{keys:?}"
        );
        assert_eq!(
            keys.iter().filter(|k| k.ends_with(".zip")).count(),
            5,
            "{keys:?}"
        );
    }
}
