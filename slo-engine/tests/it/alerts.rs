//! The SRE Workbook's detection times, tickets without pages, and restarts mid-incident.

use sightline_common::clock::{HOUR, MINUTE, Nanos, SECOND};
use sightline_slo::Clock;
use sightline_slo::alert::{State, Transition};

use crate::{CHECKOUT, Sim, T0};

const TICK: Nanos = 10 * SECOND;

/// Sends 1 span/s (all bad during the outage) in 10 s steps from the clock's time to `until`,
/// ticking after each step; returns the transitions with their times.
async fn run(sim: &mut Sim, until: Nanos, bad: bool) -> Vec<Transition> {
    let mut all = Vec::new();
    while sim.clock.now() < until {
        let t = sim.clock.now();
        let (g, b) = if bad { (0, 10) } else { (10, 0) };
        sim.send("checkout", g, b, t, TICK).await;
        sim.clock.advance(TICK);
        all.extend(sim.engine.tick().await.expect("tick"));
    }
    all
}

fn first(ts: &[Transition], rule: &str, state: &str) -> Option<Nanos> {
    ts.iter()
        .find(|t| t.rule == rule && t.state == state)
        .map(|t| t.at)
}

#[tokio::test]
async fn a_full_outage_pages_after_about_52_seconds_and_resolves_when_the_short_window_clears() {
    let mut sim = Sim::new(CHECKOUT, T0).await;
    // Six hours of healthy traffic (fills the 1h and 6h windows).
    sim.steady("checkout", T0 - 6 * HOUR, T0, 0).await;
    assert!(
        sim.engine.tick().await.expect("tick").is_empty(),
        "healthy: nothing fires"
    );

    let outage = T0;
    let ts = run(&mut sim, outage + 5 * MINUTE, true).await;
    let paged = first(&ts, "page-1h", "firing").expect("the 1h/5m tier pages");
    let detection = paged - outage;
    // 14.4 × 0.1% of an hour of traffic is 51.8 s of errors; evaluated every 10 s.
    assert!(
        (50 * SECOND..=62 * SECOND).contains(&detection),
        "paged after {} s",
        detection / SECOND
    );
    let page = ts
        .iter()
        .find(|t| t.rule == "page-1h" && t.state == "firing")
        .expect("page");
    assert_eq!(page.labels["severity"], "page");
    assert_eq!(page.labels["slo"], "checkout-availability");
    assert_eq!(page.labels["service"], "checkout");
    assert!(page.values["burn_rate_long"] >= 14.4, "{:?}", page.values);
    assert!(page.values["burn_rate_short"] >= 14.4, "{:?}", page.values);
    assert_eq!(
        ts.iter()
            .filter(|t| t.rule == "page-1h" && t.state == "firing")
            .count(),
        1,
        "fires once"
    );

    // Recovery: the page resolves once the 5m window no longer shows the outage, even though
    // the 1h window still does.
    let recovered = sim.clock.now();
    let ts = run(&mut sim, recovered + 10 * MINUTE, false).await;
    let resolved = first(&ts, "page-1h", "resolved").expect("resolves");
    let after = resolved - recovered;
    assert!(
        (4 * MINUTE..=6 * MINUTE).contains(&after),
        "resolved {} s after recovery",
        after / SECOND
    );
    let status = sim.engine.get("checkout-availability").expect("slo");
    let hour = status
        .status
        .burn_rates
        .iter()
        .find(|b| b.window == "1h")
        .expect("1h");
    assert!(
        hour.burn_rate.expect("data") > 14.4,
        "the 1h window still burns"
    );

    // Every transition is in slo_alerts.
    let firing = sim
        .sql_i64("SELECT count(*) FROM slo_alerts WHERE rule = 'page-1h' AND state = 'firing'")
        .await;
    let resolved = sim
        .sql_i64("SELECT count(*) FROM slo_alerts WHERE rule = 'page-1h' AND state = 'resolved'")
        .await;
    assert_eq!((firing, resolved), (1, 1));
}

#[tokio::test]
async fn a_small_steady_error_rate_raises_a_ticket_and_no_page() {
    let mut sim = Sim::new(CHECKOUT, T0).await;
    // 0.2% errors (2x the 99.9% objective's budget rate) for 500 minutes, evaluated every 50.
    let mut ts = Vec::new();
    let mut t = T0 - 500 * MINUTE;
    while t < T0 {
        sim.steady("checkout", t, t + 50 * MINUTE, 500).await;
        t += 50 * MINUTE;
        sim.clock.set(t);
        ts.extend(sim.engine.tick().await.expect("tick"));
    }
    let view = sim.engine.get("checkout-availability").expect("slo");
    assert!(
        first(&ts, "ticket-3d", "firing").is_some(),
        "{ts:#?} {:#?}",
        view.alerts
    );
    assert!(
        !ts.iter().any(|t| t.labels["severity"] == "page"),
        "no page: {ts:#?}"
    );
    let view = sim.engine.get("checkout-availability").expect("slo");
    let b = view.status.budget.expect("budget");
    assert!((b.consumed - 2.0).abs() < 1e-9, "{b:?}");
}

