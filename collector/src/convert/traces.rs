//! Traces: one `spans` row per span, and one `trace_fragments` row per trace in the request.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Builder, StringBuilder, UInt32Builder};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind, status::StatusCode};
use sightline_store::Table;
use sightline_store::schema::{event_fields, link_fields};

use super::{
    ConvertContext, Converted, ResourceScope, ResourceScopeColumns, check_id, non_empty,
    service_name, struct_list, time_ns, ts_builder,
};
use crate::attributes::{self, AttrColumns};
use crate::limits::ItemLimits;

pub fn kind_name(kind: i32) -> &'static str {
    match SpanKind::try_from(kind) {
        Ok(SpanKind::Server) => "server",
        Ok(SpanKind::Client) => "client",
        Ok(SpanKind::Producer) => "producer",
        Ok(SpanKind::Consumer) => "consumer",
        // Unspecified and unknown values are treated as internal, as the spec allows.
        _ => "internal",
    }
}

pub fn status_name(code: i32) -> &'static str {
    match StatusCode::try_from(code) {
        Ok(StatusCode::Ok) => "ok",
        Ok(StatusCode::Error) => "error",
        _ => "unset",
    }
}

/// Checks that a span can be stored; the error says why not.
fn validate(span: &Span, ctx: &ConvertContext) -> Result<(i64, i64), String> {
    check_id("trace_id", &span.trace_id, 16)?;
    check_id("span_id", &span.span_id, 8)?;
    if !span.parent_span_id.is_empty() {
        check_id("parent_span_id", &span.parent_span_id, 8)?;
    }
    for link in &span.links {
        check_id("link trace_id", &link.trace_id, 16)?;
        check_id("link span_id", &link.span_id, 8)?;
    }
    for event in &span.events {
        time_ns("event time_unix_nano", event.time_unix_nano)?;
    }
    let start = time_ns("start_time_unix_nano", span.start_time_unix_nano)?;
    let end = time_ns("end_time_unix_nano", span.end_time_unix_nano)?;
    ctx.check_window("start_time_unix_nano", start)?;
    Ok((start, end))
}

#[derive(Debug, Default)]
struct Fragment {
    start: i64,
    end: i64,
    root_service: Option<String>,
    root_name: Option<String>,
    spans: i64,
    errors: i64,
}

#[derive(Debug, Default)]
struct Columns {
    trace_id: StringBuilder,
    span_id: StringBuilder,
    parent_span_id: StringBuilder,
    trace_state: StringBuilder,
    name: StringBuilder,
    kind: StringBuilder,
    start: Vec<i64>,
    end: Vec<i64>,
    duration: Int64Builder,
    status_code: StringBuilder,
    status_message: StringBuilder,
    rs: ResourceScopeColumns,
    http_route: StringBuilder,
    http_method: StringBuilder,
    http_status: Int64Builder,
    attrs: AttrColumns,
    flags: UInt32Builder,
    dropped_attrs: UInt32Builder,
    dropped_events: UInt32Builder,
    dropped_links: UInt32Builder,
    // events, flattened
    ev_offsets: Vec<i32>,
    ev_time: Vec<i64>,
    ev_name: StringBuilder,
    ev_attrs: AttrColumns,
    ev_dropped: UInt32Builder,
    // links, flattened
    ln_offsets: Vec<i32>,
    ln_trace_id: StringBuilder,
    ln_span_id: StringBuilder,
    ln_trace_state: StringBuilder,
    ln_attrs: AttrColumns,
    ln_dropped: UInt32Builder,
    ln_flags: UInt32Builder,
}

