//! nats.conf as shipped: the api user runs the streams and publishes jobs, a
//! worker consumes them, an operator watches events and cannot publish jobs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use futures::StreamExt;
use tessera::adapters::bus::nats::NatsBus;
use tessera_domain::bus::{Bus, ConsumerConfig, Job};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_nats_conf_gives_each_user_its_job_and_no_more() {
    if std::process::Command::new("nats-server")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(!common::require_services(), "nats-server is required");
        return;
    }
    let (port, http) = (free_port(), free_port());
    let dir = common::temp_dir("natsconf");
    // The shipped file, with only its addresses and store directory moved.
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/nats.conf")).unwrap();
    let conf_text = shipped
        .replace("0.0.0.0:4222", &format!("127.0.0.1:{port}"))
        .replace("0.0.0.0:8222", &format!("127.0.0.1:{http}"))
        .replace("/data/jetstream", &dir.join("js").display().to_string());
    assert_ne!(conf_text, shipped);
    let conf = dir.join("nats.conf");
    std::fs::write(&conf, conf_text).unwrap();
    let mut server = std::process::Command::new("nats-server")
        .arg("-c")
        .arg(&conf)
        .env("NATS_API_PASSWORD", "api-pw")
        .env("NATS_WORKER_PASSWORD", "worker-pw")
        .env("NATS_OPERATOR_PASSWORD", "operator-pw")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("nats.log")).unwrap())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = |user: &str, pw: &str| format!("nats://{user}:{pw}@127.0.0.1:{port}");

    assert!(
        NatsBus::connect(&url("api", "wrong")).await.is_err(),
        "a wrong password is refused"
    );
    let api = NatsBus::connect(&url("api", "api-pw")).await.unwrap();
    let worker = NatsBus::connect(&url("worker", "worker-pw")).await.unwrap();

    // The worker consumes what the API publishes.
    let mut c = worker
        .consumer(ConsumerConfig::new(
            "generate-default",
            "tessera.jobs.generate.default",
        ))
        .await
        .unwrap();
    api.publish(Job {
        subject: "tessera.jobs.generate.default".into(),
        dedup_id: "j1".into(),
        payload: b"job".to_vec(),
    })
    .await
    .unwrap();
    let d = c
        .next(Duration::from_secs(5))
        .await
        .unwrap()
        .expect("the worker gets the job");
    d.acker.ack().await.unwrap();

    // The operator watches events...
    let operator =
        async_nats::ConnectOptions::with_user_and_password("operator".into(), "operator-pw".into())
            .connect(format!("127.0.0.1:{port}"))
            .await
            .unwrap();
    let mut events = operator.subscribe("tessera.events.>").await.unwrap();
    operator.flush().await.unwrap();
    // A flush does not wait for the server to have the subscription, and
    // the API's publish on its own connection can overtake it: publish
    // until the operator sees one (core NATS keeps nothing for later).
    let started = std::time::Instant::now();
    let m = loop {
        api.client()
            .publish("tessera.events.user.UserRegistered", "{}".into())
            .await
            .unwrap();
        api.client().flush().await.unwrap();
        if let Ok(m) = tokio::time::timeout(Duration::from_millis(200), events.next()).await {
            break m.unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the operator never saw an event"
        );
    };
    assert_eq!(m.subject.as_str(), "tessera.events.user.UserRegistered");

    // ...but cannot publish a job, nor can a worker.
    for (who, client) in [
        ("operator", operator.clone()),
        ("worker", worker.client().clone()),
    ] {
        let js = async_nats::jetstream::new(client);
        let published = tokio::time::timeout(Duration::from_secs(5), async {
            js.publish("tessera.jobs.generate.default", "forged".into())
                .await?
                .await
        })
        .await;
        assert!(!matches!(published, Ok(Ok(_))), "{who} published a job");
    }
    assert_eq!(
        api.pending("tessera.jobs.>").await.unwrap(),
        0,
        "no forged job was stored"
    );
    let _ = server.kill();
    let _ = server.wait();
}
