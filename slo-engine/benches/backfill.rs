//! Time to backfill a 30-day SLO from stored spans: a store holding 30 days of one service's
//! spans (one span per second, 2.6 million, in Parquet), then an SLO whose indicator changes
//! each iteration so that every reload counts it anew. Run with
//! `cargo bench -p sightline-slo --bench backfill`.

#![allow(
    clippy::disallowed_methods,
    reason = "tests and benchmarks block on their runtimes and spawn freely"
)]

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use sightline_collector::convert::ConvertContext;
use sightline_collector::limits::ItemLimits;
use sightline_common::clock::{DAY, HOUR, Nanos, SECOND};
use sightline_slo::{Engine, ManualClock, spec};
use sightline_store::{Durability, Store, StoreConfig};

const NOW: Nanos = 1_793_577_600 * SECOND;
const DAYS: i64 = 30;

#[path = "../tests/support/otlp.rs"]
mod otlp;

/// `n` spans of checkout, one a second from `from`; one in 97 fails, durations 20-320 ms.
fn request(from: Nanos, n: u64, first_id: u64) -> ExportTraceServiceRequest {
    let spans = (0..n)
        .map(|i| {
            let id = first_id + i;
            let t = (from + i as i64 * SECOND) as u64;
            otlp::server_span(
                id,
                t,
                20_000_000 + (id % 7) * 50_000_000,
                id.is_multiple_of(97),
            )
        })
        .collect();
    otlp::request("checkout", spans)
}

fn backfill(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = StoreConfig::new(dir.path());
    config.durability = Durability::Batched {
        interval: std::time::Duration::from_millis(100),
    };
    let store = rt
        .block_on(Store::open(config, &mut Default::default()))
        .expect("store");
    let limits = ItemLimits {
        max_past: std::time::Duration::from_secs(40 * 86_400),
        ..Default::default()
    };
    rt.block_on(async {
        let mut t = NOW - DAYS * DAY;
        let mut id = 1;
        while t < NOW {
            let req = request(t, 3600, id);
            let converted = sightline_collector::convert::traces::convert(
                &req,
                &ConvertContext::new(NOW, limits),
            )
            .expect("convert");
            store.write(converted.batches).await.expect("write");
            id += 3600;
            t += HOUR;
            if (t - NOW) % DAY == 0 {
                store.flush_all().await.expect("flush");
            }
        }
        store.flush_all().await.expect("flush");
    });
    let clock = ManualClock::new(NOW);
    let query = rt
        .block_on(store.query_engine(Default::default()))
        .expect("query engine");
    let engine = rt
        .block_on(Engine::open(
            store.clone(),
            &query,
            Vec::new(),
            Arc::new(clock),
            &mut Default::default(),
        ))
        .expect("engine");
    let mut g = c.benchmark_group("backfill");
    g.sample_size(10);
    let mut i = 0u64;
    g.bench_function("slo_30d_2.6M_spans", |b| {
        b.iter(|| {
            i += 1;
            let text = format!(
                "name: checkout\nobjective: 99.9\nwindow: 30d\nindicator:\n  spans:\n    \
                 filter: \"service_name = 'checkout' AND kind = 'server'\"\n    \
                 good: \"duration_ns <= {}\"\n",
                300_000_000 + i
            );
            let slos = spec::parse("bench.yaml", &text).expect("spec");
            let report = rt.block_on(engine.reload(slos)).expect("reload");
            assert_eq!(report.backfilled.len(), 1);
        })
    });
    g.finish();
    let v = engine.get("checkout").expect("slo");
    eprintln!("counted {} spans, {} good", v.status.total, v.status.good);
}

criterion_group!(benches, backfill);
criterion_main!(benches);
