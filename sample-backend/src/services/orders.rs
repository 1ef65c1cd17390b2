//! The orders worker: takes placed orders off the `orders` queue, captures their payment and
//! fulfils them. A delivery that fails comes back with exponential backoff and jitter; after
//! [`MAX_DELIVERIES`] the order goes to the dead-letter queue (`orders.dlq`), with an error
//! log that says so.
//!
//! Each delivery is a consumer span `process orders`, a child of the producer's `send orders`
//! span (its context travels in the message's headers) and linked to it, as the messaging
//! conventions describe; the capture is a client span under it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry::metrics::{Counter, Histogram};
use opentelemetry::trace::{
    FutureExt as _, Link, SpanKind, Status, TraceContextExt as _, Tracer as _,
};
use opentelemetry::{Context, KeyValue, global};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::Service;
use crate::instrument::Client;
use crate::queue::{self, Message, Queue};

/// Deliveries of one message before it is dead-lettered.
pub const MAX_DELIVERIES: u32 = 4;
/// Messages processed at once.
const CONCURRENCY: usize = 8;
/// The consumer group, as `messaging.consumer.group.name`.
const GROUP: &str = "fulfilment";

#[derive(Debug)]
pub struct Orders {
    pub svc: Service,
    pub payment: Client,
    pub queue: Arc<Queue>,
    process_duration: Histogram<f64>,
    consumed: Counter<u64>,
}

impl Orders {
    pub fn new(
        svc: Service,
        payment: Client,
        queue: Arc<Queue>,
        meter: &opentelemetry::metrics::Meter,
    ) -> Self {
        Self {
            svc,
            payment,
            queue,
            process_duration: meter
                .f64_histogram("messaging.process.duration")
                .with_unit("s")
                .with_description("Duration of processing a message")
                .build(),
            consumed: meter
                .u64_counter("messaging.client.consumed.messages")
                .with_unit("{message}")
                .with_description("Messages delivered to the consumer")
                .build(),
        }
    }
}

/// The delay before delivery `next` (2, 3, …): 200 ms doubling, with full jitter.
fn backoff(next: u32) -> Duration {
    let cap = 200u64 << next.saturating_sub(2).min(6);
    Duration::from_millis(rand::random_range(cap / 2..=cap))
}

/// Processes messages until `stop`; the deliveries under way finish first.
pub async fn run(orders: Arc<Orders>, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let mut running = tokio::task::JoinSet::new();
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let message = tokio::select! {
            () = stop.cancelled() => break,
            m = orders.queue.receive() => m,
        };
        let o = orders.clone();
        running.spawn(async move {
            o.process(message).await;
            drop(permit);
        });
        while running.try_join_next().is_some() {}
    }
    running.join_all().await;
}

impl Orders {
    /// One delivery, as one consumer span; retried or dead-lettered when it fails.
    async fn process(&self, message: Message) {
        let tracer = &self.svc.ins.tracer;
        let creation = global::get_text_map_propagator(|p| p.extract(&message.headers));
        let mut builder = tracer
            .span_builder(format!("process {}", self.queue.name))
            .with_kind(SpanKind::Consumer)
            .with_attributes([
                KeyValue::new("messaging.system", queue::SYSTEM),
                KeyValue::new("messaging.destination.name", self.queue.name.clone()),
                KeyValue::new("messaging.operation.type", "process"),
                KeyValue::new("messaging.operation.name", "process"),
                KeyValue::new("messaging.consumer.group.name", GROUP),
                KeyValue::new("messaging.message.id", message.id.to_string()),
                KeyValue::new("sample_queue.delivery", i64::from(message.delivery)),
            ]);
        let created = creation.span().span_context().clone();
        if created.is_valid() {
            builder = builder.with_links(vec![Link::with_context(created)]);
        }
        let span = builder.start_with_context(tracer, &creation);
        let cx = creation.with_span(span);
        let started = Instant::now();
        let outcome = self.fulfil(&message).with_context(cx.clone()).await;
        let mut attrs = vec![
            KeyValue::new("messaging.system", queue::SYSTEM),
            KeyValue::new("messaging.destination.name", self.queue.name.clone()),
            KeyValue::new("messaging.operation.name", "process"),
        ];
        self.consumed.add(1, &attrs);
        let order = message.body["order_id"].as_u64().unwrap_or(0);
        // Log records take the trace context that is current.
        let _in_span = cx.clone().attach();
        let span = cx.span();
        match outcome {
            Ok(()) => {
                tracing::info!(
                    order_id = order,
                    delivery = message.delivery,
                    "order fulfilled"
                );
            }
            Err(e) => {
                span.set_status(Status::error(e.clone()));
                span.set_attribute(KeyValue::new("error.type", "fulfilment_failed"));
                attrs.push(KeyValue::new("error.type", "fulfilment_failed"));
                if message.delivery < MAX_DELIVERIES {
                    let delay = backoff(message.delivery + 1);
                    span.add_event(
                        "retry",
                        vec![
                            KeyValue::new("retry.attempt", i64::from(message.delivery)),
                            KeyValue::new("retry.delay_ms", delay.as_millis() as i64),
                        ],
                    );
                    tracing::warn!(order_id = order, delivery = message.delivery, error = %e, "order fulfilment failed; delivered again in {delay:?}");
                    self.queue.retry(message, delay);
                } else {
                    self.dead_letter(message, &e, &cx);
                }
            }
        }
        self.process_duration
            .record(started.elapsed().as_secs_f64(), &attrs);
        span.end();
    }

    /// Captures the payment, then does the fulfilment's own work.
    async fn fulfil(&self, message: &Message) -> Result<(), String> {
        self.svc.faults.apply("orders").await?;
        let order = message.body["order_id"].as_u64().unwrap_or(0);
        self.payment
            .call(
                reqwest::Method::POST,
                &format!("/charges/{order}/capture"),
                None,
                Duration::from_secs(1),
            )
            .await
            .map_err(|e| format!("payment capture: {e}"))?;
        self.svc.work("orders.fulfil", 6).await;
        Ok(())
    }

    /// Sends `message` to the dead-letter queue, as a producer span under its last delivery.
    fn dead_letter(&self, message: Message, error: &str, cx: &Context) {
        let dlq = self.queue.dead_letter_name();
        let send = queue::producer_span(&self.svc.ins.tracer, &dlq, cx);
        send.span().set_attribute(KeyValue::new(
            "messaging.message.id",
            message.id.to_string(),
        ));
        tracing::error!(
            order_id = message.body["order_id"].as_u64().unwrap_or(0),
            deliveries = message.delivery,
            error = %error,
            "order dead-lettered to {dlq} after {} deliveries",
            message.delivery
        );
        self.queue.dead_letter(message);
        send.span().end();
    }
}
