//! New and changed SLOs are counted from stored events at once, and live counting goes on
//! from there without counting anything twice.

use sightline_common::clock::{DAY, HOUR, MINUTE};
use sightline_slo::spec;

use crate::{CHECKOUT, Sim, T0};

#[tokio::test]
async fn a_new_slo_is_backfilled_and_then_counted_live_exactly_once() {
    // Ten days of traffic with no SLO defined: 1 span/s, one in 100 bad.
    let mut sim = Sim::new("", T0).await;
    sim.steady("checkout", T0 - 10 * DAY, T0 - 9 * DAY, 100)
        .await;
    sim.steady("checkout", T0 - 2 * HOUR, T0, 100).await;
    sim.steady("payments", T0 - HOUR, T0, 0).await; // filtered out
    sim.store.flush_all().await.expect("flush"); // some in Parquet, some still buffered
    sim.steady("checkout", T0, T0 + 10 * MINUTE, 100).await;
    sim.clock.set(T0 + 10 * MINUTE);

    let report = sim
        .engine
        .reload(spec::parse("t.yaml", CHECKOUT).expect("spec"))
        .await
        .expect("reload");
    assert_eq!(report.backfilled, vec!["checkout-availability".to_string()]);
    let v = sim.engine.get("checkout-availability").expect("slo");
    let expected_total = (DAY + 2 * HOUR + 10 * MINUTE) / 1_000_000_000;
    assert_eq!(v.status.total as i64, expected_total);
    assert_eq!(v.status.good as i64, expected_total - expected_total / 100);

    // The same budget, computed by hand with SQL over the spans.
    let sql_total = sim
        .sql_i64("SELECT count(*) FROM spans WHERE service_name = 'checkout' AND kind = 'server'")
        .await;
    let sql_bad = sim
        .sql_i64(
            "SELECT count(*) FROM spans WHERE service_name = 'checkout' AND kind = 'server' \
             AND status_code = 'error'",
        )
        .await;
    assert_eq!(v.status.total as i64, sql_total);
    assert_eq!((v.status.total - v.status.good) as i64, sql_bad);
    let budget = v.status.budget.expect("budget");
    let by_hand = sql_bad as f64 / (0.001 * sql_total as f64);
    assert!((budget.consumed - by_hand).abs() < 1e-9);

    // Live counting picks up exactly where the backfill stopped.
    sim.steady("checkout", T0 + 10 * MINUTE, T0 + 20 * MINUTE, 100)
        .await;
    sim.clock.set(T0 + 20 * MINUTE);
    let v = sim.engine.get("checkout-availability").expect("slo");
    assert_eq!(v.status.total as i64, expected_total + 600);

    // And the counts in SQL agree (backfill rows + live rows).
    let stored = sim
        .sql_i64(&format!(
            "SELECT sum(total) FROM slo_counts WHERE slo = 'checkout-availability' \
             AND slo_version = '{}'",
            v.version
        ))
        .await;
    assert_eq!(stored, expected_total + 600);
}

#[tokio::test]
async fn a_changed_indicator_is_counted_again_and_an_unchanged_one_is_not() {
    let mut sim = Sim::new(CHECKOUT, T0).await;
    sim.steady("checkout", T0 - HOUR, T0, 10).await;
    let first = sim.engine.get("checkout-availability").expect("slo");
    assert_eq!(first.status.total, 3600);

    // Objective changes keep the counts; a new `good` expression starts a new version.
    let tighter = CHECKOUT.replace("objective: 99.9", "objective: 99");
    let r = sim
        .engine
        .reload(spec::parse("t.yaml", &tighter).expect("spec"))
        .await
        .expect("reload");
    assert!(r.backfilled.is_empty(), "{r:?}");
    let v = sim.engine.get("checkout-availability").expect("slo");
    assert_eq!(v.version, first.version);
    assert!((v.slo.objective - 0.99).abs() < 1e-12);

    let changed = CHECKOUT.replace("status_code != 'error'", "status_code = 'ok'");
    let r = sim
        .engine
        .reload(spec::parse("t.yaml", &changed).expect("spec"))
        .await
        .expect("reload");
    assert_eq!(r.backfilled.len(), 1);
    let v = sim.engine.get("checkout-availability").expect("slo");
    assert_ne!(v.version, first.version);
    assert_eq!(v.status.total, 3600);
    // Spans from the SDK-less conversion have status ok only when set so: all good ones are.
    assert_eq!(v.status.good, 3600 - 360);

    // Back to the first indicator: its old counts missed the time it was not active, so it is
    // counted again under a new generation.
    sim.steady("checkout", T0, T0 + MINUTE, 0).await;
    sim.clock.set(T0 + MINUTE);
    let r = sim
        .engine
        .reload(spec::parse("t.yaml", CHECKOUT).expect("spec"))
        .await
        .expect("reload");
    assert_eq!(r.backfilled.len(), 1, "{r:?}");
    let back = sim.engine.get("checkout-availability").expect("slo");
    assert_ne!(back.version, first.version);
    assert_eq!(back.status.total, 3660);
    sim.clock.set(T0 + 2 * MINUTE);
    sim.engine
        .reload(spec::parse("t.yaml", &changed).expect("spec"))
        .await
        .expect("reload");
    let v = sim.engine.get("checkout-availability").expect("slo");

    // After a restart the stored, complete generation is loaded, not backfilled again.
    let sim = sim.restart(&changed).await;
    let v2 = sim.engine.get("checkout-availability").expect("slo");
    assert_eq!(v2.version, v.version);
    assert_eq!(v2.status.total, 3660);
}

#[tokio::test]
async fn grouped_slos_keep_a_budget_per_group_up_to_the_cap() {
    let spec = format!("{CHECKOUT}group_by: service_name\nmax_groups: 2\n")
        .replace("service_name = 'checkout' AND ", "");
    let mut sim = Sim::new(&spec, T0).await;
    sim.steady("a", T0 - HOUR, T0, 0).await;
    sim.steady("b", T0 - HOUR, T0, 2).await;
    sim.steady("c", T0 - HOUR, T0, 0).await;
    let v = sim.engine.get("checkout-availability").expect("slo");
    let groups: Vec<(&str, u64, u64)> = v
        .groups
        .iter()
        .map(|(g, s)| (g.as_str(), s.good, s.total))
        .collect();
    assert_eq!(
        groups,
        vec![
            ("__other__", 3600, 3600),
            ("a", 3600, 3600),
            ("b", 1800, 3600)
        ]
    );
    assert_eq!(v.status.total, 3 * 3600);
}
