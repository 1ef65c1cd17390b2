//! One delivery attempt and what it means: delivered, worth retrying, or refused for good.

use std::time::Duration;

use crate::message::Notification;

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

/// Where notifications go.
#[derive(Debug)]
pub enum Integration {
    Webhook(Box<crate::webhook::Webhook>),
    Email(crate::email::Email),
}

impl Integration {
    pub fn kind(&self) -> &'static str {
        match self {
            Integration::Webhook(_) => "webhook",
            Integration::Email(_) => "email",
        }
    }

    pub async fn send(&self, n: &Notification) -> Attempt {
        let started = std::time::Instant::now();
        let mut a = match self {
            Integration::Webhook(w) => w.send(n).await,
            Integration::Email(e) => e.send(n).await,
        };
        a.latency = started.elapsed();
        a
    }
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

pub fn attempt(
    outcome: Outcome,
    status_code: Option<i64>,
    error: Option<String>,
    retry_after: Option<Duration>,
) -> Attempt {
    Attempt {
        outcome,
        status_code,
        error,
        retry_after,
        latency: Duration::ZERO,
    }
}

pub use sightline_common::error::chain;
