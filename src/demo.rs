//! `sightline demo`: the whole story in one command. Starts Sightline (embedded store, a
//! temporary data directory unless one is given), the sample shop (`sample-backend`, as a
//! child process running this same binary) with its load driver, three example SLOs and a
//! webhook receiver that prints what it gets; then runs a scenario — steady traffic, a payment
//! outage, the page alert firing and reaching the receiver, recovery, the alert resolving —
//! and keeps the traffic going until Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::serve::Bound;

/// The SLO the scenario follows.
const SLO: &str = "checkout-availability";
/// Signs the demo receiver's webhooks (it checks them).
const SECRET: &str = "sightline-demo";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Steady traffic, a payment outage, the page alert, recovery, the alert resolving.
    Outage,
    /// Steady traffic only, for exploring.
    None,
}

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Data directory [default: a new temporary directory, removed at exit].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Scenario::Outage)]
    scenario: Scenario,
    /// HTTP API and UI.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http_listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:4317")]
    otlp_grpc_listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:4318")]
    otlp_http_listen: SocketAddr,
    /// The sample shop.
    #[arg(long, default_value = "127.0.0.1:8090")]
    shop_listen: SocketAddr,
    /// The demo webhook receiver.
    #[arg(long, default_value = "127.0.0.1:9095")]
    receiver_listen: SocketAddr,
    /// Shop requests per second from the load driver.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Steady traffic before the outage.
    #[arg(long, default_value = "60s", value_parser = crate::config::parse_duration)]
    warmup: Duration,
    /// Share of payments that fail during the outage.
    #[arg(long, default_value_t = 0.5)]
    outage_error_rate: f64,
    /// Stop when the scenario is over instead of keeping the traffic going.
    #[arg(long)]
    exit_when_done: bool,
    /// Once everything listens, write the addresses as JSON to this file.
    #[arg(long)]
    ready_file: Option<PathBuf>,
}

/// The example SLOs: checkout availability from spans (with page and ticket tiers sized for a
/// demo), checkout latency from the duration histogram, and availability from logs.
pub const DEMO_SLOS: &str = r#"name: checkout-availability
service: shop
description: Checkouts that succeed, from the shop's server spans.
objective: 99.5
window: 7d
indicator:
  spans:
    filter: "service_name = 'shop' AND kind = 'server' AND http_route = '/api/checkout'"
    good: "status_code != 'error'"
alerting:
  tiers:
    - name: page
      severity: page
      long: 1h
      short: 2m
      burn_rate: 14.4
    - name: ticket
      severity: ticket
      long: 6h
      short: 30m
      burn_rate: 6
labels:
  team: shop
annotations:
  runbook: https://runbooks.example.com/shop/checkout
---
name: checkout-latency
service: shop
description: Checkouts answered within 500 ms, from the http.server.request.duration histogram.
objective: 99
window: 7d
indicator:
  metric_latency:
    metric: http.server.request.duration
    filter: "service_name = 'shop' AND attributes['http.route'] = '/api/checkout'"
    threshold: 0.5
labels:
  team: shop
---
name: checkout-log-availability
service: shop
description: Checkouts whose log line says they completed.
objective: 99.5
window: 7d
indicator:
  logs:
    filter: "service_name = 'shop' AND attributes['checkout.outcome'] IS NOT NULL"
    good: "attributes['checkout.outcome'] = 'ok'"
labels:
  team: shop
"#;

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Prints a line of the story with the time since the demo started.
struct Story {
    started: Instant,
}

impl Story {
    fn say(&self, text: impl AsRef<str>) {
        let s = self.started.elapsed().as_secs();
        println!("[{:02}:{:02}] {}", s / 60, s % 60, text.as_ref());
    }
}

/// What the demo receiver got.
#[derive(Debug, Default)]
struct Inbox {
    notifications: Vec<Value>,
}

type SharedInbox = Arc<Mutex<Inbox>>;

fn inbox(i: &SharedInbox) -> std::sync::MutexGuard<'_, Inbox> {
    i.lock().unwrap_or_else(|e| e.into_inner())
}

