//! The in-process bus: the embedded default, with the semantics the real brokers
//! have (ack, nak with delay, progress, redelivery after `ack_wait`, max
//! deliveries then dead letter, publish de-duplication).
//!
//! It lives as long as the process: jobs of unfinished tasks are re-published
//! from the event log at start-up, which is what makes a restart lose nothing.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tessera_domain::bus::{
    subject_matches, Acker, Bus, BusError, Consumer, ConsumerConfig, DeadLetter, Delivery, Job,
};
use tokio::sync::Notify;

/// How long a dedup id is remembered (JetStream's default window).
const DEDUP_WINDOW: Duration = Duration::from_secs(120);

struct Message {
    job: Job,
    deliveries: u32,
    available_at: Instant,
    /// (consumer name, delivery number, deadline) while a consumer holds it.
    held: Option<(String, u32, Instant)>,
}

#[derive(Default)]
struct State {
    next_seq: u64,
    messages: BTreeMap<u64, Message>,
    dedup: HashMap<String, Instant>,
    /// Dedup ids in publish order, to forget expired ones without a scan.
    dedup_order: VecDeque<(Instant, String)>,
    dead: VecDeque<DeadLetter>,
    consumers: HashMap<String, ConsumerConfig>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every mutation is
        // a single assignment), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The in-process bus. Cloning shares the queue.
#[derive(Clone, Default)]
pub struct MemoryBus {
    shared: Arc<Shared>,
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn publish(&self, job: Job) -> Result<(), BusError> {
        if job.subject.is_empty() || job.subject.contains(['*', '>', ' ']) {
            return Err(BusError::Invalid(format!("bad subject {:?}", job.subject)));
        }
        let now = Instant::now();
        {
            let mut st = self.shared.lock();
            while let Some((at, _)) = st.dedup_order.front() {
                if now.duration_since(*at) < DEDUP_WINDOW {
                    break;
                }
                if let Some((_, id)) = st.dedup_order.pop_front() {
                    st.dedup.remove(&id);
                }
            }
            if st.dedup.contains_key(&job.dedup_id) {
                return Ok(());
            }
            st.dedup.insert(job.dedup_id.clone(), now);
            st.dedup_order.push_back((now, job.dedup_id.clone()));
            st.next_seq += 1;
            let seq = st.next_seq;
            st.messages.insert(
                seq,
                Message {
                    job,
                    deliveries: 0,
                    available_at: now,
                    held: None,
                },
            );
        }
        self.shared.changed.notify_waiters();
        Ok(())
    }

    async fn consumer(&self, config: ConsumerConfig) -> Result<Box<dyn Consumer>, BusError> {
        if config.max_deliver == 0 || config.ack_wait.is_zero() {
            return Err(BusError::Invalid(
                "max_deliver and ack_wait must be positive".into(),
            ));
        }
        {
            let mut st = self.shared.lock();
            let overlapping = st.consumers.values().any(|c| {
                c.name != config.name
                    && (subject_matches(&c.filter, &config.filter)
                        || subject_matches(&config.filter, &c.filter))
            });
            if overlapping {
                return Err(BusError::Invalid(format!(
                    "consumer {} overlaps another consumer's filter",
                    config.name
                )));
            }
            st.consumers.insert(config.name.clone(), config.clone());
        }
        Ok(Box::new(MemoryConsumer {
            shared: self.shared.clone(),
            config,
        }))
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, BusError> {
        Ok(self
            .shared
            .lock()
            .dead
            .iter()
            .take(limit)
            .cloned()
            .collect())
    }

    async fn pending(&self, filter: &str) -> Result<u64, BusError> {
        Ok(self
            .shared
            .lock()
            .messages
            .values()
            .filter(|m| subject_matches(filter, &m.job.subject))
            .count() as u64)
    }

    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }

    fn name(&self) -> &'static str {
        "in-process"
    }
}

struct MemoryConsumer {
    shared: Arc<Shared>,
    config: ConsumerConfig,
}

enum Pick {
    Deliver(Delivery),
    WaitUntil(Option<Instant>),
}

