//! A past for the shop: its normal traffic over the last hours or days, sent to an OTLP
//! endpoint with the times it would have had. Spans and logs are made with the OpenTelemetry
//! SDK, with explicit start, end and log times, and exported over OTLP/gRPC like the live
//! shop's; each service's resource is the live one's, so SLOs, the Services page and SQL see
//! one shop with a history.
//!
//! Each past checkout is the live one's trace in small: the frontend's `POST /api/checkout`
//! server span, its client call to payment and payment's server span, and — for a checkout
//! that was paid — the frontend's `send orders` producer span and the orders worker's
//! `process orders` consumer span under it; and the log line that says how the checkout ended
//! (`checkout.outcome`), in that trace. A share of them fail (status 500, the spans' status
//! error) and a share are slow.

use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{
    Link, Span as _, SpanKind, Status, TraceContextExt as _, TraceFlags, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{LogExporter, SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};

use crate::telemetry::{OnRuntime, resource};

/// What to send.
#[derive(Debug, Clone)]
pub struct Past {
    /// How far back from now the traffic starts.
    pub length: Duration,
    /// It stops this long before now (the live shop takes over).
    pub until_before_now: Duration,
    /// Checkouts per minute, on average (Poisson arrivals).
    pub checkouts_per_minute: f64,
    /// The share of checkouts that fail.
    pub error_rate: f64,
    /// The share that take 0.6–1.5 s instead of 40–250 ms.
    pub slow_rate: f64,
    /// For the same past on every run.
    pub seed: u64,
    /// Appended to every service's name, as the live shop's `--name-suffix`.
    pub name_suffix: String,
}

/// What was sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sent {
    pub checkouts: u64,
    pub failed: u64,
    pub spans: u64,
    pub logs: u64,
    pub elapsed: Duration,
}

/// Checkouts between exports, so the SDK's queues never fill (up to three spans of a service
/// and a log each).
const CHUNK: u64 = 4_000;

/// The services a past checkout passes through.
const SERVICES: [&str; 3] = ["shop", "payment", "orders"];

/// A tracer provider for `service`, exporting to `endpoint` in large batches.
fn tracer_provider(endpoint: &str, service: &str) -> anyhow::Result<SdkTracerProvider> {
    let spans = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .context("cannot build the OTLP span exporter")?;
    let batch = opentelemetry_sdk::trace::BatchConfigBuilder::default()
        .with_max_queue_size(4 * CHUNK as usize)
        .with_max_export_batch_size(2_048)
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(
            opentelemetry_sdk::trace::BatchSpanProcessor::builder(OnRuntime::new(spans))
                .with_batch_config(batch)
                .build(),
        )
        .with_resource(resource(service))
        .build())
}

/// Sends `past` to the OTLP/gRPC endpoint `endpoint` (e.g. `http://127.0.0.1:4317`) as the
/// shop's services, and waits until all of it is exported.
///
/// # Errors
/// An exporter that cannot be built, or an export that fails.
pub async fn send(endpoint: &str, past: &Past) -> anyhow::Result<Sent> {
    let name = |s: &str| format!("{s}{}", past.name_suffix);
    let mut providers = Vec::new();
    for s in SERVICES {
        providers.push(tracer_provider(endpoint, &name(s))?);
    }
    let logs = LogExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .context("cannot build the OTLP log exporter")?;
    let logger = SdkLoggerProvider::builder()
        .with_log_processor(
            opentelemetry_sdk::logs::BatchLogProcessor::builder(OnRuntime::new(logs))
                .with_batch_config(
                    opentelemetry_sdk::logs::BatchConfigBuilder::default()
                        .with_max_queue_size(2 * CHUNK as usize)
                        .with_max_export_batch_size(2_048)
                        .build(),
                )
                .build(),
        )
        .with_resource(resource(&name("shop")))
        .build();
    let past = past.clone();
    // The SDK's flushes block: off the async threads.
    tokio::task::spawn_blocking(move || {
        let sent = generate(&providers, &logger, &past, SystemTime::now());
        let mut flushed = Ok(());
        for p in &providers {
            flushed = flushed.and_then(|()| p.shutdown().context("exporting the past spans"));
        }
        flushed
            .and_then(|()| logger.shutdown().context("exporting the past logs"))
            .and(sent)
    })
    .await
    .context("the history thread panicked")?
}

/// The tracers of a past checkout's services.
struct Tracers {
    shop: SdkTracer,
    payment: SdkTracer,
    orders: SdkTracer,
}

fn generate(
    providers: &[SdkTracerProvider],
    logger: &SdkLoggerProvider,
    past: &Past,
    now: SystemTime,
) -> anyhow::Result<Sent> {
    let started = Instant::now();
    let [shop, payment, orders] = providers else {
        anyhow::bail!("a past needs the shop's, payment's and orders' tracers");
    };
    let scope = "sample-backend.history";
    let tracers = Tracers {
        shop: shop.tracer(scope),
        payment: payment.tracer(scope),
        orders: orders.tracer(scope),
    };
    let log = logger.logger("sample-backend.history");
    let mut rng = StdRng::seed_from_u64(past.seed);
    let mut sent = Sent::default();
    let first = now - past.length;
    let last = now - past.until_before_now;
    let mean_gap = 60.0 / past.checkouts_per_minute.max(1e-6);
    let mut t = first;
    let mut order = 1_000_000u64;
    loop {
        // Exponential gaps: Poisson arrivals.
        let gap = -mean_gap * (1.0 - rng.random::<f64>()).ln();
        t += Duration::from_secs_f64(gap);
        if t >= last {
            break;
        }
        order += 1;
        let failed = rng.random::<f64>() < past.error_rate;
        let slow = rng.random::<f64>() < past.slow_rate;
        let ms = if slow {
            rng.random_range(600..1_500)
        } else {
            rng.random_range(40..250)
        };
        sent.spans += checkout(&tracers, &log, t, Duration::from_millis(ms), failed, order);
        sent.checkouts += 1;
        sent.failed += u64::from(failed);
        sent.logs += 1;
        if sent.checkouts % CHUNK == 0 {
            for p in providers {
                p.force_flush().context("exporting the past spans")?;
            }
            logger.force_flush().context("exporting the past logs")?;
        }
    }
    sent.elapsed = started.elapsed();
    Ok(sent)
}