/// The demo webhook receiver: checks the signature, prints the notification, keeps it.
async fn receive(
    State(inbox_): State<SharedInbox>,
    headers: HeaderMap,
    body: Bytes,
) -> &'static str {
    let signed = headers
        .get("x-sightline-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let expected = sightline_notify::webhook::signature(SECRET.as_bytes(), &body);
    let Ok(n) = serde_json::from_slice::<Value>(&body) else {
        println!("        receiver: got a body that is not JSON");
        return "ok";
    };
    let status = n["status"].as_str().unwrap_or("?").to_uppercase();
    let firing = n["alerts"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|x| x["status"] == "firing").count());
    let labels: Vec<&str> = n["groupLabels"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    println!(
        "        receiver ← webhook {}{} {}  (signature {})",
        status,
        if status == "FIRING" {
            format!(":{firing}")
        } else {
            String::new()
        },
        labels.join(" "),
        if signed == expected {
            "valid"
        } else {
            "INVALID"
        },
    );
    for a in n["alerts"].as_array().into_iter().flatten() {
        println!(
            "          {} {}: {}",
            a["status"].as_str().unwrap_or(""),
            a["labels"]["tier"].as_str().unwrap_or(""),
            a["annotations"]["description"].as_str().unwrap_or("")
        );
    }
    inbox(&inbox_).notifications.push(n);
    "ok"
}

fn demo_config(args: &DemoArgs, data_dir: &Path, receiver: SocketAddr) -> anyhow::Result<Config> {
    let slo_dir = data_dir.join("demo-slos");
    std::fs::create_dir_all(&slo_dir)?;
    std::fs::write(slo_dir.join("shop.yaml"), DEMO_SLOS)?;
    let toml = format!(
        r#"
data_dir = {data:?}
[listen]
otlp_grpc = "{grpc}"
otlp_http = "{otlp_http}"
http = "{http}"
[log]
level = "warn"
[slo]
dir = {slo_dir:?}
tick = "5s"
[notify]
external_url = "http://localhost:{http_port}"
[[notify.receivers]]
name = "demo-webhook"
[notify.receivers.webhook]
url = "http://{receiver}/alerts"
secret = "{SECRET}"
[notify.route]
receiver = "demo-webhook"
group_by = ["slo", "severity"]
group_wait = "5s"
group_interval = "15s"
repeat_interval = "1h"
"#,
        data = data_dir.display().to_string(),
        grpc = args.otlp_grpc_listen,
        otlp_http = args.otlp_http_listen,
        http = args.http_listen,
        http_port = args.http_listen.port(),
        slo_dir = slo_dir.display().to_string(),
    );
    let config = Config::from_toml(&toml)?;
    config.validate()?;
    Ok(config)
}

struct Shop {
    child: tokio::process::Child,
    url: String,
}

