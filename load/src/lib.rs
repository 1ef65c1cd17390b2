//! # sightline-load
//!
//! `sightline load`: a bounded, closed-loop OTLP load generator (a library, so that the CLI,
//! the benchmarks and the tests drive the same thing).
//!
//! It pre-builds a pool of realistic OTLP export requests (traces, logs or metrics, already
//! protobuf-encoded and, for OTLP/HTTP, already gzip'd), then runs N workers that each send
//! requests back-to-back over their own gRPC channel / HTTP client until the deadline, and
//! reports throughput, latency percentiles, bytes sent and (optionally) the server's peak RSS.

#![cfg_attr(
    test,
    allow(
        clippy::disallowed_methods,
        reason = "tests block on their runtimes and spawn freely"
    )
)]

//!
//! - [`catalogue`]: the made-up services whose telemetry it sends; [`generate`]: their traces,
//!   logs and metrics as OTLP requests; [`pool`]: the requests of a run, built before it starts;
//! - [`client`]: the workers and their gRPC / HTTP clients; [`report`]: what a run measured.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sightline_load::LoadError> {
//! use clap::Parser;
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     load: sightline_load::LoadArgs,
//! }
//! let cli = Cli::parse_from(["load", "--http", "127.0.0.1:4318", "--duration", "5s"]);
//! sightline_load::run(cli.load).await?;
//! # Ok(()) }
//! ```

pub mod catalogue;
pub mod client;
pub mod generate;
pub mod pool;
pub mod report;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tonic::codec::CompressionEncoding;
use tonic::transport::Endpoint;

use client::{Client, Stats, worker};
use pool::build_pool;
use report::{RunInfo, Summary, print_human, results_json, sample_rss};

/// Why a run could not be made or failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The arguments do not describe a run.
    #[error("{0}")]
    Usage(String),
    /// A target cannot be reached.
    #[error("{0}")]
    Connect(String),
    /// The run happened, but no request succeeded (or a part of the tool failed).
    #[error("{0}")]
    Failed(String),
}

/// Every request (gRPC or HTTP) gives up after this long.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub(crate) const RSS_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
/// Pause after a transport error so a dead server does not turn the loop into a spin.
pub(crate) const ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// Pause after a rejection (non-2xx / gRPC status), like a polite exporter would.
pub(crate) const REJECT_BACKOFF: Duration = Duration::from_millis(10);
/// Upper bound on pre-generated items (pool size x batch size) to keep memory sane.
pub(crate) const MAX_POOL_ITEMS: u64 = 2_000_000;
/// gzip level tonic uses for per-message compression (used to estimate gRPC wire bytes).
pub(crate) const GZIP_LEVEL: u32 = 6;
/// Distinct error messages kept per run; further ones are folded into "(other)".
pub(crate) const MAX_ERROR_KINDS: usize = 8;

/// Transport(s) to drive.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC only (needs --grpc).
    Grpc,
    /// OTLP/HTTP protobuf only (needs --http).
    Http,
    /// Both at once: --connections workers on each.
    Both,
}

/// Which telemetry the requests carry.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalArg {
    Traces,
    Logs,
    Metrics,
    /// Rotate traces, logs and metrics requests.
    Mixed,
}

/// `sightline load`: send realistic OTLP batches to a running server for a bounded time.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// OTLP/gRPC target, host:port (e.g. 127.0.0.1:4317).
    #[arg(long, value_name = "ADDR")]
    pub grpc: Option<String>,

    /// OTLP/HTTP target, host:port (e.g. 127.0.0.1:4318); requests go to /v1/{traces,logs,metrics}.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,

    /// Protocol to use [default: grpc and/or http, whichever address was given].
    #[arg(long, value_enum)]
    pub protocol: Option<Protocol>,

    /// Telemetry carried by the requests.
    #[arg(long, value_enum, default_value = "traces")]
    pub signal: SignalArg,

    /// Concurrent workers per protocol, each with its own gRPC channel / HTTP connection.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub connections: u32,

    /// How long to send, e.g. 10s, 500ms, 2m (a bare number means seconds).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Items per request: spans, log records or metric data points.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch_spans: u32,

    /// Send at most this many items per second in all (spread over the workers, each pacing
    /// its requests) instead of as fast as the server answers: a tenant's normal rate, or a
    /// flood of a known size. Latencies then are those of a client at that rate.
    #[arg(long, value_name = "ITEMS", value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: Option<u64>,

    /// gzip the request bodies (Content-Encoding: gzip / grpc-encoding: gzip).
    #[arg(long)]
    pub gzip: bool,

    /// Sample this process's RSS from /proc/PID/status every 100 ms and report the peak.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,

    /// Print one JSON object with the results instead of the human-readable table.
    #[arg(long)]
    pub json: bool,

    /// Distinct pre-built requests per signal, rotated during the run.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub pool_size: u32,

    /// Seed for the data generator [default: derived from the clock].
    #[arg(long)]
    pub seed: Option<u64>,

    /// An API key with the ingest role, sent as `Authorization: Bearer KEY` (gRPC metadata
    /// too), for a server with keys configured.
    #[arg(long, env = "SIGHTLINE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Talk TLS, trusting the CA certificates in this PEM file (targets without a scheme get
    /// `https://`).
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<std::path::PathBuf>,
}

