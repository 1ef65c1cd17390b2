//! What alert delivery costs besides the network: a dispatcher pass over many firing alerts
//! (the runner does one every 250 ms), rendering a webhook body and an email, and making a
//! notification durable in the outbox (two fsyncs). Run with
//! `cargo bench -p sightline-notify --bench dispatch`.

#![allow(
    clippy::disallowed_methods,
    reason = "tests and benchmarks block on their runtimes and spawn freely"
)]

use std::collections::BTreeMap;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sightline_common::clock::{Nanos, SECOND};
use sightline_notify::dispatch::Dispatcher;
use sightline_notify::message::Notification;
use sightline_notify::outbox::Outbox;
use sightline_notify::route::Route;
use sightline_slo::engine::FiringAlert;

const NOW: Nanos = 1_793_577_600 * SECOND;

/// `n` firing alerts: two page tiers per SLO, one group per SLO.
fn alerts(n: usize) -> Vec<FiringAlert> {
    (0..n)
        .map(|i| {
            let labels = BTreeMap::from([
                ("alertname".to_string(), "SLOBurnRate".to_string()),
                ("slo".to_string(), format!("slo-{}", i / 2)),
                ("service".to_string(), format!("svc-{}", i / 2)),
                ("severity".to_string(), "page".to_string()),
                ("tier".to_string(), format!("page-{}", i % 2)),
            ]);
            FiringAlert {
                slo: format!("slo-{}", i / 2),
                fingerprint: sightline_slo::alert::fingerprint(&labels),
                labels,
                annotations: BTreeMap::from([
                    ("summary".to_string(), "burning".to_string()),
                    (
                        "runbook".to_string(),
                        "https://runbooks.example.com/x".to_string(),
                    ),
                ]),
                starts_at: NOW,
            }
        })
        .collect()
}

fn dispatcher() -> Dispatcher {
    let c = toml::from_str("receiver = \"hook\"\ngroup_wait = \"1s\"").expect("route");
    Dispatcher::new(
        Route::root(&c),
        BTreeMap::from([("hook".to_string(), true)]),
        "http://sightline:8080".into(),
        BTreeMap::new(),
        1,
        NOW,
    )
}

fn bench(c: &mut Criterion) {
    let never = |_: &BTreeMap<String, String>| false;
    let mut g = c.benchmark_group("dispatch");
    for n in [100, 1000] {
        let firing = alerts(n);
        g.throughput(Throughput::Elements(n as u64));
        // Steady state: everything already announced, nothing to send.
        let mut d = dispatcher();
        d.observe(&firing, NOW);
        let (first, _) = d.flush(NOW + 2 * SECOND, &never);
        assert_eq!(first.len(), n / 2);
        let mut t = NOW + 2 * SECOND;
        g.bench_with_input(BenchmarkId::new("steady_pass", n), &firing, |b, firing| {
            b.iter(|| {
                t += 250_000_000;
                d.observe(firing, t);
                d.flush(t, &never).0.len()
            })
        });
        // A burst: every alert new, one notification per group.
        g.bench_with_input(BenchmarkId::new("burst", n), &firing, |b, firing| {
            b.iter(|| {
                let mut d = dispatcher();
                d.observe(firing, NOW);
                d.flush(NOW + 2 * SECOND, &never).0.len()
            })
        });
    }
    g.finish();

    let mut d = dispatcher();
    d.observe(&alerts(20), NOW);
    let n: Notification = d.flush(NOW + 2 * SECOND, &never).0.remove(0).notification;
    let mut r = c.benchmark_group("render");
    r.bench_function("webhook_body", |b| {
        b.iter(|| {
            serde_json::to_vec(&n.webhook_payload(0))
                .expect("json")
                .len()
        })
    });
    r.bench_function("email_bodies", |b| {
        b.iter(|| n.text_body().len() + n.html_body().len())
    });
    r.finish();

    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open(dir.path()).expect("outbox").outbox;
    let mut o = c.benchmark_group("outbox");
    o.sample_size(20);
    let mut seq = 0;
    o.bench_function("put_and_remove", |b| {
        b.iter(|| {
            seq += 1;
            let mut m = n.clone();
            m.seq = seq;
            outbox.put(&m).expect("put");
            outbox.remove(&m).expect("remove");
        })
    });
    o.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