impl MemoryConsumer {
    fn pick(&self) -> Pick {
        let now = Instant::now();
        let mut st = self.shared.lock();
        let mut wake: Option<Instant> = None;
        let mut expired: Vec<u64> = Vec::new();
        let mut chosen: Option<u64> = None;
        for (seq, m) in st.messages.iter() {
            if !subject_matches(&self.config.filter, &m.job.subject) {
                continue;
            }
            let ready_at = match &m.held {
                Some((_, _, deadline)) => *deadline,
                None => m.available_at,
            };
            if ready_at > now {
                wake = Some(wake.map_or(ready_at, |w| w.min(ready_at)));
                continue;
            }
            if m.deliveries >= self.config.max_deliver {
                expired.push(*seq);
                continue;
            }
            chosen = Some(*seq);
            break;
        }
        for seq in expired {
            if let Some(m) = st.messages.remove(&seq) {
                st.dead.push_back(DeadLetter {
                    subject: m.job.subject,
                    dedup_id: m.job.dedup_id,
                    payload: m.job.payload,
                    reason: format!("not acknowledged after {} deliveries", m.deliveries),
                    deliveries: m.deliveries,
                });
            }
        }
        let Some(seq) = chosen else {
            return Pick::WaitUntil(wake);
        };
        let Some(m) = st.messages.get_mut(&seq) else {
            return Pick::WaitUntil(wake);
        };
        m.deliveries += 1;
        m.held = Some((
            self.config.name.clone(),
            m.deliveries,
            now + self.config.ack_wait,
        ));
        Pick::Deliver(Delivery {
            subject: m.job.subject.clone(),
            dedup_id: m.job.dedup_id.clone(),
            payload: m.job.payload.clone(),
            attempt: m.deliveries,
            acker: Box::new(MemoryAcker {
                shared: self.shared.clone(),
                seq,
                delivery: m.deliveries,
                ack_wait: self.config.ack_wait,
            }),
        })
    }
}

#[async_trait]
impl Consumer for MemoryConsumer {
    async fn next(&mut self, timeout: Duration) -> Result<Option<Delivery>, BusError> {
        let give_up = Instant::now() + timeout;
        loop {
            // Register interest before looking, so a publish between the look and
            // the wait still wakes us.
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let wake = match self.pick() {
                Pick::Deliver(d) => return Ok(Some(d)),
                Pick::WaitUntil(w) => w.map_or(give_up, |w| w.min(give_up)),
            };
            if Instant::now() >= give_up {
                return Ok(None);
            }
            let _ = tokio::time::timeout_at(wake.into(), changed).await;
        }
    }
}

struct MemoryAcker {
    shared: Arc<Shared>,
    seq: u64,
    delivery: u32,
    ack_wait: Duration,
}

impl MemoryAcker {
    /// Runs `f` on the message if this delivery still holds it; a delivery whose
    /// deadline passed and that was handed to someone else has no say any more.
    fn with_held(&self, f: impl FnOnce(&mut State, u64)) -> Result<(), BusError> {
        {
            let mut st = self.shared.lock();
            let holds = st
                .messages
                .get(&self.seq)
                .and_then(|m| m.held.as_ref())
                .is_some_and(|(_, d, _)| *d == self.delivery);
            if holds {
                f(&mut st, self.seq);
            }
        }
        self.shared.changed.notify_waiters();
        Ok(())
    }
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn ack(&self) -> Result<(), BusError> {
        self.with_held(|st, seq| {
            st.messages.remove(&seq);
        })
    }

    async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        self.with_held(|st, seq| {
            if let Some(m) = st.messages.get_mut(&seq) {
                m.held = None;
                m.available_at = Instant::now() + delay;
            }
        })
    }

    async fn progress(&self) -> Result<(), BusError> {
        let ack_wait = self.ack_wait;
        self.with_held(|st, seq| {
            if let Some(m) = st.messages.get_mut(&seq) {
                if let Some(held) = m.held.as_mut() {
                    held.2 = Instant::now() + ack_wait;
                }
            }
        })
    }

    async fn dead_letter(&self, reason: &str) -> Result<(), BusError> {
        self.with_held(|st, seq| {
            if let Some(m) = st.messages.remove(&seq) {
                st.dead.push_back(DeadLetter {
                    subject: m.job.subject,
                    dedup_id: m.job.dedup_id,
                    payload: m.job.payload,
                    reason: reason.to_owned(),
                    deliveries: m.deliveries,
                });
            }
        })
    }
}
