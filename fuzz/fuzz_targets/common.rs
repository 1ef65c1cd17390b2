//! Shared by the fuzz targets: decode the input as each OTLP request type and, when it decodes,
//! convert it to Arrow exactly as the receivers do. Nothing may panic, whatever the input.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use sightline_collector::convert::{ConvertContext, logs, metrics, traces};
use sightline_collector::decode::{Format, decode};
use sightline_collector::limits::ItemLimits;

/// A fixed arrival time inside the fuzzer's likely timestamps, so the window check is exercised.
const NOW_NS: i64 = 1_764_318_000_000_000_000;

pub fn run(data: &[u8], format: Format) {
    let ctx = ConvertContext::new(NOW_NS, ItemLimits::default());
    if let Ok(req) = decode::<ExportTraceServiceRequest>(data, format) {
        let _ = traces::convert(&req, &ctx);
    }
    if let Ok(req) = decode::<ExportMetricsServiceRequest>(data, format) {
        let _ = metrics::convert(&req, &ctx);
    }
    if let Ok(req) = decode::<ExportLogsServiceRequest>(data, format) {
        let _ = logs::convert(&req, &ctx);
    }
}
