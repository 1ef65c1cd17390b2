//! Alert delivery. The SLO engine decides what fires; this crate makes sure people hear it:
//!
//! - [`dispatch`]: routes firing alerts into groups per receiver and decides, against the
//!   notification log, when a group needs a notification;
//! - [`outbox`]: every notification is on disk before it is sent and removed only when
//!   delivered (or refused for good, or given up after `max_age`), so a crash or restart
//!   loses nothing;
//! - the runner here: sends each group's notifications in order, retries with exponential
//!   backoff and jitter (honouring `Retry-After`), holds back a failing receiver with a
//!   circuit breaker, and records every attempt in the `notifications` table and `/metrics`;
//! - [`webhook`] (Alertmanager's v4 payload, HMAC-SHA256 signed) and [`email`] (lettre);
//! - [`silence`] and maintenance windows mute alerts; [`api`] serves silences and the outbox.

pub mod api;
pub mod config;
pub mod deliver;
pub mod dispatch;
pub mod email;
#[cfg(test)]
mod fixtures;
pub mod format;
pub mod history;
pub mod message;
pub mod metrics;
pub mod outbox;
pub mod route;
pub mod silence;
pub mod webhook;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sightline_common::clock::{Nanos, rfc3339};
use sightline_slo::Engine;
use sightline_slo::maintenance::MaintenanceWindow;
use sightline_store::Store;
use sightline_store::schema::Table;
use tokio::task::JoinSet;

pub use config::NotifyConfig;

use crate::deliver::{Attempt, Integration, Outcome};
use crate::dispatch::Dispatcher;
use crate::message::Notification;
use crate::metrics::{NotifyMetrics, ReceiverLabel};
use crate::outbox::{GroupId, Outbox};
use crate::route::Route;
use crate::silence::Silences;

/// Wall-clock time in Unix nanoseconds.
pub fn now() -> Nanos {
    sightline_common::clock::now()
}

/// A random 128-bit id in hex.
pub fn new_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

pub(crate) use sightline_common::clock::nanos;

/// How often the runner looks at the engine's alerts and at due retries.
const POLL: Duration = Duration::from_millis(250);
/// How long a stopping runner waits for requests in flight.
const STOP_GRACE: Duration = Duration::from_secs(5);

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

/// A receiver's circuit breaker: after `breaker_failures` retryable failures in a row it
/// opens for `breaker_cooldown`, then lets one trial request through; a failed trial opens it
/// again for twice as long (up to `max_backoff`), a success closes it.
#[derive(Debug)]
struct Breaker {
    failures: u32,
    open_until: Option<Nanos>,
    cooldown: Nanos,
    /// The group whose attempt is the trial request.
    probe: Option<GroupId>,
}

impl Breaker {
    fn new(cooldown: Nanos) -> Self {
        Self {
            failures: 0,
            open_until: None,
            cooldown,
            probe: None,
        }
    }

    fn try_acquire(&mut self, now: Nanos, group: &GroupId) -> bool {
        match self.open_until {
            None => true,
            Some(t) if now < t => false,
            Some(_) if self.probe.is_some() => false,
            Some(_) => {
                self.probe = Some(group.clone());
                true
            }
        }
    }

    fn success(&mut self, base: Nanos) {
        *self = Self::new(base);
    }

    /// Returns true when this failure opened the breaker. Only the trial request's failure
    /// reopens an open breaker; late failures of attempts started before it opened do not.
    fn failure(&mut self, now: Nanos, group: &GroupId, threshold: u32, max: Nanos) -> bool {
        self.failures = self.failures.saturating_add(1);
        if self.probe.as_ref() == Some(group) {
            self.probe = None;
            self.cooldown = (self.cooldown.saturating_mul(2)).min(max.max(self.cooldown));
            self.open_until = Some(now.saturating_add(self.cooldown));
            return true;
        }
        if self.open_until.is_none() && self.failures >= threshold {
            self.open_until = Some(now.saturating_add(self.cooldown));
            return true;
        }
        false
    }
}

