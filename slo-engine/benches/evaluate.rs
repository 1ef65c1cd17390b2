//! What the SLO engine costs: evaluating SLOs on a tick (status and every alert rule of every
//! SLO over 30-day windows), counting events as they arrive, and the sums behind an SLO's
//! history (a point's window and hour sums, for the most points a history has). Run with
//! `cargo bench -p sightline-slo --bench evaluate`.

#![allow(
    clippy::disallowed_methods,
    reason = "tests and benchmarks block on their runtimes and spawn freely"
)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sightline_collector::convert::ConvertContext;
use sightline_collector::limits::ItemLimits;
use sightline_common::clock::{DAY, MINUTE, Nanos, SECOND};
use sightline_slo::alert;
use sightline_slo::counter::{CompiledSlo, SliceCounts};
use sightline_slo::rollup::{Counts, Series};
use sightline_slo::spec::{self, Slo};
use sightline_slo::status;

const NOW: Nanos = 1_793_577_600 * SECOND;

fn slo(i: usize) -> Slo {
    let text = format!(
        "name: slo-{i}\nobjective: 99.9\nwindow: 30d\nindicator:\n  spans:\n    \
         filter: \"service_name = 'svc-{i}' AND kind = 'server'\"\n    \
         good: \"status_code != 'error'\"\n"
    );
    spec::parse("bench.yaml", &text).expect("spec").remove(0)
}

/// A series with `days` of traffic, every minute busy (the most expensive case).
fn series(days: i64) -> Series {
    let mut s = Series::default();
    let keep = 31 * DAY;
    let mut t = NOW - days * DAY;
    while t < NOW {
        s.add(NOW, keep, t, Counts::new(599, 600));
        t += MINUTE;
    }
    s.trim(NOW, keep);
    s
}

/// One tick's work for `slos`: status plus every alert rule.
fn evaluate(slos: &[(Slo, Series)]) -> usize {
    let mut active = 0;
    for (slo, s) in slos {
        let st = status::status(s, slo.objective, &slo.window, NOW);
        for rule in alert::rules(slo) {
            active += usize::from(alert::observe(slo, &rule, s, &st, NOW).active);
        }
    }
    active
}

fn tick(c: &mut Criterion) {
    let mut g = c.benchmark_group("tick");
    g.sample_size(10);
    // 30 days of data in memory; with 90 days stored, the 30d window keeps the same slices.
    for (n, days) in [(100, 30), (1000, 30), (1000, 90)] {
        let template = series(days);
        let slos: Vec<(Slo, Series)> = (0..n).map(|i| (slo(i), template.clone())).collect();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(
            BenchmarkId::new(format!("slos_30d_window_{days}d_data"), n),
            |b| b.iter(|| evaluate(&slos)),
        );
    }
    g.finish();
}

#[path = "../tests/support/otlp.rs"]
mod otlp;

fn spans_batch(n: usize) -> Vec<(sightline_store::schema::Table, arrow::array::RecordBatch)> {
    let spans = (0..n as u64)
        .map(|i| {
            let t = (NOW - MINUTE) as u64 + i * 1000;
            otlp::server_span(i + 1, t, 5_000_000, i.is_multiple_of(50))
        })
        .collect();
    let req = otlp::request("svc-0", spans);
    sightline_collector::convert::traces::convert(
        &req,
        &ConvertContext::new(NOW, ItemLimits::default()),
    )
    .expect("convert")
    .batches
}

fn counting(c: &mut Criterion) {
    let mut g = c.benchmark_group("live_counting");
    let batches = spans_batch(1000);
    let spans = batches
        .iter()
        .find(|(t, _)| *t == sightline_store::schema::Table::Spans)
        .map(|(_, b)| b.clone())
        .expect("spans");
    for n in [1usize, 10, 100] {
        let compiled: Vec<CompiledSlo> = (0..n)
            .map(|i| CompiledSlo::compile(&slo(i), 0).expect("compile"))
            .collect();
        g.throughput(Throughput::Elements(1000));
        g.bench_function(BenchmarkId::new("spans_1000_batch_slos", n), |b| {
            b.iter(|| {
                let mut counts = SliceCounts::new();
                for s in &compiled {
                    s.count(&spans, &mut counts).expect("count");
                }
                counts.len()
            })
        });
    }
    g.finish();
}

/// The sums of a history of 5000 points, a 30-day window each plus its last hour, over 30
/// days of minutes: summed point by point (as the history did), and from running totals.
fn history(c: &mut Criterion) {
    let mut g = c.benchmark_group("history_5000_points_30d_window");
    g.sample_size(10);
    let s = series(31);
    // A point a minute: the 30-day windows' starts fall on 15-minute boundaries.
    let windows: Vec<(Nanos, Nanos)> = (0..5000)
        .map(|i| sightline_slo::window::trailing(NOW - i * MINUTE, 30 * DAY))
        .collect();
    let hour = 60 * MINUTE;
    g.bench_function("point_by_point", |b| {
        b.iter(|| {
            windows
                .iter()
                .map(|&(from, t)| s.sum(from, t).total + s.sum(t - hour, t).total)
                .sum::<u64>()
        })
    });
    g.bench_function("running_totals", |b| {
        b.iter(|| {
            let sums = s.sums();
            windows
                .iter()
                .map(|&(from, t)| sums.sum(from, t).total + sums.sum(t - hour, t).total)
                .sum::<u64>()
        })
    });
    g.finish();
}

criterion_group!(benches, tick, counting, history);
criterion_main!(benches);
