//! The platform auth API end to end over HTTP, on every backend: documented
//! shapes, mail read back from the .eml files, and the security rules.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

const PASSWORD: &str = "a long and unusual passphrase";

async fn post(
    http: &reqwest::Client,
    server: &common::Server,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let r = http
        .post(server.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn bearer_post(
    http: &reqwest::Client,
    server: &common::Server,
    path: &str,
    token: &str,
) -> StatusCode {
    http.post(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

fn assert_envelope_error(body: &Value) {
    assert_eq!(body["error"], true, "{body}");
    assert_eq!(body["success"], false, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

async fn full_flow(server: &common::Server) {
    let http = reqwest::Client::new();
    let email = "alice@example.com";
    let (s, b) = post(
        &http,
        server,
        "/user_signup",
        json!({"email": email, "username": "alice", "password": PASSWORD}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["error"], false);

    // Not confirmed yet: the right password still cannot log in.
    let (s, b) = post(
        &http,
        server,
        "/user_login",
        json!({"username": "alice", "password": PASSWORD}),
    )
    .await;
    assert_eq!(s, 403, "{b}");
    assert!(b["message"]
        .as_str()
        .unwrap()
        .contains("UserNotConfirmedException"));

    // A wrong code is refused; the mailed one confirms (under the /auth alias too).
    let (s, b) = post(
        &http,
        server,
        "/auth/auth_confirm",
        json!({"username": "alice", "confirm_code": "000000"}),
    )
    .await;
    assert_eq!(s, 400);
    assert!(b["message"]
        .as_str()
        .unwrap()
        .contains("CodeMismatchException"));
    let code = common::latest_code(&server.data_dir, email);
    let mail = common::mails_to(&server.data_dir, email).pop().unwrap();
    assert!(
        mail.contains("Subject: Your tessera confirmation code"),
        "{mail}"
    );
    let (s, b) = post(
        &http,
        server,
        "/auth/auth_confirm",
        json!({"username": "alice", "confirm_code": code}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    // Single use.
    let (s, _) = post(
        &http,
        server,
        "/auth_confirm",
        json!({"username": "alice", "confirm_code": code}),
    )
    .await;
    assert_eq!(s, 401);

    // Login: every documented field, the documented header.
    let r = http
        .post(server.url("/user_login"))
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let header = r.headers()["x-amzn-remapped-authorization"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = r.json().await.unwrap();
    let d = &body["data"];
    for field in [
        "access_key",
        "expires_in",
        "id_token",
        "identity_id",
        "secret_key",
        "session_key",
        "token",
        "resfresh_token",
        "refresh_token",
    ] {
        assert!(
            d[field].as_str().is_some_and(|v| !v.is_empty()),
            "missing {field}: {body}"
        );
    }
    assert_eq!(d["expires_in"], "3600");
    assert_eq!(header, format!("Bearer {}", d["token"].as_str().unwrap()));
    assert!(d["identity_id"].as_str().unwrap().starts_with("us-east-2:"));
    assert_eq!(d["resfresh_token"], d["refresh_token"]);
    let token = d["token"].as_str().unwrap().to_owned();
    let id_token = d["id_token"].as_str().unwrap().to_owned();
    let refresh = d["refresh_token"].as_str().unwrap().to_owned();

    // Login by email works too; a wrong password gets Cognito's message.
    let (s, _) = post(
        &http,
        server,
        "/user_login",
        json!({"username": email, "password": PASSWORD}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, b) = post(
        &http,
        server,
        "/user_login",
        json!({"username": "alice", "password": "wrong password!!"}),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(
        b["message"],
        "NotAuthorizedException: Incorrect username or password."
    );

    // The access token works; the ID token is not an access token.
    assert_eq!(bearer_post(&http, server, "/test", &token).await, 200);
    assert_eq!(bearer_post(&http, server, "/test", &id_token).await, 401);
    assert_eq!(bearer_post(&http, server, "/test", "garbage").await, 401);
    assert_eq!(
        http.post(server.url("/test"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let r = http
        .get(server.url("/template-invite-mail"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert!(b["data"]["template_mail"]
        .as_str()
        .unwrap()
        .contains("{username}"));

    // Refresh rotates; replaying the old refresh token revokes the session.
    let (s, b) = post(
        &http,
        server,
        "/refresh_token",
        json!({"username": "alice", "refresh_token": refresh}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let refresh2 = b["data"]["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh2, refresh);
    let token2 = b["data"]["token"].as_str().unwrap().to_owned();
    assert_eq!(bearer_post(&http, server, "/test", &token2).await, 200);
    let (s, _) = post(
        &http,
        server,
        "/refresh_token",
        json!({"username": "alice", "refresh_token": refresh}),
    )
    .await;
    assert_eq!(s, 401, "a replayed refresh token must be refused");
    let (s, _) = post(
        &http,
        server,
        "/refresh_token",
        json!({"username": "alice", "refresh_token": refresh2}),
    )
    .await;
    assert_eq!(s, 401, "reuse revokes the whole chain");
    assert_eq!(
        bearer_post(&http, server, "/test", &token2).await,
        401,
        "and its access tokens"
    );

    // Logout ends every session at once: access, ID and refresh tokens.
    let (s, b) = post(
        &http,
        server,
        "/user_login",
        json!({"username": "alice", "password": PASSWORD}),
    )
    .await;
    assert_eq!(s, 200);
    let t3 = b["data"]["token"].as_str().unwrap().to_owned();
    let r3 = b["data"]["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(bearer_post(&http, server, "/test", &t3).await, 200);
    assert_eq!(bearer_post(&http, server, "/user_logout", &t3).await, 200);
    assert_eq!(bearer_post(&http, server, "/test", &t3).await, 401);
    assert_eq!(bearer_post(&http, server, "/test", &token).await, 401);
    let (s, _) = post(
        &http,
        server,
        "/refresh_token",
        json!({"username": "alice", "refresh_token": r3}),
    )
    .await;
    assert_eq!(s, 401);

    // Forgot password: the mailed code sets a new password, once.
    let (s, _) = post(
        &http,
        server,
        "/forgot_password",
        json!({"username": "alice"}),
    )
    .await;
    assert_eq!(s, 200);
    let code = common::latest_code(&server.data_dir, email);
    let mail = common::mails_to(&server.data_dir, email).pop().unwrap();
    assert!(
        mail.contains(&format!(
            "{}/users/reset-password/verify-token?token=",
            server.base
        )),
        "{mail}"
    );
    let (s, b) = post(
        &http,
        server,
        "/confirm_code_forgot_password",
        json!({"username": "alice", "password": "password123", "confirm_code": code}),
    )
    .await;
    assert_eq!(s, 400, "common passwords are refused: {b}");
    assert!(b["message"]
        .as_str()
        .unwrap()
        .contains("InvalidPasswordException"));
    let (s, b) = post(
        &http,
        server,
        "/confirm_code_forgot_password",
        json!({"username": "alice", "password": "another fine passphrase", "confirm_code": code}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = post(
        &http,
        server,
        "/user_login",
        json!({"username": "alice", "password": PASSWORD}),
    )
    .await;
    assert_eq!(s, 401);
    let (s, _) = post(
        &http,
        server,
        "/user_login",
        json!({"username": "alice", "password": "another fine passphrase"}),
    )
    .await;
    assert_eq!(s, 200);

    // Invitations: sent as the caller only.
    let (s, b) = post(
        &http,
        server,
        "/user_login",
        json!({"username": "alice", "password": "another fine passphrase"}),
    )
    .await;
    assert_eq!(s, 200);
    let t = b["data"]["token"].as_str().unwrap().to_owned();
    let r = http
        .post(server.url("/send-mail/reference-email"))
        .bearer_auth(&t)
        .json(&json!({"username": "alice", "destination_email": "friend@example.org"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let invite = common::mails_to(&server.data_dir, "friend@example.org")
        .pop()
        .unwrap();
    assert!(invite.contains("alice invites you"), "{invite}");
    let r = http
        .post(server.url("/send-mail/reference-email"))
        .bearer_auth(&t)
        .json(&json!({"username": "mallory", "destination_email": "friend@example.org"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http.post(server.url("/send-mail/reference-email")).bearer_auth(&t)
        .json(&json!({"username": "alice", "destination_email": "friend@example.org\r\nBcc: everyone@example.org"})).send().await.unwrap();
    assert_eq!(r.status(), 400, "header injection is refused");
}

async fn unknown_users_look_like_known_ones(server: &common::Server) {
    let http = reqwest::Client::new();
    common::signed_up_user(server, "bob", PASSWORD).await;
    for path in ["/forgot_password", "/resend_confirmcode"] {
        let (s1, b1) = post(&http, server, path, json!({"username": "bob"})).await;
        let (s2, b2) = post(&http, server, path, json!({"username": "nobody-here"})).await;
        assert_eq!(
            (s1, &b1["message"]),
            (s2, &b2["message"]),
            "{path} leaks existence"
        );
    }
    // Login: same status and message, comparable time (both run argon2).
    let mut known = Duration::ZERO;
    let mut unknown = Duration::ZERO;
    for _ in 0..3 {
        let t = Instant::now();
        let (s1, b1) = post(
            &http,
            server,
            "/user_login",
            json!({"username": "bob", "password": "not the password"}),
        )
        .await;
        known += t.elapsed();
        let t = Instant::now();
        let (s2, b2) = post(
            &http,
            server,
            "/user_login",
            json!({"username": "nobody-here", "password": "not the password"}),
        )
        .await;
        unknown += t.elapsed();
        assert_eq!((s1, &b1["message"]), (s2, &b2["message"]));
    }
    let ratio = known.as_secs_f64() / unknown.as_secs_f64();
    assert!(
        (0.4..2.5).contains(&ratio),
        "timing differs: known {known:?} unknown {unknown:?}"
    );
}

async fn lockout_survives_parallel_guessing(server: &common::Server) {
    common::signed_up_user(server, "carol", PASSWORD).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let url = server.url("/user_login");
        tasks.push(tokio::spawn(async move {
            let r = reqwest::Client::new()
                .post(url)
                .json(&json!({"username": "carol", "password": format!("wrong guess number {i}")}))
                .send()
                .await
                .unwrap();
            r.status()
        }));
    }
    let mut checked = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::UNAUTHORIZED => checked += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        checked <= 5,
        "{checked} passwords were checked; at most 5 may be"
    );
    // Locked now, even with the right password.
    let http = reqwest::Client::new();
    let (s, b) = post(
        &http,
        server,
        "/user_login",
        json!({"username": "carol", "password": PASSWORD}),
    )
    .await;
    assert_eq!(s, 429, "{b}");
    assert!(b["message"]
        .as_str()
        .unwrap()
        .contains("LimitExceededException"));
}

async fn codes_die_after_five_wrong_tries(server: &common::Server) {
    let http = reqwest::Client::new();
    let (s, _) = post(
        &http,
        server,
        "/user_signup",
        json!({"email": "dave@example.com", "username": "dave", "password": PASSWORD}),
    )
    .await;
    assert_eq!(s, 200);
    let code = common::latest_code(&server.data_dir, "dave@example.com");
    let wrong = if code == "111111" { "222222" } else { "111111" };
    for _ in 0..5 {
        let (s, _) = post(
            &http,
            server,
            "/auth_confirm",
            json!({"username": "dave", "confirm_code": wrong}),
        )
        .await;
        assert_eq!(s, 400);
    }
    let (s, b) = post(
        &http,
        server,
        "/auth_confirm",
        json!({"username": "dave", "confirm_code": code}),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("ExpiredCodeException"),
        "{b}"
    );
    // A new code works.
    let (s, _) = post(
        &http,
        server,
        "/resend_confirmcode",
        json!({"username": "dave"}),
    )
    .await;
    assert_eq!(s, 200);
    let code = common::latest_code(&server.data_dir, "dave@example.com");
    let (s, _) = post(
        &http,
        server,
        "/auth_confirm",
        json!({"username": "dave", "confirm_code": code}),
    )
    .await;
    assert_eq!(s, 200);
}

async fn concurrent_sign_ups_have_one_winner(server: &common::Server) {
    let mut tasks = Vec::new();
    for i in 0..10 {
        let url = server.url("/user_signup");
        tasks.push(tokio::spawn(async move {
            reqwest::Client::new().post(url)
                .json(&json!({"username": "erin", "email": format!("erin{i}@example.com"), "password": PASSWORD}))
                .send().await.unwrap().status()
        }));
    }
    for i in 0..10 {
        let url = server.url("/user_signup");
        tasks.push(tokio::spawn(async move {
            reqwest::Client::new().post(url)
                .json(&json!({"username": format!("frank{i}"), "email": "frank@example.com", "password": PASSWORD}))
                .send().await.unwrap().status()
        }));
    }
    let statuses: Vec<StatusCode> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let (erin, frank) = statuses.split_at(10);
    assert_eq!(erin.iter().filter(|s| **s == 200).count(), 1, "{erin:?}");
    assert!(erin.iter().all(|s| *s == 200 || *s == 409));
    assert_eq!(frank.iter().filter(|s| **s == 200).count(), 1, "{frank:?}");
}

async fn bad_input(server: &common::Server) {
    let http = reqwest::Client::new();
    // Malformed JSON, wrong types, missing fields: 400 in the envelope.
    let r = http
        .post(server.url("/user_signup"))
        .header("content-type", "application/json")
        .body("{\"username\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_envelope_error(&r.json().await.unwrap());
    let (s, b) = post(
        &http,
        server,
        "/user_signup",
        json!({"username": 5, "email": "x@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(s, 400);
    assert_envelope_error(&b);
    let (s, b) = post(&http, server, "/user_login", json!({"username": "x"})).await;
    assert_eq!(s, 400);
    assert_envelope_error(&b);
    // Not JSON.
    let r = http
        .post(server.url("/user_login"))
        .header("content-type", "text/plain")
        .body("username=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_envelope_error(&r.json().await.unwrap());
    // Oversized.
    let big = json!({"username": "x".repeat(2 * 1024 * 1024), "password": PASSWORD});
    let r = http
        .post(server.url("/user_login"))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_envelope_error(&r.json().await.unwrap());
    // Invalid values.
    for (body, needle) in [
        (
            json!({"username": "gina", "email": "not-an-email", "password": PASSWORD}),
            "valid email",
        ),
        (
            json!({"username": "gina", "email": "gina@example.com", "password": "short"}),
            "InvalidPasswordException",
        ),
        (
            json!({"username": "gina", "email": "gina@example.com", "password": "x".repeat(257)}),
            "InvalidPasswordException",
        ),
        (
            json!({"username": "gina", "email": "gina@example.com", "password": "iloveyou1"}),
            "too common",
        ),
        (
            json!({"username": "gi na\r\n", "email": "gina@example.com", "password": PASSWORD}),
            "username",
        ),
    ] {
        let (s, b) = post(&http, server, "/user_signup", body).await;
        assert_eq!(s, 400, "{b}");
        assert!(b["message"].as_str().unwrap().contains(needle), "{b}");
    }
    // Nothing was half-written: gina can still sign up.
    let (s, _) = post(
        &http,
        server,
        "/user_signup",
        json!({"username": "gina", "email": "gina@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = post(
        &http,
        server,
        "/user_signup",
        json!({"username": "GINA", "email": "other@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(s, 409, "usernames are case-insensitive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn platform_auth_end_to_end() {
    for backend in common::backends() {
        eprintln!("platform auth on {}", backend.name());
        let server = common::Server::start(&backend).await;
        full_flow(&server).await;
        unknown_users_look_like_known_ones(&server).await;
        lockout_survives_parallel_guessing(&server).await;
        codes_die_after_five_wrong_tries(&server).await;
        concurrent_sign_ups_have_one_winner(&server).await;
        bad_input(&server).await;
        // The credential read model is exactly what a replay produces.
        let out = server.cli(&["projections", "verify"]);
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn rate_limit_ignores_forged_forwarded_for() {
    let backend = common::Backend::Sqlite;
    let server = common::Server::start_with(&backend, &[("TESSERA_AUTH_RATE_PER_IP", "5")]).await;
    let http = reqwest::Client::new();
    let mut limited = 0;
    for i in 0..10 {
        let r = http
            .post(server.url("/forgot_password"))
            .header("x-forwarded-for", format!("10.0.0.{i}"))
            .json(&json!({"username": format!("someone{i}")}))
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            limited += 1;
            let b: Value = r.json().await.unwrap();
            assert!(b["message"]
                .as_str()
                .unwrap()
                .contains("TooManyRequestsException"));
        }
    }
    assert_eq!(
        limited, 5,
        "the sixth and later requests from one address are refused"
    );
}

/// Rotating the master secret: tokens signed under the previous one keep
/// working while it is listed in TESSERA_PREVIOUS_SECRETS, and stop when it
/// is dropped.
#[tokio::test]
async fn signing_keys_rotate_by_key_id() {
    let old = "old-secret-0123456789-0123456789-0123456789";
    let new = "new-secret-0123456789-0123456789-0123456789";
    let mut server =
        common::Server::start_with(&common::Backend::Sqlite, &[("TESSERA_SECRET", old)]).await;
    let data = common::signed_up_user(&server, "rotor", PASSWORD).await;
    let token = data["token"].as_str().unwrap().to_owned();
    let (dir, url) = (server.data_dir.clone(), server.database_url.clone());
    server.terminate();
    let http = reqwest::Client::new();

    let mut server = common::Server::spawn(
        dir.clone(),
        url.clone(),
        &[("TESSERA_SECRET", new), ("TESSERA_PREVIOUS_SECRETS", old)],
    )
    .await;
    assert_eq!(
        bearer_post(&http, &server, "/test", &token).await,
        200,
        "previous key still verifies"
    );
    server.terminate();

    let server = common::Server::spawn(dir, url, &[("TESSERA_SECRET", new)]).await;
    assert_eq!(
        bearer_post(&http, &server, "/test", &token).await,
        401,
        "a dropped key no longer verifies"
    );
    // New logins work under the new key.
    let (s, _) = post(
        &http,
        &server,
        "/user_login",
        json!({"username": "rotor", "password": PASSWORD}),
    )
    .await;
    assert_eq!(s, 200);
}
