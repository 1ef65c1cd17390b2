//! Values as the config file writes them: durations (`500ms`, `30s`, `5m`, `2h`, `7d`) and
//! sizes (`1048576`, `512KiB`, `64MiB`), with serde helpers for `deserialize_with`.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Parses `500ms`, `30s`, `5m`, `2h`, `7d`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let units: [(&str, u64); 5] = [
        ("ms", 1),
        ("s", 1_000),
        ("m", 60_000),
        ("h", 3_600_000),
        ("d", 86_400_000),
    ];
    let (num, unit_ms) = units
        .iter()
        .find_map(|(suffix, ms)| t.strip_suffix(suffix).map(|n| (n, *ms)))
        .unwrap_or((t, 1_000));
    let num = num.trim();
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "invalid duration {s:?}: expected e.g. 500ms, 30s, 5m, 2h or 7d"
        ));
    }
    let n: u64 = num
        .parse()
        .map_err(|e| format!("invalid duration {s:?}: {e}"))?;
    let ms = n
        .checked_mul(unit_ms)
        .ok_or_else(|| format!("duration {s:?} is too large"))?;
    Ok(Duration::from_millis(ms))
}

/// Parses `1048576`, `512KiB`, `64MiB`, `2GiB` (also `KB`/`MB`/`GB` as powers of 1000).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let units: [(&str, u64); 7] = [
        ("KiB", 1 << 10),
        ("MiB", 1 << 20),
        ("GiB", 1 << 30),
        ("KB", 1_000),
        ("MB", 1_000_000),
        ("GB", 1_000_000_000),
        ("B", 1),
    ];
    let (num, mult) = units
        .iter()
        .find_map(|(suffix, m)| t.strip_suffix(suffix).map(|n| (n, *m)))
        .unwrap_or((t, 1));
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid size {s:?}: expected e.g. 1048576, 512KiB, 64MiB or 2GiB"))?;
    n.checked_mul(mult)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// `#[serde(deserialize_with = "duration")]`: a duration written as text.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// `#[serde(deserialize_with = "opt_duration")]` for `Option<Duration>` fields.
pub fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// `#[serde(deserialize_with = "size")]`: a size written as a number of bytes or as text
/// with a unit.
pub fn size<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Bytes(b) => usize::try_from(b).map_err(serde::de::Error::custom),
        Size::Text(s) => parse_size(&s).map_err(serde::de::Error::custom),
    }
}

/// `#[serde(deserialize_with = "opt_size")]` for `Option<usize>` fields.
pub fn opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    size(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_parse_with_their_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1.5s").is_err());
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1KB"), Ok(1000));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("7"), Ok(7));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999GiB").is_err());
    }
}

/// How long each signal is kept; whole hours are dropped. Absent keeps data forever (or, for
/// a tenant, as the `[retention]` section says); "0" keeps it forever.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    #[serde(deserialize_with = "opt_duration")]
    pub spans: Option<Duration>,
    #[serde(deserialize_with = "opt_duration")]
    pub logs: Option<Duration>,
    #[serde(deserialize_with = "opt_duration")]
    pub metrics: Option<Duration>,
}

impl RetentionConfig {
    /// What this names, and `base` for the rest.
    #[must_use]
    pub fn or(self, base: RetentionConfig) -> RetentionConfig {
        RetentionConfig {
            spans: self.spans.or(base.spans),
            logs: self.logs.or(base.logs),
            metrics: self.metrics.or(base.metrics),
        }
    }

    /// Checks every signal's retention; `key` names the section (`retention`).
    ///
    /// # Errors
    /// A retention shorter than an hour (data is dropped by whole hours).
    pub fn validate_as(&self, key: &str) -> Result<(), String> {
        for (name, d) in [
            ("spans", self.spans),
            ("logs", self.logs),
            ("metrics", self.metrics),
        ] {
            if d.is_some_and(|d| !d.is_zero() && d < Duration::from_secs(3600)) {
                return Err(format!(
                    "{key}.{name} must be at least 1h (data is dropped by whole hours), or 0 to \
                     keep forever"
                ));
            }
        }
        Ok(())
    }

    /// # Errors
    /// As [`RetentionConfig::validate_as`], for the `[retention]` section.
    pub fn validate(&self) -> Result<(), String> {
        self.validate_as("retention")
    }
}
