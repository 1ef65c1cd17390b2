//! Sightline's SLO engine: turns spans and logs into error budgets and tells people, early and
//! without noise, when a service burns its budget too fast.
//!
//! - [`spec`]: the YAML format of SLOs, validated with line and field in every error;
//! - [`counter`]: live counting of good and valid events per minute, stored with the events;
//! - [`rollup`], [`window`], [`status`]: counts in memory, windows, SLI, budget, burn rates;
//! - [`alert`]: multiwindow, multi-burn-rate rules and alert states;
//! - [`engine`]: all of it over a store, on a tick, with an injected [`Clock`].

#![cfg_attr(
    test,
    allow(
        clippy::disallowed_methods,
        reason = "tests block on their runtimes and spawn freely"
    )
)]

pub mod alert;
pub mod config;
pub mod counter;
pub mod engine;
pub mod maintenance;
pub mod matcher;
pub mod metrics;
pub mod openslo;
pub mod rollup;
pub mod spec;
pub mod status;
pub mod window;

pub use engine::{Engine, EngineError, SloState};
pub use sightline_common::clock::{Clock, ManualClock, SystemClock};
pub use spec::{Slo, SpecError};
