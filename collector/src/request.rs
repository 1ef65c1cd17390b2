//! What differs between the three OTLP export requests (traces, metrics, logs): how each is
//! converted and answered, how many items it carries (what a tenant's rate counts) and how
//! many bytes its rows will take (what admission reserves before converting).

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric::Data};

use crate::convert::{self, ConvertContext, Converted};
use crate::ingest::Signal;
use crate::limits::ItemLimits;

/// An OTLP export request type, with what differs between the signals.
pub trait ExportRequest:
    prost::Message + Default + serde::de::DeserializeOwned + Send + Sync + 'static
{
    const SIGNAL: Signal;
    /// Name of the `rejected_<items>` field in OTLP/JSON.
    const REJECTED_FIELD: &'static str;
    /// The OTLP/gRPC service that receives it.
    const GRPC_SERVICE: &'static str;
    type Response: prost::Message + Default + Send + 'static;

    fn convert(&self, ctx: &ConvertContext) -> Result<Converted, arrow::error::ArrowError>;
    fn response(rejected: i64, message: String) -> Self::Response;
    /// Bytes the stored rows will take, at most: every item with its resource's and scope's
    /// attributes (as far as `limits` keep them) copied in — the resource is stored once per
    /// row.
    fn stored_bytes(&self, limits: &ItemLimits) -> u64;
    /// Spans, data points or log records in the request (what a tenant's rate counts).
    fn items(&self) -> u64;
}

/// Bytes of what `limits` can keep of `attrs`, at most: the largest `max_attributes` of
/// them, each no longer than the longest key and value. Linear in the list's length.
fn kept_bytes(attrs: &[KeyValue], limits: &ItemLimits) -> usize {
    use prost::Message as _;
    let most = limits.max_key_bytes + limits.max_value_bytes + 16;
    let mut sizes: Vec<usize> = attrs.iter().map(|kv| kv.encoded_len().min(most)).collect();
    if sizes.len() > limits.max_attributes && limits.max_attributes > 0 {
        sizes.select_nth_unstable_by(limits.max_attributes - 1, |a, b| b.cmp(a));
        sizes.truncate(limits.max_attributes);
    }
    sizes.iter().sum()
}

fn scope_bytes(
    scope: &opentelemetry_proto::tonic::common::v1::InstrumentationScope,
    limits: &ItemLimits,
) -> usize {
    scope.name.len() + scope.version.len() + kept_bytes(&scope.attributes, limits)
}

/// Bytes of the rows of `items` items of `item_bytes` under a resource and a scope of those
/// encoded sizes (attributes are stored twice: as text, and their types).
fn rows_bytes(resource: usize, scope: usize, items: usize, item_bytes: usize) -> u64 {
    (2 * (resource + scope) * items + 2 * item_bytes) as u64
}

impl ExportRequest for ExportTraceServiceRequest {
    const SIGNAL: Signal = Signal::Traces;
    const REJECTED_FIELD: &'static str = "rejectedSpans";
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    type Response = ExportTraceServiceResponse;

    fn convert(&self, ctx: &ConvertContext) -> Result<Converted, arrow::error::ArrowError> {
        convert::traces::convert(self, ctx)
    }

    fn stored_bytes(&self, limits: &ItemLimits) -> u64 {
        use prost::Message as _;
        let mut total = 0;
        for rs in &self.resource_spans {
            let resource = rs
                .resource
                .as_ref()
                .map_or(0, |r| kept_bytes(&r.attributes, limits));
            for ss in &rs.scope_spans {
                let scope = ss.scope.as_ref().map_or(0, |s| scope_bytes(s, limits));
                let items: usize = ss.spans.iter().map(|s| s.encoded_len()).sum();
                total += rows_bytes(resource, scope, ss.spans.len(), items);
            }
        }
        total
    }

    fn items(&self) -> u64 {
        self.resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len() as u64)
            .sum()
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

/// The data points of a metric, whatever its type.
fn points(m: &Metric) -> usize {
    match &m.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

impl ExportRequest for ExportMetricsServiceRequest {
    const SIGNAL: Signal = Signal::Metrics;
    const REJECTED_FIELD: &'static str = "rejectedDataPoints";
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    type Response = ExportMetricsServiceResponse;

    fn convert(&self, ctx: &ConvertContext) -> Result<Converted, arrow::error::ArrowError> {
        convert::metrics::convert(self, ctx)
    }

    fn stored_bytes(&self, limits: &ItemLimits) -> u64 {
        use prost::Message as _;
        let mut total = 0;
        for rm in &self.resource_metrics {
            let resource = rm
                .resource
                .as_ref()
                .map_or(0, |r| kept_bytes(&r.attributes, limits));
            for sm in &rm.scope_metrics {
                let scope = sm.scope.as_ref().map_or(0, |s| scope_bytes(s, limits));
                for m in &sm.metrics {
                    // Every point also carries the metric's name, unit and description.
                    let head = m.name.len() + m.unit.len() + m.description.len();
                    total += rows_bytes(resource, scope + head, points(m), m.encoded_len());
                }
            }
        }
        total
    }

    fn items(&self) -> u64 {
        self.resource_metrics
            .iter()
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|sm| &sm.metrics)
            .map(|m| points(m) as u64)
            .sum()
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
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    type Response = ExportLogsServiceResponse;

    fn convert(&self, ctx: &ConvertContext) -> Result<Converted, arrow::error::ArrowError> {
        convert::logs::convert(self, ctx)
    }

    fn stored_bytes(&self, limits: &ItemLimits) -> u64 {
        use prost::Message as _;
        let mut total = 0;
        for rl in &self.resource_logs {
            let resource = rl
                .resource
                .as_ref()
                .map_or(0, |r| kept_bytes(&r.attributes, limits));
            for sl in &rl.scope_logs {
                let scope = sl.scope.as_ref().map_or(0, |s| scope_bytes(s, limits));
                let items: usize = sl.log_records.iter().map(|l| l.encoded_len()).sum();
                total += rows_bytes(resource, scope, sl.log_records.len(), items);
            }
        }
        total
    }

    fn items(&self) -> u64 {
        self.resource_logs
            .iter()
            .flat_map(|rl| &rl.scope_logs)
            .map(|sl| sl.log_records.len() as u64)
            .sum()
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
