//! The `[slo]` section of the config file: where the spec files are and how often SLOs are
//! evaluated.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SloConfig {
    /// Directory of SLO spec files (`*.yaml`); reloaded when a file changes.
    pub dir: Option<PathBuf>,
    /// How often SLOs and their alert rules are evaluated.
    #[serde(deserialize_with = "sightline_common::config::duration")]
    pub tick: Duration,
}

impl Default for SloConfig {
    fn default() -> Self {
        Self {
            dir: None,
            tick: Duration::from_secs(15),
        }
    }
}

impl SloConfig {
    /// # Errors
    /// A tick outside 1s–30s.
    pub fn validate(&self) -> Result<(), String> {
        if self.tick < Duration::from_secs(1) || self.tick > Duration::from_secs(30) {
            return Err("slo.tick must be between 1s and 30s".into());
        }
        Ok(())
    }
}
