//! The shop's past: before the live shop starts, its normal traffic over the last days goes
//! through the OTLP endpoint with the times it would have had, so the SLOs start with a budget
//! near a healthy level instead of none, and the outage visibly spends part of it.

use std::time::{Duration, Instant};

use anyhow::bail;
use sample_backend::history::{self, Past};
use serde_json::Value;

use super::{DemoArgs, SLO, Story};
use crate::serve::Bound;

/// The share of past checkouts that fail and that are slow: a healthy shop, not a perfect one.
const ERROR_RATE: f64 = 0.001;
const SLOW_RATE: f64 = 0.02;

pub(super) async fn send(
    story: &Story,
    args: &DemoArgs,
    api: &str,
    bound: &Bound,
) -> anyhow::Result<()> {
    let past = Past {
        length: args.history,
        // The live shop starts right after: the past ends a little before now.
        until_before_now: Duration::from_secs(5),
        checkouts_per_minute: args.history_rate,
        error_rate: ERROR_RATE,
        slow_rate: SLOW_RATE,
        seed: 7,
        name_suffix: String::new(),
    };
    story.say(format!(
        "0/5 sending a past: the shop's last {} of traffic, through OTLP with backdated times…",
        humantime(args.history)
    ));
    let began = Instant::now();
    let endpoint = format!("http://{}", bound.otlp_grpc);
    let sent = history::send(&endpoint, &past).await?;
    // Counted once Sightline has written it: the SLO's total says so.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    // Until all of it is counted, or the count stops growing (a batch refused under load is
    // not sent again: the demo goes on and says how much arrived).
    let (mut counted, mut last_growth, started) = (0u64, Instant::now(), Instant::now());
    let slo = loop {
        let v: Option<Value> = match http.get(format!("{api}/api/v1/slos/{SLO}")).send().await {
            Ok(r) => r.json().await.ok(),
            Err(_) => None,
        };
        if let Some(v) = v {
            let total = v["total"].as_u64().unwrap_or(0);
            if total > counted {
                (counted, last_growth) = (total, Instant::now());
            }
            if total >= sent.checkouts
                || last_growth.elapsed() > Duration::from_secs(10)
                || started.elapsed() > Duration::from_secs(120)
            {
                break v;
            }
        } else if started.elapsed() > Duration::from_secs(120) {
            bail!("cannot read {SLO} from the API after sending the past");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if counted < sent.checkouts {
        story.say(format!(
            "        only {counted} of the {} past checkouts were counted (the rest were refused under load and not sent again)",
            sent.checkouts
        ));
    }
    let remaining = slo["budget"]["remaining"].as_f64().unwrap_or(f64::NAN);
    story.say(format!(
        "0/5 a past: {} checkouts over the last {} ({} failed, {:.0}% slow; {} spans and {} logs, backdated through OTLP) in {:.1} s; {SLO} starts with {:.0}% of its error budget",
        sent.checkouts,
        humantime(args.history),
        sent.failed,
        SLOW_RATE * 100.0,
        sent.spans,
        sent.logs,
        began.elapsed().as_secs_f64(),
        remaining * 100.0,
    ));
    Ok(())
}

fn humantime(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 86_400 == 0 => format!("{} days", s / 86_400),
        s if s % 3_600 == 0 => format!("{} hours", s / 3_600),
        s => format!("{} minutes", s / 60),
    }
}
