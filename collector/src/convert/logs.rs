//! Logs: one `logs` row per log record.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Builder, StringBuilder, UInt32Builder};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use sightline_store::Table;

use super::{
    ConvertContext, Converted, ResourceScope, ResourceScopeColumns, check_id, non_empty,
    service_name, time_ns, ts_builder,
};
use crate::attributes::{AttrColumns, any_value_parts};
use crate::limits::ItemLimits;

/// Checks a record; returns its (time, observed time) in ns. A record without a time takes
/// its observed time, and one without either takes the arrival time.
fn validate(r: &LogRecord, ctx: &ConvertContext) -> Result<(i64, i64), String> {
    let received_ns = ctx.received_ns;
    if !r.trace_id.is_empty() {
        check_id("trace_id", &r.trace_id, 16)?;
    }
    if !r.span_id.is_empty() {
        check_id("span_id", &r.span_id, 8)?;
    }
    if !(0..=24).contains(&r.severity_number) {
        return Err(format!(
            "severity_number {} is outside 0..=24",
            r.severity_number
        ));
    }
    let observed = match time_ns("observed_time_unix_nano", r.observed_time_unix_nano)? {
        0 => received_ns,
        t => t,
    };
    let time = match time_ns("time_unix_nano", r.time_unix_nano)? {
        0 => observed,
        t => t,
    };
    ctx.check_window("time_unix_nano", time)?;
    Ok((time, observed))
}

#[derive(Debug, Default)]
struct Columns {
    time: Vec<i64>,
    observed: Vec<i64>,
    severity_number: Int32Builder,
    severity_text: StringBuilder,
    body: StringBuilder,
    body_type: StringBuilder,
    trace_id: StringBuilder,
    span_id: StringBuilder,
    flags: UInt32Builder,
    event_name: StringBuilder,
    rs: ResourceScopeColumns,
    attrs: AttrColumns,
    dropped: UInt32Builder,
}

impl Columns {
    fn append(
        &mut self,
        ctx: &ResourceScope<'_>,
        r: &LogRecord,
        time: i64,
        observed: i64,
        limits: &ItemLimits,
    ) {
        self.time.push(time);
        self.observed.push(observed);
        self.severity_number.append_value(r.severity_number);
        self.severity_text
            .append_option(non_empty(&r.severity_text));
        let (body, body_type) = any_value_parts(r.body.as_ref(), limits);
        self.body.append_option(body);
        self.body_type.append_option(body_type);
        self.trace_id
            .append_option((!r.trace_id.is_empty()).then(|| hex::encode(&r.trace_id)));
        self.span_id
            .append_option((!r.span_id.is_empty()).then(|| hex::encode(&r.span_id)));
        self.flags.append_value(r.flags);
        self.event_name.append_option(non_empty(&r.event_name));
        self.rs.append(ctx);
        let dropped = self.attrs.append(&r.attributes, limits);
        self.dropped
            .append_value(r.dropped_attributes_count.saturating_add(dropped));
    }

    fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let [service, res_attrs, res_types, scope_name, scope_version] = self.rs.finish();
        let (attrs, types) = self.attrs.finish();
        let mut time = ts_builder();
        time.append_slice(&self.time);
        let mut observed = ts_builder();
        observed.append_slice(&self.observed);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(time.finish()),
            Arc::new(observed.finish()),
            Arc::new(self.severity_number.finish()),
            Arc::new(self.severity_text.finish()),
            Arc::new(self.body.finish()),
            Arc::new(self.body_type.finish()),
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.flags.finish()),
            Arc::new(self.event_name.finish()),
            service,
            res_attrs,
            res_types,
            scope_name,
            scope_version,
            attrs,
            types,
            Arc::new(self.dropped.finish()),
        ];
        RecordBatch::try_new(Table::Logs.schema(), columns)
    }
}

/// Converts a logs export request; the arrival time stands in for missing timestamps.
pub fn convert(
    req: &ExportLogsServiceRequest,
    ctx: &ConvertContext,
) -> Result<Converted, ArrowError> {
    let mut out = Converted::default();
    let mut cols = Columns::default();
    for rl in &req.resource_logs {
        let resource_attrs = rl
            .resource
            .as_ref()
            .map_or(&[][..], |r| r.attributes.as_slice());
        let service = service_name(resource_attrs);
        // Resolved once: every item under the resource shares it.
        let resource_attrs = &crate::attributes::Resolved::new(resource_attrs, &ctx.limits);
        for sl in &rl.scope_logs {
            let scope = sl.scope.as_ref();
            let scope_ctx = ResourceScope {
                service,
                resource_attrs,
                scope_name: scope.and_then(|s| non_empty(&s.name)),
                scope_version: scope.and_then(|s| non_empty(&s.version)),
            };
            for record in &sl.log_records {
                match validate(record, ctx) {
                    Ok((time, observed)) => {
                        cols.append(&scope_ctx, record, time, observed, &ctx.limits);
                        out.accepted += 1;
                    }
                    Err(reason) => out.reject(|| format!("log record: {reason}")),
                }
            }
        }
    }
    if out.accepted > 0 {
        out.batches.push((Table::Logs, cols.finish()?));
    }
    Ok(out)
}
