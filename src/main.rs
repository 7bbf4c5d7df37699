//! `tessera`: the server binary and its operator commands.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tessera::adapters::store::SqlEventStore;
use tessera::follow::projections as runner;
use tessera::shell::cli::{
    AdminAction, Cli, Command, EventsAction, PoolsAction, ProjectionsAction,
};
use tessera::shell::serve;

fn init_logs() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,actix_server=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder.json().init();
    }
}

/// The error and its causes, one per line, for a human at a terminal.
fn report(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str("\n  caused by: ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs();
    let result: Result<ExitCode, Box<dyn std::error::Error>> = async {
        match cli.command {
            None => serve::serve(cli.serve).await?,
            Some(Command::Serve(args)) => serve::serve(args).await?,
            Some(Command::Worker(args)) => tessera::shell::worker::main(args).await?,
            Some(Command::Projections { store, action }) => {
                std::fs::create_dir_all(&store.data_dir)?;
                let db = SqlEventStore::connect(&store.database_url(), 4).await?;
                match action {
                    ProjectionsAction::Status => {
                        println!("{:<24} {:<7} {:>14} {:>12}", "PROJECTION", "KIND", "POSITION", "LAG");
                        for s in runner::status(&db).await? {
                            println!(
                                "{:<24} {:<7} {:>14} {:>12}",
                                s.name,
                                if s.inline { "inline" } else { "async" },
                                format!("{}/{}", s.position.commit, s.position.position),
                                s.lag
                            );
                        }
                    }
                    ProjectionsAction::Rebuild { name } => {
                        let visible = std::io::stderr().is_terminal();
                        for (name, n) in runner::rebuild(&db, name.as_deref(), visible).await? {
                            println!("rebuilt {name}: {n} events replayed");
                        }
                    }
                    ProjectionsAction::Verify => {
                        let diffs = runner::verify(&db).await?;
                        if diffs.is_empty() {
                            println!("all read models match a fresh replay");
                        } else {
                            for d in &diffs {
                                println!(
                                    "MISMATCH {}.{}: {} live rows not produced by replay, {} replayed rows missing live",
                                    d.projection, d.table, d.only_live, d.only_replayed
                                );
                            }
                            return Ok(ExitCode::from(1));
                        }
                    }
                }
            }
            Some(Command::Events {
                action: EventsAction::Tail { subject, nats_url },
            }) => {
                use futures::StreamExt;
                use std::io::Write;
                let (address, credentials) = tessera::adapters::bus::nats::split_credentials(&nats_url);
                let mut options = async_nats::ConnectOptions::new();
                if let Some((user, password)) = credentials {
                    options = options.user_and_password(user, password);
                }
                let client = options.connect(address).await?;
                let mut sub = client.subscribe(subject).await?;
                let mut out = std::io::stdout().lock();
                while let Some(m) = sub.next().await {
                    writeln!(out, "{} {}", m.subject, String::from_utf8_lossy(&m.payload))?;
                    out.flush()?;
                }
            }
            Some(Command::Admin { store, identity, action }) => {
                std::fs::create_dir_all(&store.data_dir)?;
                let db = SqlEventStore::connect(&store.database_url(), 2).await?;
                let exec = std::sync::Arc::new(tessera::app::executor::Executor::new(db));
                let unbound = std::net::SocketAddr::from(([127, 0, 0, 1], 8080));
                let core = serve::build_identity(&identity, &store, &exec, unbound)?;
                match action {
                    AdminAction::CreateUser { username, email, role, password } => {
                        let role = tessera_domain::identity::Role::parse(&role)
                            .ok_or("role must be user, merchant or admin")?;
                        let user = core.register(&username, &email, &password, role, true).await?;
                        println!("created {} {} ({})", role.as_str(), user.username.as_str(), user.user_id);
                    }
                    AdminAction::Pools { action, json, default_pool } => {
                        let pools = tessera::app::pools::Pools::new(exec.clone(), &default_pool);
                        if let Some(PoolsAction::SetCapacity { name, capacity }) = action {
                            pools.set_capacity(&name, capacity).await?;
                        }
                        let list = pools.list().await?;
                        if json {
                            println!("{}", serde_json::to_string_pretty(&list)?);
                        } else {
                            println!("{:<24} {:>8} {:>8} {:>8} {:>6} {:>11}", "POOL", "CAPACITY", "STATE", "MEMBERS", "TASKS", "IMAGES LEFT");
                            for p in list {
                                let capacity = p.capacity.map_or("-".to_owned(), |c| c.to_string());
                                let state = if p.running { "running" } else { "stopped" };
                                println!("{:<24} {:>8} {:>8} {:>8} {:>6} {:>11}", p.name, capacity, state, p.members.len(), p.tasks_waiting, p.images_left);
                            }
                        }
                    }
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
    .await;
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", report(e.as_ref()));
            ExitCode::from(2)
        }
    }
}
