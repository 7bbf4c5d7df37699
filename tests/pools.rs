//! Worker pools over HTTP (`balancer/register_ec2`, `balancer/receiver`) and
//! `tessera admin pools`, on SQLite and PostgreSQL: assignment to a pool with
//! room else to the default one, once per user even under concurrent
//! requests, start/stop with the shared pool kept for admins, and the events
//! in the log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use serde_json::{json, Value};
use tessera::adapters::store::SqlEventStore;
use tessera_domain::{EventStore, LogPosition};

const PASSWORD: &str = "a long and unusual passphrase";

fn admin_pools(server: &common::Server, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["admin", "pools", "--json"];
    all.extend_from_slice(args);
    let out = server.cli(&all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

fn pool<'a>(pools: &'a [Value], name: &str) -> &'a Value {
    pools
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no pool {name} in {pools:?}"))
}

fn members(pools: &[Value], name: &str) -> Vec<String> {
    pool(pools, name)["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect()
}

async fn post(server: &common::Server, path: &str, body: Value) -> (u16, Value) {
    let (s, b) = common::call(server, path, body).await;
    (s.as_u16(), b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_get_a_pool_once_and_members_start_and_stop_it() {
    for backend in common::backends() {
        eprintln!("worker pools on {}", backend.name());
        let server = common::Server::start(&backend).await;
        let listed = admin_pools(&server, &[]);
        assert_eq!(listed.len(), 1, "only the default pool: {listed:?}");
        assert_eq!(listed[0]["name"], "default");
        assert_eq!(listed[0]["capacity"], Value::Null);

        // Capacity is an admin's: bad names and the default pool are refused.
        for bad in [
            vec!["set-capacity", "GPU.1", "1"],
            vec!["set-capacity", "default", "3"],
        ] {
            let mut args = vec!["admin", "pools"];
            args.extend(bad.iter().copied());
            let out = server.cli(&args);
            assert!(!out.status.success(), "{bad:?} was accepted");
        }
        admin_pools(&server, &["set-capacity", "gpu", "1"]);
        let listed = admin_pools(&server, &["set-capacity", "small", "2"]);
        assert_eq!(pool(&listed, "gpu")["capacity"], 1);
        assert_eq!(pool(&listed, "small")["capacity"], 2);

        let ann = common::signed_up_user(&server, "ann", PASSWORD).await;
        let ann_token = ann["id_token"].as_str().unwrap().to_owned();
        for _ in 0..2 {
            let (s, body) = post(
                &server,
                "/balancer/register_ec2",
                json!({"id_token": ann_token}),
            )
            .await;
            assert_eq!(s, 200, "{body}");
            assert_eq!(
                body,
                json!({"data": null, "error": false, "success": true, "message": null})
            );
        }
        // The first pool with room, by name; registering again changes nothing.
        let listed = admin_pools(&server, &[]);
        assert_eq!(members(&listed, "gpu"), vec!["ann".to_owned()]);
        assert!(members(&listed, "small").is_empty());

        // Eight users at once for the three places left (small: 2, and the
        // default pool for the rest); one user registers four times at once.
        let mut users = Vec::new();
        for i in 0..8 {
            let u = common::signed_up_user(&server, &format!("racer{i}"), PASSWORD).await;
            users.push(u);
        }
        let mut requests = Vec::new();
        for (i, u) in users.iter().enumerate() {
            let n = if i == 0 { 4 } else { 1 };
            for _ in 0..n {
                let token = u["id_token"].as_str().unwrap().to_owned();
                let base = server.url("/balancer/register_ec2");
                requests.push(tokio::spawn(async move {
                    reqwest::Client::new()
                        .post(base)
                        .json(&json!({"id_token": token}))
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16()
                }));
            }
        }
        for r in requests {
            assert_eq!(r.await.unwrap(), 200);
        }
        let listed = admin_pools(&server, &[]);
        assert_eq!(members(&listed, "gpu").len(), 1);
        assert_eq!(members(&listed, "small").len(), 2);
        assert_eq!(members(&listed, "default").len(), 6);
        let mut everyone: Vec<String> = ["gpu", "small", "default"]
            .iter()
            .flat_map(|p| members(&listed, p))
            .collect();
        everyone.sort();
        let before = everyone.len();
        everyone.dedup();
        assert_eq!(everyone.len(), before, "a user in two pools: {listed:?}");
        assert_eq!(everyone.len(), 9);

        // receiver: a member stops and starts their pool; STOP twice is no
        // second event; a bad action is a 400.
        let (s, body) = post(
            &server,
            "/balancer/receiver",
            json!({"id_token": ann_token, "action": "PAUSE"}),
        )
        .await;
        assert_eq!(s, 400, "{body}");
        assert_eq!(body["error"], true);
        for _ in 0..2 {
            let (s, body) = post(
                &server,
                "/balancer/receiver",
                json!({"id_token": ann_token, "action": "STOP"}),
            )
            .await;
            assert_eq!(s, 200, "{body}");
        }
        assert_eq!(pool(&admin_pools(&server, &[]), "gpu")["running"], false);
        let (s, _) = post(
            &server,
            "/balancer/receiver",
            json!({"id_token": ann_token}),
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(pool(&admin_pools(&server, &[]), "gpu")["running"], true);

        // The shared default pool is not a user's to stop.
        let racer_in_default: usize = members(&listed, "default")[0]
            .trim_start_matches("racer")
            .parse()
            .unwrap();
        let in_default = &users[racer_in_default];
        let (s, body) = post(
            &server,
            "/balancer/receiver",
            json!({"id_token": in_default["id_token"], "action": "STOP"}),
        )
        .await;
        assert_eq!(s, 403, "{body}");
        assert_eq!(pool(&admin_pools(&server, &[]), "default")["running"], true);

        // A user who never registered gets a pool on their first receiver.
        let late = common::signed_up_user(&server, "late", PASSWORD).await;
        let (s, _) = post(
            &server,
            "/balancer/receiver",
            json!({"id_token": late["id_token"], "action": "START"}),
        )
        .await;
        assert_eq!(s, 200);
        let listed = admin_pools(&server, &[]);
        assert!(members(&listed, "default").contains(&"late".to_owned()));

        // Without a token: 401, nothing recorded.
        let (s, _) = post(&server, "/balancer/register_ec2", json!({})).await;
        assert_eq!(s, 401);

        // The log holds exactly one assignment per user, and the start/stop.
        let store = SqlEventStore::connect(&server.database_url, 2)
            .await
            .unwrap();
        let events = store.read_all(LogPosition::START, 100_000).await.unwrap();
        let pool_events: Vec<&str> = events
            .iter()
            .filter(|e| e.stream_type == "worker_pool")
            .map(|e| e.event_type.as_str())
            .collect();
        assert_eq!(
            pool_events
                .iter()
                .filter(|t| **t == "WorkerPoolAssigned")
                .count(),
            10
        );
        assert_eq!(
            pool_events
                .iter()
                .filter(|t| **t == "WorkerPoolStopped")
                .count(),
            1
        );
        assert_eq!(
            pool_events
                .iter()
                .filter(|t| **t == "WorkerPoolStarted")
                .count(),
            1
        );
        assert_eq!(
            pool_events
                .iter()
                .filter(|t| **t == "WorkerPoolCapacitySet")
                .count(),
            2
        );

        // The read model is a function of the log.
        let out = server.cli(&["projections", "verify"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