struct Runner {
    dispatcher: Dispatcher,
    queues: BTreeMap<GroupId, VecDeque<Pending>>,
    /// Groups with an attempt running, by its task.
    in_flight: BTreeMap<tokio::task::Id, GroupId>,
    breakers: BTreeMap<String, Breaker>,
    history: Vec<history::Row>,
}

struct Shared {
    engine: Engine,
    store: Arc<Store>,
    silences: Silences,
    maintenance: Vec<MaintenanceWindow>,
    integrations: BTreeMap<String, Arc<Integration>>,
    delivery: config::DeliveryConfig,
    outbox: Outbox,
    metrics: NotifyMetrics,
    runner: tokio::sync::Mutex<Runner>,
    pending_view: std::sync::Mutex<Vec<PendingView>>,
}

/// Alert delivery; cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").finish_non_exhaustive()
    }
}

impl Notifier {
    /// Opens the outbox and the silences in `dir` (created if needed) and builds the
    /// receivers. `external_url` is used when the config gives none.
    pub fn open(
        config: &NotifyConfig,
        dir: &Path,
        external_url: &str,
        store: Arc<Store>,
        engine: Engine,
        maintenance: Vec<MaintenanceWindow>,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Result<Self, String> {
        config.validate()?;
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut integrations = BTreeMap::new();
        let mut send_resolved = BTreeMap::new();
        for r in &config.receivers {
            let integration = match (&r.webhook, &r.email) {
                (Some(w), _) => webhook::Webhook::new(w).map(|w| Integration::Webhook(Box::new(w))),
                (None, Some(e)) => email::Email::new(e).map(Integration::Email),
                (None, None) => Err("no [webhook] or [email]".to_string()),
            }
            .map_err(|e| format!("notify.receivers {:?}: {e}", r.name))?;
            integrations.insert(r.name.clone(), Arc::new(integration));
            send_resolved.insert(r.name.clone(), r.send_resolved);
        }
        let silences = Silences::open(dir, &config.silences)?;
        let opened = Outbox::open(dir)
            .map_err(|e| format!("cannot open the outbox in {}: {e}", dir.display()))?;
        let metrics = NotifyMetrics::new(registry);
        let external_url = config
            .external_url
            .clone()
            .unwrap_or_else(|| external_url.to_string())
            .trim_end_matches('/')
            .to_string();
        let root = config
            .route
            .as_ref()
            .map(Route::root)
            .unwrap_or_else(|| Route::root(&config::RouteConfig::default()));
        let now = now();
        let next_seq = opened
            .pending
            .iter()
            .map(|n| n.seq)
            .chain(opened.log.values().map(|e| e.seq))
            .max()
            .unwrap_or(0)
            + 1;
        let mut queues: BTreeMap<GroupId, VecDeque<Pending>> = BTreeMap::new();
        for n in opened.pending {
            enqueue(&mut queues, n, now);
        }
        if !queues.is_empty() {
            tracing::info!(
                notifications = queues.values().map(VecDeque::len).sum::<usize>(),
                "undelivered notifications found in the outbox; sending them"
            );
        }
        let dispatcher =
            Dispatcher::new(root, send_resolved, external_url, opened.log, next_seq, now);
        Ok(Self {
            shared: Arc::new(Shared {
                engine,
                store,
                silences,
                maintenance,
                integrations,
                delivery: config.delivery.clone(),
                outbox: opened.outbox,
                metrics,
                runner: tokio::sync::Mutex::new(Runner {
                    dispatcher,
                    queues,
                    in_flight: BTreeMap::new(),
                    breakers: BTreeMap::new(),
                    history: Vec::new(),
                }),
                pending_view: Default::default(),
            }),
        })
    }

    pub fn silences(&self) -> &Silences {
        &self.shared.silences
    }

    pub fn maintenance(&self) -> &[MaintenanceWindow] {
        &self.shared.maintenance
    }

    pub fn pending(&self) -> Vec<PendingView> {
        self.shared
            .pending_view
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether a silence or an active maintenance window mutes an alert with these labels.
    pub fn muted(&self, labels: &BTreeMap<String, String>, now: Nanos) -> bool {
        self.shared.muted(labels, now)
    }

    /// Runs until `stop`, then waits a little for requests in flight (the outbox keeps
    /// whatever is not delivered).
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        let s = &self.shared;
        let mut r = s.runner.lock().await;
        tokio::pin!(stop);
        let mut attempts: JoinSet<Attempt> = JoinSet::new();
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            r.dispatch(s).await;
            r.start_attempts(s, &mut attempts).await;
            r.publish(s);
            r.write_history(s).await;
            tokio::select! {
                _ = &mut stop => break,
                Some(done) = attempts.join_next_with_id() => r.finished(s, done).await,
                _ = poll.tick() => {}
            }
        }
        let _ = tokio::time::timeout(STOP_GRACE, async {
            while let Some(done) = attempts.join_next_with_id().await {
                r.finished(s, done).await;
            }
        })
        .await;
        r.publish(s);
        r.write_history(s).await;
    }
}

