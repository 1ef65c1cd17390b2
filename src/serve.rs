//! `sightline serve`: wires the store, the receivers and the API together and runs them until
//! SIGTERM or SIGINT, then stops intake, flushes every buffer to Parquet and exits 0.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::registry::Registry;
use sightline_collector::Ingest;
use sightline_collector::grpc::GrpcReceiver;
use sightline_collector::metrics::CollectorMetrics;
use sightline_common::listener::{Acceptor, Gate, serve_http};
use sightline_common::tenant::DEFAULT_TENANT;
use sightline_common::tls::Alpn;
use sightline_ui::{ApiState, Readiness};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, LogFormat};
use crate::tenants::{AuditRouter, Directory, Metrics, Tenants};

/// How long in-flight requests get to finish once intake stops.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TOML config file (every key optional; see sightline.example.toml).
    #[arg(long, env = "SIGHTLINE_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory [default: ./data].
    #[arg(long, env = "SIGHTLINE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// OTLP/gRPC listen address [default: 127.0.0.1:4317].
    #[arg(long, env = "SIGHTLINE_OTLP_GRPC_LISTEN")]
    otlp_grpc_listen: Option<SocketAddr>,
    /// OTLP/HTTP listen address [default: 127.0.0.1:4318].
    #[arg(long, env = "SIGHTLINE_OTLP_HTTP_LISTEN")]
    otlp_http_listen: Option<SocketAddr>,
    /// HTTP API and UI listen address [default: 127.0.0.1:8080].
    #[arg(long, env = "SIGHTLINE_HTTP_LISTEN")]
    http_listen: Option<SocketAddr>,
    /// Listen on other addresses than loopback with no API key configured: anyone who reaches
    /// the ports may send, read and silence alerts.
    #[arg(long, env = "SIGHTLINE_INSECURE_ALLOW_OPEN_NETWORK")]
    insecure_allow_open_network: bool,
    /// Directory of SLO spec files (`*.yaml`), reloaded when a file changes.
    #[arg(long, env = "SIGHTLINE_SLO_DIR")]
    slo_dir: Option<PathBuf>,
    /// Once every listener is bound, write their addresses as JSON to this file
    /// (useful with port 0).
    #[arg(long)]
    ready_file: Option<PathBuf>,
}

impl ServeArgs {
    /// The config file with the flags applied on top, validated.
    fn config(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(d) = &self.data_dir {
            config.data_dir = d.clone();
        }
        if let Some(a) = self.otlp_grpc_listen {
            config.listen.otlp_grpc = a;
        }
        if let Some(a) = self.otlp_http_listen {
            config.listen.otlp_http = a;
        }
        if let Some(a) = self.http_listen {
            config.listen.http = a;
        }
        if let Some(d) = &self.slo_dir {
            config.slo.dir = Some(d.clone());
        }
        if self.insecure_allow_open_network {
            config.listen.insecure_allow_open_network = true;
        }
        config.validate()?;
        Ok(config)
    }
}

pub fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // A second init (tests) is harmless: the first subscriber stays.
    let _ = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

async fn bind(what: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for {what} on {addr}"))
}

fn write_ready_file(path: &Path, addrs: &serde_json::Value) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, addrs.to_string())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

/// The addresses a running server listens on.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub otlp_grpc: SocketAddr,
    pub otlp_http: SocketAddr,
    pub http: SocketAddr,
}

/// Without API keys anyone who reaches a port may send, read and silence: that is only let
/// happen on loopback, unless the operator says otherwise in so many words.
fn open_network_check(config: &Config, guarded: bool) -> anyhow::Result<()> {
    if guarded || config.listen.insecure_allow_open_network {
        return Ok(());
    }
    let open: Vec<String> = [
        ("listen.otlp_grpc", config.listen.otlp_grpc),
        ("listen.otlp_http", config.listen.otlp_http),
        ("listen.http", config.listen.http),
    ]
    .iter()
    .filter(|(_, a)| !a.ip().is_loopback())
    .map(|(k, a)| format!("{k} = {a}"))
    .collect();
    if open.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "no API keys are configured, so anyone reaching {} could send, read and silence alerts. \
         Create a key first (sightline keys create --role ingest --data-dir {}), listen on \
         127.0.0.1, or pass --insecure-allow-open-network to run open anyway",
        open.join(", "),
        config.data_dir.display()
    )
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    init_logging(&config);
    serve(config, args.ready_file.clone(), None, shutdown_signal()).await
}

