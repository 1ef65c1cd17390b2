//! The notifier: every `POLL` (250 ms), the engine's firing alerts go through the dispatcher
//! (routes, groups, the notification log), what it decides is written to the outbox and
//! queued, attempts are started and finished (`delivery`), and the history is stored. One
//! task owns all of it, so the queues need no locks; attempts run as tasks of a [`JoinSet`]
//! that the loop owns.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sightline_common::clock::{Clock, Nanos};
use sightline_slo::Engine;
use sightline_slo::maintenance::MaintenanceWindow;
use sightline_store::Store;
use sightline_store::schema::Table;
use tokio::task::JoinSet;

use crate::attempt::{Attempt, Integration};
use crate::config::{self, NotifyConfig};
use crate::delivery::{Delivery, PendingView};
use crate::dispatch::Dispatcher;
use crate::email::Email;
use crate::error::NotifyError;
use crate::history;
use crate::metrics::NotifyMetrics;
use crate::outbox::Outbox;
use crate::route::Route;
use crate::silence::Silences;
use crate::webhook::Webhook;

/// How often the runner looks at the engine's alerts and at due retries.
const POLL: Duration = Duration::from_millis(250);
/// How long a stopping runner waits for requests in flight.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// History rows kept while the store refuses them.
const MAX_UNWRITTEN_HISTORY: usize = 10_000;

struct Runner {
    dispatcher: Dispatcher,
    delivery: Delivery,
    /// A tenant's alerts go out with fingerprints of their labels with `tenant` (two tenants'
    /// alerts of one spec must not look the same to a receiver): which engine fingerprint
    /// each stands for.
    fingerprints: std::collections::HashMap<String, String>,
}

