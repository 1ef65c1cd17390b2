//! # sightline-notify
//!
//! Alert delivery. The SLO engine decides what fires; this crate makes sure people hear it.
//! Dependencies between its modules point one way, from the pure ones up:
//!
//! - [`config`] (the `[notify]` section, validated), [`message`] (a notification and its
//!   renderings), [`format`](mod@format) (the envelope of its files), [`error`];
//! - [`attempt`]: one delivery attempt and its outcome, and the [`attempt::Integration`] trait
//!   that [`webhook`] (Alertmanager's v4 payload, HMAC-SHA256 signed) and [`email`] (lettre)
//!   implement;
//! - [`outbox`] (every notification on disk before it is sent, removed only when delivered,
//!   refused or given up), [`silence`], [`history`] (rows of `notifications`), [`metrics`];
//! - [`route`] and [`dispatch`]: firing alerts into groups per receiver, and when a group
//!   needs a notification (against the notification log);
//! - [`breaker`] and [`delivery`]: each group's notifications in order, retries with backoff
//!   and jitter (honouring `Retry-After`), a circuit breaker per receiver, `max_age`;
//! - [`runner`]: the [`Notifier`] that runs it all on an injected clock.
//!
//! The HTTP API over silences and the outbox lives with the rest of the API (`sightline-ui`).

#![cfg_attr(
    test,
    allow(
        clippy::disallowed_methods,
        reason = "tests block on their runtimes and spawn freely"
    )
)]

pub mod attempt;
pub mod breaker;
pub mod config;
pub mod delivery;
pub mod dispatch;
pub mod email;
pub mod error;
#[cfg(test)]
mod fixtures;
pub mod format;
pub mod history;
pub mod message;
pub mod metrics;
pub mod outbox;
pub mod route;
pub mod runner;
pub mod silence;
pub mod webhook;

pub use config::NotifyConfig;
pub use delivery::PendingView;
pub use error::NotifyError;
pub use runner::Notifier;
