//! Size limits on what the receivers accept.

/// Limits on what the receivers accept, shared by the gRPC and HTTP receivers.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body accepted on the wire (compressed).
    pub max_body_bytes: usize,
    /// Largest request after decompression (also the largest gRPC message).
    pub max_decoded_bytes: usize,
    /// Ceiling on memory for acknowledged rows not yet in Parquet plus requests being
    /// processed. Past it, requests are refused as retryable (503 / UNAVAILABLE).
    pub max_memory_bytes: usize,
    /// Ceiling on the whole process's resident memory (None: no ceiling). Requests are
    /// refused once resident memory reaches [`RESIDENT_ADMISSION_SHARE`] of it, leaving room
    /// for what is already admitted; this catches what `max_memory_bytes` cannot count
    /// (allocator slack, decoders, queries).
    pub max_resident_bytes: Option<u64>,
    /// Ceiling on the write-ahead log's size on disk; past it, requests are refused likewise.
    pub max_wal_bytes: u64,
    /// Ceiling on the Parquet files' size on disk (None: no ceiling); past it, requests are
    /// refused likewise until retention or an operator makes room.
    pub max_parquet_bytes: Option<u64>,
    /// Most memory one request may take to decode and store (its structs, and its rows with
    /// the resource's attributes copied into each); a request also gets at most
    /// [`EXPANSION_PER_DECODED_BYTE`] times its decoded size, or [`SMALL_REQUEST_BUDGET`].
    pub max_request_memory_bytes: usize,
    /// How long a request's body may take to arrive.
    pub body_timeout: std::time::Duration,
    /// Limits on each item inside a request.
    pub items: ItemLimits,
}

/// A request may take this many times its decoded size in memory (prost structs are about 3×
/// the wire size of attribute-heavy data; a rich resource copied into every small item can
/// take more, which [`SMALL_REQUEST_BUDGET`] allows for small requests).
pub const EXPANSION_PER_DECODED_BYTE: usize = 16;
/// What any request may take, however small it is on the wire.
pub const SMALL_REQUEST_BUDGET: usize = 16 << 20;

impl Limits {
    /// The memory a request of `decoded` bytes may take (never more than the whole ceiling).
    pub fn request_budget(&self, decoded: usize) -> usize {
        decoded
            .saturating_mul(EXPANSION_PER_DECODED_BYTE)
            .max(SMALL_REQUEST_BUDGET)
            .min(self.max_request_memory_bytes)
            .min(self.max_memory_bytes)
    }
}

/// Share of `max_resident_bytes` past which requests are refused.
/// Room above it covers what admission cannot stop once started: a flush's copies of a full
/// buffer and the requests already in flight (measured: 0.85 let a 16-connection overload reach
/// 1.02 GiB under a 1 GiB ceiling).
pub const RESIDENT_ADMISSION_SHARE: f64 = 0.75;

/// Limits on one span, log record or data point. Attributes and events past a limit are
/// dropped and counted in the item's `dropped_*_count`, as the OpenTelemetry spec does; long
/// string values are truncated; items with times outside the accepted window are rejected
/// (OTLP partial success).
#[derive(Debug, Clone, Copy)]
pub struct ItemLimits {
    /// Attributes kept per attribute list (span, event, link, resource, log, point).
    pub max_attributes: usize,
    /// Longer keys drop their attribute.
    pub max_key_bytes: usize,
    /// Longer string values are truncated (at a character boundary); longer byte, array and
    /// map values drop their attribute.
    pub max_value_bytes: usize,
    /// Arrays and maps nested deeper than this drop their attribute.
    pub max_depth: usize,
    pub max_events: usize,
    pub max_links: usize,
    /// Items whose time is older than this (relative to arrival) are rejected.
    pub max_past: std::time::Duration,
    /// Items whose time is further ahead than this are rejected.
    pub max_future: std::time::Duration,
}

impl Default for ItemLimits {
    fn default() -> Self {
        Self {
            max_attributes: 128,
            max_key_bytes: 256,
            max_value_bytes: 64 * 1024,
            max_depth: 8,
            max_events: 256,
            max_links: 256,
            max_past: std::time::Duration::from_secs(30 * 86_400),
            max_future: std::time::Duration::from_secs(3_600),
        }
    }
}

impl ItemLimits {
    /// The accepted time window `[oldest, newest]` for items arriving at `now_ns`.
    pub fn window(&self, now_ns: i64) -> (i64, i64) {
        let past = i64::try_from(self.max_past.as_nanos()).unwrap_or(i64::MAX);
        let future = i64::try_from(self.max_future.as_nanos()).unwrap_or(i64::MAX);
        (now_ns.saturating_sub(past), now_ns.saturating_add(future))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 * 1024 * 1024,
            max_decoded_bytes: 64 * 1024 * 1024,
            max_memory_bytes: 512 * 1024 * 1024,
            max_resident_bytes: Some(1024 * 1024 * 1024),
            max_wal_bytes: 4 * 1024 * 1024 * 1024,
            max_parquet_bytes: None,
            max_request_memory_bytes: 128 * 1024 * 1024,
            body_timeout: std::time::Duration::from_secs(30),
            items: ItemLimits::default(),
        }
    }
}
