//! Mail over SMTP: the server sends through `SMTP_URL`; the test runs an SMTP
//! server that speaks the protocol and keeps what it receives.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A minimal SMTP server (RFC 5321 happy path): one message per DATA.
async fn smtp_server(received: Arc<Mutex<Vec<String>>>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let received = received.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 test-smtp ready\r\n").await.unwrap();
                let mut in_data = false;
                let mut message = String::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    if in_data {
                        if line == "." {
                            in_data = false;
                            received.lock().unwrap().push(std::mem::take(&mut message));
                            write.write_all(b"250 queued\r\n").await.unwrap();
                        } else {
                            message.push_str(line.strip_prefix('.').unwrap_or(&line));
                            message.push('\n');
                        }
                        continue;
                    }
                    let verb = line.split_whitespace().next().unwrap_or("").to_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 test-smtp\r\n",
                        "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 ok\r\n",
                        "DATA" => {
                            in_data = true;
                            b"354 end with .\r\n"
                        }
                        "QUIT" => {
                            write.write_all(b"221 bye\r\n").await.unwrap();
                            return;
                        }
                        _ => b"502 not implemented\r\n",
                    };
                    write.write_all(reply).await.unwrap();
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmation_code_arrives_over_smtp() {
    let received = Arc::new(Mutex::new(Vec::new()));
    let port = smtp_server(received.clone()).await;
    let smtp = format!("smtp://127.0.0.1:{port}");
    for backend in common::backends() {
        let server = common::Server::start_with(&backend, &[("SMTP_URL", &smtp)]).await;
        let http = reqwest::Client::new();
        let email = format!("sam-{}@example.com", backend.name());
        let r = http
            .post(server.url("/user_signup"))
            .json(&json!({"username": format!("sam_{}", backend.name()), "email": email, "password": "a long and unusual passphrase"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let message = received
            .lock()
            .unwrap()
            .iter()
            .find(|m| m.contains(&format!("To: {email}")))
            .cloned()
            .expect("the confirmation mail reached the SMTP server");
        let at = message.find("code is ").unwrap() + "code is ".len();
        let code = &message[at..at + 6];
        assert!(code.chars().all(|c| c.is_ascii_digit()));
        // Nothing went to the file mailer.
        assert!(common::mails_to(&server.data_dir, &email).is_empty());
        let r = http
            .post(server.url("/auth_confirm"))
            .json(&json!({"username": format!("sam_{}", backend.name()), "confirm_code": code}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}
