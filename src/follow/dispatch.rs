//! Reactors that turn the log into work: jobs on the bus for new tasks and
//! downloads, and the sign-outs other processes recorded into this
//! process's session cache. Each publishes before its checkpoint moves;
//! dedup ids make a repeated batch harmless.

use std::sync::Arc;

use tessera_domain::download::DownloadEvent;
use tessera_domain::identity::user::UserEvent;
use tessera_domain::pool::PoolEvent;
use tessera_domain::task::TaskEvent;
use tessera_domain::{Cause, RecordedEvent};

use super::reactor::Reactor;
use crate::app::downloads::Downloads;
use crate::app::generation::Generation;
use crate::app::identity::Identity;
use crate::app::pools::Pools;

/// Sends each new task to its owner's worker pool (measuring first, if it
/// must), a measured task's generation batches once its references are
/// chosen, and a pool's held tasks when it starts.
pub struct GenerationDispatcher {
    pub generation: Arc<Generation>,
    pub pools: Arc<Pools>,
}

#[async_trait::async_trait]
impl Reactor for GenerationDispatcher {
    fn name(&self) -> &'static str {
        "dispatch:generation"
    }

    async fn react(&self, events: &[RecordedEvent]) -> Result<(), Cause> {
        for e in events {
            if let Some(task) = e.decode_if::<TaskEvent>() {
                if matches!(
                    task?,
                    TaskEvent::GenerationRequested { .. } | TaskEvent::ReferencesChosen { .. }
                ) {
                    self.generation
                        .dispatch_routed(&e.stream_id, &self.pools)
                        .await?;
                }
            } else if let Some(pool) = e.decode_if::<PoolEvent>() {
                if let PoolEvent::WorkerPoolStarted { pool, .. } = pool? {
                    let n = self.generation.release_held(&pool, &self.pools).await?;
                    if n > 0 {
                        tracing::info!(
                            pool,
                            jobs = n,
                            "worker pool started; held tasks dispatched"
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

/// Turns each download request into a compress job.
pub struct DownloadDispatcher {
    pub downloads: Arc<Downloads>,
}

#[async_trait::async_trait]
impl Reactor for DownloadDispatcher {
    fn name(&self) -> &'static str {
        "dispatch:download"
    }

    async fn react(&self, events: &[RecordedEvent]) -> Result<(), Cause> {
        for e in events {
            if let Some(DownloadEvent::DownloadRequested { .. }) =
                e.decode_if::<DownloadEvent>().transpose()?
            {
                self.downloads.dispatch(&e.stream_id).await?;
            }
        }
        Ok(())
    }
}

/// Drops this process's cached session states when any process records a
/// sign-out (or a refresh token's reuse), so those tokens stop working here
/// too. Not durable: a process that starts has nothing cached.
pub struct SignOuts {
    pub identity: Arc<Identity>,
}

#[async_trait::async_trait]
impl Reactor for SignOuts {
    fn name(&self) -> &'static str {
        "sign-outs"
    }

    fn durable(&self) -> bool {
        false
    }

    async fn react(&self, events: &[RecordedEvent]) -> Result<(), Cause> {
        for e in events {
            if let Some(UserEvent::SignedOut { .. } | UserEvent::RefreshReuseDetected { .. }) =
                e.decode_if::<UserEvent>().transpose()?
            {
                self.identity.forget_sessions();
                break;
            }
        }
        Ok(())
    }
}
