//! # sightline-common
//!
//! The few things several Sightline crates need, kept out of any one of them so that none
//! becomes everyone's utility drawer:
//!
//! - [`clock`]: nanosecond timestamps, the [`clock::Clock`] trait every time-dependent part
//!   takes (with [`clock::SystemClock`] and, for tests, [`clock::ManualClock`]), RFC 3339;
//! - [`durable`]: file writes that survive a crash or power loss whole or not at all;
//! - [`config`]: durations (`30s`) and sizes (`64MiB`) as written in the config file;
//! - [`error`]: an error with its sources on one line;
//! - [`process`]: the resident memory of this or another process;
//! - [`listener`]: connection caps and timeouts, and the one HTTP serve loop;
//! - [`tenant`]: tenant names, checked once before they name a directory.
//!
//! ```
//! use sightline_common::clock::{Clock, ManualClock, MINUTE};
//! let clock = ManualClock::new(0);
//! clock.advance(MINUTE);
//! assert_eq!(clock.now(), MINUTE);
//! ```

#![cfg_attr(
    test,
    allow(
        clippy::disallowed_methods,
        reason = "tests block on their runtimes and spawn freely"
    )
)]

pub mod auth;
pub mod clock;
pub mod config;
pub mod durable;
pub mod error;
pub mod listener;
pub mod process;
pub mod proxy;
pub mod seeded;
pub mod tenant;
pub mod tls;