/// Parses `10s`, `250ms`, `2m` (and a bare `10` as seconds). Zero is refused.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = sightline_common::config::parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("duration {s:?} must be greater than zero"));
    }
    Ok(d)
}

fn normalize_addr(addr: &str, tls: bool) -> String {
    let a = addr.trim().trim_end_matches('/');
    if a.contains("://") {
        a.to_string()
    } else if tls {
        format!("https://{a}")
    } else {
        format!("http://{a}")
    }
}

/// `host:port` part of a normalized URL, for the reachability check.
fn host_port(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

async fn check_reachable(url: &str) -> Result<(), LoadError> {
    let hp = host_port(url);
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(hp)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(LoadError::Connect(format!("cannot connect to {hp}: {e}"))),
        Err(_) => Err(LoadError::Connect(format!(
            "cannot connect to {hp}: timed out after {CONNECT_TIMEOUT:?}"
        ))),
    }
}

fn usage(m: impl Into<String>) -> LoadError {
    LoadError::Usage(m.into())
}

/// Runs the load described by `args` and prints its report (a table, or JSON).
///
/// # Errors
/// [`LoadError::Usage`] for arguments that describe no run, [`LoadError::Connect`] when a
/// target cannot be reached, [`LoadError::Failed`] when no request succeeded.
pub async fn run(args: LoadArgs) -> Result<(), LoadError> {
    let protocol = match (args.protocol, &args.grpc, &args.http) {
        (Some(p), _, _) => p,
        (None, Some(_), Some(_)) => Protocol::Both,
        (None, Some(_), None) => Protocol::Grpc,
        (None, None, Some(_)) => Protocol::Http,
        (None, None, None) => {
            return Err(usage(
                "give a target: --grpc HOST:PORT and/or --http HOST:PORT",
            ));
        }
    };
    let use_grpc = matches!(protocol, Protocol::Grpc | Protocol::Both);
    let use_http = matches!(protocol, Protocol::Http | Protocol::Both);
    let ca_pem = match &args.ca_file {
        Some(path) => Some(
            std::fs::read(path).map_err(|e| usage(format!("--ca-file {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let tls = ca_pem.is_some();
    let grpc_url = match (&args.grpc, use_grpc) {
        (Some(a), true) => Some(normalize_addr(a, tls)),
        (None, true) => {
            return Err(usage(format!(
                "--protocol {protocol:?} needs --grpc HOST:PORT"
            )));
        }
        _ => None,
    };
    let http_url = match (&args.http, use_http) {
        (Some(a), true) => Some(normalize_addr(a, tls)),
        (None, true) => {
            return Err(usage(format!(
                "--protocol {protocol:?} needs --http HOST:PORT"
            )));
        }
        _ => None,
    };
    if !tls
        && [&grpc_url, &http_url]
            .into_iter()
            .flatten()
            .any(|u| u.starts_with("https://"))
    {
        return Err(usage("an https:// target needs --ca-file"));
    }

    if let Some(pid) = args.server_pid
        && sightline_common::process::memory(pid).is_none()
    {
        return Err(usage(format!(
            "--server-pid {pid}: cannot read VmRSS from /proc/{pid}/status"
        )));
    }

    // Pre-generate the request pool outside the timed run.
    let signals = args.signal.signals();
    let batch = args.batch_spans as usize;
    let max_pool = (MAX_POOL_ITEMS / (args.batch_spans as u64 * signals.len() as u64)).max(4);
    let pool_size = (args.pool_size as u64).min(max_pool) as usize;
    if pool_size < args.pool_size as usize {
        eprintln!(
            "sightline load: pool reduced to {pool_size} requests per signal to bound memory"
        );
    }
    let seed = args.seed.unwrap_or_else(generate::now_ns);
    let gen_start = Instant::now();
    let pool = {
        let signals = signals.clone();
        let gzip_on = args.gzip;
        tokio::task::spawn_blocking(move || build_pool(&signals, pool_size, batch, gzip_on, seed))
            .await
            .map_err(|e| LoadError::Failed(format!("request generator failed: {e}")))??
    };
    let pool_bytes: usize = pool.iter().map(|p| p.http_body.len()).sum();
    eprintln!(
        "sightline load: built {} requests ({} body bytes) in {:.2}s",
        pool.len(),
        pool_bytes,
        gen_start.elapsed().as_secs_f64()
    );
    let pool = Arc::new(pool);

    // Connect everything before the clock starts.
    let mut clients: Vec<(&'static str, Client)> = Vec::new();
    if let Some(url) = &grpc_url {
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| usage(format!("invalid gRPC address {url}: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .tcp_nodelay(true);
        if let Some(pem) = &ca_pem {
            let tls = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(pem));
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| usage(format!("TLS for {url}: {e}")))?;
        }
        for i in 0..args.connections {
            // A separate `connect` per worker gives each its own HTTP/2 connection.
            let channel = endpoint.connect().await.map_err(|e| {
                LoadError::Connect(format!(
                    "gRPC connection {i} to {url}: {}",
                    sightline_common::error::chain(&e)
                ))
            })?;
            let mut grpc = tonic::client::Grpc::new(channel)
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(16 * 1024 * 1024);
            if args.gzip {
                grpc = grpc.send_compressed(CompressionEncoding::Gzip);
            }
            let auth = match &args.api_key {
                Some(k) => Some(format!("Bearer {k}").parse().map_err(|_| {
                    LoadError::Failed("the API key is not valid header text".into())
                })?),
                None => None,
            };
            clients.push(("grpc", Client::Grpc(grpc, auth)));
        }
    }
    if let Some(url) = &http_url {
        check_reachable(url)
            .await
            .map_err(|e| LoadError::Connect(format!("OTLP/HTTP target {url}: {e}")))?;
        for _ in 0..args.connections {
            // One client (one pooled connection) per worker; closed loop => one in flight.
            let mut headers = reqwest::header::HeaderMap::new();
            if let Some(k) = &args.api_key {
                let v = reqwest::header::HeaderValue::from_str(&format!("Bearer {k}")).map_err(
                    |_| LoadError::Failed("the API key is not valid header text".into()),
                )?;
                headers.insert(reqwest::header::AUTHORIZATION, v);
            }
            let mut builder = reqwest::Client::builder();
            if let Some(pem) = &ca_pem {
                let ca = reqwest::Certificate::from_pem(pem)
                    .map_err(|e| usage(format!("--ca-file: {e}")))?;
                builder = builder
                    .add_root_certificate(ca)
                    .tls_built_in_root_certs(false);
            }
            let client = builder
                .no_proxy()
                .default_headers(headers)
                .timeout(REQUEST_TIMEOUT)
                .connect_timeout(CONNECT_TIMEOUT)
                .pool_max_idle_per_host(1)
                .tcp_nodelay(true)
                .build()
                .map_err(|e| LoadError::Failed(format!("building HTTP client: {e}")))?;
            clients.push((
                "http",
                Client::Http {
                    client,
                    base_url: url.clone(),
                    gzip: args.gzip,
                },
            ));
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let rss_stop = Arc::new(AtomicBool::new(false));
    // Every task of the run is owned by one of these sets (aborted if the run is dropped).
    let mut rss_task = tokio::task::JoinSet::new();
    if let Some(pid) = args.server_pid {
        rss_task.spawn(sample_rss(pid, rss_stop.clone()));
    }
    let mut ctrl_c = tokio::task::JoinSet::new();
    {
        let stop = stop.clone();
        ctrl_c.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, Ordering::Relaxed);
            }
        });
    }

    let n_workers = clients.len();
    let start = Instant::now();
    let deadline = start + args.duration;
    let mut workers = tokio::task::JoinSet::new();
    for (w, (proto, client)) in clients.into_iter().enumerate() {
        // Spread the workers' starting points over the pool.
        let first = w * pool.len() / n_workers.max(1);
        let (pool, stop) = (pool.clone(), stop.clone());
        // Each worker's share of --rate, in items per second.
        let pace = args.rate.map(|r| r as f64 / n_workers.max(1) as f64);
        workers.spawn(async move {
            (
                proto,
                worker(client, pool, first, deadline, pace, stop).await,
            )
        });
    }
    let mut grpc_stats = Stats::default();
    let mut http_stats = Stats::default();
    while let Some(done) = workers.join_next().await {
        let (proto, st) =
            done.map_err(|e| LoadError::Failed(format!("load worker failed: {e}")))?;
        if proto == "grpc" {
            grpc_stats.merge(st);
        } else {
            http_stats.merge(st);
        }
    }
    let elapsed = start.elapsed();
    ctrl_c.abort_all();
    rss_stop.store(true, Ordering::Relaxed);
    let rss = match rss_task.join_next().await {
        Some(done) => {
            Some(done.map_err(|e| LoadError::Failed(format!("RSS sampler failed: {e}")))?)
        }
        None => None,
    };

    let mut total_stats = Stats::default();
    let mut parts: Vec<(&str, Summary)> = Vec::new();
    match protocol {
        Protocol::Both => {
            total_stats.merge(grpc_stats.clone());
            total_stats.merge(http_stats.clone());
            parts.push(("grpc", Summary::new(grpc_stats, elapsed)));
            parts.push(("http", Summary::new(http_stats, elapsed)));
        }
        Protocol::Grpc => total_stats.merge(grpc_stats),
        Protocol::Http => total_stats.merge(http_stats),
    }
    let total = Summary::new(total_stats, elapsed);
    let info = RunInfo {
        signal: args.signal,
        signals,
        protocol,
        grpc: grpc_url,
        http: http_url,
        connections: args.connections,
        batch: args.batch_spans,
        pool: pool.len(),
        gzip: args.gzip,
        duration: args.duration,
    };
    if args.json {
        println!("{}", results_json(&info, &total, &parts, rss.as_ref()));
    } else {
        print_human(&info, &total, &parts, rss.as_ref());
    }
    if total.stats.ok == 0 {
        return Err(LoadError::Failed(format!(
            "no request succeeded ({} rejected, {} errors)",
            total.stats.rejected_total(),
            total.stats.errored
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{fill_route, now_ns};
    use crate::generate::{
        logs::gen_logs_request, metrics::gen_metrics_request, traces::gen_trace_request,
    };
    use crate::pool::*;
    use crate::report::percentile;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::metric;
    use opentelemetry_proto::tonic::trace::v1::Span;
    use prost::Message as _;
    use rand::SeedableRng as _;
    use rand::rngs::StdRng;
    use std::collections::{HashMap, HashSet};

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration(" 3s "), Ok(Duration::from_secs(3)));
        for bad in ["", "s", "ms", "abc", "10x", "-1s", "1.5s", "0s", "0ms"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn percentile_nearest_rank() {
        assert_eq!(percentile(&[], 50.0), 0);
        assert_eq!(percentile(&[42], 0.0), 42);
        assert_eq!(percentile(&[42], 99.0), 42);
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 90.0), 90);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&v, 0.0), 1);
        let w = [10, 20, 30, 40];
        assert_eq!(percentile(&w, 50.0), 20);
        assert_eq!(percentile(&w, 51.0), 30);
        assert_eq!(percentile(&w, 99.0), 40);
    }

    #[test]
    fn trace_batch_has_consistent_parent_child_ids() {
        let mut rng = StdRng::seed_from_u64(7);
        for n in [1usize, 2, 3, 200, 517] {
            let req = gen_trace_request(&mut rng, n, now_ns());
            assert_eq!(count_spans(&req), n as u64);

            let mut ids: HashMap<Vec<u8>, HashSet<Vec<u8>>> = HashMap::new();
            let mut all = Vec::new();
            for rs in &req.resource_spans {
                let res = rs.resource.as_ref().expect("resource");
                let keys: Vec<&str> = res.attributes.iter().map(|kv| kv.key.as_str()).collect();
                for k in ["service.name", "host.name", "deployment.environment"] {
                    assert!(keys.contains(&k), "resource lacks {k}");
                }
                for ss in &rs.scope_spans {
                    for s in &ss.spans {
                        assert_eq!(s.trace_id.len(), 16);
                        assert_eq!(s.span_id.len(), 8);
                        assert!(s.trace_id.iter().any(|&b| b != 0));
                        assert!(s.span_id.iter().any(|&b| b != 0));
                        assert!(s.start_time_unix_nano <= s.end_time_unix_nano);
                        assert!(
                            ids.entry(s.trace_id.clone())
                                .or_default()
                                .insert(s.span_id.clone()),
                            "duplicate span id"
                        );
                        all.push(s.clone());
                    }
                }
            }
            let mut roots: HashMap<Vec<u8>, usize> = HashMap::new();
            for s in &all {
                if s.parent_span_id.is_empty() {
                    *roots.entry(s.trace_id.clone()).or_default() += 1;
                } else {
                    assert_eq!(s.parent_span_id.len(), 8);
                    assert!(
                        ids[&s.trace_id].contains(&s.parent_span_id),
                        "parent of span {:?} is not in its trace",
                        s.span_id
                    );
                }
            }
            // Exactly one root per trace.
            assert_eq!(roots.len(), ids.len());
            assert!(roots.values().all(|&c| c == 1));
        }
    }

    #[test]
    fn child_spans_nest_inside_parents() {
        let mut rng = StdRng::seed_from_u64(11);
        let req = gen_trace_request(&mut rng, 300, now_ns());
        let spans: Vec<&Span> = req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .collect();
        let by_id: HashMap<(&[u8], &[u8]), &Span> = spans
            .iter()
            .map(|s| ((s.trace_id.as_slice(), s.span_id.as_slice()), *s))
            .collect();
        for s in &spans {
            if let Some(p) = by_id.get(&(s.trace_id.as_slice(), s.parent_span_id.as_slice())) {
                assert!(p.start_time_unix_nano <= s.start_time_unix_nano);
                assert!(s.end_time_unix_nano <= p.end_time_unix_nano);
            }
        }
    }

    #[test]
    fn logs_and_metrics_have_exact_item_counts() {
        let mut rng = StdRng::seed_from_u64(3);
        for n in [1usize, 2, 5, 200] {
            assert_eq!(
                count_log_records(&gen_logs_request(&mut rng, n, now_ns())),
                n as u64
            );
            let m = gen_metrics_request(&mut rng, n, now_ns());
            assert_eq!(count_data_points(&m), n as u64);
            for rm in &m.resource_metrics {
                for sm in &rm.scope_metrics {
                    for metric in &sm.metrics {
                        if let Some(metric::Data::Histogram(h)) = &metric.data {
                            for dp in &h.data_points {
                                assert_eq!(dp.bucket_counts.len(), dp.explicit_bounds.len() + 1);
                                assert_eq!(dp.bucket_counts.iter().sum::<u64>(), dp.count);
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn payload_roundtrips_and_gzips() {
        let mut rng = StdRng::seed_from_u64(5);
        let p = build_payload(Signal::Traces, 50, true, &mut rng).expect("payload");
        assert_eq!(p.items, 50);
        let req = ExportTraceServiceRequest::decode(p.proto.as_ref()).expect("decode");
        assert_eq!(count_spans(&req), 50);
        let mut gz = flate2::read::GzDecoder::new(p.http_body.as_ref());
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut gz, &mut raw).expect("gunzip");
        assert_eq!(raw.as_slice(), p.proto.as_ref());
    }

    #[test]
    fn addresses_and_routes() {
        assert_eq!(
            normalize_addr("127.0.0.1:4317", false),
            "http://127.0.0.1:4317"
        );
        assert_eq!(
            normalize_addr("127.0.0.1:4317", true),
            "https://127.0.0.1:4317"
        );
        assert_eq!(normalize_addr("http://h:1/", true), "http://h:1");
        assert_eq!(host_port("http://127.0.0.1:4318"), "127.0.0.1:4318");
        assert_eq!(host_port("http://h:1/x"), "h:1");
        let mut rng = StdRng::seed_from_u64(1);
        let p = fill_route(&mut rng, "/cart/{user_id}/items/{id}");
        assert!(p.starts_with("/cart/") && p.contains("/items/"), "{p}");
        assert!(!p.contains('{') && !p.contains('}'), "{p}");
        assert_eq!(fill_route(&mut rng, "/"), "/");
    }
}
