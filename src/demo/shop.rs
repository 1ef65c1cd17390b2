//! The sample shop, as a child process running this same binary (`sightline sample-backend`)
//! with its load driver, sending its telemetry to the demo's Sightline.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;

use super::DemoArgs;
use crate::serve::Bound;

pub(super) struct Shop {
    child: tokio::process::Child,
    pub(super) url: String,
}

impl Shop {
    pub(super) async fn start(
        args: &DemoArgs,
        data_dir: &Path,
        sightline: Bound,
    ) -> anyhow::Result<Shop> {
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
            // The shop stops when the demo does, even when the demo is killed.
            .env(
                sightline_common::process::PARENT_PID_ENV,
                std::process::id().to_string(),
            )
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

    /// SIGTERM, then up to 10 s for it to flush its telemetry.
    pub(super) async fn stop(mut self) {
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
