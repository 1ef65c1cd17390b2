//! How much memory a request will take once decoded, found before decoding it.
//!
//! A request's size on the wire says little about its decoded size: an empty `ResourceSpans`
//! is two bytes of protobuf (`{}` in JSON) but a struct of over a hundred bytes, and a packed
//! varint of one byte becomes eight. [`protobuf`] walks the wire format of an export request
//! without allocating — every nested message of the OTLP schema, every packed list — and
//! [`json`] counts the objects and values of an OTLP/JSON body; both give an estimate that
//! admission reserves before the decoder runs, so that a small, degenerate request is refused
//! instead of costing hundreds of megabytes.

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, exponential_histogram_data_point::Buckets,
    summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

use crate::ingest::Signal;

/// Nesting deeper than this is refused: prost's own limit, so that whatever prost decodes
/// is walked.
const MAX_DEPTH: usize = 100;

/// The message types of the OTLP export requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    TraceRequest,
    LogsRequest,
    MetricsRequest,
    ResourceSpans,
    ResourceLogs,
    ResourceMetrics,
    Resource,
    ScopeSpans,
    ScopeLogs,
    ScopeMetrics,
    Scope,
    Span,
    Event,
    Link,
    Status,
    LogRecord,
    Metric,
    Gauge,
    Sum,
    Histogram,
    ExpHistogram,
    Summary,
    NumberPoint,
    HistogramPoint,
    ExpHistogramPoint,
    Buckets,
    SummaryPoint,
    Quantile,
    Exemplar,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
    /// Messages of the schema Sightline does not read (entity refs): counted, not walked.
    Opaque,
}

/// What a field of a message holds.
enum Child {
    Message(Kind),
    /// A packed list of varints: each byte may become an 8-byte number.
    PackedVarints,
    /// A string, bytes, a scalar or a packed list of fixed-size numbers: about its wire size.
    Plain,
}

fn child(kind: Kind, field: u32) -> Child {
    use Child::{Message as M, PackedVarints as V, Plain as P};
    use Kind::*;
    match (kind, field) {
        (TraceRequest, 1) => M(ResourceSpans),
        (LogsRequest, 1) => M(ResourceLogs),
        (MetricsRequest, 1) => M(ResourceMetrics),
        (ResourceSpans | ResourceLogs | ResourceMetrics, 1) => M(Resource),
        (ResourceSpans, 2) => M(ScopeSpans),
        (ResourceLogs, 2) => M(ScopeLogs),
        (ResourceMetrics, 2) => M(ScopeMetrics),
        (Resource, 1) => M(KeyValue),
        (Resource, 3) => M(Opaque),
        (ScopeSpans | ScopeLogs | ScopeMetrics, 1) => M(Scope),
        (ScopeSpans, 2) => M(Span),
        (ScopeLogs, 2) => M(LogRecord),
        (ScopeMetrics, 2) => M(Metric),
        (Scope, 3) => M(KeyValue),
        (Span, 9) => M(KeyValue),
        (Span, 11) => M(Event),
        (Span, 13) => M(Link),
        (Span, 15) => M(Status),
        (Event, 3) | (Link, 4) => M(KeyValue),
        (LogRecord, 5) => M(AnyValue),
        (LogRecord, 6) => M(KeyValue),
        (Metric, 5) => M(Gauge),
        (Metric, 7) => M(Sum),
        (Metric, 9) => M(Histogram),
        (Metric, 10) => M(ExpHistogram),
        (Metric, 11) => M(Summary),
        (Metric, 12) => M(KeyValue),
        (Gauge | Sum, 1) => M(NumberPoint),
        (Histogram, 1) => M(HistogramPoint),
        (ExpHistogram, 1) => M(ExpHistogramPoint),
        (Summary, 1) => M(SummaryPoint),
        (NumberPoint, 7) | (HistogramPoint, 9) | (ExpHistogramPoint, 1) | (SummaryPoint, 7) => {
            M(KeyValue)
        }
        (NumberPoint, 5) | (HistogramPoint, 8) | (ExpHistogramPoint, 11) => M(Exemplar),
        (ExpHistogramPoint, 8 | 9) => M(Buckets),
        (Buckets, 2) => V,
        (SummaryPoint, 6) => M(Quantile),
        (Exemplar, 7) => M(KeyValue),
        (KeyValue, 2) => M(AnyValue),
        (AnyValue, 5) => M(ArrayValue),
        (AnyValue, 6) => M(KeyValueList),
        (ArrayValue, 1) => M(AnyValue),
        (KeyValueList, 1) => M(KeyValue),
        _ => P,
    }
}

