//! What a run reports: throughput, latency percentiles, bytes, rejections and errors by kind,
//! and the server's resident memory sampled during the run — as a table or as JSON.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::client::Stats;
use crate::pool::Signal;
use crate::{Protocol, RSS_SAMPLE_INTERVAL, SignalArg};

#[derive(Debug, Default, Clone)]
pub(crate) struct RssReport {
    pub(crate) pid: u32,
    pub(crate) samples: u64,
    pub(crate) start_rss_bytes: u64,
    pub(crate) end_rss_bytes: u64,
    pub(crate) max_rss_bytes: u64,
    /// VmHWM at the end: the peak since the server started (may predate the run).
    pub(crate) hwm_bytes: u64,
    /// The process went away during the run.
    pub(crate) vanished: bool,
}

pub(crate) async fn sample_rss(pid: u32, stop: Arc<AtomicBool>) -> RssReport {
    let mut rep = RssReport {
        pid,
        ..Default::default()
    };
    let mut tick = tokio::time::interval(RSS_SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        match sightline_common::process::memory(pid) {
            Some(m) => {
                let (rss, hwm) = (m.resident_bytes, m.peak_bytes);
                if rep.samples == 0 {
                    rep.start_rss_bytes = rss;
                }
                rep.samples += 1;
                rep.end_rss_bytes = rss;
                rep.max_rss_bytes = rep.max_rss_bytes.max(rss);
                rep.hwm_bytes = rep.hwm_bytes.max(hwm);
            }
            None => {
                rep.vanished = true;
                break;
            }
        }
        // Checked after sampling so the final sample is taken after the workers finished.
        if stop.load(Ordering::Relaxed) {
            break;
        }
    }
    rep
}

/// Nearest-rank percentile of an ascending slice (`p` in 0..=100); 0 for an empty slice.
pub(crate) fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let n = sorted.len();
    let rank = (p.clamp(0.0, 100.0) * n as f64 / 100.0).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

pub(crate) struct Summary {
    pub(crate) stats: Stats,
    pub(crate) elapsed_s: f64,
    pub(crate) p50: u64,
    pub(crate) p90: u64,
    pub(crate) p99: u64,
    pub(crate) max: u64,
    pub(crate) mean: f64,
}

impl Summary {
    pub(crate) fn new(mut stats: Stats, elapsed: Duration) -> Summary {
        stats.latencies_us.sort_unstable();
        let l = &stats.latencies_us;
        let mean = if l.is_empty() {
            0.0
        } else {
            l.iter().sum::<u64>() as f64 / l.len() as f64
        };
        Summary {
            p50: percentile(l, 50.0),
            p90: percentile(l, 90.0),
            p99: percentile(l, 99.0),
            max: l.last().copied().unwrap_or(0),
            mean,
            elapsed_s: elapsed.as_secs_f64().max(1e-9),
            stats,
        }
    }

    pub(crate) fn requests(&self) -> u64 {
        self.stats.ok + self.stats.rejected_total() + self.stats.errored
    }

    pub(crate) fn req_per_s(&self) -> f64 {
        self.stats.ok as f64 / self.elapsed_s
    }

    pub(crate) fn items_per_s(&self) -> f64 {
        self.stats.items_accepted as f64 / self.elapsed_s
    }

    pub(crate) fn bytes_per_s(&self) -> f64 {
        self.stats.bytes_sent as f64 / self.elapsed_s
    }

