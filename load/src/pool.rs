//! The requests a run sends: built before the clock starts (encoded, and gzip'd for
//! OTLP/HTTP), then rotated by the workers.

use std::io::Write as _;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::metrics::v1::metric;
use prost::Message as _;
use prost::bytes::Bytes;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tonic::codegen::http::uri::PathAndQuery;

use crate::generate::{
    logs::gen_logs_request, metrics::gen_metrics_request, now_ns, traces::gen_trace_request,
};
use crate::{GZIP_LEVEL, LoadError, SignalArg};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    Traces = 0,
    Logs = 1,
    Metrics = 2,
}

impl Signal {
    const ALL: [Signal; 3] = [Signal::Traces, Signal::Logs, Signal::Metrics];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        }
    }

    pub(crate) fn item_name(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Logs => "log_records",
            Signal::Metrics => "data_points",
        }
    }

    pub(crate) fn http_path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Logs => "/v1/logs",
            Signal::Metrics => "/v1/metrics",
        }
    }

    pub(crate) fn grpc_path(self) -> PathAndQuery {
        PathAndQuery::from_static(match self {
            Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        })
    }
}

impl SignalArg {
    pub(crate) fn signals(self) -> Vec<Signal> {
        match self {
            SignalArg::Traces => vec![Signal::Traces],
            SignalArg::Logs => vec![Signal::Logs],
            SignalArg::Metrics => vec![Signal::Metrics],
            SignalArg::Mixed => Signal::ALL.to_vec(),
        }
    }

    pub(crate) fn items_label(self) -> &'static str {
        match self {
            SignalArg::Traces => "spans",
            SignalArg::Logs => "log records",
            SignalArg::Metrics => "data points",
            SignalArg::Mixed => "items",
        }
    }
}

/// One pre-built export request.
pub(crate) struct Payload {
    pub(crate) signal: Signal,
    /// Plain protobuf (gRPC message; tonic gzips it per message when --gzip).
    pub(crate) proto: Bytes,
    /// OTLP/HTTP body: `proto`, gzip'd when --gzip.
    pub(crate) http_body: Bytes,
    /// Items in the request (spans / log records / data points).
    pub(crate) items: u64,
    /// gRPC bytes on the wire (5-byte frame header + message, compressed size when --gzip).
    pub(crate) grpc_wire_bytes: u64,
}

pub(crate) fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::new(GZIP_LEVEL),
    );
    enc.write_all(data)?;
    enc.finish()
}

pub(crate) fn build_payload(
    signal: Signal,
    batch: usize,
    gzip_on: bool,
    rng: &mut StdRng,
) -> Result<Payload, LoadError> {
    let now = now_ns();
    let (proto, items) = match signal {
        Signal::Traces => {
            let req = gen_trace_request(rng, batch, now);
            (req.encode_to_vec(), count_spans(&req))
        }
        Signal::Logs => {
            let req = gen_logs_request(rng, batch, now);
            (req.encode_to_vec(), count_log_records(&req))
        }
        Signal::Metrics => {
            let req = gen_metrics_request(rng, batch, now);
            (req.encode_to_vec(), count_data_points(&req))
        }
    };
    let proto = Bytes::from(proto);
    // With --gzip the HTTP body is gzip'd here; gRPC bodies are compressed by tonic per
    // message, with the same level, so the compressed length also estimates gRPC wire bytes.
    let http_body = if gzip_on {
        Bytes::from(gzip(&proto).map_err(|e| LoadError::Failed(format!("gzip: {e}")))?)
    } else {
        proto.clone()
    };
    let grpc_msg_len = http_body.len();
    Ok(Payload {
        signal,
        proto,
        http_body,
        items,
        grpc_wire_bytes: 5 + grpc_msg_len as u64,
    })
}

/// Builds `pool_size` requests per signal; for several signals they are interleaved so that
/// rotating through the pool alternates traces, logs and metrics.
pub(crate) fn build_pool(
    signals: &[Signal],
    pool_size: usize,
    batch: usize,
    gzip_on: bool,
    seed: u64,
) -> Result<Vec<Payload>, LoadError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pool = Vec::with_capacity(pool_size * signals.len());
    for _ in 0..pool_size {
        for &s in signals {
            pool.push(build_payload(s, batch, gzip_on, &mut rng)?);
        }
    }
    Ok(pool)
}

pub(crate) fn count_spans(req: &ExportTraceServiceRequest) -> u64 {
    req.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len() as u64)
        .sum()
}

pub(crate) fn count_log_records(req: &ExportLogsServiceRequest) -> u64 {
    req.resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len() as u64)
        .sum()
}

pub(crate) fn count_data_points(req: &ExportMetricsServiceRequest) -> u64 {
    req.resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.len() as u64,
            Some(metric::Data::Sum(s)) => s.data_points.len() as u64,
            Some(metric::Data::Histogram(h)) => h.data_points.len() as u64,
            Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len() as u64,
            Some(metric::Data::Summary(s)) => s.data_points.len() as u64,
            None => 0,
        })
        .sum()
}

/// Items the server refused in an otherwise successful export (OTLP partial success).
pub(crate) fn decode_rejected(signal: Signal, body: &[u8]) -> Result<u64, prost::DecodeError> {
    let n = match signal {
        Signal::Traces => ExportTraceServiceResponse::decode(body)?
            .partial_success
            .map_or(0, |p| p.rejected_spans),
        Signal::Logs => ExportLogsServiceResponse::decode(body)?
            .partial_success
            .map_or(0, |p| p.rejected_log_records),
        Signal::Metrics => ExportMetricsServiceResponse::decode(body)?
            .partial_success
            .map_or(0, |p| p.rejected_data_points),
    };
    Ok(u64::try_from(n).unwrap_or(0))
}
