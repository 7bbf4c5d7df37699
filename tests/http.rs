//! The HTTP skeleton over a real `tessera serve` process: health, readiness,
//! metrics, OpenAPI, the envelope on errors, request ids, graceful shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skeleton() {
    for backend in common::backends() {
        eprintln!("HTTP skeleton on {}", backend.name());
        // The bus under /readyz: NATS when the run has one, else in-process.
        let nats = std::env::var("TESSERA_TEST_NATS_URL").unwrap_or_default();
        let mut server = common::Server::start_with(&backend, &[("NATS_URL", &nats)]).await;
        let http = reqwest::Client::new();

        let r = http.get(server.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let generated = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(generated.len(), 36, "a uuid request id is generated");

        let r = http
            .get(server.url("/readyz"))
            .header("x-request-id", "trace-me-1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-request-id"], "trace-me-1");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["ready"], true);
        let checks = body["checks"].as_array().unwrap();
        assert!(checks
            .iter()
            .any(|c| c["name"].as_str().unwrap().contains(backend.name())));
        assert!(checks.iter().all(|c| c["ok"] == true));
        let expected_bus = if nats.is_empty() {
            "bus (in-process)"
        } else {
            "bus (nats)"
        };
        assert!(checks.iter().any(|c| c["name"] == expected_bus), "{body}");

        // Unknown routes and methods get the envelope with the right status.
        let r = http
            .post(server.url("/no/such/route"))
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], true);
        assert_eq!(body["success"], false);
        assert!(body["data"].is_null());
        assert!(body["message"].as_str().unwrap().contains("/no/such/route"));

        // A body larger than the limit is refused before it is read.
        let huge = vec![b'a'; 3 * 1024 * 1024];
        let r = http
            .post(server.url("/no/such/route"))
            .header("content-type", "application/json")
            .body(huge)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], true);
        assert!(body["message"].as_str().unwrap().contains("over the limit"));

        let r = http.get(server.url("/openapi.json")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let doc: Value = r.json().await.unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        for path in ["/healthz", "/readyz", "/metrics"] {
            assert!(
                doc["paths"][path].is_object(),
                "{path} missing from the OpenAPI document"
            );
        }
        let r = http.get(server.url("/docs")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().to_lowercase().contains("redoc"));

        let metrics = http
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(metrics.contains("tessera_http_requests_total"), "{metrics}");
        assert!(metrics.contains("route=\"/healthz\""), "{metrics}");
        assert!(
            metrics.contains("tessera_http_request_duration_seconds"),
            "{metrics}"
        );
        assert!(
            metrics.contains("tessera_projection_lag_events{projection=\"event_counts\"} 0"),
            "{metrics}"
        );

        // SIGTERM: a clean, prompt exit.
        let status = server.terminate();
        assert!(status.success(), "exit status {status}");
        assert!(server.log().contains("stopped"), "{}", server.log());
    }
}

#[tokio::test]
async fn bad_database_url_fails_at_start_without_a_panic() {
    let dir = common::temp_dir("badurl");
    let out = std::process::Command::new(common::binary())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("TESSERA_DATA_DIR", &dir)
        .env(
            "DATABASE_URL",
            "postgres://tessera:hunter2@127.0.0.1:1/nope",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot connect"), "{err}");
    assert!(!err.contains("hunter2"), "password printed: {err}");
    assert!(!err.contains("panicked"), "{err}");

    let out = std::process::Command::new(common::binary())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("TESSERA_DATA_DIR", &dir)
        .env("DATABASE_URL", "redis://127.0.0.1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("postgres:// or sqlite:"));

    // An unreachable NATS is a clear start-up error too, with its password hidden.
    let out = std::process::Command::new(common::binary())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("TESSERA_DATA_DIR", &dir)
        .env("NATS_URL", "nats://api:s3cret@127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NATS at nats://api:***@127.0.0.1:1"), "{err}");
    assert!(
        !err.contains("s3cret") && !err.contains("panicked"),
        "{err}"
    );
}
