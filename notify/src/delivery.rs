//! Sending what the outbox holds: each group's notifications in order, one attempt at a time
//! per group, at most `concurrency` per receiver, through the receiver's circuit breaker;
//! retries after `breaker::retry_delay`, given up after `max_age`; every attempt becomes a row of the
//! `notifications` table. Time is passed in, so all of it runs on a manual clock in tests.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sightline_common::clock::{Nanos, nanos, rfc3339};
use tokio::task::JoinSet;

use crate::attempt::{self, Attempt, Integration, Outcome};
use crate::breaker::{Breaker, retry_delay};
use crate::config::DeliveryConfig;
use crate::history;
use crate::message::Notification;
use crate::metrics::{NotifyMetrics, ReceiverLabel};
use crate::outbox::{GroupId, Outbox};

/// A notification in the outbox, as `GET /api/v1/notifications/pending` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PendingView {
    pub id: String,
    pub receiver: String,
    pub group_key: String,
    pub status: String,
    pub alerts: usize,
    pub queued_at: String,
    pub attempts: u32,
    pub next_attempt: String,
    pub last_error: Option<String>,
}

struct Pending {
    n: Notification,
    attempts: u32,
    not_before: Nanos,
    last_error: Option<String>,
}

/// The receivers, their queues and what is being sent.
pub(crate) struct Delivery {
    policy: DeliveryConfig,
    integrations: BTreeMap<String, Arc<dyn Integration>>,
    outbox: Outbox,
    metrics: NotifyMetrics,
    queues: BTreeMap<GroupId, VecDeque<Pending>>,
    /// Groups with an attempt running, by its task.
    in_flight: BTreeMap<tokio::task::Id, GroupId>,
    breakers: BTreeMap<String, Breaker>,
    /// `notifications` rows not yet written.
    pub(crate) history: Vec<history::Row>,
}

/// Runs file work (fsyncs) off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// The same statuses for the same alerts.
fn same(a: &Notification, b: &Notification) -> bool {
    let key = |n: &Notification| -> BTreeSet<(String, String)> {
        n.alerts
            .iter()
            .map(|x| (x.fingerprint.clone(), x.status.clone()))
            .collect()
    };
    a.status == b.status && key(a) == key(b)
}

impl Delivery {
    pub(crate) fn new(
        policy: DeliveryConfig,
        integrations: BTreeMap<String, Arc<dyn Integration>>,
        outbox: Outbox,
        metrics: NotifyMetrics,
    ) -> Self {
        Self {
            policy,
            integrations,
            outbox,
            metrics,
            queues: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            breakers: BTreeMap::new(),
            history: Vec::new(),
        }
    }

