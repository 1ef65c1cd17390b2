//! An SLO's history: every point's counts are those of the events sent into its window, over
//! all groups, whether the window reaches back past the per-minute counts or not.

use sightline_common::clock::{DAY, HOUR, MINUTE, Nanos, SECOND};

use crate::{Sim, T0};

const SPEC: &str = "\
name: checkout-by-service
objective: 99
window: 3d
group_by: service_name
indicator:
  spans:
    filter: \"kind = 'server'\"
    good: \"status_code != 'error'\"
";

/// What was sent: per hour `h` from `START`, 10 good and (every 7th hour) 2 bad spans of each
/// of two services, inside the hour's first 10 minutes.
const START: Nanos = T0 - 5 * DAY;
const HOURS: i64 = 5 * 24;

fn bad(h: i64) -> u64 {
    if h % 7 == 0 { 2 } else { 0 }
}

/// (good, total) of the events sent in `[from, to)`; both whole hours or after the sends.
fn sent(from: Nanos, to: Nanos) -> (u64, u64) {
    let (mut good, mut total) = (0, 0);
    for h in 0..HOURS {
        let at = START + h * HOUR;
        if at >= from && at < to {
            good += 2 * 10;
            total += 2 * (10 + bad(h));
        }
    }
    (good, total)
}

#[tokio::test]
async fn every_point_counts_what_was_sent_into_its_window() {
    let mut sim = Sim::new(SPEC, T0).await;
    for h in 0..HOURS {
        for service in ["checkout", "payment"] {
            sim.send(service, 10, bad(h), START + h * HOUR, 10 * MINUTE)
                .await;
        }
    }
    let now = T0 + 30 * SECOND;
    sim.clock.set(now);
    sim.engine.tick().await.expect("tick");
    let history = sim
        .engine
        .history("checkout-by-service", START - HOUR, now, HOUR)
        .expect("history");
    // Hourly points as far back as counts are kept for a whole window, and one now: some
    // windows reach past the per-minute counts, later ones do not.
    assert!(history.points.len() > 72, "{}", history.points.len());
    // Counts are kept for the window, 15 minutes and a day: windows that reach further back
    // miss what was forgotten (never more than was sent).
    let kept_from = now - (3 * DAY + 15 * MINUTE + DAY);
    let mut whole = 0;
    let (last, hourly) = history.points.split_last().expect("points");
    for p in hourly {
        // Points older than the per-minute counts (3 days and a bit) sit on 15-minute
        // boundaries; their 3-day windows too, and the sends are on whole hours.
        let window_start = p.at - 3 * DAY;
        let (good, total) = sent(window_start, p.at);
        if window_start < kept_from {
            assert!(p.good <= good && p.total <= total, "the point at {}", p.at);
            continue;
        }
        whole += 1;
        assert_eq!((p.good, p.total), (good, total), "the point at {}", p.at);
        let (hour_good, hour_total) = sent(p.at - HOUR, p.at);
        let hour_bad = (hour_total - hour_good) as f64;
        let expected_burn = (hour_total > 0).then(|| hour_bad / hour_total as f64 / 0.01);
        match (p.burn_rate_1h, expected_burn) {
            (Some(got), Some(want)) => {
                assert!((got - want).abs() < 1e-9, "{got} {want} at {}", p.at)
            }
            (got, want) => assert_eq!(got, want, "at {}", p.at),
        }
    }
    assert!(whole >= 24, "{whole} points with whole windows");
    // The last point is the SLO now (its window ends with the minute in progress).
    let now_view = sim.engine.get("checkout-by-service").expect("slo");
    assert_eq!(
        (last.good, last.total),
        (now_view.status.good, now_view.status.total)
    );
}