/// Runs file work (fsyncs) off the async threads.
async fn blocking<T: Send + 'static>(
    s: &Arc<Shared>,
    f: impl FnOnce(&Shared) -> T + Send + 'static,
) -> T {
    let shared = s.clone();
    match tokio::task::spawn_blocking(move || f(&shared)).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

impl Shared {
    fn muted(&self, labels: &BTreeMap<String, String>, now: Nanos) -> bool {
        self.silences.silenced_by(labels, now).is_some()
            || self
                .maintenance
                .iter()
                .any(|w| w.active_at(now) && w.applies_to(labels))
    }

    fn kind(&self, receiver: &str) -> &'static str {
        self.integrations
            .get(receiver)
            .map_or("unknown", |i| i.kind())
    }
}

/// Puts a notification at the end of its group's queue, due at once.
fn enqueue(queues: &mut BTreeMap<GroupId, VecDeque<Pending>>, n: Notification, now: Nanos) {
    queues
        .entry((n.receiver.clone(), n.group_key.clone()))
        .or_default()
        .push_back(Pending {
            n,
            attempts: 0,
            not_before: now,
            last_error: None,
        });
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

impl Runner {
    /// Looks at the engine's alerts and queues what the groups due now need.
    async fn dispatch(&mut self, s: &Arc<Shared>) {
        // Alerts restored at start carry no figures before the engine's first evaluation.
        if s.engine.ticks() == 0 {
            return;
        }
        let now = now();
        self.dispatcher.observe(&s.engine.firing(), now);
        if self.dispatcher.next_due().is_none_or(|t| t > now) {
            return;
        }
        let muted = |labels: &BTreeMap<String, String>| s.muted(labels, now);
        let (queued, log_changed) = self.dispatcher.flush(now, &muted);
        let mut accepted = Vec::new();
        for q in queued {
            let id = (
                q.notification.receiver.clone(),
                q.notification.group_key.clone(),
            );
            let waiting = self.queues.get(&id).and_then(|q| q.back());
            if waiting.is_some_and(|p| same(&p.n, &q.notification)) {
                continue; // the one still waiting says the same
            }
            let n = q.notification.clone();
            match blocking(s, move |s| s.outbox.put(&n)).await {
                Ok(()) => accepted.push(q.notification),
                Err(e) => {
                    tracing::error!(error = %e, receiver = %id.0, "cannot write a notification to the outbox; will try again");
                    self.dispatcher.unqueue(q, now);
                }
            }
        }
        if log_changed || !accepted.is_empty() {
            let log = self.dispatcher.log.clone();
            if let Err(e) = blocking(s, move |s| s.outbox.save_log(&log)).await {
                tracing::error!(error = %e, "cannot write the notification log");
            }
        }
        for n in accepted {
            tracing::info!(receiver = %n.receiver, group = %n.group_key, status = %n.status, alerts = n.alerts.len(), "notification queued");
            s.metrics.count(&n.receiver, "queued");
            self.history
                .push(history::Row::new(&n, s.kind(&n.receiver), "queued", now));
            enqueue(&mut self.queues, n, now);
        }
    }

    /// Starts the next attempt of every group whose head is due, within each receiver's
    /// breaker and concurrency.
    async fn start_attempts(&mut self, s: &Arc<Shared>, attempts: &mut JoinSet<Attempt>) {
        let now = now();
        let max_age = nanos(s.delivery.max_age);
        let Runner {
            queues,
            in_flight,
            breakers,
            history,
            ..
        } = self;
        let busy_groups: BTreeSet<GroupId> = in_flight.values().cloned().collect();
        for (id, q) in queues.iter_mut() {
            if busy_groups.contains(id) {
                continue;
            }
            while let Some(p) = q.front() {
                let unknown = !s.integrations.contains_key(&id.0);
                if now - p.n.created_at <= max_age && !unknown {
                    break;
                }
                let mut row = history::Row::new(&p.n, s.kind(&id.0), "expired", now);
                row.attempt = i64::from(p.attempts);
                row.error = Some(if unknown {
                    format!("receiver {:?} is no longer configured", id.0)
                } else {
                    format!(
                        "not delivered within max_age ({:?}) after {} attempts; last error: {}",
                        s.delivery.max_age,
                        p.attempts,
                        p.last_error.as_deref().unwrap_or("none")
                    )
                });
                tracing::error!(receiver = %id.0, group = %id.1, error = row.error.as_deref().unwrap_or(""), "notification given up");
                history.push(row);
                s.metrics.count(&id.0, "dropped");
                let n = p.n.clone();
                if let Err(e) = blocking(s, move |s| s.outbox.remove(&n)).await {
                    tracing::error!(error = %e, "cannot remove a notification from the outbox");
                }
                q.pop_front();
            }
            let Some(p) = q.front_mut() else {
                continue;
            };
            if p.not_before > now {
                continue;
            }
            let busy = in_flight.values().filter(|(r, _)| r == &id.0).count();
            if busy >= s.delivery.concurrency {
                continue;
            }
            let breaker = breakers
                .entry(id.0.clone())
                .or_insert_with(|| Breaker::new(nanos(s.delivery.breaker_cooldown)));
            if !breaker.try_acquire(now, id) {
                continue;
            }
            let Some(integration) = s.integrations.get(&id.0).cloned() else {
                continue;
            };
            p.attempts += 1;
            let n = p.n.clone();
            let task = attempts.spawn(async move { integration.send(&n).await });
            in_flight.insert(task.id(), id.clone());
        }
        let busy_groups: BTreeSet<&GroupId> = in_flight.values().collect();
        queues.retain(|id, q| !q.is_empty() || busy_groups.contains(id));
    }

    /// An attempt's task ended: normally with its result; a task that panicked counts as a
    /// retryable failure, so its group and the receiver's breaker are never left waiting.
    async fn finished(
        &mut self,
        s: &Arc<Shared>,
        done: Result<(tokio::task::Id, Attempt), tokio::task::JoinError>,
    ) {
        let (task, a) = match done {
            Ok(x) => x,
            Err(e) => (
                e.id(),
                deliver::attempt(
                    Outcome::Retryable,
                    None,
                    Some(format!("the delivery task failed: {e}")),
                    None,
                ),
            ),
        };
        if let Some(id) = self.in_flight.remove(&task) {
            self.finish(s, id, a).await;
        }
    }

    /// Records an attempt and moves its notification on: removed when delivered or refused,
    /// scheduled again when worth retrying.
    async fn finish(&mut self, s: &Arc<Shared>, id: GroupId, a: Attempt) {
        let now = now();
        let Some(q) = self.queues.get_mut(&id) else {
            return;
        };
        let Some(p) = q.front_mut() else {
            return;
        };
        let receiver = id.0.clone();
        s.metrics
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
        let mut row = history::Row::new(&p.n, s.kind(&receiver), outcome, now);
        row.attempt = i64::from(p.attempts);
        row.status_code = a.status_code;
        row.error = a.error.clone();
        row.latency_ms = Some(a.latency.as_secs_f64() * 1e3);
        self.history.push(row);
        let base = nanos(s.delivery.breaker_cooldown);
        let breaker = self
            .breakers
            .entry(receiver.clone())
            .or_insert_with(|| Breaker::new(base));
        match a.outcome {
            Outcome::Delivered | Outcome::Permanent => {
                // The receiver answered: it is alive.
                breaker.success(base);
                if a.outcome == Outcome::Delivered {
                    s.metrics.count(&receiver, "sent");
                    tracing::info!(receiver = %receiver, group = %id.1, attempts = p.attempts, "notification delivered");
                } else {
                    s.metrics.count(&receiver, "failed");
                    tracing::error!(receiver = %receiver, group = %id.1, error = a.error.as_deref().unwrap_or(""), "notification refused by the receiver; not retried");
                }
                let n = p.n.clone();
                if let Err(e) = blocking(s, move |s| s.outbox.remove(&n)).await {
                    tracing::error!(error = %e, "cannot remove a notification from the outbox");
                }
                q.pop_front();
            }
            Outcome::Retryable => {
                s.metrics.count(&receiver, "retried");
                let max = nanos(s.delivery.max_backoff);
                if breaker.failure(now, &id, s.delivery.breaker_failures, max) {
                    tracing::warn!(receiver = %receiver, "circuit breaker open: holding deliveries back");
                }
                let exp = p.attempts.saturating_sub(1).min(30);
                let backoff = nanos(s.delivery.initial_backoff)
                    .saturating_mul(1i64 << exp)
                    .min(max);
                // Full backoff at most, half at least: retries of many groups spread out.
                let jittered = backoff / 2 + (rand::random::<f64>() * (backoff / 2) as f64) as i64;
                // A Retry-After longer than max_age would only delay giving up.
                let wait = a
                    .retry_after
                    .map_or(jittered, |r| jittered.max(nanos(r)))
                    .min(nanos(s.delivery.max_age));
                p.not_before = now.saturating_add(wait);
                p.last_error = a.error.clone();
                tracing::warn!(receiver = %receiver, group = %id.1, attempt = p.attempts, retry_in = ?Duration::from_nanos(wait.max(0) as u64), error = a.error.as_deref().unwrap_or(""), "notification not delivered; will retry");
            }
        }
    }

    /// Updates the pending gauges, the breaker gauges and the API's view of the outbox.
    fn publish(&self, s: &Shared) {
        let mut view = Vec::new();
        let mut per_receiver: BTreeMap<&str, i64> =
            s.integrations.keys().map(|k| (k.as_str(), 0)).collect();
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
            s.metrics.pending.get_or_create(&label).set(n);
            let open = self
                .breakers
                .get(receiver)
                .is_some_and(|b| b.open_until.is_some());
            s.metrics
                .circuit_open
                .get_or_create(&label)
                .set(i64::from(open));
        }
        *s.pending_view.lock().unwrap_or_else(|e| e.into_inner()) = view;
    }

    /// Writes the history rows gathered so far (kept for the next try if the store refuses).
    async fn write_history(&mut self, s: &Shared) {
        if self.history.is_empty() {
            return;
        }
        let result = match history::batch(&self.history) {
            Ok(b) => s
                .store
                .write(vec![(Table::Notifications, b)])
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(_) => self.history.clear(),
            Err(e) => {
                tracing::warn!(error = %e, rows = self.history.len(), "cannot record notification history; will try again");
                if self.history.len() > 10_000 {
                    let excess = self.history.len() - 10_000;
                    self.history.drain(..excess);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_probes_and_closes() {
        let g = ("r".to_string(), "g1".to_string());
        let other = ("r".to_string(), "g2".to_string());
        let mut b = Breaker::new(10);
        for t in 0..4 {
            assert!(b.try_acquire(t, &g));
            assert!(!b.failure(t, &g, 5, 100));
        }
        assert!(b.failure(4, &g, 5, 100), "fifth failure opens");
        assert!(!b.try_acquire(13, &g));
        assert!(b.try_acquire(14, &g), "one trial after the cooldown");
        assert!(!b.try_acquire(14, &other), "only one");
        // A late failure of another group's older attempt is not the trial's answer.
        assert!(!b.failure(14, &other, 5, 100));
        assert!(b.probe.is_some());
        assert!(b.failure(15, &g, 5, 100));
        assert_eq!(b.open_until, Some(35), "cooldown doubled");
        assert!(b.try_acquire(35, &other));
        b.success(10);
        assert!(b.try_acquire(36, &g) && b.open_until.is_none());
    }
}