impl Columns {
    fn append(
        &mut self,
        rs: &ResourceScope<'_>,
        span: &Span,
        start: i64,
        end: i64,
        limits: &ItemLimits,
    ) {
        self.trace_id.append_value(hex::encode(&span.trace_id));
        self.span_id.append_value(hex::encode(&span.span_id));
        self.parent_span_id.append_option(
            (!span.parent_span_id.is_empty()).then(|| hex::encode(&span.parent_span_id)),
        );
        self.trace_state.append_option(non_empty(&span.trace_state));
        self.name.append_value(&span.name);
        self.kind.append_value(kind_name(span.kind));
        self.start.push(start);
        self.end.push(end);
        self.duration.append_value(end.saturating_sub(start));
        let status = span.status.as_ref();
        self.status_code
            .append_value(status_name(status.map_or(0, |s| s.code)));
        self.status_message
            .append_option(status.and_then(|s| non_empty(&s.message)));
        self.rs.append(rs);
        let a = &span.attributes;
        self.http_route
            .append_option(attributes::find_str(a, "http.route"));
        self.http_method.append_option(
            attributes::find_str(a, "http.request.method")
                .or_else(|| attributes::find_str(a, "http.method")),
        );
        self.http_status.append_option(
            attributes::find_int(a, "http.response.status_code")
                .or_else(|| attributes::find_int(a, "http.status_code")),
        );
        let dropped_attrs = self.attrs.append(a, limits);
        self.flags.append_value(span.flags);
        let over = |n: usize, max: usize| u32::try_from(n.saturating_sub(max)).unwrap_or(u32::MAX);
        self.dropped_attrs
            .append_value(span.dropped_attributes_count.saturating_add(dropped_attrs));
        self.dropped_events.append_value(
            span.dropped_events_count
                .saturating_add(over(span.events.len(), limits.max_events)),
        );
        self.dropped_links.append_value(
            span.dropped_links_count
                .saturating_add(over(span.links.len(), limits.max_links)),
        );

        for e in span.events.iter().take(limits.max_events) {
            // Validated before: the time fits.
            self.ev_time.push(e.time_unix_nano as i64);
            self.ev_name.append_value(&e.name);
            let dropped = self.ev_attrs.append(&e.attributes, limits);
            self.ev_dropped
                .append_value(e.dropped_attributes_count.saturating_add(dropped));
        }
        self.ev_offsets.push(self.ev_time.len() as i32);
        for l in span.links.iter().take(limits.max_links) {
            self.ln_trace_id.append_value(hex::encode(&l.trace_id));
            self.ln_span_id.append_value(hex::encode(&l.span_id));
            self.ln_trace_state.append_option(non_empty(&l.trace_state));
            let dropped = self.ln_attrs.append(&l.attributes, limits);
            self.ln_dropped
                .append_value(l.dropped_attributes_count.saturating_add(dropped));
            self.ln_flags.append_value(l.flags);
        }
        self.ln_offsets
            .push(arrow::array::ArrayBuilder::len(&self.ln_flags) as i32);
    }

    fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let [service, res_attrs, res_types, scope_name, scope_version] = self.rs.finish();
        let (attrs, attr_types) = self.attrs.finish();
        let mut ev_time = ts_builder();
        ev_time.append_slice(&self.ev_time);
        let (ev_attrs, ev_types) = self.ev_attrs.finish();
        let events = struct_list(
            event_fields(),
            vec![
                Arc::new(ev_time.finish()),
                Arc::new(self.ev_name.finish()),
                ev_attrs,
                ev_types,
                Arc::new(self.ev_dropped.finish()),
            ],
            self.ev_offsets,
        )?;
        let (ln_attrs, ln_types) = self.ln_attrs.finish();
        let links = struct_list(
            link_fields(),
            vec![
                Arc::new(self.ln_trace_id.finish()),
                Arc::new(self.ln_span_id.finish()),
                Arc::new(self.ln_trace_state.finish()),
                ln_attrs,
                ln_types,
                Arc::new(self.ln_dropped.finish()),
                Arc::new(self.ln_flags.finish()),
            ],
            self.ln_offsets,
        )?;
        let mut start = ts_builder();
        start.append_slice(&self.start);
        let mut end = ts_builder();
        end.append_slice(&self.end);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.parent_span_id.finish()),
            Arc::new(self.trace_state.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(start.finish()),
            Arc::new(end.finish()),
            Arc::new(self.duration.finish()),
            Arc::new(self.status_code.finish()),
            Arc::new(self.status_message.finish()),
            service,
            res_attrs,
            res_types,
            scope_name,
            scope_version,
            Arc::new(self.http_route.finish()),
            Arc::new(self.http_method.finish()),
            Arc::new(self.http_status.finish()),
            attrs,
            attr_types,
            events,
            links,
            Arc::new(self.flags.finish()),
            Arc::new(self.dropped_attrs.finish()),
            Arc::new(self.dropped_events.finish()),
            Arc::new(self.dropped_links.finish()),
        ];
        RecordBatch::try_new(Table::Spans.schema(), columns)
    }
}

