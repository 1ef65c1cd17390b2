//! Timeslice SLOs: the budget counts minutes, and a minute is good when its own ratio of good
//! events meets the threshold — a burst of errors in one busy minute costs one minute.

use sightline_common::clock::{HOUR, MINUTE, SECOND};

use crate::{Sim, T0};

const SPEC: &str = "\
name: checkout-minutes
service: checkout
objective: 99
window: 7d
indicator:
  spans:
    filter: \"service_name = 'checkout'\"
    good: \"status_code != 'error'\"
timeslice:
  slice: 1m
  good_ratio: 95%
";

#[tokio::test]
async fn minutes_are_judged_by_their_own_ratio() {
    let mut sim = Sim::new(SPEC, T0).await;
    // Two hours: 60 spans a minute. Minute 10 has 30 errors (50% bad: a bad minute), minute 20
    // has 2 (3% bad: still a good minute), minute 30 has no traffic at all (not counted).
    for m in 0..120 {
        let at = T0 - 2 * HOUR + m * MINUTE;
        let bad = match m {
            10 => 30,
            20 => 2,
            _ => 0,
        };
        if m != 30 {
            sim.send("checkout", 60 - bad, bad, at, MINUTE).await;
        }
    }
    sim.clock.set(T0 + 2 * MINUTE);
    sim.engine.tick().await.expect("tick");
    let v = sim.engine.get("checkout-minutes").expect("slo");
    assert_eq!((v.status.good, v.status.total), (118, 119), "{v:#?}");
    assert!(v.slo.timeslice.is_some());
    let b = v.status.budget.expect("budget");
    // 1 bad minute of the 1.19 the 99% objective allows for 119 minutes.
    assert!((b.consumed - 1.0 / 1.19).abs() < 1e-9, "{b:?}");

    // Restart: the slices are derived again from the stored minute counts.
    let sim = sim.restart(SPEC).await;
    sim.engine.tick().await.expect("tick");
    let v = sim.engine.get("checkout-minutes").expect("slo");
    assert_eq!((v.status.good, v.status.total), (118, 119));

    // The same SLO defined after the fact is backfilled to the same result.
    let mut fresh = Sim::new("", T0).await;
    for m in 0..120 {
        let at = T0 - 2 * HOUR + m * MINUTE;
        let bad = if m == 10 { 30 } else { 0 };
        if m != 30 {
            fresh.send("checkout", 60 - bad, bad, at, MINUTE).await;
        }
    }
    fresh.clock.set(T0 + 2 * MINUTE);
    fresh
        .engine
        .reload(sightline_slo::spec::parse("t.yaml", SPEC).expect("spec"))
        .await
        .expect("reload");
    let v = fresh.engine.get("checkout-minutes").expect("slo");
    assert_eq!((v.status.good, v.status.total), (118, 119));
    let _ = SECOND;
}

#[test]
fn slices_must_fit_the_alert_windows() {
    let bad = SPEC.replace("slice: 1m", "slice: 5m");
    let errors = sightline_slo::spec::parse("t.yaml", &bad).expect_err("too long");
    assert_eq!(errors[0].field, "timeslice.slice");
    let bad = SPEC.replace("slice: 1m", "slice: 7m");
    let errors = sightline_slo::spec::parse("t.yaml", &bad).expect_err("7m");
    assert!(
        errors[0].message.contains("divide an hour"),
        "{}",
        errors[0]
    );
}
