//! Sightline's SLO engine: turns spans and logs into error budgets and tells people, early and
//! without noise, when a service burns its budget too fast.
//!
//! - [`spec`]: the YAML format of SLOs, validated with line and field in every error, and
//!   [`openslo`], the import of OpenSLO v1 documents through the same validation;
//! - [`counter`]: counting good and valid events per minute, live (stored with the events)
//!   and in backfills, with the same compiled expressions;
//! - [`rollup`], [`window`], [`status`]: counts in memory, windows, SLI, budget, burn rates;
//! - [`alert`]: multiwindow, multi-burn-rate rules and alert states;
//! - [`maintenance`] and [`matcher`]: maintenance windows and Alertmanager label matchers;
//! - [`engine`]: all of it over a store, on a tick, with an injected [`Clock`]; [`config`]: the
//!   `[slo]` config section.
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<sightline_store::Store>) -> Result<(), Box<dyn std::error::Error>> {
//! let query = store.query_engine(Default::default()).await?;
//! let slos = sightline_slo::spec::parse("slos.yaml", &std::fs::read_to_string("slos.yaml")?)
//!     .map_err(|e| format!("{e:?}"))?;
//! let clock = std::sync::Arc::new(sightline_slo::SystemClock);
//! let engine = sightline_slo::Engine::open(store, &query, slos, clock, &mut Default::default()).await?;
//! engine.tick().await?;
//! # Ok(()) }
//! ```

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
pub mod spec_file;
pub mod status;
pub mod window;

pub use engine::{Engine, EngineError, SloState};
pub use sightline_common::clock::{Clock, ManualClock, SystemClock};
pub use spec::{Slo, SpecError};