/// Runs the server with a validated `config` until `shutdown` completes (or a server fails);
/// `ready` learns the bound addresses once every listener is up. Logging is the caller's.
pub async fn serve(
    config: Config,
    ready_file: Option<PathBuf>,
    ready: Option<tokio::sync::oneshot::Sender<Bound>>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    // Parquet files are read through an object store that takes absolute paths: a relative
    // data directory (the default, ./data) would make every query of flushed data fail.
    let mut config = config;
    config.data_dir = std::path::absolute(&config.data_dir)
        .with_context(|| format!("cannot resolve {}", config.data_dir.display()))?;

    sightline_common::process::private_files();
    std::fs::create_dir_all(&config.data_dir)
        .and_then(|()| sightline_common::process::make_private(&config.data_dir))
        .with_context(|| format!("cannot make {} private", config.data_dir.display()))?;
    let tls = match config.tls.enabled() {
        true => Some(
            sightline_common::tls::Tls::load(&config.tls)
                .map_err(|e| anyhow::anyhow!("cannot start TLS: {e}"))?,
        ),
        false => None,
    };
    let keys = Arc::new(
        sightline_common::auth::Keys::open(&sightline_common::auth::keys_path(&config.data_dir))
            .map_err(anyhow::Error::msg)?
            .with_certificate_identities(tls.as_ref().is_some_and(|t| t.identities_configured()))
            .with_trusted_proxy(config.trusted_proxy.compile().map_err(anyhow::Error::msg)?),
    );
    // Keys (a trusted proxy needs them from everyone else), or client certificates every
    // connection must present, guard the ports.
    open_network_check(
        &config,
        keys.configured() || tls.as_ref().is_some_and(|t| t.client_auth_required()),
    )?;
    let mut registry = Registry::default();
    keys.register(&mut registry);
    if let Some(tls) = &tls {
        tls.register(&mut registry);
    }
    let grpc_listener = bind("OTLP/gRPC", config.listen.otlp_grpc).await?;
    let otlp_http_listener = bind("OTLP/HTTP", config.listen.otlp_http).await?;
    let api_listener = bind("the HTTP API", config.listen.http).await?;
    let grpc_addr = grpc_listener.local_addr()?;
    let otlp_http_addr = otlp_http_listener.local_addr()?;
    let api_addr = api_listener.local_addr()?;

    // Links in notifications point at the API address unless notify.external_url says
    // where people reach Sightline.
    let link_host = if api_addr.ip().is_unspecified() {
        format!("localhost:{}", api_addr.port())
    } else {
        api_addr.to_string()
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let config = Arc::new(config);
    let tenants = Tenants::new(config.clone(), format!("{scheme}://{link_host}"))?;
    // Each tenant: its store (the write-ahead log replayed), query engine, SLOs (loaded,
    // compiled and backfilled before any event arrives, so that live counting starts exactly
    // where the stored events end), audit and alert delivery. The default tenant's metrics
    // are the server's; every known tenant is opened before the ports serve.
    let default = tenants.open(DEFAULT_TENANT, Some(&mut registry)).await?;
    let mut known: Vec<String> = keys.tenants();
    known.extend(config.tls.clients.iter().map(|c| c.tenant.clone()));
    known.extend(sightline_store::paths::tenants_on_disk(&config.data_dir));
    known.extend(
        sightline_store::paths::tenants_in_storage(tenants.storage())
            .await
            .context("cannot list the tenants in the storage")?,
    );
    known.sort();
    known.dedup();
    for name in known.iter().filter(|n| n.as_str() != DEFAULT_TENANT) {
        tenants.open(name, None).await?;
    }
    tenants.cap_from_now();
    // The audit: admin actions and failed attempts, in each tenant's `audit` table; key
    // changes made while the server was stopped are recorded now.
    let mut audited = 0;
    for t in tenants.all() {
        let last = sightline_store::audit::AuditLog::last_key_change(&t.engine)
            .await
            .context("cannot read the audit")?;
        audited = audited.max(last);
    }
    keys.set_audit(Arc::new(AuditRouter(tenants.clone())), audited);
    let limits = config.limits.to_limits();
    let ingest = Ingest::new(
        Arc::new(Directory(tenants.clone())),
        CollectorMetrics::new(&mut registry),
        limits,
    )
    .with_tenant_limits(config.tenants.clone())
    .with_keys(keys.clone());
    drop(default);

    // Every listener counts and caps its connections the same way.
    let connection_limits = config.listen.connection_limits();
    let mut gate = |name: &'static str| {
        let gate = Gate::new(connection_limits);
        gate.stats().register(&mut registry, name);
        gate
    };
    let (grpc_gate, otlp_http_gate, api_gate) =
        (gate("otlp_grpc"), gate("otlp_http"), gate("http"));
    let with_tls = |alpn| tls.clone().map(|t| (t, alpn));
    let grpc_acceptor = Acceptor::new(grpc_listener, grpc_gate, with_tls(Alpn::Grpc));
    let otlp_http_acceptor =
        Acceptor::new(otlp_http_listener, otlp_http_gate, with_tls(Alpn::Http));
    let api_acceptor = Acceptor::new(api_listener, api_gate, with_tls(Alpn::Http));

    let readiness = Arc::new(Readiness::default());
    let api = sightline_ui::router(ApiState {
        tenants: Arc::new(Directory(tenants.clone())),
        metrics: Arc::new(Metrics {
            main: registry,
            tenants: tenants.clone(),
        }),
        readiness: readiness.clone(),
        allowed_hosts: sightline_ui::guard::AllowedHosts::new(
            config
                .listen
                .allowed_hosts
                .iter()
                .map(String::as_str)
                .chain(config.notify.external_url.as_deref()),
        ),
        keys: keys.clone(),
    });

    let stop_intake = CancellationToken::new();
    let stop_api = CancellationToken::new();
    let mut intake = JoinSet::new();
    {
        let token = stop_intake.clone();
        let routes = GrpcReceiver::new(ingest.clone()).into_router();
        intake.spawn(async move {
            sightline_collector::grpc::serve(
                grpc_acceptor,
                routes,
                &limits,
                token.cancelled_owned(),
            )
            .await
            .context("OTLP/gRPC server failed")
        });
    }
    {
        let token = stop_intake.clone();
        let app = sightline_collector::http::router(ingest.clone());
        intake.spawn(async move {
            serve_http(
                otlp_http_acceptor,
                app,
                token.cancelled_owned(),
                DRAIN_DEADLINE,
            )
            .await
            .context("OTLP/HTTP server failed")
        });
    }
    // Every long-running part is a task of one of these sets, owned here: a part that ends
    // before shutdown (an error, a panic) is logged and stops the server cleanly.
    let mut api_server = JoinSet::new();
    {
        let token = stop_api.clone();
        api_server.spawn(async move {
            serve_http(api_acceptor, api, token.cancelled_owned(), DRAIN_DEADLINE)
                .await
                .context("HTTP API server failed")
        });
    }
    readiness.set(true);
    tracing::info!(
        otlp_grpc = %grpc_addr,
        otlp_http = %otlp_http_addr,
        http = %api_addr,
        tls = tls.is_some(),
        data_dir = %config.data_dir.display(),
        "sightline is ready"
    );
    if let Some(tx) = ready {
        let _ = tx.send(Bound {
            otlp_grpc: grpc_addr,
            otlp_http: otlp_http_addr,
            http: api_addr,
        });
    }
    if let Some(path) = &ready_file {
        write_ready_file(
            path,
            &serde_json::json!({
                "otlp_grpc": grpc_addr.to_string(),
                "otlp_http": otlp_http_addr.to_string(),
                "http": api_addr.to_string(),
                "tls": tls.is_some(),
            }),
        )?;
    }

    // Run until a signal, or until any part stops on its own.
    let failure = tokio::select! {
        _ = &mut shutdown => None,
        Some(result) = intake.join_next() => Some(match result {
            Ok(Ok(())) => anyhow::anyhow!("a receiver stopped unexpectedly"),
            Ok(Err(e)) => e,
            Err(e) => anyhow::anyhow!("a receiver panicked: {e}"),
        }),
        Some(result) = api_server.join_next() => Some(match result {
            Ok(Ok(())) => anyhow::anyhow!("the HTTP API stopped unexpectedly"),
            Ok(Err(e)) => e,
            Err(e) => anyhow::anyhow!("the HTTP API panicked: {e}"),
        }),
        part = tenants.stopped() => Some(anyhow::anyhow!("{part} stopped unexpectedly")),
    };
    if let Some(e) = &failure {
        tracing::error!(error = %format!("{e:#}"), "stopping the server");
    }

    // Shutdown: refuse new traffic, let in-flight requests finish, flush, then stop the API.
    readiness.set(false);
    stop_intake.cancel();
    if tokio::time::timeout(DRAIN_DEADLINE, async {
        while intake.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!(
            "in-flight requests did not finish within {DRAIN_DEADLINE:?}; aborting them"
        );
        intake.abort_all();
    }
    let flushed = tenants.stop().await;
    stop_api.cancel();
    if tokio::time::timeout(DRAIN_DEADLINE, async {
        while api_server.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        api_server.abort_all();
    }
    match &flushed {
        Ok(report) => tracing::info!(files = ?report, "flushed; sightline stopped"),
        Err(e) => tracing::error!(error = %format!("{e:#}"), "final flush failed"),
    }
    if let Some(e) = failure {
        return Err(e);
    }
    flushed?;
    Ok(())
}
