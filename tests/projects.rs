//! The project API over HTTP, on every backend: create, list, list_info, info,
//! update_info, delete; names unique per owner under concurrency; other users'
//! projects are not found.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::call;

use reqwest::StatusCode;
use serde_json::json;

const PASSWORD: &str = "a long and unusual passphrase";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn projects_end_to_end() {
    for backend in common::backends() {
        eprintln!("projects on {}", backend.name());
        let server = common::Server::start(&backend).await;
        let alice = common::signed_up_user(&server, "alice", PASSWORD).await;
        let bob = common::signed_up_user(&server, "bob", PASSWORD).await;
        let a = alice["id_token"].as_str().unwrap().to_owned();
        let b = bob["id_token"].as_str().unwrap().to_owned();
        let identity = alice["identity_id"].as_str().unwrap();

        let (s, body) = call(
            &server,
            "/projects/create",
            json!({"id_token": a, "project_name": "project_A", "project_info": "cats"}),
        )
        .await;
        assert_eq!(s, 200, "{body}");
        let id = body["data"]["project_id"].as_str().unwrap().to_owned();
        let suffix = id.strip_prefix("project_A_").unwrap();
        assert!(
            suffix.len() == 32 && suffix.chars().all(|c| c.is_ascii_hexdigit()),
            "{id}"
        );
        assert_eq!(
            body["data"]["s3_prefix"],
            format!("tessera/{identity}/{id}")
        );
        assert_eq!(
            (body["error"].clone(), body["success"].clone()),
            (json!(false), json!(true))
        );

        // Duplicate names (case-insensitive), bad names and descriptions.
        let (s, body) = call(
            &server,
            "/projects/create",
            json!({"id_token": a, "project_name": "PROJECT_a"}),
        )
        .await;
        assert_eq!(s, 409, "{body}");
        assert!(body["message"]
            .as_str()
            .unwrap()
            .contains("ConditionalCheckFailedException"));
        for bad in [
            json!({"id_token": a, "project_name": "x".repeat(76)}),
            json!({"id_token": a, "project_name": "../etc"}),
            json!({"id_token": a, "project_name": ""}),
            json!({"id_token": a, "project_name": "ok", "project_info": "d".repeat(301)}),
            json!({"id_token": a, "project_name": 7}),
        ] {
            let (s, body) = call(&server, "/projects/create", bad.clone()).await;
            assert_eq!(s, 400, "{bad} -> {body}");
            assert_eq!(body["error"], true);
        }
        // The access token is not an ID token; no token at all is refused.
        let (s, _) = call(
            &server,
            "/projects/list",
            json!({"id_token": alice["token"]}),
        )
        .await;
        assert_eq!(s, 401);
        let (s, _) = call(&server, "/projects/list", json!({})).await;
        assert_eq!(s, 401);
        // Bearer access tokens work too.
        let r = reqwest::Client::new()
            .post(server.url("/projects/list"))
            .bearer_auth(alice["token"].as_str().unwrap())
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);

        // Concurrent creates of one name: one winner.
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let url = server.url("/projects/create");
            let token = a.clone();
            tasks.push(tokio::spawn(async move {
                reqwest::Client::new()
                    .post(url)
                    .json(&json!({"id_token": token, "project_name": "race"}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            }));
        }
        let statuses: Vec<StatusCode> = futures::future::join_all(tasks)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "{statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 409),
            "{statuses:?}"
        );

        // Bob's project of the same name is his own business.
        let (s, body) = call(
            &server,
            "/projects/create",
            json!({"id_token": b, "project_name": "project_A"}),
        )
        .await;
        assert_eq!(s, 200);
        let bobs = body["data"]["project_id"].as_str().unwrap().to_owned();

        let (_, body) = call(&server, "/projects/list", json!({"id_token": a})).await;
        let items = body["data"]["items"].as_array().unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0]["project_name"]["S"], "project_A");
        assert_eq!(items[0]["project_id"]["S"], id.as_str());
        let (_, body) = call(&server, "/projects/list_info", json!({"id_token": a})).await;
        let infos = body["data"].as_array().unwrap();
        assert_eq!(infos.len(), 2);
        assert_eq!(infos[0]["ls_task"], json!([]));
        assert_eq!(infos[0]["groups"], json!({}));
        let (s, body) = call(
            &server,
            "/projects/info",
            json!({"id_token": a, "project_name": "project_A"}),
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(body["data"]["project_id"], id.as_str());
        assert_eq!(body["data"]["identity_id"], identity);
        assert_eq!(body["data"]["times_generated"], 0);

        // Other users' ids are not found, not forbidden.
        let (s, _) = call(
            &server,
            "/projects/delete",
            json!({"id_token": a, "project_id": bobs, "project_name": "project_A"}),
        )
        .await;
        assert_eq!(s, 404);
        let (s, _) = call(
            &server,
            "/projects/info",
            json!({"id_token": a, "project_name": "nope"}),
        )
        .await;
        assert_eq!(s, 404);

        // Rename keeps the id; a taken name is refused.
        let (s, body) = call(&server, "/projects/update_info", json!({"id_token": a, "cur_project_name": "project_A", "new_project_name": "project_B", "new_description": "dogs"})).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(body["data"]["project_id"], id.as_str());
        assert_eq!(body["data"]["project_name"], "project_B");
        assert_eq!(body["data"]["description"], "dogs");
        assert_eq!(body["data"]["is_sample"], false);
        let (s, _) = call(
            &server,
            "/projects/update_info",
            json!({"id_token": a, "cur_project_name": "project_B", "new_project_name": "race"}),
        )
        .await;
        assert_eq!(s, 409);
        let (s, _) = call(
            &server,
            "/projects/info",
            json!({"id_token": a, "project_name": "project_A"}),
        )
        .await;
        assert_eq!(s, 404);

        // Delete frees the name; the limit is five projects.
        let (s, _) = call(
            &server,
            "/projects/delete",
            json!({"id_token": a, "project_id": id, "project_name": "project_B"}),
        )
        .await;
        assert_eq!(s, 200);
        let (s, _) = call(
            &server,
            "/projects/delete",
            json!({"id_token": a, "project_id": id, "project_name": "project_B"}),
        )
        .await;
        assert_eq!(s, 404);
        for n in 0..4 {
            let (s, body) = call(
                &server,
                "/projects/create",
                json!({"id_token": a, "project_name": format!("p{n}")}),
            )
            .await;
            assert_eq!(s, 200, "{body}");
        }
        let (s, body) = call(
            &server,
            "/projects/create",
            json!({"id_token": a, "project_name": "one too many"}),
        )
        .await;
        assert_eq!(s, 429, "{body}");

        let out = server.cli(&["projections", "verify"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
