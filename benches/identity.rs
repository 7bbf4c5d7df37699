//! Identity benchmark, one core: login (argon2id included) per second beside
//! a bare argon2id verification; token verification per second beside a bare
//! `jsonwebtoken::decode` of the same token; and the cost of a protected
//! request's auth check (signature + claims + cached revocation look-up).
//!
//! Run: `cargo bench --bench identity`. Prints a Markdown table.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::Instant;

use tessera::adapters::mail::FileMailer;
use tessera::adapters::secrets::Secrets;
use tessera::adapters::store::SqlEventStore;
use tessera::app::identity::{Identity, IdentityConfig, TokenUse};
use tessera_domain::identity::Role;

const LOGINS: usize = 30;
const VERIFICATIONS: usize = 200_000;

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(1)
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let dir = std::env::temp_dir().join(format!(
        "tessera-bench-id-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("bench.db").display());
    let store = SqlEventStore::connect(&url, 2).await.unwrap();
    let secrets = Secrets::load(None, &dir).unwrap();
    let mailer =
        Arc::new(FileMailer::new(dir.join("mail"), "t <t@example.com>".parse().unwrap()).unwrap());
    let config = IdentityConfig {
        public_url: "http://127.0.0.1:8080".into(),
        region: "us-east-2".into(),
        issuer: "tessera".into(),
        audience: "tessera-api".into(),
        invite_template: String::new(),
        mail_from: "t@example.com".into(),
    };
    let google = tessera::adapters::google::GoogleVerifier::new(None, String::new());
    let exec = std::sync::Arc::new(tessera::app::executor::Executor::new(store));
    let identity = Identity::new(exec, &secrets, &[], mailer, config, google);
    let password = "a long and unusual passphrase";
    identity
        .register(
            "bench_user",
            "bench@example.com",
            password,
            Role::User,
            true,
        )
        .await
        .unwrap();

    // Login, end to end through the event store.
    let started = Instant::now();
    let mut last = None;
    for _ in 0..LOGINS {
        last = Some(identity.login("bench_user", password).await.unwrap());
    }
    let logins = LOGINS as f64 / started.elapsed().as_secs_f64();
    let outcome = last.unwrap();

    // Bare argon2id verification with the same parameters.
    let phc = tessera::app::identity::passwords::hash(password.to_owned())
        .await
        .unwrap();
    let started = Instant::now();
    for _ in 0..LOGINS {
        assert!(
            tessera::app::identity::passwords::verify(password.to_owned(), Some(phc.clone())).await
        );
    }
    let argon = LOGINS as f64 / started.elapsed().as_secs_f64();

    // Token verification.
    let token = outcome.access_token.clone();
    let started = Instant::now();
    for _ in 0..VERIFICATIONS {
        std::hint::black_box(identity.tokens().verify(&token, TokenUse::Access).unwrap());
    }
    let verify = VERIFICATIONS as f64 / started.elapsed().as_secs_f64();

    // Bare jsonwebtoken decode of the same token with the same key, no checks of ours.
    let key = jsonwebtoken::DecodingKey::from_secret(&secrets.derive("jwt"));
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.set_audience(&["tessera-api"]);
    let started = Instant::now();
    for _ in 0..VERIFICATIONS {
        std::hint::black_box(jsonwebtoken::decode::<serde_json::Value>(&token, &key, &v).unwrap());
    }
    let bare = VERIFICATIONS as f64 / started.elapsed().as_secs_f64();

    // The full auth check of a protected request (session state cached).
    identity
        .authenticate(&token, TokenUse::Access)
        .await
        .unwrap();
    let started = Instant::now();
    for _ in 0..VERIFICATIONS {
        std::hint::black_box(
            identity
                .authenticate(&token, TokenUse::Access)
                .await
                .unwrap(),
        );
    }
    let check_us = started.elapsed().as_secs_f64() * 1e6 / VERIFICATIONS as f64;

    println!("| measurement (one core) | tessera | peer | peer measured | ratio |");
    println!("|---|---:|---:|---|---:|");
    println!("| login incl. argon2id (logins/s) | {logins:.1} | {argon:.1} | bare argon2id verify, same parameters | {:.2} |", logins / argon);
    println!("| access-token verification (tokens/s) | {verify:.0} | {bare:.0} | bare jsonwebtoken::decode, same token | {:.2} |", verify / bare);
    println!("| auth check of a protected request (µs) | {check_us:.2} | — | target < 50 µs | — |");
    let _ = std::fs::remove_dir_all(&dir);
}
