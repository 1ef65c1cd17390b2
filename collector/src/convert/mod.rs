//! OTLP → Arrow: one function per signal turns an export request into record batches of the
//! store's tables, rejecting (and counting) the items that can't be stored.

pub mod logs;
pub mod metrics;
pub mod traces;

use arrow::array::{ArrayRef, ListArray, StringBuilder, StructArray, TimestampNanosecondBuilder};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Fields};
use arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use sightline_store::Table;
use std::sync::Arc;

use crate::attributes;
use crate::limits::ItemLimits;

/// What a conversion needs besides the request: when it arrived and the item limits.
#[derive(Debug, Clone, Copy)]
pub struct ConvertContext {
    pub received_ns: i64,
    pub limits: ItemLimits,
}

impl ConvertContext {
    pub fn new(received_ns: i64, limits: ItemLimits) -> Self {
        Self {
            received_ns,
            limits,
        }
    }

    /// Rejects an item time outside the accepted window around the arrival time.
    pub fn check_window(&self, what: &str, t: i64) -> Result<(), String> {
        let (oldest, newest) = self.limits.window(self.received_ns);
        if t < oldest {
            return Err(format!(
                "{what} is more than {}s in the past (limits.max_past)",
                self.limits.max_past.as_secs()
            ));
        }
        if t > newest {
            return Err(format!(
                "{what} is more than {}s in the future (limits.max_future)",
                self.limits.max_future.as_secs()
            ));
        }
        Ok(())
    }
}

/// What an export request became: the rows to store and what was rejected.
#[derive(Debug, Default)]
pub struct Converted {
    pub batches: Vec<(Table, RecordBatch)>,
    /// Items accepted (spans, log records or data points).
    pub accepted: u64,
    /// Items rejected, with the first reason (for OTLP partial success).
    pub rejected: u64,
    pub rejection: Option<String>,
}

impl Converted {
    pub(crate) fn reject(&mut self, reason: impl FnOnce() -> String) {
        self.rejected += 1;
        if self.rejection.is_none() {
            self.rejection = Some(reason());
        }
    }
}

pub(crate) const UNKNOWN_SERVICE: &str = "unknown_service";

/// `service.name` of a resource, or the spec's `unknown_service`.
pub(crate) fn service_name(resource_attrs: &[KeyValue]) -> &str {
    attributes::find_str(resource_attrs, "service.name")
        .filter(|s| !s.is_empty())
        .unwrap_or(UNKNOWN_SERVICE)
}

/// Why an id can't be stored, if it can't.
pub(crate) fn check_id(what: &str, id: &[u8], len: usize) -> Result<(), String> {
    if id.len() != len {
        return Err(format!(
            "{what} must be {len} bytes, got {} bytes",
            id.len()
        ));
    }
    if id.iter().all(|b| *b == 0) {
        return Err(format!("{what} must not be all zeros"));
    }
    Ok(())
}

/// Nanoseconds since the epoch as a signed timestamp.
pub(crate) fn time_ns(what: &str, t: u64) -> Result<i64, String> {
    i64::try_from(t).map_err(|_| format!("{what} {t} is past the year 2262"))
}

pub(crate) fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// The resource and scope columns shared by every table.
#[derive(Debug, Default)]
pub(crate) struct ResourceScopeColumns {
    service: StringBuilder,
    resource: attributes::AttrColumns,
    scope_name: StringBuilder,
    scope_version: StringBuilder,
}

/// A resource and a scope, converted once and appended for every item under them.
#[derive(Debug)]
pub(crate) struct ResourceScope<'a> {
    pub service: &'a str,
    /// The resource's attributes, resolved once for all its items.
    pub resource_attrs: &'a attributes::Resolved<'a>,
    pub scope_name: Option<&'a str>,
    pub scope_version: Option<&'a str>,
}

impl ResourceScopeColumns {
    pub fn append(&mut self, rs: &ResourceScope<'_>) {
        self.service.append_value(rs.service);
        self.resource.append_resolved(rs.resource_attrs);
        self.scope_name.append_option(rs.scope_name);
        self.scope_version.append_option(rs.scope_version);
    }

    /// service_name, resource_attributes, resource_attribute_types, scope_name, scope_version
    pub fn finish(mut self) -> [ArrayRef; 5] {
        let (attrs, types) = self.resource.finish();
        [
            Arc::new(self.service.finish()),
            attrs,
            types,
            Arc::new(self.scope_name.finish()),
            Arc::new(self.scope_version.finish()),
        ]
    }
}

pub(crate) fn ts_builder() -> TimestampNanosecondBuilder {
    TimestampNanosecondBuilder::new().with_timezone("UTC")
}

/// A list column from per-row offsets over the flattened struct children.
pub(crate) fn struct_list(
    fields: Fields,
    children: Vec<ArrayRef>,
    offsets: Vec<i32>,
) -> Result<ArrayRef, arrow::error::ArrowError> {
    let values = StructArray::try_new(fields.clone(), children, None)?;
    let item = sightline_store::schema::list_item(DataType::Struct(fields));
    Ok(Arc::new(ListArray::try_new(
        item,
        OffsetBuffer::new(offsets.into()),
        Arc::new(values),
        None,
    )?))
}