/// Bytes of the decoded struct of a message of `kind` (its heap parts are counted apart).
fn struct_bytes(kind: Kind) -> usize {
    use std::mem::size_of;
    match kind {
        Kind::TraceRequest | Kind::LogsRequest | Kind::MetricsRequest => 24,
        Kind::ResourceSpans => size_of::<ResourceSpans>(),
        Kind::ResourceLogs => size_of::<ResourceLogs>(),
        Kind::ResourceMetrics => size_of::<ResourceMetrics>(),
        Kind::Resource => size_of::<Resource>(),
        Kind::ScopeSpans => size_of::<ScopeSpans>(),
        Kind::ScopeLogs => size_of::<ScopeLogs>(),
        Kind::ScopeMetrics => size_of::<ScopeMetrics>(),
        Kind::Scope => size_of::<InstrumentationScope>(),
        Kind::Span => size_of::<Span>(),
        Kind::Event => size_of::<Event>(),
        Kind::Link => size_of::<Link>(),
        Kind::Status => size_of::<Status>(),
        Kind::LogRecord => size_of::<LogRecord>(),
        Kind::Metric => size_of::<Metric>(),
        Kind::Gauge => size_of::<Gauge>(),
        Kind::Sum => size_of::<Sum>(),
        Kind::Histogram => size_of::<Histogram>(),
        Kind::ExpHistogram => size_of::<ExponentialHistogram>(),
        Kind::Summary => size_of::<Summary>(),
        Kind::NumberPoint => size_of::<NumberDataPoint>(),
        Kind::HistogramPoint => size_of::<HistogramDataPoint>(),
        Kind::ExpHistogramPoint => size_of::<ExponentialHistogramDataPoint>(),
        Kind::Buckets => size_of::<Buckets>(),
        Kind::SummaryPoint => size_of::<SummaryDataPoint>(),
        Kind::Quantile => size_of::<ValueAtQuantile>(),
        Kind::Exemplar => size_of::<Exemplar>(),
        Kind::KeyValue => size_of::<KeyValue>(),
        Kind::AnyValue => size_of::<AnyValue>(),
        Kind::ArrayValue => size_of::<ArrayValue>(),
        Kind::KeyValueList => size_of::<KeyValueList>(),
        Kind::Opaque => 64,
    }
}

/// What the walk of a request found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    /// Nested messages (JSON: objects).
    pub messages: u64,
    /// Bytes the decoded request is estimated to take.
    pub memory_bytes: u64,
}

/// Why a body cannot even be walked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("invalid protobuf: {0}")]
    Protobuf(&'static str),
    #[error("values nested more than {MAX_DEPTH} deep")]
    TooDeep,
}

fn varint(buf: &mut &[u8]) -> Result<u64, ShapeError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf
            .split_first()
            .ok_or(ShapeError::Protobuf("truncated varint"))?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(ShapeError::Protobuf("varint longer than 10 bytes"))
}

fn take<'a>(buf: &mut &'a [u8], n: u64) -> Result<&'a [u8], ShapeError> {
    let n = usize::try_from(n).map_err(|_| ShapeError::Protobuf("length out of range"))?;
    if buf.len() < n {
        return Err(ShapeError::Protobuf("field runs past the end"));
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

/// Walks one message of `kind`, adding what it will cost to `shape`.
fn walk(kind: Kind, mut buf: &[u8], depth: usize, shape: &mut Shape) -> Result<(), ShapeError> {
    if depth > MAX_DEPTH {
        return Err(ShapeError::TooDeep);
    }
    shape.messages += 1;
    shape.memory_bytes += struct_bytes(kind) as u64;
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let field = u32::try_from(key >> 3).map_err(|_| ShapeError::Protobuf("field number"))?;
        match key & 7 {
            0 => {
                varint(&mut buf)?;
            }
            1 => {
                take(&mut buf, 8)?;
            }
            5 => {
                take(&mut buf, 4)?;
            }
            2 => {
                let len = varint(&mut buf)?;
                let bytes = take(&mut buf, len)?;
                match child(kind, field) {
                    Child::Message(Kind::Opaque) => {
                        shape.messages += 1;
                        shape.memory_bytes += (struct_bytes(Kind::Opaque) + bytes.len()) as u64;
                    }
                    Child::Message(k) => walk(k, bytes, depth + 1, shape)?,
                    Child::PackedVarints => shape.memory_bytes += 8 * bytes.len() as u64,
                    Child::Plain => shape.memory_bytes += bytes.len() as u64,
                }
            }
            3 => {
                let start = buf.len();
                skip_group(&mut buf, field, depth + 1)?;
                shape.memory_bytes += (start - buf.len()) as u64;
            }
            _ => return Err(ShapeError::Protobuf("unsupported wire type")),
        }
    }
    Ok(())
}

