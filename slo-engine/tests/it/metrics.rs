//! SLOs over metrics: counter ratios (cumulative with resets, and delta) and histogram
//! thresholds, counted live, backfilled, and continued across a restart.

use sightline_common::clock::{MINUTE, Nanos};

use crate::otlp::{Point, metric_request};
use crate::{Sim, T0};

const RATIO: &str = "\
name: api-requests
service: api
objective: 99
window: 7d
indicator:
  metric_ratio:
    good:
      metric: app.requests
      filter: \"attributes['outcome'] = 'ok'\"
    total:
      metric: app.requests
";

const LATENCY: &str = "\
name: api-latency
service: api
objective: 90
window: 7d
indicator:
  metric_latency:
    metric: http.server.request.duration
    filter: \"service_name = 'api'\"
    threshold: 0.3
";

fn point(outcome: &'static str, start: Nanos, minute: i64, value: f64) -> Point {
    Point {
        attributes: vec![("outcome", outcome)],
        start: start as u64,
        time: (T0 - 30 * MINUTE + minute * MINUTE) as u64,
        value,
        buckets: Vec::new(),
    }
}

impl Sim {
    async fn send_metric(&mut self, name: &str, delta: bool, bounds: &[f64], points: &[Point]) {
        self.write_metrics(&metric_request("api", name, delta, bounds, points))
            .await;
    }

    async fn write_metrics(
        &mut self,
        req: &opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest,
    ) {
        let ctx = sightline_collector::convert::ConvertContext::new(
            sightline_slo::Clock::now(&self.clock),
            sightline_collector::limits::ItemLimits::default(),
        );
        let converted = sightline_collector::convert::metrics::convert(req, &ctx).expect("convert");
        assert_eq!(converted.rejected, 0, "{:?}", converted.rejection);
        self.store.write(converted.batches).await.expect("write");
    }
}

/// Cumulative counters exported every minute; the series restarts (new start time) once.
async fn send_cumulative(sim: &mut Sim) {
    let s1 = T0 - 31 * MINUTE;
    let s2 = T0 - 27 * MINUTE + 30 * 1_000_000_000;
    let points = [
        [point("ok", s1, 0, 100.0), point("error", s1, 0, 1.0)],
        [point("ok", s1, 1, 200.0), point("error", s1, 1, 2.0)],
        [point("ok", s1, 2, 300.0), point("error", s1, 2, 2.0)],
        // The process restarted: new start time, counters from zero.
        [point("ok", s2, 4, 50.0), point("error", s2, 4, 0.0)],
        [point("ok", s2, 5, 150.0), point("error", s2, 5, 1.0)],
    ];
    for p in points {
        sim.send_metric("app.requests", false, &[], &p).await;
    }
}

#[tokio::test]
async fn a_cumulative_counter_ratio_counts_increases_across_resets() {
    let mut sim = Sim::new(RATIO, T0).await;
    send_cumulative(&mut sim).await;
    let v = sim.engine.get("api-requests").expect("slo");
    // ok: 100 (fresh series) + 100 + 100 + 50 (after the reset) + 100; error: 1 + 1 + 0 + 0 + 1.
    assert_eq!((v.status.good, v.status.total), (450, 453), "{v:#?}");

    // After a restart, the next point is counted from the last stored one.
    let mut sim = sim.restart(RATIO).await;
    let s2 = T0 - 27 * MINUTE + 30 * 1_000_000_000;
    sim.send_metric(
        "app.requests",
        false,
        &[],
        &[point("ok", s2, 6, 250.0), point("error", s2, 6, 3.0)],
    )
    .await;
    let v = sim.engine.get("api-requests").expect("slo");
    assert_eq!((v.status.good, v.status.total), (550, 555));

    // The same SLO defined afterwards is backfilled to the same counts.
    let mut fresh = Sim::new("", T0).await;
    send_cumulative(&mut fresh).await;
    fresh
        .engine
        .reload(sightline_slo::spec::parse("t.yaml", RATIO).expect("spec"))
        .await
        .expect("reload");
    let v = fresh.engine.get("api-requests").expect("slo");
    assert_eq!((v.status.good, v.status.total), (450, 453));
}

#[tokio::test]
async fn delta_counters_add_up() {
    let mut sim = Sim::new(RATIO, T0).await;
    for m in 0..5 {
        sim.send_metric(
            "app.requests",
            true,
            &[],
            &[point("ok", 0, m, 99.0), point("error", 0, m, 1.0)],
        )
        .await;
    }
    let v = sim.engine.get("api-requests").expect("slo");
    assert_eq!((v.status.good, v.status.total), (495, 500));

    // An UpDownCounter of the same name is not a counter of events: it counts nothing.
    let mut req = metric_request("api", "app.requests", true, &[], &[point("ok", 0, 6, 7.0)]);
    if let Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Sum(sum)) =
        &mut req.resource_metrics[0].scope_metrics[0].metrics[0].data
    {
        sum.is_monotonic = false;
    }
    sim.write_metrics(&req).await;
    let v = sim.engine.get("api-requests").expect("slo");
    assert_eq!(v.status.total, 500);
    let b = v.status.budget.expect("budget");
    assert!((b.consumed - 1.0).abs() < 1e-9, "{b:?}");
}

async fn send_histogram(sim: &mut Sim, point: Point) {
    sim.send_metric(
        "http.server.request.duration",
        false,
        &[0.1, 0.3, 1.0],
        &[point],
    )
    .await;
}

#[tokio::test]
async fn histogram_observations_under_the_threshold_are_good() {
    let mut sim = Sim::new(LATENCY, T0).await;
    let start = T0 - 31 * MINUTE;
    let hist = |minute: i64, buckets: Vec<u64>| Point {
        attributes: vec![("http.route", "/x")],
        start: start as u64,
        time: (T0 - 30 * MINUTE + minute * MINUTE) as u64,
        value: 0.0,
        buckets,
    };
    send_histogram(&mut sim, hist(0, vec![5, 3, 1, 1])).await;
    send_histogram(&mut sim, hist(1, vec![10, 6, 2, 2])).await;
    let v = sim.engine.get("api-latency").expect("slo");
    assert_eq!((v.status.good, v.status.total), (16, 20));
    assert!(matches!(
        v.slo.indicator,
        sightline_slo::spec::Indicator::MetricLatency { .. }
    ));

    // A malformed point (bounds without buckets) counts nothing and does not fail the write.
    send_histogram(&mut sim, hist(2, vec![])).await;
    let v = sim.engine.get("api-latency").expect("slo");
    assert_eq!((v.status.good, v.status.total), (16, 20));

    // A threshold that is not a bucket bound of the histogram counts nothing.
    let odd = LATENCY.replace("threshold: 0.3", "threshold: 0.25");
    let mut sim = Sim::new(&odd, T0).await;
    send_histogram(&mut sim, hist(0, vec![5, 3, 1, 1])).await;
    let v = sim.engine.get("api-latency").expect("slo");
    assert_eq!(v.status.total, 0);
}
