//! The Users, OTP and roles auth APIs end to end over HTTP, on every backend,
//! each with its own envelope, all over the one identity core.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use reqwest::StatusCode;
use serde_json::{json, Value};

const PASSWORD: &str = "a long and unusual passphrase";

async fn send(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let r = req.send().await.unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

fn reset_token_from_mail(server: &common::Server, to: &str) -> String {
    let mail = common::mails_to(&server.data_dir, to)
        .pop()
        .expect("a reset mail");
    let at = mail.find("verify-token?token=").expect("a reset link") + "verify-token?token=".len();
    mail[at..].split_whitespace().next().unwrap().to_owned()
}

async fn users_api(server: &common::Server) {
    let http = reqwest::Client::new();
    let user = "ursula@example.com";
    let (s, b) = send(
        http.post(server.url("/users"))
            .json(&json!({"username": user, "password": PASSWORD})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b,
        json!({"status": 200, "message": "successfully created", "data": {"username": user}, "refrence": null, "error": false})
    );
    let (s, b) = send(
        http.post(server.url("/users"))
            .json(&json!({"username": user, "password": PASSWORD})),
    )
    .await;
    assert_eq!(s, 409);
    assert_eq!(b["message"], "username already exist");
    assert_eq!(b["status"], 409);
    assert_eq!(b["error"], true);
    assert!(b.get("refrence").is_some());

    let (s, b) = send(
        http.post(server.url("/users/login"))
            .json(&json!({"username": user, "password": "nope nope nope"})),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(b["message"], "username and password not match");
    let (s, b) = send(
        http.post(server.url("/users/login"))
            .json(&json!({"username": user, "password": PASSWORD})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["message"], "successfully login");
    let access = b["data"]["access_token"].as_str().unwrap().to_owned();
    let refresh = b["data"]["refresh_token"].as_str().unwrap().to_owned();

    // Bare tokens in Authorization, as documented.
    let (s, b) = send(
        http.get(server.url("/users/verify-token"))
            .header("authorization", &access),
    )
    .await;
    assert_eq!(
        (s, b["message"].as_str()),
        (StatusCode::OK, Some("token verified"))
    );
    let (s, b) = send(
        http.get(server.url("/users/verify-token"))
            .header("authorization", "bogus"),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(b["message"], "please provided a valid access_token!");
    let (s, b) = send(
        http.post(server.url("/users/refresh-token"))
            .header("authorization", &refresh),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert!(b["data"]["access_token"].as_str().is_some());
    let (s, _) = send(
        http.post(server.url("/users/refresh-token"))
            .header("authorization", &refresh),
    )
    .await;
    assert_eq!(s, 401, "rotated refresh tokens are single use");

    // Reset by mailed link.
    let (s, b) = send(
        http.post(server.url("/users/reset-password"))
            .json(&json!({"username": user})),
    )
    .await;
    assert_eq!(s, 200);
    let unknown = send(
        http.post(server.url("/users/reset-password"))
            .json(&json!({"username": "nobody@example.com"})),
    )
    .await;
    assert_eq!(
        (s, &b),
        (unknown.0, &unknown.1),
        "unknown users get the same answer"
    );
    let token = reset_token_from_mail(server, user);
    let (s, b) = send(
        http.get(server.url("/users/reset-password/verify-token"))
            .header("authorization", &token),
    )
    .await;
    assert_eq!(
        (s, b["message"].as_str()),
        (StatusCode::OK, Some("token verified"))
    );
    let (s, b) = send(
        http.get(server.url("/users/reset-password/verify-token"))
            .header("authorization", "x.y.123456"),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        b["message"],
        "please provided a valid reset_password_token!"
    );
    let (s, b) = send(
        http.put(server.url("/users/reset-password/update-password"))
            .header("authorization", &token)
            .json(&json!({"password": "a brand new passphrase"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["message"], "password successfully updated");
    let (s, _) = send(
        http.put(server.url("/users/reset-password/update-password"))
            .header("authorization", &token)
            .json(&json!({"password": "yet another passphrase"})),
    )
    .await;
    assert_eq!(s, 400, "reset tokens are single use");
    // The reset ended the old sessions.
    let (s, _) = send(
        http.get(server.url("/users/verify-token"))
            .header("authorization", &access),
    )
    .await;
    assert_eq!(s, 401);
    let (s, _) = send(
        http.post(server.url("/users/login"))
            .json(&json!({"username": user, "password": "a brand new passphrase"})),
    )
    .await;
    assert_eq!(s, 200);
    // Malformed JSON in this dialect's envelope.
    let (s, b) = send(
        http.post(server.url("/users/login"))
            .header("content-type", "application/json")
            .body("{"),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(b["status"], 400);
    assert_eq!(b["error"], true);
}

async fn otp_api(server: &common::Server) {
    let http = reqwest::Client::new();
    let email = "olga@example.com";
    let (s, b) = send(
        http.post(server.url("/user/signup"))
            .json(&json!({"fullName": "Olga", "email": email, "password": PASSWORD})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["msg"], "Sign up completed");
    assert_eq!(b["payload"]["email"], email);
    let (s, b) = send(
        http.post(server.url("/user/login"))
            .json(&json!({"email": email, "password": PASSWORD})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["msg"], "Signed in");
    let access = b["access_token"].as_str().unwrap().to_owned();

    // reqOtpCode: the code goes to the mailbox only.
    let (s, b) = send(
        http.get(server.url("/auth/reqOtpCode"))
            .header("access_token", &access),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let challenge = b["otpCode"].as_str().unwrap().to_owned();
    let code = common::latest_code(&server.data_dir, email);
    assert_ne!(challenge, code);
    assert!(
        !b.to_string().contains(&code),
        "the response leaks the code: {b}"
    );
    assert_eq!(b["info"]["accepted"][0], email);
    let user_id = b["userId"].clone();
    // A guessed code fails; the mailed one verifies, once.
    let wrong = if code == "123456" { "654321" } else { "123456" };
    let (s, b) = send(http.post(server.url("/auth/verifyOtpCode")).header("access_token", &access)
        .json(&json!({"userId": user_id, "otpCodeFromServer": challenge, "otpCodeFromUser": wrong}))).await;
    assert_eq!(s, 400);
    assert_eq!(b["verified"], false);
    // Sending the challenge id as the "user's code" (what the original design allowed) fails too.
    let (s, _) = send(http.post(server.url("/auth/verifyOtpCode")).header("access_token", &access)
        .json(&json!({"userId": user_id, "otpCodeFromServer": challenge, "otpCodeFromUser": challenge}))).await;
    assert_eq!(s, 400);
    let (s, b) = send(http.get(server.url("/auth/verifyOtpCode")).header("access_token", &access)
        .json(&json!({"userId": user_id, "otpCodeFromServer": challenge, "otpCodeFromUser": code}))).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b, json!({"msg": "OTP Code Verified", "verified": true}));
    let (s, b) = send(http.post(server.url("/auth/verifyOtpCode")).header("access_token", &access)
        .json(&json!({"userId": user_id, "otpCodeFromServer": challenge, "otpCodeFromUser": code}))).await;
    assert_eq!(s, 400);
    assert_eq!(b["verified"], false);

    // Reset: token is an opaque challenge, the code comes by mail.
    let (s, b) = send(
        http.post(server.url("/user/reqResetPassword"))
            .json(&json!({"email": email})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let token = b["token"].as_str().unwrap().to_owned();
    let code = common::latest_code(&server.data_dir, email);
    assert!(!b.to_string().contains(&code));
    let (s, b2) = send(
        http.post(server.url("/user/reqResetPassword"))
            .json(&json!({"email": "ghost@example.com"})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(b2["msg"], b["msg"]);
    let (s, b) = send(
        http.post(server.url("/user/resetPassword"))
            .header("token", &token)
            .json(&json!({"inputOtpCode": code, "newPassword": "olga's new passphrase"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b, json!({"msg": "Reset password complete"}));
    let (s, b) = send(
        http.post(server.url("/user/login"))
            .json(&json!({"email": email, "password": PASSWORD})),
    )
    .await;
    assert_eq!(s, 401);
    assert!(b["msg"].is_string());
}

async fn roles_api(server: &common::Server) {
    let http = reqwest::Client::new();
    let reg = |name: &str, extra: Value| {
        let mut body = json!({"name": "N", "username": name, "email": format!("{name}@example.com"), "password": PASSWORD, "confirm-password": PASSWORD});
        if let (Some(o), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        body
    };
    // A body cannot grant a role.
    let (s, b) = send(
        http.post(server.url("/user/register"))
            .json(&reg("rita", json!({"role": "admin"}))),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b, json!({"signup": "true"}));
    let (s, b) = send(
        http.post(server.url("/merchant/register"))
            .json(&reg("mark", json!({}))),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = send(
        http.post(server.url("/merchant/register"))
            .json(&reg("mike", json!({"confirm-password": "different thing"}))),
    )
    .await;
    assert_eq!(s, 400);
    for field in ["timestamp", "code", "status", "message", "path"] {
        assert!(b.get(field).is_some(), "{field} missing: {b}");
    }
    assert_eq!(b["path"], "/merchant/register");
    assert_eq!(b["code"], 400);

    let role_of = |token: &str| -> String {
        use base64::Engine;
        let payload = token.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        claims["role"].as_str().unwrap().to_owned()
    };
    let (s, b) = send(
        http.post(server.url("/login"))
            .json(&json!({"username": "rita", "password": PASSWORD})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let rita = b["token"].as_str().unwrap().to_owned();
    assert_eq!(role_of(&rita), "user");
    let (s, b) = send(
        http.post(server.url("/login"))
            .json(&json!({"email": "mark@example.com", "password": PASSWORD})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(role_of(b["token"].as_str().unwrap()), "merchant");
    let (s, b) = send(
        http.post(server.url("/login"))
            .json(&json!({"username": "rita", "password": "wrong password"})),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(b["path"], "/login");

    // An operator creates admins.
    let out = server.cli(&[
        "admin",
        "create-user",
        "--username",
        "root-admin",
        "--email",
        "root@example.com",
        "--role",
        "admin",
        "--password",
        PASSWORD,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, b) = send(
        http.post(server.url("/login"))
            .json(&json!({"username": "root-admin", "password": PASSWORD})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(role_of(b["token"].as_str().unwrap()), "admin");

    let (s, b) = send(http.post(server.url("/logout")).bearer_auth(&rita)).await;
    assert_eq!((s, b), (StatusCode::OK, json!({"logout": "true"})));
    let (s, b) = send(http.post(server.url("/logout")).bearer_auth(&rita)).await;
    assert_eq!(s, 401);
    assert_eq!(b["path"], "/logout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn auth_dialects_end_to_end() {
    for backend in common::backends() {
        eprintln!("auth dialects on {}", backend.name());
        let server = common::Server::start(&backend).await;
        users_api(&server).await;
        otp_api(&server).await;
        roles_api(&server).await;
        let out = server.cli(&["projections", "verify"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