/// Skips a (deprecated) group up to its end, as prost does for fields it does not know.
fn skip_group(buf: &mut &[u8], field: u32, depth: usize) -> Result<(), ShapeError> {
    if depth > MAX_DEPTH {
        return Err(ShapeError::TooDeep);
    }
    loop {
        let key = varint(buf)?;
        let inner = u32::try_from(key >> 3).map_err(|_| ShapeError::Protobuf("field number"))?;
        match key & 7 {
            0 => {
                varint(buf)?;
            }
            1 => {
                take(buf, 8)?;
            }
            5 => {
                take(buf, 4)?;
            }
            2 => {
                let len = varint(buf)?;
                take(buf, len)?;
            }
            3 => skip_group(buf, inner, depth + 1)?,
            4 if inner == field => return Ok(()),
            _ => return Err(ShapeError::Protobuf("unmatched group end")),
        }
    }
}

/// The shape of a protobuf export request of `signal`.
///
/// # Errors
/// When the bytes are not protobuf, or nest deeper than prost would decode.
pub fn protobuf(signal: Signal, bytes: &[u8]) -> Result<Shape, ShapeError> {
    let kind = match signal {
        Signal::Traces => Kind::TraceRequest,
        Signal::Logs => Kind::LogsRequest,
        Signal::Metrics => Kind::MetricsRequest,
    };
    let mut shape = Shape::default();
    walk(kind, bytes, 0, &mut shape)?;
    Ok(shape)
}

/// What one JSON object or value may become at most: the largest OTLP struct, and the value
/// of a list.
const JSON_OBJECT_BYTES: u64 = 320;
const JSON_VALUE_BYTES: u64 = 16;

/// The shape of an OTLP/JSON body: objects and values are counted outside strings.
///
/// # Errors
/// When objects and arrays nest deeper than the decoder would go.
pub fn json(bytes: &[u8]) -> Result<Shape, ShapeError> {
    let (mut objects, mut values, mut depth) = (0u64, 0u64, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > 2 * MAX_DEPTH {
                    return Err(ShapeError::TooDeep);
                }
                if b == b'{' {
                    objects += 1;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' => values += 1,
            _ => {}
        }
    }
    Ok(Shape {
        messages: objects,
        memory_bytes: bytes.len() as u64 + objects * JSON_OBJECT_BYTES + values * JSON_VALUE_BYTES,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;

    #[test]
    fn a_real_request_is_walked_to_every_message() {
        let kv = |k: &str| KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(
                    opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                        "v".into(),
                    ),
                ),
            }),
            ..Default::default()
        };
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "s".into(),
            attributes: vec![kv("a"), kv("b")],
            ..Default::default()
        };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![span.clone(), span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let bytes = req.encode_to_vec();
        let shape = protobuf(Signal::Traces, &bytes).expect("walks");
        // request, resource spans, resource, its kv + value, scope spans, 2 spans with 2
        // attributes each (kv + value).
        assert_eq!(shape.messages, 1 + 1 + 1 + 2 + 1 + 2 * (1 + 4));
        assert!(shape.memory_bytes as usize >= 2 * std::mem::size_of::<Span>());
    }

    #[test]
    fn degenerate_requests_are_seen_for_what_they_cost() {
        // Two bytes per empty ResourceSpans: the struct is far bigger.
        let empty: Vec<u8> = [0x0a, 0x00].repeat(100_000);
        let shape = protobuf(Signal::Traces, &empty).expect("walks");
        assert_eq!(shape.messages, 100_001);
        assert!(shape.memory_bytes > 50 * empty.len() as u64, "{shape:?}");
        let json_body = format!("{{\"resourceSpans\":[{}]}}", vec!["{}"; 100_000].join(","));
        let shape = json(json_body.as_bytes()).expect("walks");
        assert_eq!(shape.messages, 100_001);
        assert!(
            shape.memory_bytes > 50 * json_body.len() as u64,
            "{shape:?}"
        );
    }

    #[test]
    fn garbage_and_nesting_too_deep_are_refused() {
        assert!(protobuf(Signal::Logs, &[0x0a, 0x05, 0x01]).is_err());
        assert!(protobuf(Signal::Logs, &[0x0b]).is_err(), "group wire type");
        // AnyValue → ArrayValue → AnyValue ... 100 levels deep inside a log body.
        let mut inner: Vec<u8> = Vec::new();
        for _ in 0..100 {
            let mut array = vec![0x0a];
            array.extend(encode_len(inner.len()));
            array.extend(&inner);
            let mut any = vec![0x2a];
            any.extend(encode_len(array.len()));
            any.extend(&array);
            inner = any;
        }
        let err = walk(Kind::AnyValue, &inner, 0, &mut Shape::default()).expect_err("deep");
        assert_eq!(err, ShapeError::TooDeep);
        assert_eq!(json(&b"[".repeat(1000)), Err(ShapeError::TooDeep));
    }

    fn encode_len(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        prost::encoding::encode_varint(n as u64, &mut out);
        out
    }
}
