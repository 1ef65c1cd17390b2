//! The SLO engine over a real store, with simulated time: spans go through the collector's
//! OTLP conversion and the store's write path (WAL, live counting), exactly as in the server.

#![allow(
    clippy::disallowed_methods,
    reason = "tests and benchmarks block on their runtimes and spawn freely"
)]

#[path = "../support/otlp.rs"]
mod otlp;

mod alerts;
mod backfill;
mod docs;
mod history;
mod metrics;
mod reload;
mod timeslice;

use std::sync::Arc;

use sightline_collector::convert::ConvertContext;
use sightline_collector::limits::ItemLimits;
use sightline_common::clock::{MINUTE, Nanos, SECOND};
use sightline_slo::{Clock, Engine, ManualClock, spec};
use sightline_store::{Durability, Store, StoreConfig};

/// 2026-11-02T00:00:00Z
pub const T0: Nanos = 1_793_577_600 * SECOND;

pub const CHECKOUT: &str = "\
name: checkout-availability
service: checkout
objective: 99.9
window: 30d
indicator:
  spans:
    filter: \"service_name = 'checkout' AND kind = 'server'\"
    good: \"status_code != 'error'\"
";

/// A store in `dir` and an engine over it with `specs`.
async fn open(dir: &std::path::Path, clock: &ManualClock, specs: &str) -> (Arc<Store>, Engine) {
    let store = Store::open(store_config(dir), &mut Default::default())
        .await
        .expect("store");
    let slos = spec::parse("test.yaml", specs).expect("specs");
    let query = store
        .query_engine(Default::default())
        .await
        .expect("query engine");
    let engine = Engine::open(
        store.clone(),
        &query,
        slos,
        Arc::new(clock.clone()),
        &mut Default::default(),
    )
    .await
    .expect("engine");
    (store, engine)
}

pub struct Sim {
    pub dir: tempfile::TempDir,
    pub clock: ManualClock,
    pub store: Arc<Store>,
    pub engine: Engine,
    next_id: u64,
}

pub fn store_config(dir: &std::path::Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.durability = Durability::Batched {
        interval: std::time::Duration::from_millis(100),
    };
    c.compaction = None;
    c
}

impl Sim {
    pub async fn new(specs: &str, start: Nanos) -> Sim {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(start);
        let (store, engine) = open(dir.path(), &clock, specs).await;
        Sim {
            dir,
            clock,
            store,
            engine,
            next_id: 1,
        }
    }

    /// Closes the store and opens it (and the engine) again, as a restart does.
    pub async fn restart(self, specs: &str) -> Sim {
        self.reopen(specs, true).await
    }

    /// Opens the store and the engine again without closing them first, as after a crash:
    /// what is not in Parquet comes back from the write-ahead log.
    pub async fn crash(self, specs: &str) -> Sim {
        self.reopen(specs, false).await
    }

    async fn reopen(self, specs: &str, close: bool) -> Sim {
        let Sim {
            dir,
            clock,
            store,
            engine,
            next_id,
        } = self;
        drop(engine);
        if close {
            store.close().await.expect("close");
        }
        store.set_write_hook(None);
        drop(store);
        let (store, engine) = open(dir.path(), &clock, specs).await;
        Sim {
            dir,
            clock,
            store,
            engine,
            next_id,
        }
    }

    /// Stores `good` + `bad` server spans of `service`, spread evenly over `[at, at + spread)`.
    pub async fn send(&mut self, service: &str, good: u64, bad: u64, at: Nanos, spread: Nanos) {
        let n = good + bad;
        if n == 0 {
            return;
        }
        let spans: Vec<_> = (0..n)
            .map(|i| {
                self.next_id += 1;
                let t = (at + spread * i as i64 / n as i64) as u64;
                otlp::server_span(self.next_id, t, 1_000_000, i < bad)
            })
            .collect();
        let req = otlp::request(service, spans);
        let ctx = ConvertContext::new(self.clock.now(), ItemLimits::default());
        let converted = sightline_collector::convert::traces::convert(&req, &ctx).expect("convert");
        assert_eq!(converted.rejected, 0, "{:?}", converted.rejection);
        self.store.write(converted.batches).await.expect("write");
    }

    /// Sends one span per second of `service` from `from` to `to`, `bad_every`-th one bad
    /// (0: none), a minute per write.
    pub async fn steady(&mut self, service: &str, from: Nanos, to: Nanos, bad_every: u64) {
        let mut t = from;
        let mut seq = 0u64;
        while t < to {
            let step = MINUTE.min(to - t);
            let n = (step / SECOND) as u64;
            let bad = match ((seq + n).checked_div(bad_every), seq.checked_div(bad_every)) {
                (Some(a), Some(b)) => a - b,
                _ => 0,
            };
            seq += n;
            self.send(service, n - bad, bad, t, step).await;
            t += step;
        }
    }

    pub async fn sql_i64(&self, sql: &str) -> i64 {
        let q = self
            .store
            .query_engine(Default::default())
            .await
            .expect("engine");
        let out = q.execute(sql).await.expect("query");
        let b = &out.batches[0];
        let c =
            arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Int64).expect("cast");
        c.as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .expect("int")
            .value(0)
    }
}