struct Shared {
    engine: Engine,
    /// Put as the `tenant` label on every alert of a tenant other than the default.
    tenant: Option<String>,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    silences: Silences,
    maintenance: Vec<MaintenanceWindow>,
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

/// The receivers of the config, built (files read, clients made).
fn integrations(
    config: &NotifyConfig,
) -> Result<BTreeMap<String, Arc<dyn Integration>>, NotifyError> {
    let mut out: BTreeMap<String, Arc<dyn Integration>> = BTreeMap::new();
    for r in &config.receivers {
        let built: Result<Arc<dyn Integration>, NotifyError> = match (&r.webhook, &r.email) {
            (Some(w), _) => Webhook::new(w).map(|w| Arc::new(w) as Arc<dyn Integration>),
            (None, Some(e)) => Email::new(e).map(|e| Arc::new(e) as Arc<dyn Integration>),
            (None, None) => Err(NotifyError::Config("no [webhook] or [email]".into())),
        };
        let built = built
            .map_err(|e| NotifyError::Config(format!("notify.receivers {:?}: {e}", r.name)))?;
        out.insert(r.name.clone(), built);
    }
    Ok(out)
}

impl Notifier {
    /// Opens `tenant`'s outbox and silences in `dir` (created if needed) and builds the
    /// receivers (the operator's, shared: alerts of a tenant other than the default carry a
    /// `tenant` label). `external_url` is used when the config gives none. Time comes from `clock`
    /// (backoff, `max_age`, the breaker, silences and windows).
    ///
    /// # Errors
    /// [`NotifyError::Config`] for a config that cannot work; [`NotifyError::Io`] and
    /// [`NotifyError::File`] when the outbox, the log or the silences cannot be read.
    #[allow(
        clippy::too_many_arguments,
        reason = "each part of delivery, named at the one call site"
    )]
    pub fn open(
        config: &NotifyConfig,
        tenant: &str,
        dir: &Path,
        external_url: &str,
        store: Arc<Store>,
        engine: Engine,
        maintenance: Vec<MaintenanceWindow>,
        clock: Arc<dyn Clock>,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Result<Self, NotifyError> {
        config.validate()?;
        std::fs::create_dir_all(dir).map_err(|e| NotifyError::io(dir, e))?;
        let integrations = integrations(config)?;
        let send_resolved = config
            .receivers
            .iter()
            .map(|r| (r.name.clone(), r.send_resolved))
            .collect();
        let silences = Silences::open(dir, &config.silences)?;
        let opened = Outbox::open(dir)?;
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
        let now = clock.now();
        let next_seq = opened
            .pending
            .iter()
            .map(|n| n.seq)
            .chain(opened.log.values().map(|e| e.seq))
            .max()
            .unwrap_or(0)
            + 1;
        let mut delivery = Delivery::new(
            config.delivery.clone(),
            integrations,
            opened.outbox,
            NotifyMetrics::new(registry),
        );
        if !opened.pending.is_empty() {
            tracing::info!(
                notifications = opened.pending.len(),
                "undelivered notifications found in the outbox; sending them"
            );
        }
        for n in opened.pending {
            delivery.resume(n, now);
        }
        let dispatcher =
            Dispatcher::new(root, send_resolved, external_url, opened.log, next_seq, now);
        Ok(Self {
            shared: Arc::new(Shared {
                engine,
                tenant: (tenant != sightline_common::tenant::DEFAULT_TENANT)
                    .then(|| tenant.to_string()),
                store,
                clock,
                silences,
                maintenance,
                runner: tokio::sync::Mutex::new(Runner {
                    dispatcher,
                    delivery,
                    fingerprints: Default::default(),
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

    /// The notifier's time (what silences and windows are judged at).
    pub fn now(&self) -> Nanos {
        self.shared.clock.now()
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
            r.delivery
                .start_attempts(&mut attempts, s.clock.now())
                .await;
            r.publish(s);
            r.write_history(s).await;
            tokio::select! {
                _ = &mut stop => break,
                Some(done) = attempts.join_next_with_id() => {
                    r.delivery.finished(done, s.clock.now(), rand::random()).await;
                }
                _ = poll.tick() => {}
            }
        }
        let _ = tokio::time::timeout(STOP_GRACE, async {
            while let Some(done) = attempts.join_next_with_id().await {
                r.delivery
                    .finished(done, s.clock.now(), rand::random())
                    .await;
            }
        })
        .await;
        r.publish(s);
        r.write_history(s).await;
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
}

impl Runner {
    /// Looks at the engine's alerts and queues what the groups due now need.
    async fn dispatch(&mut self, s: &Shared) {
        // Alerts restored at start carry no figures before the engine's first evaluation.
        if s.engine.ticks() == 0 {
            return;
        }
        let now = s.clock.now();
        let engine = &s.engine;
        let mut firing = engine.firing();
        // Routes and receivers are shared by all tenants: the label says whose alert it is
        // (and lets a route send each tenant's to its own receiver). It replaces any `tenant`
        // a spec's labels set, and the default tenant's alerts carry none, so no tenant can
        // pass for another.
        for f in &mut firing {
            match &s.tenant {
                Some(tenant) => {
                    f.labels.insert("tenant".into(), tenant.clone());
                    let qualified = sightline_slo::alert::fingerprint(&f.labels);
                    let own = std::mem::replace(&mut f.fingerprint, qualified.clone());
                    self.fingerprints.insert(qualified, own);
                }
                None => {
                    f.labels.remove("tenant");
                }
            }
        }
        let fingerprints = &self.fingerprints;
        self.dispatcher.observe_with(&firing, now, |fp| {
            engine.resolved_annotations(fingerprints.get(fp).map_or(fp, String::as_str))
        });
        if self.dispatcher.next_due().is_none_or(|t| t > now) {
            return;
        }
        let muted = |labels: &BTreeMap<String, String>| s.muted(labels, now);
        let (queued, log_changed) = self.dispatcher.flush(now, &muted);
        let mut accepted = false;
        for q in queued {
            if self.delivery.already_waiting(&q.notification) {
                continue; // the one still waiting says the same
            }
            match self.delivery.queue(q.notification.clone(), now).await {
                Ok(()) => accepted = true,
                Err(e) => {
                    tracing::error!(error = %e, receiver = %q.notification.receiver, "cannot write a notification to the outbox; will try again");
                    self.dispatcher.unqueue(q, now);
                }
            }
        }
        if log_changed || accepted {
            // The notifications are in the outbox first: a crash in between is repaired from
            // them when the outbox is opened.
            if let Err(e) = self.delivery.save_log(self.dispatcher.log.clone()).await {
                tracing::error!(error = %e, "cannot write the notification log");
            }
        }
    }

    fn publish(&self, s: &Shared) {
        *s.pending_view.lock().unwrap_or_else(|e| e.into_inner()) = self.delivery.publish();
    }

    /// Writes the history rows gathered so far (kept for the next try if the store refuses).
    async fn write_history(&mut self, s: &Shared) {
        let rows = &mut self.delivery.history;
        if rows.is_empty() {
            return;
        }
        let result = match history::batch(rows) {
            Ok(b) => s
                .store
                .write(vec![(Table::Notifications, b)])
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(_) => rows.clear(),
            Err(e) => {
                tracing::warn!(error = %e, rows = rows.len(), "cannot record notification history; will try again");
                if rows.len() > MAX_UNWRITTEN_HISTORY {
                    let excess = rows.len() - MAX_UNWRITTEN_HISTORY;
                    rows.drain(..excess);
                }
            }
        }
    }
}
