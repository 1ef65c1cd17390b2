//! The outage scenario, step by step: steady traffic, a payment outage, the page alert firing
//! and reaching the receiver, recovery, the alert resolving — all observed through the public
//! API and the receiver, as a user would.

use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::Value;

use super::receiver::{SharedInbox, inbox};
use super::{DemoArgs, SLO, Story, now_rfc3339};

/// The state of the scenario's page alert, from the public API.
async fn page_state(http: &reqwest::Client, api: &str) -> Option<String> {
    let v: Value = http
        .get(format!("{api}/api/v1/slos/{SLO}"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    v["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["rule"] == "page")
        .and_then(|a| a["state"].as_str().map(str::to_string))
}

async fn wait_for<F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            bail!("{what} did not happen within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn got(inbox_: &SharedInbox, status: &str) -> bool {
    inbox(inbox_).notifications.iter().any(|n| {
        n["status"] == status
            && n["alerts"].as_array().into_iter().flatten().any(|a| {
                a["labels"]["slo"] == SLO && a["labels"]["tier"] == "page" && a["status"] == status
            })
    })
}

pub(super) async fn run(
    story: &Story,
    args: &DemoArgs,
    api: &str,
    shop: &str,
    inbox_: &SharedInbox,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    story.say(format!(
        "1/5 steady traffic: {} requests/s, a few percent of checkouts slow or degraded; {} s of it",
        args.rate,
        args.warmup.as_secs()
    ));
    tokio::time::sleep(args.warmup).await;
    let outage_at = now_rfc3339();
    http.put(format!("{shop}/admin/faults/payment"))
        .json(&serde_json::json!({ "error_rate": args.outage_error_rate, "latency_ms": 0 }))
        .send()
        .await?
        .error_for_status()?;
    story.say(format!(
        "2/5 outage: the payment component now fails {:.0}% of charges (at {outage_at})",
        args.outage_error_rate * 100.0
    ));
    story.say(format!(
        "        watch the budget burn: {api}/slos/{SLO}?refresh=10s (or curl -s {api}/api/v1/slos/{SLO})"
    ));
    let fired = wait_for("the page alert", Duration::from_secs(300), || async {
        page_state(&http, api).await.as_deref() == Some("firing")
    })
    .await?;
    story.say(format!(
        "3/5 the page alert fires: {SLO} is burning its budget more than 14.4× too fast over 1h and 2m ({} s after the outage began, at {})",
        fired.as_secs(),
        now_rfc3339()
    ));
    failing_edges(story, &http, api, &outage_at).await;
    let delivered = wait_for(
        "the firing notification",
        Duration::from_secs(120),
        || async { got(inbox_, "firing") },
    )
    .await?;
    story.say(format!(
        "        …and reaches the receiver {} s later (group_wait 5 s)",
        delivered.as_secs()
    ));
    let recovered_at = now_rfc3339();
    http.delete(format!("{shop}/admin/faults"))
        .send()
        .await?
        .error_for_status()?;
    story.say(format!(
        "4/5 recovery: payments work again (at {recovered_at})"
    ));
    story.say("        the alert resolves once the failures leave its 2-minute window");
    let resolved = wait_for(
        "the page alert resolving",
        Duration::from_secs(600),
        // An unanswered request says nothing: only an answer that is not "firing" counts.
        || async { page_state(&http, api).await.is_some_and(|s| s != "firing") },
    )
    .await?;
    wait_for(
        "the resolved notification",
        Duration::from_secs(120),
        || async { got(inbox_, "resolved") },
    )
    .await?;
    story.say(format!(
        "5/5 resolved: the page alert cleared {} s after recovery and the receiver heard it (at {})",
        resolved.as_secs(),
        now_rfc3339()
    ));
    still_firing(story, &http, api).await;
    story.say(format!(
        "        what happened, in SQL: curl -s {api}/api/v1/sql -d '{{\"sql\": \"SELECT time, slo, rule, state FROM slo_alerts ORDER BY time\"}}'"
    ));
    Ok(())
}

/// An edge of the service map fails when this share of its calls or more are errors (the
/// Services page marks it the same way).
const FAILING: f64 = 0.05;

/// Says which calls between services fail since `from`, from the service map's API.
async fn failing_edges(story: &Story, http: &reqwest::Client, api: &str, from: &str) {
    let map: Option<Value> = match http
        .get(format!("{api}/api/v1/services/map"))
        .query(&[("from", from)])
        .send()
        .await
    {
        Ok(r) => r.json().await.ok(),
        Err(_) => None,
    };
    let Some(map) = map else {
        story.say("        (cannot read the service map)");
        return;
    };
    let failing: Vec<String> = map["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["error_rate"].as_f64().is_some_and(|r| r >= FAILING))
        .map(|e| {
            format!(
                "{} → {} ({:.0}% of {} calls)",
                e["caller"].as_str().unwrap_or("?"),
                e["callee"].as_str().unwrap_or("?"),
                e["error_rate"].as_f64().unwrap_or(0.0) * 100.0,
                e["calls"],
            )
        })
        .collect();
    if failing.is_empty() {
        story.say("        the service map shows no failing calls yet");
    } else {
        story.say(format!(
            "        failing calls since the outage began, from the service map ({api}/services): {}",
            failing.join(", ")
        ));
    }
}

/// Says which alerts still fire once the page resolved, and why each does.
async fn still_firing(story: &Story, http: &reqwest::Client, api: &str) {
    let slos: Option<Value> = match http.get(format!("{api}/api/v1/slos")).send().await {
        Ok(r) => r.json().await.ok(),
        Err(_) => None,
    };
    let Some(slos) = slos else {
        story.say("        (cannot read the SLOs to say what still fires)");
        return;
    };
    let mut lines = Vec::new();
    for slo in slos["slos"].as_array().into_iter().flatten() {
        let name = slo["name"].as_str().unwrap_or("?");
        let budget = slo["budget"]["remaining"].as_f64();
        for a in slo["alerts"].as_array().into_iter().flatten() {
            if a["state"] != "firing" {
                continue;
            }
            lines.push(format!(
                "{name} {}: {}",
                a["rule"].as_str().unwrap_or("?"),
                why(a, budget)
            ));
        }
    }
    if lines.is_empty() {
        story.say("        still firing: nothing");
        return;
    }
    story.say(format!(
        "        still firing ({}), as expected:",
        lines.len()
    ));
    for l in lines {
        story.say(format!("          {l}"));
    }
}

/// Why a firing alert still fires, from its figures.
fn why(alert: &Value, budget: Option<f64>) -> String {
    let v = |k: &str| alert["values"][k].as_f64();
    match alert["rule"].as_str() {
        Some("budget-exhausted") => format!(
            "the error budget is spent ({:.0}% left); it clears as the failures leave the window",
            budget.unwrap_or(f64::NAN) * 100.0
        ),
        Some("no-data") => "no events arrive".into(),
        _ => match (v("burn_rate_long"), v("burn_rate_short"), v("threshold")) {
            (Some(long), Some(short), Some(t)) => format!(
                "burn rate {long:.1} over {} and {short:.1} over {}, threshold {t:.1}: the outage is \
                 still inside both windows; it resolves when it leaves the {} one",
                alert["long_window"].as_str().unwrap_or("?"),
                alert["short_window"].as_str().unwrap_or("?"),
                alert["short_window"].as_str().unwrap_or("short"),
            ),
            _ => "its condition still holds".into(),
        },
    }
}
