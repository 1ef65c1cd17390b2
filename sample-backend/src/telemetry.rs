//! OpenTelemetry setup: traces, metrics and logs exported over OTLP, configured the standard
//! way (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL` = `grpc` or
//! `http/protobuf`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME`,
//! `OTEL_METRIC_EXPORT_INTERVAL`, `OTEL_BSP_SCHEDULE_DELAY`…). Application logs written with
//! `tracing` are bridged to OTLP log records, which carry the trace context of the span they
//! were written in.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context as _, bail};
use opentelemetry::KeyValue;
use opentelemetry::logs::Severity;
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_otlp::{LogExporter, MetricExporter, Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, SdkLoggerProvider};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData};
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

/// The SDK providers; [`Telemetry::shutdown`] flushes what is buffered.
#[derive(Debug)]
pub struct Telemetry {
    tracer: SdkTracerProvider,
    meter: SdkMeterProvider,
    logger: SdkLoggerProvider,
}

/// The resource the shop's telemetry carries as `service`.
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

/// Sets up the global tracer, meter and propagator, and a `tracing` subscriber that prints to
/// stderr and bridges to OTLP logs. `service` is used unless `OTEL_SERVICE_NAME` is set.
pub fn init(service: &str) -> anyhow::Result<Telemetry> {
    let http = http_protocol()?;
    let resource = match std::env::var("OTEL_SERVICE_NAME") {
        Ok(name) if !name.is_empty() => resource(&name),
        _ => resource(service),
    };

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

    let tracer = SdkTracerProvider::builder()
        .with_batch_exporter(OnRuntime::new(spans))
        .with_resource(resource.clone())
        .build();
    let meter = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(OnRuntime::new(metrics)).build())
        .with_resource(resource.clone())
        .build();
    let logger = SdkLoggerProvider::builder()
        .with_batch_exporter(OnRuntime::new(logs))
        .with_resource(resource)
        .build();
    opentelemetry::global::set_tracer_provider(tracer.clone());
    opentelemetry::global::set_meter_provider(meter.clone());
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    // The exporters' own crates stay out of the bridge (their logs would feed themselves).
    let quiet = "h2=off,hyper=off,hyper_util=off,tonic=off,tower=off,reqwest=off,opentelemetry=off,opentelemetry_sdk=off";
    let bridge = OpenTelemetryTracingBridge::new(&logger)
        .with_filter(EnvFilter::new(format!("info,{quiet}")));
    let console = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new(format!("info,{quiet}"))),
        );
    tracing_subscriber::registry()
        .with(console)
        .with(bridge)
        .try_init()
        .context("a tracing subscriber is already installed")?;
    Ok(Telemetry {
        tracer,
        meter,
        logger,
    })
}

impl Telemetry {
    /// Exports what is buffered and stops the providers.
    pub fn shutdown(&self) {
        for (what, result) in [
            ("traces", self.tracer.shutdown()),
            ("metrics", self.meter.shutdown()),
            ("logs", self.logger.shutdown()),
        ] {
            if let Err(e) = result {
                eprintln!("sample-backend: flushing {what} failed: {e}");
            }
        }
    }
}
