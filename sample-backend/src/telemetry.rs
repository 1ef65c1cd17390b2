//! OpenTelemetry setup: each service of the shop has its own resource (`service.name`) and its
//! own providers, exporting traces, metrics and logs over OTLP configured the standard way
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL` = `grpc` or `http/protobuf`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_METRIC_EXPORT_INTERVAL`, `OTEL_BSP_SCHEDULE_DELAY`…).
//! Application logs written with `tracing` in a service's module are bridged to that service's
//! OTLP log records, which carry the trace context of the span they were written in.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context as _, bail};
use opentelemetry::KeyValue;
use opentelemetry::logs::Severity;
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_otlp::{LogExporter, MetricExporter, Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, SdkLoggerProvider};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// Runs an exporter's futures on the application's Tokio runtime. The SDK's batch processors
/// and periodic reader export from their own threads; the HTTP exporter's client needs a Tokio
/// context there (the gRPC one copes either way).
#[derive(Debug)]
pub struct OnRuntime<E> {
    inner: E,
    runtime: tokio::runtime::Handle,
}

impl<E> OnRuntime<E> {
    pub fn new(inner: E) -> Self {
        Self {
            inner,
            runtime: tokio::runtime::Handle::current(),
        }
    }
}

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter
    for OnRuntime<E>
{
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        #[allow(
            clippy::disallowed_methods,
            reason = "the SDK calls exporters from its own threads, outside any runtime"
        )]
        std::future::ready(self.runtime.block_on(self.inner.export(batch)))
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _entered = self.runtime.enter();
        self.inner.shutdown_with_timeout(timeout)
    }
    fn force_flush(&self) -> OTelSdkResult {
        let _entered = self.runtime.enter();
        self.inner.force_flush()
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: opentelemetry_sdk::logs::LogExporter> opentelemetry_sdk::logs::LogExporter
    for OnRuntime<E>
{
    fn export(&self, batch: LogBatch<'_>) -> impl Future<Output = OTelSdkResult> + Send {
        #[allow(
            clippy::disallowed_methods,
            reason = "the SDK calls exporters from its own threads, outside any runtime"
        )]
        std::future::ready(self.runtime.block_on(self.inner.export(batch)))
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _entered = self.runtime.enter();
        self.inner.shutdown_with_timeout(timeout)
    }
    fn event_enabled(&self, level: Severity, target: &str, name: Option<&str>) -> bool {
        self.inner.event_enabled(level, target, name)
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: PushMetricExporter> PushMetricExporter for OnRuntime<E> {
    fn export(&self, metrics: &ResourceMetrics) -> impl Future<Output = OTelSdkResult> + Send {
        #[allow(
            clippy::disallowed_methods,
            reason = "the SDK calls exporters from its own threads, outside any runtime"
        )]
        std::future::ready(self.runtime.block_on(self.inner.export(metrics)))
    }
    fn force_flush(&self) -> OTelSdkResult {
        let _entered = self.runtime.enter();
        self.inner.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _entered = self.runtime.enter();
        self.inner.shutdown_with_timeout(timeout)
    }
    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

/// One service's SDK providers.
#[derive(Debug)]
struct Providers {
    name: String,
    tracer: SdkTracerProvider,
    meter: SdkMeterProvider,
    logger: SdkLoggerProvider,
}

/// Every service's SDK providers; [`Telemetry::shutdown`] flushes what is buffered.
#[derive(Debug)]
pub struct Telemetry {
    services: Vec<Providers>,
}

/// What one service instruments itself with: its own tracer and meter, under its own
/// resource.
#[derive(Debug, Clone)]
pub struct ServiceTelemetry {
    /// Its `service.name`.
    pub name: String,
    pub tracer: SdkTracer,
    pub meter: Meter,
}

/// A resource: the service `service`, in the demo environment.
pub fn resource(service: &str) -> Resource {
    Resource::builder()
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("deployment.environment.name", "demo"),
        ])
        .with_service_name(service.to_string())
        .build()
}