async fn start_shop(args: &DemoArgs, data_dir: &Path, sightline: Bound) -> anyhow::Result<Shop> {
    let ready = data_dir.join("shop.ready.json");
    let _ = std::fs::remove_file(&ready);
    let log = std::fs::File::create(data_dir.join("shop.log"))?;
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let child = tokio::process::Command::new(exe)
        .arg("sample-backend")
        .arg("--listen")
        .arg(args.shop_listen.to_string())
        .arg("--load-rate")
        .arg(args.rate.to_string())
        .arg("--ready-file")
        .arg(&ready)
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{}", sightline.otlp_grpc),
        )
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .env("OTEL_SERVICE_NAME", "shop")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "5000")
        .env("OTEL_BSP_SCHEDULE_DELAY", "1000")
        .env("OTEL_BLRP_SCHEDULE_DELAY", "1000")
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the sample shop")?;
    let mut shop = Shop {
        child,
        url: String::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(&ready)
            && let Ok(v) = serde_json::from_str::<Value>(&text)
            && let Some(addr) = v["http"].as_str()
        {
            shop.url = format!("http://{addr}");
            return Ok(shop);
        }
        if let Some(status) = shop.child.try_wait()? {
            bail!(
                "the sample shop exited ({status}) before it was ready; see {}",
                data_dir.join("shop.log").display()
            );
        }
        if Instant::now() > deadline {
            bail!("the sample shop did not start within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Shop {
    /// SIGTERM, then up to 10 s for it to flush its telemetry.
    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

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

async fn scenario(
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
    story.say(format!(
        "        what happened, in SQL: curl -s {api}/api/v1/sql -d '{{\"sql\": \"SELECT time, slo, rule, state FROM slo_alerts ORDER BY time\"}}'"
    ));
    Ok(())
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let story = Story {
        started: Instant::now(),
    };
    // A temporary directory is removed when `temporary` drops, on every way out.
    let (data_dir, temporary) = match &args.data_dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("sightline-demo-")
                .tempdir()
                .context("cannot create a temporary data directory")?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;

    // The receiver first: Sightline's config points at it.
    let receiver_listener = tokio::net::TcpListener::bind(args.receiver_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for the demo receiver",
                args.receiver_listen
            )
        })?;
    let receiver_addr = receiver_listener.local_addr()?;
    let inbox_: SharedInbox = Default::default();
    let stop_receiver = CancellationToken::new();
    let receiver = {
        let app = axum::Router::new()
            .route("/alerts", axum::routing::post(receive))
            .with_state(inbox_.clone());
        let token = stop_receiver.clone();
        tokio::spawn(async move {
            axum::serve(receiver_listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await
        })
    };

    let config = demo_config(&args, &data_dir, receiver_addr)?;
    crate::serve::init_logging(&config);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let stop_sightline = CancellationToken::new();
    let sightline = tokio::spawn(crate::serve::serve(
        config,
        None,
        Some(ready_tx),
        stop_sightline.clone().cancelled_owned(),
    ));
    let bound = match ready_rx.await {
        Ok(b) => b,
        Err(_) => {
            return match sightline.await {
                Ok(Err(e)) => Err(e),
                _ => Err(anyhow::anyhow!("Sightline stopped before it was ready")),
            };
        }
    };
    let api = format!("http://localhost:{}", bound.http.port());
    let shop = start_shop(&args, &data_dir, bound).await?;
    if let Some(path) = &args.ready_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(
            &tmp,
            serde_json::json!({
                "http": bound.http.to_string(),
                "otlp_grpc": bound.otlp_grpc.to_string(),
                "otlp_http": bound.otlp_http.to_string(),
                "shop": shop.url.trim_start_matches("http://"),
                "receiver": receiver_addr.to_string(),
            })
            .to_string(),
        )?;
        std::fs::rename(&tmp, path)?;
    }

    println!("Sightline demo — Ctrl-C stops everything");
    println!("  UI         {api}/slos/{SLO}   (also {api}/alerts and {api}/sql)");
    println!(
        "  API        {api}/api/v1   (SLOs: {api}/api/v1/slos, SQL: POST {api}/api/v1/sql, metrics: {api}/metrics)"
    );
    println!(
        "  OTLP       gRPC {}, HTTP {}",
        bound.otlp_grpc, bound.otlp_http
    );
    println!(
        "  shop       {}   (sample backend; faults: {}/admin/faults)",
        shop.url, shop.url
    );
    println!("  receiver   http://{receiver_addr}/alerts   (prints every notification)");
    println!(
        "  data       {}{}",
        data_dir.display(),
        if temporary.is_some() {
            " (temporary)"
        } else {
            ""
        }
    );
    println!(
        "  SLOs       checkout-availability (spans), checkout-latency (histogram), checkout-log-availability (logs)"
    );
    println!(
        "  try        curl -s {api}/api/v1/sql -d '{{\"sql\": \"SELECT name, count(*) FROM spans GROUP BY 1 ORDER BY 2 DESC\"}}'"
    );

    let result = {
        let run = async {
            if args.scenario == Scenario::Outage {
                scenario(&story, &args, &api, &shop.url, &inbox_).await?;
                if args.exit_when_done {
                    return Ok(());
                }
                story.say("the scenario is over; steady traffic goes on — explore, then Ctrl-C");
            } else {
                story.say(format!(
                    "steady traffic; inject a fault with: curl -X PUT {}/admin/faults/payment -H 'content-type: application/json' -d '{{\"error_rate\": 0.5}}'",
                    shop.url
                ));
            }
            std::future::pending::<anyhow::Result<()>>().await
        };
        tokio::select! {
            r = run => r,
            _ = crate::serve::shutdown_signal() => {
                println!();
                story.say("stopping");
                Ok(())
            }
        }
    };
    if let Err(e) = &result {
        story.say(format!("the scenario failed: {e:#}"));
    }
    shop.stop().await;
    stop_sightline.cancel();
    let stopped = sightline.await;
    stop_receiver.cancel();
    let _ = receiver.await;
    drop(temporary);
    match stopped {
        Ok(Err(e)) => return Err(e.context("Sightline failed")),
        Err(e) => bail!("Sightline panicked: {e}"),
        Ok(Ok(())) => {}
    }
    result
}