    pub(crate) fn kind(&self, receiver: &str) -> &'static str {
        self.integrations
            .get(receiver)
            .map_or("unknown", |i| i.kind())
    }

    /// Queues a notification already in the outbox (at start, from what a crash left).
    pub(crate) fn resume(&mut self, n: Notification, now: Nanos) {
        self.queues
            .entry((n.receiver.clone(), n.group_key.clone()))
            .or_default()
            .push_back(Pending {
                n,
                attempts: 0,
                not_before: now,
                last_error: None,
            });
    }

    /// Whether the last notification waiting in `n`'s group says the same as `n`.
    pub(crate) fn already_waiting(&self, n: &Notification) -> bool {
        self.queues
            .get(&(n.receiver.clone(), n.group_key.clone()))
            .and_then(|q| q.back())
            .is_some_and(|p| same(&p.n, n))
    }

    /// Writes `n` to the outbox, then queues it (due now).
    ///
    /// # Errors
    /// When the outbox cannot take it: it is not queued.
    pub(crate) async fn queue(
        &mut self,
        n: Notification,
        now: Nanos,
    ) -> Result<(), crate::error::NotifyError> {
        let (outbox, copy) = (self.outbox.clone(), n.clone());
        blocking(move || outbox.put(&copy)).await?;
        tracing::info!(receiver = %n.receiver, group = %n.group_key, status = %n.status, alerts = n.alerts.len(), "notification queued");
        self.metrics.count(&n.receiver, "queued");
        self.history
            .push(history::Row::new(&n, self.kind(&n.receiver), "queued", now));
        self.resume(n, now);
        Ok(())
    }

    /// Writes the notification log (off the async threads).
    ///
    /// # Errors
    /// When it cannot be written.
    pub(crate) async fn save_log(
        &self,
        log: BTreeMap<GroupId, crate::outbox::LogEntry>,
    ) -> Result<(), crate::error::NotifyError> {
        let outbox = self.outbox.clone();
        blocking(move || outbox.save_log(&log)).await
    }

    async fn forget(&self, n: &Notification) {
        let (outbox, n) = (self.outbox.clone(), n.clone());
        if let Err(e) = blocking(move || outbox.remove(&n)).await {
            tracing::error!(error = %e, "cannot remove a notification from the outbox");
        }
    }

    /// Gives up the notifications at the head of `id`'s queue that are older than `max_age`
    /// (or whose receiver is gone).
    async fn expire(&mut self, id: &GroupId, now: Nanos) {
        let max_age = nanos(self.policy.max_age);
        let unknown = !self.integrations.contains_key(&id.0);
        loop {
            let Some(p) = self.queues.get(id).and_then(|q| q.front()) else {
                return;
            };
            if now - p.n.created_at <= max_age && !unknown {
                return;
            }
            let mut row = history::Row::new(&p.n, self.kind(&id.0), "expired", now);
            row.attempt = i64::from(p.attempts);
            row.error = Some(if unknown {
                format!("receiver {:?} is no longer configured", id.0)
            } else {
                format!(
                    "not delivered within max_age ({:?}) after {} attempts; last error: {}",
                    self.policy.max_age,
                    p.attempts,
                    p.last_error.as_deref().unwrap_or("none")
                )
            });
            tracing::error!(receiver = %id.0, group = %id.1, error = row.error.as_deref().unwrap_or(""), "notification given up");
            self.history.push(row);
            self.metrics.count(&id.0, "dropped");
            let n = p.n.clone();
            self.forget(&n).await;
            if let Some(q) = self.queues.get_mut(id) {
                q.pop_front();
            }
        }
    }

    /// Starts the next attempt of every group whose head is due, within each receiver's
    /// breaker and concurrency.
    pub(crate) async fn start_attempts(&mut self, attempts: &mut JoinSet<Attempt>, now: Nanos) {
        let ids: Vec<GroupId> = self.queues.keys().cloned().collect();
        for id in ids {
            if self.in_flight.values().any(|g| g == &id) {
                continue;
            }
            self.expire(&id, now).await;
            let busy = self.in_flight.values().filter(|(r, _)| r == &id.0).count();
            let Some(p) = self.queues.get_mut(&id).and_then(|q| q.front_mut()) else {
                continue;
            };
            if p.not_before > now || busy >= self.policy.concurrency {
                continue;
            }
            let cooldown = nanos(self.policy.breaker_cooldown);
            let breaker = self
                .breakers
                .entry(id.0.clone())
                .or_insert_with(|| Breaker::new(cooldown));
            if !breaker.try_acquire(now, &id) {
                continue;
            }
            let Some(integration) = self.integrations.get(&id.0).cloned() else {
                continue;
            };
            p.attempts += 1;
            let n = p.n.clone();
            let task =
                attempts.spawn(async move { attempt::timed(integration.as_ref(), &n).await });
            self.in_flight.insert(task.id(), id.clone());
        }
        let in_flight: BTreeSet<&GroupId> = self.in_flight.values().collect();
        self.queues
            .retain(|id, q| !q.is_empty() || in_flight.contains(id));
    }

    /// An attempt's task ended: normally with its result; a task that panicked counts as a
    /// retryable failure, so its group and the receiver's breaker are never left waiting.
    pub(crate) async fn finished(
        &mut self,
        done: Result<(tokio::task::Id, Attempt), tokio::task::JoinError>,
        now: Nanos,
        unit: f64,
    ) {
        let (task, a) = match done {
            Ok(x) => x,
            Err(e) => (
                e.id(),
                Attempt::new(
                    Outcome::Retryable,
                    None,
                    Some(format!("the delivery task failed: {e}")),
                    None,
                ),
            ),
        };
        if let Some(id) = self.in_flight.remove(&task) {
            self.finish(id, a, now, unit).await;
        }
    }

    /// Records an attempt and moves its notification on: removed when delivered or refused,
    /// scheduled again when worth retrying (`unit`, uniform in [0, 1), picks the jitter).
    async fn finish(&mut self, id: GroupId, a: Attempt, now: Nanos, unit: f64) {
        let kind = self.kind(&id.0);
        let Some(p) = self.queues.get_mut(&id).and_then(|q| q.front_mut()) else {
            return;
        };
        let receiver = id.0.clone();
        self.metrics
            .attempt_seconds
            .get_or_create(&ReceiverLabel {
                receiver: receiver.clone(),
            })
            .observe(a.latency.as_secs_f64());
        let outcome = match a.outcome {
            Outcome::Delivered => "delivered",
            Outcome::Permanent => "rejected",
            Outcome::Retryable => "retrying",
        };
        let mut row = history::Row::new(&p.n, kind, outcome, now);
        row.attempt = i64::from(p.attempts);
        row.status_code = a.status_code;
        row.error = a.error.clone();
        row.latency_ms = Some(a.latency.as_secs_f64() * 1e3);
        self.history.push(row);
        let base = nanos(self.policy.breaker_cooldown);
        let breaker = self
            .breakers
            .entry(receiver.clone())
            .or_insert_with(|| Breaker::new(base));
        match a.outcome {
            Outcome::Delivered | Outcome::Permanent => {
                // The receiver answered: it is alive.
                breaker.success(base);
                if a.outcome == Outcome::Delivered {
                    self.metrics.count(&receiver, "sent");
                    tracing::info!(receiver = %receiver, group = %id.1, attempts = p.attempts, "notification delivered");
                } else {
                    self.metrics.count(&receiver, "failed");
                    tracing::error!(receiver = %receiver, group = %id.1, error = a.error.as_deref().unwrap_or(""), "notification refused by the receiver; not retried");
                }
                let n = p.n.clone();
                self.forget(&n).await;
                if let Some(q) = self.queues.get_mut(&id) {
                    q.pop_front();
                }
            }
            Outcome::Retryable => {
                self.metrics.count(&receiver, "retried");
                let max = nanos(self.policy.max_backoff);
                if breaker.failure(now, &id, self.policy.breaker_failures, max) {
                    tracing::warn!(receiver = %receiver, "circuit breaker open: holding deliveries back");
                }
                let wait = retry_delay(&self.policy, p.attempts, a.retry_after, unit);
                p.not_before = now.saturating_add(wait);
                p.last_error = a.error.clone();
                tracing::warn!(receiver = %receiver, group = %id.1, attempt = p.attempts, retry_in = ?Duration::from_nanos(wait.max(0) as u64), error = a.error.as_deref().unwrap_or(""), "notification not delivered; will retry");
            }
        }
    }

    /// Updates the pending and breaker gauges; returns the API's view of the outbox.
    pub(crate) fn publish(&self) -> Vec<PendingView> {
        let mut view = Vec::new();
        let mut per_receiver: BTreeMap<&str, i64> =
            self.integrations.keys().map(|k| (k.as_str(), 0)).collect();
        for ((receiver, key), q) in &self.queues {
            *per_receiver.entry(receiver).or_default() += q.len() as i64;
            for p in q {
                view.push(PendingView {
                    id: p.n.id.clone(),
                    receiver: receiver.clone(),
                    group_key: key.clone(),
                    status: p.n.status.clone(),
                    alerts: p.n.alerts.len(),
                    queued_at: rfc3339(p.n.created_at),
                    attempts: p.attempts,
                    next_attempt: rfc3339(p.not_before),
                    last_error: p.last_error.clone(),
                });
            }
        }
        for (receiver, n) in per_receiver {
            let label = ReceiverLabel {
                receiver: receiver.into(),
            };
            self.metrics.pending.get_or_create(&label).set(n);
            let open = self
                .breakers
                .get(receiver)
                .is_some_and(|b| b.open_until.is_some());
            self.metrics
                .circuit_open
                .get_or_create(&label)
                .set(i64::from(open));
        }
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::AlertOut;
    use sightline_common::clock::{Clock, ManualClock, SECOND};
    use std::sync::Mutex;

    /// A receiver answering from a script (the runner's logic, not a transport, is tested
    /// here; webhook and email are tested end to end against real servers).
    #[derive(Debug)]
    struct Scripted(Mutex<VecDeque<Outcome>>);

    #[async_trait::async_trait]
    impl Integration for Scripted {
        fn kind(&self) -> &'static str {
            "scripted"
        }
        async fn send(&self, _: &Notification) -> Attempt {
            let outcome = self
                .0
                .lock()
                .expect("lock")
                .pop_front()
                .unwrap_or(Outcome::Retryable);
            Attempt::new(outcome, None, Some(format!("{outcome:?}")), None)
        }
    }

    fn notification(seq: u64, created_at: Nanos) -> Notification {
        Notification {
            id: format!("n{seq}"),
            seq,
            receiver: "r".into(),
            group_key: "g".into(),
            group_labels: BTreeMap::new(),
            group_by: Vec::new(),
            status: "firing".into(),
            alerts: vec![AlertOut {
                fingerprint: "f".into(),
                status: "firing".into(),
                labels: BTreeMap::new(),
                annotations: BTreeMap::new(),
                starts_at: created_at,
                ends_at: None,
                generator_url: String::new(),
            }],
            external_url: String::new(),
            created_at,
        }
    }

    fn delivery(dir: &std::path::Path, script: &[Outcome], policy: DeliveryConfig) -> Delivery {
        let integration: Arc<dyn Integration> =
            Arc::new(Scripted(Mutex::new(script.iter().copied().collect())));
        let outbox = Outbox::open(dir).expect("outbox").outbox;
        Delivery::new(
            policy,
            BTreeMap::from([("r".to_string(), integration)]),
            outbox,
            NotifyMetrics::new(&mut prometheus_client::registry::Registry::default()),
        )
    }

    /// Starts what is due at the clock's time and waits for those attempts.
    async fn step(d: &mut Delivery, clock: &ManualClock, unit: f64) -> usize {
        let mut attempts = JoinSet::new();
        d.start_attempts(&mut attempts, clock.now()).await;
        let started = attempts.len();
        while let Some(done) = attempts.join_next_with_id().await {
            d.finished(done, clock.now(), unit).await;
        }
        started
    }

    fn outcomes(d: &Delivery) -> Vec<&'static str> {
        d.history.iter().map(|r| r.outcome).collect()
    }

    fn outbox_files(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir.join("outbox"))
            .expect("outbox")
            .count()
    }

    #[tokio::test]
    async fn retries_wait_their_backoff_on_the_clock_and_stop_at_max_age() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(1_000 * SECOND);
        let policy = DeliveryConfig {
            initial_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(8),
            max_age: Duration::from_secs(30),
            breaker_failures: 100,
            ..DeliveryConfig::default()
        };
        let mut d = delivery(dir.path(), &[], policy);
        d.queue(notification(1, clock.now()), clock.now())
            .await
            .expect("queued");
        assert_eq!(
            outbox_files(dir.path()),
            1,
            "on disk before the first attempt"
        );
        // With the shortest jitter (unit 0) the waits are 1 s, 2 s, 4 s, 4 s... (half of 2,
        // 4, 8, 8): nothing is sent before each is over.
        let mut waits = Vec::new();
        assert_eq!(step(&mut d, &clock, 0.0).await, 1);
        for _ in 0..5 {
            let due = d.publish()[0].next_attempt.clone();
            let due = sightline_common::clock::parse_rfc3339(&due).expect("time");
            waits.push((due - clock.now()) / SECOND);
            clock.set(due - 1);
            assert_eq!(step(&mut d, &clock, 0.0).await, 0, "not before its time");
            clock.set(due);
            assert_eq!(step(&mut d, &clock, 0.0).await, 1);
        }
        assert_eq!(waits, [1, 2, 4, 4, 4]);
        // Past max_age the notification is given up, recorded, and gone from the outbox.
        clock.advance(30 * SECOND);
        assert_eq!(step(&mut d, &clock, 0.0).await, 0);
        assert_eq!(outcomes(&d).first(), Some(&"queued"));
        assert_eq!(outcomes(&d).last(), Some(&"expired"));
        assert_eq!(outcomes(&d).iter().filter(|o| **o == "retrying").count(), 6);
        assert!(d.publish().is_empty());
        assert_eq!(outbox_files(dir.path()), 0);
    }

    #[tokio::test]
    async fn the_breaker_holds_a_failing_receiver_back_then_lets_one_trial_through() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(1_000 * SECOND);
        let policy = DeliveryConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(1),
            breaker_failures: 2,
            breaker_cooldown: Duration::from_secs(60),
            ..DeliveryConfig::default()
        };
        let script = [Outcome::Retryable, Outcome::Retryable, Outcome::Delivered];
        let mut d = delivery(dir.path(), &script, policy);
        d.queue(notification(1, clock.now()), clock.now())
            .await
            .expect("queued");
        assert_eq!(step(&mut d, &clock, 0.0).await, 1);
        clock.advance(SECOND);
        assert_eq!(
            step(&mut d, &clock, 0.0).await,
            1,
            "second failure opens the breaker"
        );
        clock.advance(30 * SECOND);
        assert_eq!(step(&mut d, &clock, 0.0).await, 0, "open: held back");
        clock.advance(30 * SECOND);
        assert_eq!(
            step(&mut d, &clock, 0.0).await,
            1,
            "the trial after the cooldown"
        );
        assert_eq!(
            outcomes(&d),
            ["queued", "retrying", "retrying", "delivered"]
        );
        assert_eq!(outbox_files(dir.path()), 0);
    }

    #[tokio::test]
    async fn a_refusal_is_not_retried_and_the_next_of_its_group_goes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(1_000 * SECOND);
        let script = [Outcome::Permanent, Outcome::Delivered];
        let mut d = delivery(dir.path(), &script, DeliveryConfig::default());
        for seq in [1, 2] {
            d.queue(notification(seq, clock.now()), clock.now())
                .await
                .expect("queued");
        }
        assert_eq!(
            step(&mut d, &clock, 0.5).await,
            1,
            "one at a time per group"
        );
        assert_eq!(step(&mut d, &clock, 0.5).await, 1);
        assert_eq!(outcomes(&d), ["queued", "queued", "rejected", "delivered"]);
        assert!(d.publish().is_empty());
    }
}