fn http_protocol() -> anyhow::Result<bool> {
    let p = std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").unwrap_or_else(|_| "grpc".into());
    match p.as_str() {
        "grpc" => Ok(false),
        "http/protobuf" => Ok(true),
        other => bail!("OTEL_EXPORTER_OTLP_PROTOCOL={other:?}: use grpc or http/protobuf"),
    }
}

/// One service's providers, exporting over the protocol the environment names.
fn providers(name: &str, http: bool) -> anyhow::Result<Providers> {
    let spans = if http {
        SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build()
    } else {
        SpanExporter::builder().with_tonic().build()
    }
    .context("cannot build the OTLP span exporter")?;
    let metrics = if http {
        MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build()
    } else {
        MetricExporter::builder().with_tonic().build()
    }
    .context("cannot build the OTLP metric exporter")?;
    let logs = if http {
        LogExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build()
    } else {
        LogExporter::builder().with_tonic().build()
    }
    .context("cannot build the OTLP log exporter")?;
    let resource = resource(name);
    Ok(Providers {
        name: name.to_string(),
        tracer: SdkTracerProvider::builder()
            .with_batch_exporter(OnRuntime::new(spans))
            .with_resource(resource.clone())
            .build(),
        meter: SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(OnRuntime::new(metrics)).build())
            .with_resource(resource.clone())
            .build(),
        logger: SdkLoggerProvider::builder()
            .with_batch_exporter(OnRuntime::new(logs))
            .with_resource(resource)
            .build(),
    })
}

/// The module a service's code lives in: its `tracing` events are its log records.
fn log_target(role: &str) -> String {
    format!("sample_backend::services::{role}")
}

/// Sets up one tracer, meter and logger provider per service — `services` pairs the role
/// (its module under `services`) with its `service.name` — the W3C propagator, and a
/// `tracing` subscriber that prints to stderr and bridges each service's events to its own
/// OTLP logs.
///
/// # Errors
/// An exporter that cannot be built, an unknown protocol, or a subscriber already installed.
pub fn init(services: &[(&str, String)]) -> anyhow::Result<(Telemetry, Vec<ServiceTelemetry>)> {
    let http = http_protocol()?;
    let mut all = Vec::new();
    for (_, name) in services {
        all.push(providers(name, http)?);
    }
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    // The exporters' own crates stay out of the bridges (their logs would feed themselves).
    let quiet = "h2=off,hyper=off,hyper_util=off,tonic=off,tower=off,reqwest=off,opentelemetry=off,opentelemetry_sdk=off";
    let bridges: Vec<
        Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>,
    > = services
        .iter()
        .zip(&all)
        .map(|((role, _), p)| {
            OpenTelemetryTracingBridge::new(&p.logger)
                .with_filter(EnvFilter::new(format!("off,{}=info", log_target(role))))
                .boxed()
        })
        .collect();
    let console = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new(format!("info,{quiet}"))),
        );
    tracing_subscriber::registry()
        .with(bridges)
        .with(console)
        .try_init()
        .context("a tracing subscriber is already installed")?;
    let handles = all
        .iter()
        .map(|p| ServiceTelemetry {
            name: p.name.clone(),
            tracer: p.tracer.tracer(crate::instrument::SCOPE),
            meter: p.meter.meter(crate::instrument::SCOPE),
        })
        .collect();
    Ok((Telemetry { services: all }, handles))
}

impl Telemetry {
    /// Exports what is buffered and stops the providers, every service's at once (with an
    /// endpoint gone, each waits out its exporter's timeout: side by side, not one after
    /// another).
    pub fn shutdown(&self) {
        std::thread::scope(|scope| {
            for p in &self.services {
                scope.spawn(move || {
                    for (what, result) in [
                        ("traces", p.tracer.shutdown()),
                        ("metrics", p.meter.shutdown()),
                        ("logs", p.logger.shutdown()),
                    ] {
                        if let Err(e) = result {
                            eprintln!("sample-backend: flushing {}'s {what} failed: {e}", p.name);
                        }
                    }
                });
            }
        });
    }
}
