//! The asynchronous queue between the frontend and the orders worker, standing in for a
//! broker: messages carry headers (the producer's trace context travels in them, as with
//! Kafka or AMQP), a delivery that failed comes back after a delay, and one that failed too
//! often goes to the dead-letter queue. Bounded: past its capacity a send is refused.
//!
//! The spans and metrics of sending and processing follow the OpenTelemetry messaging
//! conventions and are made by the services that send and process ([`producer_span`] is
//! shared by both, for the frontend's sends and the worker's dead letters).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use opentelemetry::trace::{SpanKind, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracer;
use serde::Serialize;

/// `messaging.system` of the shop's queue (not one of the conventions' brokers).
pub const SYSTEM: &str = "sample-queue";

/// One message.
#[derive(Debug, Clone)]
pub struct Message {
    /// Unique in its queue: `messaging.message.id`.
    pub id: u64,
    pub body: serde_json::Value,
    /// Propagation headers (`traceparent`), as the producer wrote them.
    pub headers: HashMap<String, String>,
    /// 1 for the first delivery.
    pub delivery: u32,
}

/// The queue refused a message: it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full(pub usize);

impl std::fmt::Display for Full {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the queue is full ({} messages)", self.0)
    }
}

impl std::error::Error for Full {}

/// How many messages wait, how many wait for a retry, and how many were dead-lettered.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    pub ready: usize,
    pub retrying: usize,
    pub dead_letters: usize,
    pub dead_lettered_total: u64,
}

#[derive(Debug, Default)]
struct State {
    ready: VecDeque<Message>,
    /// Deliveries that failed, with when they come back.
    retrying: Vec<(Instant, Message)>,
    /// The dead-letter queue: the newest [`DEAD_LETTERS_KEPT`].
    dead: VecDeque<Message>,
    dead_total: u64,
    next_id: u64,
}

/// Dead letters kept for inspection; older ones are dropped (and still counted).
const DEAD_LETTERS_KEPT: usize = 1_000;

/// A queue with one consumer.
#[derive(Debug)]
pub struct Queue {
    pub name: String,
    capacity: usize,
    state: Mutex<State>,
    wake: tokio::sync::Notify,
}

impl Queue {
    pub fn new(name: &str, capacity: usize) -> Self {
        Self {
            name: name.to_string(),
            capacity,
            state: Mutex::default(),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// The name of its dead-letter queue.
    pub fn dead_letter_name(&self) -> String {
        format!("{}.dlq", self.name)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a message; its id.
    ///
    /// # Errors
    /// [`Full`] when as many messages wait (ready or to be retried) as the queue holds.
    pub fn send(
        &self,
        body: serde_json::Value,
        headers: HashMap<String, String>,
    ) -> Result<u64, Full> {
        let mut s = self.lock();
        if s.ready.len() + s.retrying.len() >= self.capacity {
            return Err(Full(self.capacity));
        }
        s.next_id += 1;
        let id = s.next_id;
        s.ready.push_back(Message {
            id,
            body,
            headers,
            delivery: 1,
        });
        drop(s);
        self.wake.notify_one();
        Ok(id)
    }

    /// The next message: a ready one, or a retry whose time has come. Waits for one.
    pub async fn receive(&self) -> Message {
        loop {
            let next_retry = {
                let mut s = self.lock();
                let now = Instant::now();
                if let Some(i) = s.retrying.iter().position(|(due, _)| *due <= now) {
                    return s.retrying.swap_remove(i).1;
                }
                if let Some(m) = s.ready.pop_front() {
                    return m;
                }
                s.retrying.iter().map(|(due, _)| *due).min()
            };
            // One consumer: a send between the look and the wait leaves a permit behind.
            match next_retry {
                Some(due) => {
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep_until(due.into()) => {}
                    }
                }
                None => self.wake.notified().await,
            }
        }
    }

    /// Delivers `message` again after `delay`, as its next delivery.
    pub fn retry(&self, mut message: Message, delay: Duration) {
        message.delivery += 1;
        self.lock().retrying.push((Instant::now() + delay, message));
        self.wake.notify_one();
    }

    /// Moves `message` to the dead-letter queue.
    pub fn dead_letter(&self, message: Message) {
        let mut s = self.lock();
        if s.dead.len() >= DEAD_LETTERS_KEPT {
            s.dead.pop_front();
        }
        s.dead.push_back(message);
        s.dead_total += 1;
    }

    pub fn stats(&self) -> Stats {
        let s = self.lock();
        Stats {
            ready: s.ready.len(),
            retrying: s.retrying.len(),
            dead_letters: s.dead.len(),
            dead_lettered_total: s.dead_total,
        }
    }
}

/// A producer span `send {destination}` under `parent`, as the messaging conventions name it;
/// the context to inject into the message's headers.
pub fn producer_span(tracer: &SdkTracer, destination: &str, parent: &Context) -> Context {
    let span = tracer
        .span_builder(format!("send {destination}"))
        .with_kind(SpanKind::Producer)
        .with_attributes([
            KeyValue::new("messaging.system", SYSTEM),
            KeyValue::new("messaging.destination.name", destination.to_string()),
            KeyValue::new("messaging.operation.type", "send"),
            KeyValue::new("messaging.operation.name", "send"),
        ])
        .start_with_context(tracer, parent);
    parent.with_span(span)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(q: &Queue) -> u64 {
        q.send(serde_json::json!({}), HashMap::new())
            .expect("room in the queue")
    }

    #[tokio::test]
    async fn messages_come_in_order_retries_come_back_and_dead_letters_stay() {
        let q = Queue::new("orders", 3);
        let (a, b) = (send(&q), send(&q));
        let first = q.receive().await;
        assert_eq!((first.id, first.delivery), (a, 1));
        q.retry(first, Duration::from_millis(30));
        // The retry waits its delay: the next message comes first.
        assert_eq!(q.receive().await.id, b);
        let again = q.receive().await;
        assert_eq!((again.id, again.delivery), (a, 2));
        q.dead_letter(again);
        assert_eq!(
            q.stats(),
            Stats {
                ready: 0,
                retrying: 0,
                dead_letters: 1,
                dead_lettered_total: 1
            }
        );
    }

    #[test]
    fn a_full_queue_refuses() {
        let q = Queue::new("orders", 2);
        send(&q);
        let m = q.lock().ready.pop_front().expect("the message sent");
        q.retry(m, Duration::from_secs(60));
        send(&q);
        assert_eq!(
            q.send(serde_json::json!({}), HashMap::new()),
            Err(Full(2)),
            "messages waiting for a retry count"
        );
    }

    #[tokio::test]
    async fn a_receiver_waiting_wakes_for_a_send() {
        let q = std::sync::Arc::new(Queue::new("orders", 10));
        let waiting = tokio::spawn({
            let q = q.clone();
            async move { q.receive().await.id }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let id = send(&q);
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), waiting)
                .await
                .expect("woken by the send")
                .expect("the receiver ran"),
            id
        );
    }
}
