//! Faults injected per component: a share of requests that fail and latency added to every
//! one. Every service of the shop reads the same table; the frontend's admin API changes it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Components faults can be injected into: the frontend's cart, and the other services.
pub const COMPONENTS: [&str; 5] = ["catalog", "cart", "payment", "recommendations", "orders"];

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Fault {
    /// Share of requests that fail, 0–1.
    #[serde(default)]
    pub error_rate: f64,
    /// Added to every request, in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
}

impl Fault {
    /// Parses `payment=0.5` or `payment=0.2:300ms` (error rate, optional added latency).
    pub fn parse(s: &str) -> Result<(String, Fault), String> {
        let (name, spec) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected COMPONENT=ERROR_RATE[:LATENCYms]"))?;
        check_component(name)?;
        let (rate, latency) = spec.split_once(':').unwrap_or((spec, "0ms"));
        let error_rate: f64 = rate
            .parse()
            .map_err(|_| format!("{rate:?} is not an error rate between 0 and 1"))?;
        let latency_ms: u64 = latency
            .trim_end_matches("ms")
            .parse()
            .map_err(|_| format!("{latency:?} is not a latency like 300ms"))?;
        let f = Fault {
            error_rate,
            latency_ms,
        };
        f.check()?;
        Ok((name.to_string(), f))
    }

    /// Whether the values are in range.
    pub fn check(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err("error_rate must be between 0 and 1".into());
        }
        if self.latency_ms > 60_000 {
            return Err("latency_ms must be at most 60000".into());
        }
        Ok(())
    }
}

/// Whether `name` is one of [`COMPONENTS`].
pub fn check_component(name: &str) -> Result<(), String> {
    if COMPONENTS.contains(&name) {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a component ({})",
            COMPONENTS.join(", ")
        ))
    }
}

/// The faults in force, shared by every service.
#[derive(Debug, Default)]
pub struct Faults(Mutex<HashMap<String, Fault>>);

impl Faults {
    pub fn new(initial: impl IntoIterator<Item = (String, Fault)>) -> Self {
        Self(Mutex::new(initial.into_iter().collect()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Fault>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn all(&self) -> HashMap<String, Fault> {
        self.lock().clone()
    }

    pub fn set(&self, component: String, fault: Fault) {
        self.lock().insert(component, fault);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Applies `component`'s fault: waits the added latency, then fails with its probability.
    ///
    /// # Errors
    /// When the injected fault says this request fails.
    pub async fn apply(&self, component: &str) -> Result<(), String> {
        let f = self.lock().get(component).copied().unwrap_or_default();
        if f.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(f.latency_ms)).await;
        }
        if f.error_rate > 0.0 && rand::random::<f64>() < f.error_rate {
            return Err(format!("{component} failed (injected fault)"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_and_are_checked() {
        assert_eq!(
            Fault::parse("payment=0.25:300ms"),
            Ok((
                "payment".into(),
                Fault {
                    error_rate: 0.25,
                    latency_ms: 300
                }
            ))
        );
        assert!(Fault::parse("orders=1").is_ok());
        assert!(Fault::parse("payment=2").is_err());
        assert!(Fault::parse("warp-drive=0.1").is_err());
    }
}