#[tokio::test]
async fn a_restart_mid_incident_keeps_counts_and_alert_states_and_fires_nothing_again() {
    restart_mid_incident(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_incident_keeps_counts_and_alert_states_and_fires_nothing_again() {
    restart_mid_incident(true).await;
}

async fn restart_mid_incident(crash: bool) {
    let mut sim = Sim::new(CHECKOUT, T0).await;
    sim.steady("checkout", T0 - 2 * HOUR, T0, 0).await;
    let ts = run(&mut sim, T0 + 3 * MINUTE, true).await;
    assert!(first(&ts, "page-1h", "firing").is_some());
    let before = sim.engine.get("checkout-availability").expect("slo");

    let mut sim = if crash {
        sim.crash(CHECKOUT).await
    } else {
        sim.restart(CHECKOUT).await
    };
    let after = sim.engine.get("checkout-availability").expect("slo");
    assert_eq!(
        (after.status.good, after.status.total),
        (before.status.good, before.status.total),
        "counts survive the restart"
    );
    let page = after
        .alerts
        .iter()
        .find(|a| a.rule.name() == "page-1h")
        .expect("alert");
    assert_eq!(page.state, State::Firing, "still firing after the restart");

    // The outage goes on: nothing fires again.
    let ts = run(&mut sim, T0 + 6 * MINUTE, true).await;
    assert!(
        !ts.iter().any(|t| t.rule == "page-1h"),
        "no second page-1h transition: {ts:#?}"
    );
    let firing = sim
        .sql_i64("SELECT count(*) FROM slo_alerts WHERE rule = 'page-1h' AND state = 'firing'")
        .await;
    assert_eq!(firing, 1);
    // Live counting went on after the restart.
    let later = sim.engine.get("checkout-availability").expect("slo");
    assert_eq!(later.status.total, before.status.total + 180);
}

#[tokio::test]
async fn budget_exhausted_no_data_pending_and_the_traffic_gate() {
    let spec = format!(
        "{CHECKOUT}alerting:\n  min_events: 100\n  pending_for: 1m\n  no_data_after: 10m\n"
    );
    let mut sim = Sim::new(&spec, T0).await;
    // 50 events in an hour, half bad: far over every burn rate, but under the traffic gate.
    sim.send("checkout", 25, 25, T0 - 30 * MINUTE, 30 * MINUTE)
        .await;
    let ts = sim.engine.tick().await.expect("tick");
    assert!(
        !ts.iter()
            .any(|t| t.rule.starts_with("page") || t.rule.starts_with("ticket")),
        "gated by min_events: {ts:#?}"
    );
    // The budget is spent all the same: pending first (pending_for 1m), firing a minute later.
    let b = first(&ts, "budget-exhausted", "pending");
    assert!(b.is_some(), "{ts:#?}");
    sim.clock.advance(30 * SECOND);
    let ts = sim.engine.tick().await.expect("tick");
    assert!(
        first(&ts, "budget-exhausted", "firing").is_none(),
        "not yet: {ts:#?}"
    );
    sim.clock.advance(40 * SECOND);
    let ts = sim.engine.tick().await.expect("tick");
    assert!(
        first(&ts, "budget-exhausted", "firing").is_some(),
        "{ts:#?}"
    );

    // No events for 10 minutes: no-data fires (after its pending minute); new events resolve it.
    sim.clock.set(T0 + 11 * MINUTE);
    let ts = sim.engine.tick().await.expect("tick");
    assert!(first(&ts, "no-data", "pending").is_some(), "{ts:#?}");
    sim.clock.advance(MINUTE);
    let ts = sim.engine.tick().await.expect("tick");
    assert!(first(&ts, "no-data", "firing").is_some(), "{ts:#?}");
    let now = sightline_slo::Clock::now(&sim.clock);
    sim.send("checkout", 10, 0, now - SECOND, SECOND).await;
    let ts = sim.engine.tick().await.expect("tick");
    assert!(first(&ts, "no-data", "resolved").is_some(), "{ts:#?}");
}
