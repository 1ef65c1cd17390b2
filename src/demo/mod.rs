//! `sightline demo`: the whole story in one command. Starts Sightline (embedded store, a
//! temporary data directory unless one is given), the sample shop (`sample-backend`, as a
//! child process running this same binary) with its load driver, three example SLOs and a
//! webhook receiver that prints what it gets; then runs a scenario — steady traffic, a payment
//! outage, the page alert firing and reaching the receiver, recovery, the alert resolving —
//! and keeps the traffic going until Ctrl-C.

mod past;
mod receiver;
mod scenario;
mod shop;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::serve::Bound;
use receiver::Receiver;
use shop::Shop;

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
    /// How much past traffic to send before the live shop starts (backdated checkouts through
    /// OTLP, so the SLOs start with a history); 0s for none.
    #[arg(long, default_value = "7d", value_parser = crate::config::parse_duration)]
    history: Duration,
    /// Checkouts per minute in that past.
    #[arg(long, default_value_t = 6.0)]
    history_rate: f64,
    /// Stop when the scenario is over instead of keeping the traffic going.
    #[arg(long)]
    exit_when_done: bool,
    /// Once everything listens, write the addresses as JSON to this file.
    #[arg(long)]
    ready_file: Option<PathBuf>,
}

/// The example SLOs: checkout availability from spans (with page and ticket tiers sized for a
/// demo), checkout latency from the duration histogram, and availability from logs.
pub const DEMO_SLOS: &str = include_str!("slos.yaml");

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

/// Sightline itself, in this process.
struct Sightline {
    bound: Bound,
    stop: CancellationToken,
    task: tokio::task::JoinSet<anyhow::Result<()>>,
}

impl Sightline {
    async fn start(config: Config) -> anyhow::Result<Self> {
        crate::serve::init_logging(&config);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let stop = CancellationToken::new();
        let mut task = tokio::task::JoinSet::new();
        task.spawn(crate::serve::serve(
            config,
            None,
            Some(ready_tx),
            stop.clone().cancelled_owned(),
        ));
        match ready_rx.await {
            Ok(bound) => Ok(Self { bound, stop, task }),
            Err(_) => match task.join_next().await {
                Some(Ok(Err(e))) => Err(e),
                _ => bail!("Sightline stopped before it was ready"),
            },
        }
    }

    /// Stops it (flushing everything) and returns how it ended.
    async fn stop(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        match self.task.join_next().await {
            Some(Ok(r)) => r.context("Sightline failed"),
            Some(Err(e)) => bail!("Sightline panicked: {e}"),
            None => Ok(()),
        }
    }
}

/// The data directory: the one given, or a temporary one removed when this drops.
fn data_dir(args: &DemoArgs) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
    let (dir, temporary) = match &args.data_dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("sightline-demo-")
                .tempdir()
                .context("cannot create a temporary data directory")?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok((dir, temporary))
}

fn write_ready_file(
    path: &Path,
    bound: &Bound,
    shop: &Shop,
    receiver: SocketAddr,
) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::json!({
            "http": bound.http.to_string(),
            "otlp_grpc": bound.otlp_grpc.to_string(),
            "otlp_http": bound.otlp_http.to_string(),
            "shop": shop.url.trim_start_matches("http://"),
            "receiver": receiver.to_string(),
        })
        .to_string(),
    )?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn print_links(
    api: &str,
    bound: &Bound,
    shop: &Shop,
    receiver: SocketAddr,
    data_dir: &Path,
    temporary: bool,
) {
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
        "  shop       {}   (sample backend: shop → catalog, payment, recommendations; orders worker via a queue; faults: {}/admin/faults)",
        shop.url, shop.url
    );
    println!("  services   {api}/services   (each service, and the calls between them)");
    println!("  receiver   http://{receiver}/alerts   (prints every notification)");
    println!(
        "  data       {}{}",
        data_dir.display(),
        if temporary { " (temporary)" } else { "" }
    );
    println!(
        "  SLOs       checkout-availability (spans), checkout-latency (histogram), checkout-log-availability (logs)"
    );
    println!(
        "  try        curl -s {api}/api/v1/sql -d '{{\"sql\": \"SELECT name, count(*) FROM spans GROUP BY 1 ORDER BY 2 DESC\"}}'"
    );
}

/// The scenario (or steady traffic), until it is over or Ctrl-C.
async fn play(
    story: &Story,
    args: &DemoArgs,
    api: &str,
    shop: &Shop,
    receiver: &Receiver,
) -> anyhow::Result<()> {
    let run = async {
        if args.scenario == Scenario::Outage {
            scenario::run(story, args, api, &shop.url, &receiver.inbox).await?;
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
}

/// The demo, as a script: a receiver, Sightline pointed at it, the shop sending to Sightline,
/// the scenario; then everything stopped in reverse order (the shop flushes its telemetry,
/// Sightline flushes to Parquet) and the temporary data removed.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let story = Story {
        started: Instant::now(),
    };
    let (data_dir, temporary) = data_dir(&args)?;
    let receiver = Receiver::start(args.receiver_listen).await?;
    let sightline = Sightline::start(demo_config(&args, &data_dir, receiver.addr)?).await?;
    let api = format!("http://localhost:{}", sightline.bound.http.port());
    if !args.history.is_zero() {
        past::send(&story, &args, &api, &sightline.bound).await?;
    }
    let shop = Shop::start(&args, &data_dir, sightline.bound).await?;
    if let Some(path) = &args.ready_file {
        write_ready_file(path, &sightline.bound, &shop, receiver.addr)?;
    }
    print_links(
        &api,
        &sightline.bound,
        &shop,
        receiver.addr,
        &data_dir,
        temporary.is_some(),
    );

    let result = play(&story, &args, &api, &shop, &receiver).await;
    if let Err(e) = &result {
        story.say(format!("the scenario failed: {e:#}"));
    }
    shop.stop().await;
    let stopped = sightline.stop().await;
    receiver.stop().await;
    drop(temporary);
    stopped?;
    result
}
