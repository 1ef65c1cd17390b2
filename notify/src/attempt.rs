//! One delivery attempt and what it means (delivered, worth retrying, or refused for good), and
//! the [`Integration`] every receiver kind implements.

use std::time::Duration;

use crate::message::Notification;

/// Sent with every notification (HTTP header; email header) so receivers can drop repeats.
pub const ID_HEADER: &str = "X-Sightline-Notification-Id";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Connection errors, timeouts, 408, 429, 5xx, SMTP 4xx: try again later.
    Retryable,
    /// Any other refusal (4xx, SMTP 5xx): retrying would get the same answer.
    Permanent,
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub outcome: Outcome,
    /// HTTP status or SMTP reply code.
    pub status_code: Option<i64>,
    pub error: Option<String>,
    /// The receiver asked to wait this long (`Retry-After`).
    pub retry_after: Option<Duration>,
    pub latency: Duration,
}

impl Attempt {
    pub fn new(
        outcome: Outcome,
        status_code: Option<i64>,
        error: Option<String>,
        retry_after: Option<Duration>,
    ) -> Self {
        Self {
            outcome,
            status_code,
            error,
            retry_after,
            latency: Duration::ZERO,
        }
    }
}

/// Where notifications go: a webhook, an email account.
#[async_trait::async_trait]
pub trait Integration: Send + Sync + std::fmt::Debug {
    /// `webhook` or `email` (the `integration` column of `notifications`).
    fn kind(&self) -> &'static str;
    /// One attempt to deliver `n`; never panics on what the receiver answers.
    async fn send(&self, n: &Notification) -> Attempt;
}

/// Sends `n` through `integration` and measures how long it took.
pub async fn timed(integration: &dyn Integration, n: &Notification) -> Attempt {
    let started = std::time::Instant::now();
    let mut a = integration.send(n).await;
    a.latency = started.elapsed();
    a
}

/// Shortens an error message for the history table.
pub fn clip(s: &str) -> String {
    const MAX: usize = 512;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