fn fragments_batch(
    order: &[String],
    frags: &HashMap<String, Fragment>,
) -> Result<RecordBatch, ArrowError> {
    let mut trace_id = StringBuilder::new();
    let mut start = ts_builder();
    let mut end = ts_builder();
    let mut root_service = StringBuilder::new();
    let mut root_name = StringBuilder::new();
    let mut spans = Int64Builder::new();
    let mut errors = Int64Builder::new();
    for id in order {
        let Some(f) = frags.get(id) else { continue };
        trace_id.append_value(id);
        start.append_value(f.start);
        end.append_value(f.end);
        root_service.append_option(f.root_service.as_deref());
        root_name.append_option(f.root_name.as_deref());
        spans.append_value(f.spans);
        errors.append_value(f.errors);
    }
    RecordBatch::try_new(
        Table::TraceFragments.schema(),
        vec![
            Arc::new(trace_id.finish()),
            Arc::new(start.finish()),
            Arc::new(end.finish()),
            Arc::new(root_service.finish()),
            Arc::new(root_name.finish()),
            Arc::new(spans.finish()),
            Arc::new(errors.finish()),
        ],
    )
}

/// Converts a trace export request.
pub fn convert(
    req: &ExportTraceServiceRequest,
    ctx: &ConvertContext,
) -> Result<Converted, ArrowError> {
    let mut out = Converted::default();
    let mut cols = Columns {
        ev_offsets: vec![0],
        ln_offsets: vec![0],
        ..Default::default()
    };
    let mut order: Vec<String> = Vec::new();
    let mut frags: HashMap<String, Fragment> = HashMap::new();
    for rs in &req.resource_spans {
        let resource_attrs = rs
            .resource
            .as_ref()
            .map_or(&[][..], |r| r.attributes.as_slice());
        let service = service_name(resource_attrs);
        // Resolved once: every item under the resource shares it.
        let resource_attrs = &attributes::Resolved::new(resource_attrs, &ctx.limits);
        for ss in &rs.scope_spans {
            let scope = ss.scope.as_ref();
            let scope_ctx = ResourceScope {
                service,
                resource_attrs,
                scope_name: scope.and_then(|s| non_empty(&s.name)),
                scope_version: scope.and_then(|s| non_empty(&s.version)),
            };
            for span in &ss.spans {
                let (start, end) = match validate(span, ctx) {
                    Ok(t) => t,
                    Err(reason) => {
                        out.reject(|| format!("span {:?}: {reason}", span.name));
                        continue;
                    }
                };
                cols.append(&scope_ctx, span, start, end, &ctx.limits);
                out.accepted += 1;
                let tid = hex::encode(&span.trace_id);
                let f = frags.entry(tid.clone()).or_insert_with(|| {
                    order.push(tid);
                    Fragment {
                        start,
                        end,
                        ..Default::default()
                    }
                });
                f.start = f.start.min(start);
                f.end = f.end.max(end);
                f.spans += 1;
                if span
                    .status
                    .as_ref()
                    .is_some_and(|s| s.code == StatusCode::Error as i32)
                {
                    f.errors += 1;
                }
                if span.parent_span_id.is_empty() {
                    f.root_service = Some(service.to_string());
                    f.root_name = Some(span.name.clone());
                }
            }
        }
    }
    if out.accepted > 0 {
        out.batches.push((Table::Spans, cols.finish()?));
        out.batches
            .push((Table::TraceFragments, fragments_batch(&order, &frags)?));
    }
    Ok(out)
}
