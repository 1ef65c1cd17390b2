//! The path every export request takes, whatever its transport: convert to Arrow, store,
//! count, and answer with OTLP partial success when some items were rejected.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use sightline_store::Store;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::limits::Limits;

use crate::convert::{self, ConvertContext, Converted};
use crate::error::IngestError;
use crate::metrics::{CollectorMetrics, ItemLabels, RequestLabels};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Grpc,
    Http,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
        }
    }
}

/// An OTLP export request type, with what differs between the signals.
pub trait ExportRequest:
    prost::Message + Default + serde::de::DeserializeOwned + Send + Sync + 'static
{
    const SIGNAL: Signal;
    /// Name of the `rejected_<items>` field in OTLP/JSON.
    const REJECTED_FIELD: &'static str;
    type Response: prost::Message + Default + Send + 'static;

    fn convert(&self, ctx: &ConvertContext) -> Result<Converted, arrow::error::ArrowError>;
    fn response(rejected: i64, message: String) -> Self::Response;
}

impl ExportRequest for ExportTraceServiceRequest {
    const SIGNAL: Signal = Signal::Traces;
    const REJECTED_FIELD: &'static str = "rejectedSpans";
    type Response = ExportTraceServiceResponse;

    fn convert(&self, ctx: &ConvertContext) -> Result<Converted, arrow::error::ArrowError> {
        convert::traces::convert(self, ctx)
    }

    fn response(rejected: i64, message: String) -> Self::Response {
        ExportTraceServiceResponse {
            partial_success: (rejected > 0 || !message.is_empty()).then_some(
                ExportTracePartialSuccess {
                    rejected_spans: rejected,
                    error_message: message,
                },
            ),
        }
    }
}

impl ExportRequest for ExportMetricsServiceRequest {
    const SIGNAL: Signal = Signal::Metrics;
    const REJECTED_FIELD: &'static str = "rejectedDataPoints";
    type Response = ExportMetricsServiceResponse;

    fn convert(&self, ctx: &ConvertContext) -> Result<Converted, arrow::error::ArrowError> {
        convert::metrics::convert(self, ctx)
    }

    fn response(rejected: i64, message: String) -> Self::Response {
        ExportMetricsServiceResponse {
            partial_success: (rejected > 0 || !message.is_empty()).then_some(
                ExportMetricsPartialSuccess {
                    rejected_data_points: rejected,
                    error_message: message,
                },
            ),
        }
    }
}

impl ExportRequest for ExportLogsServiceRequest {
    const SIGNAL: Signal = Signal::Logs;
    const REJECTED_FIELD: &'static str = "rejectedLogRecords";
    type Response = ExportLogsServiceResponse;

    fn convert(&self, ctx: &ConvertContext) -> Result<Converted, arrow::error::ArrowError> {
        convert::logs::convert(self, ctx)
    }

    fn response(rejected: i64, message: String) -> Self::Response {
        ExportLogsServiceResponse {
            partial_success: (rejected > 0 || !message.is_empty()).then_some(
                ExportLogsPartialSuccess {
                    rejected_log_records: rejected,
                    error_message: message,
                },
            ),
        }
    }
}

/// What happened to an export request that was (at least partly) stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub accepted: u64,
    pub rejected: u64,
    pub message: Option<String>,
}

impl Outcome {
    pub fn response<R: ExportRequest>(&self) -> R::Response {
        R::response(
            i64::try_from(self.rejected).unwrap_or(i64::MAX),
            self.message.clone().unwrap_or_default(),
        )
    }

    /// The OTLP/JSON response body.
    pub fn json<R: ExportRequest>(&self) -> serde_json::Value {
        if self.rejected == 0 && self.message.is_none() {
            return serde_json::json!({});
        }
        let mut partial = serde_json::Map::new();
        // int64 is a decimal string in the proto3 JSON mapping.
        partial.insert(
            R::REJECTED_FIELD.into(),
            serde_json::Value::String(self.rejected.to_string()),
        );
        partial.insert(
            "errorMessage".into(),
            serde_json::Value::String(self.message.clone().unwrap_or_default()),
        );
        serde_json::json!({ "partialSuccess": partial })
    }
}

/// Converts and stores export requests; shared by the gRPC and HTTP receivers.
#[derive(Debug, Clone)]
pub struct Ingest {
    store: Arc<Store>,
    metrics: CollectorMetrics,
    limits: Limits,
    /// Bytes of requests admitted and not yet answered.
    inflight: Arc<AtomicUsize>,
}

/// A request's share of the memory ceiling, given back when it is answered.
#[derive(Debug)]
pub struct Admitted {
    inflight: Arc<AtomicUsize>,
    bytes: usize,
}