/// A `POST` server span's attributes, as the live shop's middleware sets them.
fn server_attributes(route: &'static str, status: i64) -> [KeyValue; 5] {
    [
        KeyValue::new("http.request.method", "POST"),
        KeyValue::new("http.route", route),
        KeyValue::new("url.path", route),
        KeyValue::new("url.scheme", "http"),
        KeyValue::new("http.response.status_code", status),
    ]
}

/// One past checkout: its spans (how many) and its log line.
fn checkout(
    tracers: &Tracers,
    log: &opentelemetry_sdk::logs::SdkLogger,
    start: SystemTime,
    took: Duration,
    failed: bool,
    order: u64,
) -> u64 {
    let end = start + took;
    let status: i64 = if failed { 500 } else { 200 };
    let shop = &tracers.shop;
    let mut server = shop.build(
        shop.span_builder("POST /api/checkout")
            .with_kind(SpanKind::Server)
            .with_start_time(start)
            .with_attributes(server_attributes("/api/checkout", status)),
    );
    let cx = Context::current().with_remote_span_context(server.span_context().clone());
    // Payment takes most of the checkout.
    let call_start = start + took / 5;
    let call_end = end - took / 4;
    let mut client = shop.build_with_context(
        shop.span_builder("POST")
            .with_kind(SpanKind::Client)
            .with_start_time(call_start)
            .with_attributes([
                KeyValue::new("http.request.method", "POST"),
                KeyValue::new("server.address", "127.0.0.1"),
                KeyValue::new("url.full", "http://127.0.0.1/charges"),
                KeyValue::new("http.response.status_code", status),
            ]),
        &cx,
    );
    let client_cx = Context::current().with_remote_span_context(client.span_context().clone());
    let payment = &tracers.payment;
    let mut charge = payment.build_with_context(
        payment
            .span_builder("POST /charges")
            .with_kind(SpanKind::Server)
            .with_start_time(call_start + Duration::from_millis(1))
            .with_attributes(server_attributes("/charges", status)),
        &client_cx,
    );
    if failed {
        for s in [&mut server, &mut client, &mut charge] {
            s.set_attribute(KeyValue::new("error.type", "500"));
            s.set_status(Status::error("payment failed"));
        }
    }
    charge.end_with_timestamp(call_end - Duration::from_millis(1));
    client.end_with_timestamp(call_end);
    let mut spans = 3;
    if !failed {
        spans += order_placed(tracers, &cx, call_end, order);
    }

    let mut record = log.create_log_record();
    record.set_timestamp(end);
    record.set_observed_timestamp(end);
    let sc = server.span_context().clone();
    record.set_trace_context(sc.trace_id(), sc.span_id(), Some(TraceFlags::SAMPLED));
    if failed {
        record.set_severity_number(Severity::Error);
        record.set_severity_text("ERROR");
        record.set_body(AnyValue::from(
            "checkout failed: payment declined or unavailable",
        ));
        record.add_attribute("checkout.outcome", "error");
    } else {
        record.set_severity_number(Severity::Info);
        record.set_severity_text("INFO");
        record.set_body(AnyValue::from("checkout completed"));
        record.add_attribute("checkout.outcome", "ok");
    }
    record.add_attribute("order_id", order as i64);
    log.emit(record);
    server.end_with_timestamp(end);
    spans
}

/// A paid order sent to the queue at `at` under the checkout `cx`, and the worker processing
/// it a little later (a child of the send, linked to it); its spans.
fn order_placed(tracers: &Tracers, cx: &Context, at: SystemTime, order: u64) -> u64 {
    let messaging = |operation: &'static str| {
        [
            KeyValue::new("messaging.system", crate::queue::SYSTEM),
            KeyValue::new("messaging.destination.name", "orders"),
            KeyValue::new("messaging.operation.type", operation),
            KeyValue::new("messaging.operation.name", operation),
            KeyValue::new("messaging.message.id", order.to_string()),
        ]
    };
    let shop = &tracers.shop;
    let mut send = shop.build_with_context(
        shop.span_builder("send orders")
            .with_kind(SpanKind::Producer)
            .with_start_time(at)
            .with_attributes(messaging("send")),
        cx,
    );
    send.end_with_timestamp(at + Duration::from_micros(200));
    let created = send.span_context().clone();
    let orders = &tracers.orders;
    let mut process = orders.build_with_context(
        orders
            .span_builder("process orders")
            .with_kind(SpanKind::Consumer)
            .with_start_time(at + Duration::from_millis(3))
            .with_links(vec![Link::with_context(created.clone())])
            .with_attributes(messaging("process")),
        &Context::current().with_remote_span_context(created),
    );
    process.end_with_timestamp(at + Duration::from_millis(40));
    2
}