    pub(crate) fn to_json(&self, signals: &[Signal]) -> Value {
        let s = &self.stats;
        let by_signal: serde_json::Map<String, Value> = signals
            .iter()
            .map(|&sig| {
                (
                    sig.item_name().to_string(),
                    json!(s.items_by_signal[sig as usize]),
                )
            })
            .collect();
        json!({
            "requests": self.requests(),
            "ok": s.ok,
            "rejected": s.rejected_total(),
            "errored": s.errored,
            "rejected_by_status": s.rejected,
            "errors": s.errors,
            "items_accepted": s.items_accepted,
            "items_in_ok_requests": s.items_in_ok,
            "items_partially_rejected": s.items_partial_rejected,
            "items_by_signal": by_signal,
            "items_per_sec": round3(self.items_per_s()),
            "requests_per_sec": round3(self.req_per_s()),
            "latency_us": {
                "p50": self.p50,
                "p90": self.p90,
                "p99": self.p99,
                "max": self.max,
                "mean": round3(self.mean),
            },
            "bytes_sent": s.bytes_sent,
            "bytes_per_sec": round3(self.bytes_per_s()),
        })
    }
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub(crate) fn fmt_ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

pub(crate) fn fmt_bytes(b: f64) -> String {
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

pub(crate) fn fmt_counts(m: &BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} x{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) struct RunInfo {
    pub(crate) signal: SignalArg,
    pub(crate) signals: Vec<Signal>,
    pub(crate) protocol: Protocol,
    pub(crate) grpc: Option<String>,
    pub(crate) http: Option<String>,
    pub(crate) connections: u32,
    pub(crate) batch: u32,
    pub(crate) pool: usize,
    pub(crate) gzip: bool,
    pub(crate) duration: Duration,
}

pub(crate) fn print_human(
    info: &RunInfo,
    total: &Summary,
    parts: &[(&str, Summary)],
    rss: Option<&RssReport>,
) {
    let proto = match info.protocol {
        Protocol::Grpc => "grpc",
        Protocol::Http => "http",
        Protocol::Both => "grpc+http",
    };
    let targets: Vec<String> = [("grpc", &info.grpc), ("http", &info.http)]
        .iter()
        .filter_map(|&(n, a)| a.as_ref().map(|a| format!("{n} {a}")))
        .collect();
    println!(
        "sightline load: {} over {} -> {}",
        match info.signal {
            SignalArg::Mixed => "mixed (traces+logs+metrics)",
            _ => info.signals.first().map_or("?", |s| s.name()),
        },
        proto,
        targets.join(", ")
    );
    println!(
        "  {} connection(s) per protocol, {} {}/request, gzip {}, pool {} requests, run {:?}",
        info.connections,
        info.batch,
        info.signal.items_label(),
        if info.gzip { "on" } else { "off" },
        info.pool,
        info.duration
    );
    let row = |label: &str, s: &Summary| {
        println!("{label}");
        println!("  elapsed        {:.2} s", s.elapsed_s);
        println!(
            "  requests       {} ok, {} rejected, {} errors  ({:.1} ok req/s)",
            s.stats.ok,
            s.stats.rejected_total(),
            s.stats.errored,
            s.req_per_s()
        );
        println!(
            "  items          {} {} accepted  ({:.0} items/s){}",
            s.stats.items_accepted,
            info.signal.items_label(),
            s.items_per_s(),
            if s.stats.items_partial_rejected > 0 {
                format!(", {} partially rejected", s.stats.items_partial_rejected)
            } else {
                String::new()
            }
        );
        if info.signals.len() > 1 {
            let parts: Vec<String> = info
                .signals
                .iter()
                .map(|&sig| {
                    format!(
                        "{} {}",
                        s.stats.items_by_signal[sig as usize],
                        sig.item_name()
                    )
                })
                .collect();
            println!("                 {}", parts.join(", "));
        }
        println!(
            "  latency (ok)   p50 {}  p90 {}  p99 {}  max {}  mean {}",
            fmt_ms(s.p50),
            fmt_ms(s.p90),
            fmt_ms(s.p99),
            fmt_ms(s.max),
            fmt_ms(s.mean as u64)
        );
        println!(
            "  bytes sent     {}  ({}/s)",
            fmt_bytes(s.stats.bytes_sent as f64),
            fmt_bytes(s.bytes_per_s())
        );
        if !s.stats.rejected.is_empty() {
            println!("  rejected       {}", fmt_counts(&s.stats.rejected));
        }
        if !s.stats.errors.is_empty() {
            println!("  errors         {}", fmt_counts(&s.stats.errors));
        }
    };
    for (name, s) in parts {
        row(format!("[{name}]").as_str(), s);
    }
    row(
        if parts.is_empty() {
            "[result]"
        } else {
            "[total]"
        },
        total,
    );
    if let Some(r) = rss {
        println!(
            "server RSS (pid {})  peak sampled {}, VmHWM {}, start {}, end {} ({} samples){}",
            r.pid,
            fmt_bytes(r.max_rss_bytes as f64),
            fmt_bytes(r.hwm_bytes as f64),
            fmt_bytes(r.start_rss_bytes as f64),
            fmt_bytes(r.end_rss_bytes as f64),
            r.samples,
            if r.vanished {
                " -- process exited during the run"
            } else {
                ""
            }
        );
    }
}

pub(crate) fn results_json(
    info: &RunInfo,
    total: &Summary,
    parts: &[(&str, Summary)],
    rss: Option<&RssReport>,
) -> Value {
    let mut out = json!({
        "signal": match info.signal {
            SignalArg::Traces => "traces",
            SignalArg::Logs => "logs",
            SignalArg::Metrics => "metrics",
            SignalArg::Mixed => "mixed",
        },
        "protocol": match info.protocol {
            Protocol::Grpc => "grpc",
            Protocol::Http => "http",
            Protocol::Both => "both",
        },
        "grpc_target": info.grpc,
        "http_target": info.http,
        "connections": info.connections,
        "batch_items": info.batch,
        "pool_requests": info.pool,
        "gzip": info.gzip,
        "duration_s": info.duration.as_secs_f64(),
        "elapsed_s": round3(total.elapsed_s),
        "server": rss.map(|r| json!({
            "pid": r.pid,
            "samples": r.samples,
            "peak_rss_bytes": r.max_rss_bytes,
            "vm_hwm_bytes": r.hwm_bytes,
            "start_rss_bytes": r.start_rss_bytes,
            "end_rss_bytes": r.end_rss_bytes,
            "exited": r.vanished,
        })),
    });
    if let (Some(o), Value::Object(t)) = (out.as_object_mut(), total.to_json(&info.signals)) {
        o.extend(t);
        if !parts.is_empty() {
            let by: serde_json::Map<String, Value> = parts
                .iter()
                .map(|(n, s)| (n.to_string(), s.to_json(&info.signals)))
                .collect();
            o.insert("by_protocol".into(), Value::Object(by));
        }
    }
    out
}
