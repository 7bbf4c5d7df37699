//! Google sign-in against a local JWKS endpoint: a real RSA key pair, real
//! RS256 tokens, and every way a token can be wrong.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

const CLIENT_ID: &str = "tessera-test.apps.googleusercontent.com";

struct Signer {
    key: EncodingKey,
    jwk: Value,
    kid: String,
}

fn signer(kid: &str) -> Signer {
    let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwk = json!({
        "kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
        "n": b64.encode(private.n().to_bytes_be()),
        "e": b64.encode(private.e().to_bytes_be()),
    });
    let der = private.to_pkcs1_der().unwrap();
    Signer {
        key: EncodingKey::from_rsa_der(der.as_bytes()),
        jwk,
        kid: kid.into(),
    }
}

fn token(s: &Signer, claims: Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(s.kid.clone());
    jsonwebtoken::encode(&header, &claims, &s.key).unwrap()
}

fn claims(email: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"iss": "https://accounts.google.com", "aud": CLIENT_ID, "sub": "1234567890",
        "email": email, "email_verified": true, "iat": now, "exp": now + 600, "name": "Test"})
}

/// Serves `keys` as a JWKS document on a free local port.
fn serve_jwks(keys: Value) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let sys = actix_web::rt::System::new();
        sys.block_on(async move {
            let body = keys.to_string();
            actix_web::HttpServer::new(move || {
                let body = body.clone();
                actix_web::App::new().route(
                    "/certs",
                    actix_web::web::get().to(move || {
                        let body = body.clone();
                        async move {
                            actix_web::HttpResponse::Ok()
                                .content_type("application/json")
                                .body(body)
                        }
                    }),
                )
            })
            .workers(1)
            .listen(listener)
            .unwrap()
            .run()
            .await
            .unwrap();
        });
    });
    format!("http://{addr}/certs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_sign_in() {
    let google = signer("google-key-1");
    let impostor = signer("google-key-1");
    let jwks = serve_jwks(json!({"keys": [google.jwk.clone()]}));
    let server = common::Server::start_with(
        &common::Backend::Sqlite,
        &[
            ("TESSERA_GOOGLE_CLIENT_ID", CLIENT_ID),
            ("TESSERA_GOOGLE_JWKS_URL", &jwks),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let login = |t: String| {
        let http = http.clone();
        let url = server.url("/login_google");
        async move {
            let r = http
                .post(url)
                .json(&json!({"token": t}))
                .send()
                .await
                .unwrap();
            let s = r.status();
            (s, r.json::<Value>().await.unwrap())
        }
    };

    let (s, b) = login(token(&google, claims("gwen@example.com"))).await;
    assert_eq!(s, 200, "{b}");
    for field in [
        "token",
        "id_token",
        "refresh_token",
        "resfresh_token",
        "access_key",
        "secret_key",
        "session_key",
        "identity_id",
    ] {
        assert!(
            b["data"][field].as_str().is_some_and(|v| !v.is_empty()),
            "{field}: {b}"
        );
    }
    let t = b["data"]["token"].as_str().unwrap().to_owned();
    let r = http
        .post(server.url("/test"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The second sign-in finds the same account.
    let (s, b2) = login(token(&google, claims("gwen@example.com"))).await;
    assert_eq!(s, 200);
    assert_eq!(b2["data"]["identity_id"], b["data"]["identity_id"]);

    let now = chrono::Utc::now().timestamp();
    let mut wrong_aud = claims("gwen@example.com");
    wrong_aud["aud"] = json!("someone-else.apps.googleusercontent.com");
    let mut wrong_iss = claims("gwen@example.com");
    wrong_iss["iss"] = json!("https://evil.example.com");
    let mut expired = claims("gwen@example.com");
    expired["exp"] = json!(now - 3600);
    let mut unverified = claims("gwen@example.com");
    unverified["email_verified"] = json!(false);
    // HS256 "signed" with the public modulus: the algorithm-confusion attack.
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("google-key-1".into());
    let confused = jsonwebtoken::encode(
        &hs,
        &claims("gwen@example.com"),
        &EncodingKey::from_secret(google.jwk["n"].as_str().unwrap().as_bytes()),
    )
    .unwrap();
    for (label, t) in [
        ("wrong audience", token(&google, wrong_aud)),
        ("wrong issuer", token(&google, wrong_iss)),
        ("expired", token(&google, expired)),
        ("unverified email", token(&google, unverified)),
        (
            "another key under the same kid",
            token(&impostor, claims("gwen@example.com")),
        ),
        ("HS256 confusion", confused),
        ("garbage", "not.a.jwt".to_owned()),
    ] {
        let (s, b) = login(t).await;
        assert_eq!(s, 401, "{label}: {b}");
        assert_eq!(b["error"], true);
    }
}
