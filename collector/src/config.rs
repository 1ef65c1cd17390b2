//! The `[limits]` section of the config file: what a request may cost, and the ceilings past
//! which requests are refused as retryable.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest OTLP/HTTP body on the wire.
    #[serde(deserialize_with = "sightline_common::config::size")]
    pub max_body_bytes: usize,
    /// Largest request after decompression, and largest gRPC message.
    #[serde(deserialize_with = "sightline_common::config::size")]
    pub max_decoded_bytes: usize,
    /// Memory ceiling for acknowledged rows not yet in Parquet, flush working
    /// memory, and requests in flight (counted exactly).
    #[serde(deserialize_with = "sightline_common::config::size")]
    pub max_memory_bytes: usize,
    /// Ceiling on the process's resident memory (sampled); 0 turns it off.
    #[serde(deserialize_with = "sightline_common::config::size")]
    pub max_resident_bytes: usize,
    /// Disk ceiling for the write-ahead log.
    #[serde(deserialize_with = "sightline_common::config::size")]
    pub max_wal_bytes: usize,
    /// Disk ceiling for the Parquet files; 0 (the default) turns it off.
    #[serde(deserialize_with = "sightline_common::config::size")]
    pub max_parquet_bytes: usize,
    /// Most memory one request may take to decode and store.
    #[serde(deserialize_with = "sightline_common::config::size")]
    pub max_request_memory_bytes: usize,
    /// How long a request's body may take to arrive.
    #[serde(deserialize_with = "sightline_common::config::duration")]
    pub body_timeout: Duration,
    /// Attributes kept per attribute list; the rest are dropped and counted.
    pub max_attributes: usize,
    #[serde(deserialize_with = "sightline_common::config::size")]
    pub max_attribute_key_bytes: usize,
    /// Longer string values are truncated; longer bytes, arrays and maps are dropped.
    #[serde(deserialize_with = "sightline_common::config::size")]
    pub max_attribute_value_bytes: usize,
    /// Arrays and maps nested deeper are dropped.
    pub max_attribute_depth: usize,
    pub max_events_per_span: usize,
    pub max_links_per_span: usize,
    /// Items older than this when they arrive are rejected (partial success).
    #[serde(deserialize_with = "sightline_common::config::duration")]
    pub max_past: Duration,
    /// Items more than this ahead of the server's clock are rejected.
    #[serde(deserialize_with = "sightline_common::config::duration")]
    pub max_future: Duration,
}

impl LimitsConfig {
    pub fn to_limits(&self) -> crate::Limits {
        crate::Limits {
            max_body_bytes: self.max_body_bytes,
            max_decoded_bytes: self.max_decoded_bytes,
            max_memory_bytes: self.max_memory_bytes,
            max_resident_bytes: (self.max_resident_bytes > 0)
                .then_some(self.max_resident_bytes as u64),
            max_wal_bytes: self.max_wal_bytes as u64,
            max_parquet_bytes: (self.max_parquet_bytes > 0)
                .then_some(self.max_parquet_bytes as u64),
            max_request_memory_bytes: self.max_request_memory_bytes,
            body_timeout: self.body_timeout,
            items: crate::limits::ItemLimits {
                max_attributes: self.max_attributes,
                max_key_bytes: self.max_attribute_key_bytes,
                max_value_bytes: self.max_attribute_value_bytes,
                max_depth: self.max_attribute_depth,
                max_events: self.max_events_per_span,
                max_links: self.max_links_per_span,
                max_past: self.max_past,
                max_future: self.max_future,
            },
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let l = crate::Limits::default();
        Self {
            max_body_bytes: l.max_body_bytes,
            max_decoded_bytes: l.max_decoded_bytes,
            max_memory_bytes: l.max_memory_bytes,
            max_resident_bytes: l.max_resident_bytes.unwrap_or(0) as usize,
            max_wal_bytes: l.max_wal_bytes as usize,
            max_parquet_bytes: l.max_parquet_bytes.unwrap_or(0) as usize,
            max_request_memory_bytes: l.max_request_memory_bytes,
            body_timeout: l.body_timeout,
            max_attributes: l.items.max_attributes,
            max_attribute_key_bytes: l.items.max_key_bytes,
            max_attribute_value_bytes: l.items.max_value_bytes,
            max_attribute_depth: l.items.max_depth,
            max_events_per_span: l.items.max_events,
            max_links_per_span: l.items.max_links,
            max_past: l.items.max_past,
            max_future: l.items.max_future,
        }
    }
}

impl LimitsConfig {
    /// Checks the limits on their own (their relation to the store's settings is the
    /// binary's to check).
    ///
    /// # Errors
    /// The first value that cannot work, naming its key.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_body_bytes == 0 || self.max_decoded_bytes == 0 {
            return Err(
                "limits.max_body_bytes and limits.max_decoded_bytes must be positive".into(),
            );
        }
        if self.max_decoded_bytes < self.max_body_bytes {
            return Err("limits.max_decoded_bytes must be at least limits.max_body_bytes".into());
        }
        if self.max_memory_bytes < self.max_decoded_bytes {
            return Err("limits.max_memory_bytes must be at least limits.max_decoded_bytes".into());
        }
        if self.max_resident_bytes != 0
            && self.max_resident_bytes < self.max_memory_bytes + (64 << 20)
        {
            return Err(
                "limits.max_resident_bytes must be at least limits.max_memory_bytes + 64MiB \
                 (the process itself needs room), or 0 to turn it off"
                    .into(),
            );
        }
        if self.max_attributes == 0 || self.max_attribute_value_bytes == 0 {
            return Err(
                "limits.max_attributes and limits.max_attribute_value_bytes must be positive"
                    .into(),
            );
        }
        if self.max_request_memory_bytes < 1 << 20 {
            return Err("limits.max_request_memory_bytes must be at least 1MiB".into());
        }
        if self.body_timeout < Duration::from_millis(100) {
            return Err("limits.body_timeout must be at least 100ms".into());
        }
        if self.max_past.is_zero() {
            return Err("limits.max_past must be positive".into());
        }
        Ok(())
    }
}