impl Admitted {
    /// Grows the reservation (e.g. once a body is decompressed).
    pub fn grow(&mut self, bytes: usize) {
        self.inflight.fetch_add(bytes, Ordering::AcqRel);
        self.bytes += bytes;
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.inflight.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// How long a refused sender should wait before retrying.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

use sightline_common::clock::now as now_ns;

impl Ingest {
    pub fn new(store: Arc<Store>, metrics: CollectorMetrics, limits: Limits) -> Self {
        Self {
            store,
            metrics,
            limits,
            inflight: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Memory in use: buffered rows, flush working memory, and requests being
    /// processed.
    pub fn memory_in_use(&self) -> usize {
        self.store.memory_in_use() + self.inflight.load(Ordering::Acquire)
    }

    /// Admits a request of `bytes` (its size on the wire, or an estimate) or refuses it as
    /// retryable when a ceiling is reached: the memory for buffered and in-flight data, or the
    /// write-ahead log's disk space. Refusing early costs the server almost nothing.
    pub fn admit(
        &self,
        signal: Signal,
        transport: Transport,
        bytes: usize,
    ) -> Result<Admitted, IngestError> {
        let refuse = |what: String| {
            // Make room: write every buffer to Parquet now.
            self.store.request_flush();
            tracing::debug!(signal = signal.name(), transport = transport.name(), %what, "refusing a request");
            IngestError::Unavailable {
                message: what,
                retry_after: RETRY_AFTER,
            }
        };
        let in_use = self.memory_in_use();
        if in_use.saturating_add(bytes) > self.limits.max_memory_bytes {
            return Err(refuse(format!(
                "Sightline is over its memory ceiling ({in_use} of {} bytes buffered or in \
                 flight); retry later",
                self.limits.max_memory_bytes
            )));
        }
        // The resident ceiling holds new data back only while Sightline holds data a flush
        // will free: memory the allocator keeps after a flush must never lock ingest out.
        if let (Some(ceiling), Some(rss)) =
            (self.limits.max_resident_bytes, self.store.resident_bytes())
            && rss as f64 >= ceiling as f64 * crate::limits::RESIDENT_ADMISSION_SHARE
            && in_use >= self.limits.max_memory_bytes / 8
        {
            return Err(refuse(format!(
                "Sightline's resident memory is near its ceiling ({rss} of {ceiling} bytes, \
                 {in_use} bytes of it buffered or in flight); retry later"
            )));
        }
        let wal = self.store.wal_disk_bytes();
        if wal > self.limits.max_wal_bytes {
            return Err(refuse(format!(
                "Sightline's write-ahead log is over its disk ceiling ({wal} of {} bytes); \
                 retry later",
                self.limits.max_wal_bytes
            )));
        }
        self.inflight.fetch_add(bytes, Ordering::AcqRel);
        Ok(Admitted {
            inflight: self.inflight.clone(),
            bytes,
        })
    }

    pub fn metrics(&self) -> &CollectorMetrics {
        &self.metrics
    }

    /// Counts a request that failed before conversion (undecodable, too large...).
    pub fn count_failure(&self, signal: Signal, transport: Transport, err: &IngestError) {
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                signal: signal.name(),
                transport: transport.name(),
                outcome: err.reason(),
            })
            .inc();
    }

    pub fn count_bytes(&self, signal: Signal, transport: Transport, bytes: usize) {
        self.metrics
            .received_bytes
            .get_or_create(&ItemLabels {
                signal: signal.name(),
                transport: transport.name(),
            })
            .inc_by(bytes as u64);
    }

    /// Stores what can be stored of `req`.
    ///
    /// # Errors
    /// [`IngestError`] for what the sender must hear: refused as retryable (memory, disk,
    /// shutting down) or malformed (the request is not stored).
    pub async fn export<R: ExportRequest>(
        &self,
        req: &R,
        transport: Transport,
    ) -> Result<Outcome, IngestError> {
        let result = self.export_inner(req).await;
        let labels = ItemLabels {
            signal: R::SIGNAL.name(),
            transport: transport.name(),
        };
        match &result {
            Ok(outcome) => {
                self.metrics
                    .accepted
                    .get_or_create(&labels)
                    .inc_by(outcome.accepted);
                self.metrics
                    .rejected
                    .get_or_create(&labels)
                    .inc_by(outcome.rejected);
                self.metrics
                    .requests
                    .get_or_create(&RequestLabels {
                        signal: labels.signal,
                        transport: labels.transport,
                        outcome: if outcome.rejected > 0 {
                            "partial"
                        } else {
                            "ok"
                        },
                    })
                    .inc();
            }
            Err(e) => self.count_failure(R::SIGNAL, transport, e),
        }
        result
    }

    async fn export_inner<R: ExportRequest>(&self, req: &R) -> Result<Outcome, IngestError> {
        let converted = req.convert(&ConvertContext::new(now_ns(), self.limits.items))?;
        let outcome = Outcome {
            accepted: converted.accepted,
            rejected: converted.rejected,
            message: converted.rejection,
        };
        if !converted.batches.is_empty() {
            self.store.write(converted.batches).await?;
        }
        Ok(outcome)
    }
}
