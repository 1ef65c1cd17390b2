//! Arrow schemas of the stored tables.
//!
//! These column names are a public API (documented in `docs/sql.md`): queries, dashboards and
//! external Parquet readers depend on them.
//!
//! **Evolving a schema.** Every table has a schema version ([`Table::schema_version`]), written
//! with every WAL entry and into every Parquet file. A new version may only add nullable
//! columns (at the end); columns are never renamed, retyped or removed. Data of an earlier
//! version is read by column name and gets nulls in the columns it lacks ([`conform`]), so a
//! release reads everything every earlier release wrote. Data of a later version than this
//! release knows is refused with [`SchemaError::Newer`]: it may hold columns this release would
//! drop.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

/// The tables the store keeps, one set per tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Spans,
    Logs,
    Metrics,
    /// Per-batch partial trace summaries; the `traces` view aggregates them by trace id.
    TraceFragments,
    /// Good/valid event counts per SLO, group and minute, written by the SLO engine in the
    /// same WAL record as the events they count. Several rows may share a key: sum them.
    SloCounts,
    /// SLO alert transitions (pending, firing, resolved).
    SloAlerts,
    /// Alert notifications: queued, every delivery attempt, and how each one ended.
    Notifications,
    /// Admin actions and authentication failures. Only keys with `admin` can query it.
    Audit,
}

impl Table {
    pub const ALL: [Table; 8] = [
        Table::Spans,
        Table::Logs,
        Table::Metrics,
        Table::TraceFragments,
        Table::SloCounts,
        Table::SloAlerts,
        Table::Notifications,
        Table::Audit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Spans => "spans",
            Table::Logs => "logs",
            Table::Metrics => "metrics",
            Table::TraceFragments => "trace_fragments",
            Table::SloCounts => "slo_counts",
            Table::SloAlerts => "slo_alerts",
            Table::Notifications => "notifications",
            Table::Audit => "audit",
        }
    }

    /// The version of this table's schema: raised by one whenever a column is added.
    pub fn schema_version(self) -> u16 {
        match self {
            Table::Spans
            | Table::Logs
            | Table::Metrics
            | Table::TraceFragments
            | Table::SloCounts
            | Table::SloAlerts
            | Table::Notifications
            | Table::Audit => 1,
        }
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    pub fn schema(self) -> SchemaRef {
        match self {
            Table::Spans => SPANS.clone(),
            Table::Logs => LOGS.clone(),
            Table::Metrics => METRICS.clone(),
            Table::TraceFragments => TRACE_FRAGMENTS.clone(),
            Table::SloCounts => SLO_COUNTS.clone(),
            Table::SloAlerts => SLO_ALERTS.clone(),
            Table::Notifications => NOTIFICATIONS.clone(),
            Table::Audit => AUDIT.clone(),
        }
    }

    /// The column whose value places a row in its hourly partition and orders rows in a file.
    pub fn time_column(self) -> &'static str {
        match self {
            Table::Spans | Table::TraceFragments => "start_time",
            Table::Logs
            | Table::Metrics
            | Table::SloAlerts
            | Table::Notifications
            | Table::Audit => "time",
            Table::SloCounts => "slice_start",
        }
    }

    /// Columns a file is sorted by, in order: the time column first for time pruning, except
    /// for trace fragments, which are looked up by id.
    pub fn sort_columns(self) -> &'static [&'static str] {
        match self {
            Table::Spans => &["start_time", "trace_id"],
            Table::Logs => &["time"],
            Table::Metrics => &["metric_name", "time"],
            Table::TraceFragments => &["trace_id", "start_time"],
            Table::SloCounts => &["slo", "slice_start"],
            Table::SloAlerts | Table::Notifications | Table::Audit => &["time"],
        }
    }

    /// Columns that get a Parquet bloom filter (exact-match lookups).
    pub fn bloom_columns(self) -> &'static [&'static str] {
        match self {
            Table::Spans | Table::TraceFragments | Table::Logs => &["trace_id"],
            Table::Metrics
            | Table::SloCounts
            | Table::SloAlerts
            | Table::Notifications
            | Table::Audit => &[],
        }
    }
}

/// Why a batch written by some release cannot be read as its table's current schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "{table} data of schema version {version} was written by a newer release (this one \
         reads up to version {current})"
    )]
    Newer {
        table: &'static str,
        version: u16,
        current: u16,
    },
    #[error("{table} data has a column {column:?} that no schema version of the table has")]
    UnknownColumn { table: &'static str, column: String },
    #[error("{table} data lacks the column {column:?}, which has no null values")]
    MissingColumn { table: &'static str, column: String },
    #[error("{table} column {column:?} is {found}, not {expected}")]
    ColumnType {
        table: &'static str,
        column: String,
        found: DataType,
        expected: DataType,
    },
    #[error("{table} data does not fit its schema: {reason}")]
    Invalid { table: &'static str, reason: String },
}

/// Maps a batch of `table` written with schema `version` onto the current schema: columns by
/// name, nulls for the columns it lacks (each added after `version`, so nullable).
pub fn conform(table: Table, version: u16, batch: RecordBatch) -> Result<RecordBatch, SchemaError> {
    let current = table.schema();
    let name = table.name();
    if version > table.schema_version() {
        return Err(SchemaError::Newer {
            table: name,
            version,
            current: table.schema_version(),
        });
    }
    if batch.schema() == current {
        return Ok(batch);
    }
    let given = batch.schema();
    if let Some(extra) = given
        .fields()
        .iter()
        .find(|f| current.field_with_name(f.name()).is_err())
    {
        return Err(SchemaError::UnknownColumn {
            table: name,
            column: extra.name().clone(),
        });
    }
    let mut columns = Vec::with_capacity(current.fields().len());
    for field in current.fields() {
        match given.index_of(field.name()) {
            Ok(i) => {
                let column = batch.column(i);
                if column.data_type() != field.data_type() {
                    return Err(SchemaError::ColumnType {
                        table: name,
                        column: field.name().clone(),
                        found: column.data_type().clone(),
                        expected: field.data_type().clone(),
                    });
                }
                columns.push(column.clone());
            }
            Err(_) if field.is_nullable() => {
                columns.push(arrow::array::new_null_array(
                    field.data_type(),
                    batch.num_rows(),
                ));
            }
            Err(_) => {
                return Err(SchemaError::MissingColumn {
                    table: name,
                    column: field.name().clone(),
                });
            }
        }
    }
    RecordBatch::try_new(current, columns).map_err(|e| SchemaError::Invalid {
        table: name,
        reason: e.to_string(),
    })
}

/// Nanosecond UTC timestamps everywhere.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// `Map<Utf8, Utf8>` as built by arrow's `MapBuilder` with default field names.
pub fn string_map_type() -> DataType {
    let entries = Field::new(
        "entries",
        DataType::Struct(Fields::from(vec![
            Field::new("keys", DataType::Utf8, false),
            Field::new("values", DataType::Utf8, true),
        ])),
        false,
    );
    DataType::Map(Arc::new(entries), false)
}

/// Item field of every list column.
pub fn list_item(item: DataType) -> FieldRef {
    Arc::new(Field::new("item", item, true))
}

pub fn list_of(item: DataType) -> DataType {
    DataType::List(list_item(item))
}

fn map_field(name: &str) -> Field {
    Field::new(name, string_map_type(), false)
}

pub fn event_fields() -> Fields {
    Fields::from(vec![
        Field::new("time", timestamp_type(), false),
        Field::new("name", DataType::Utf8, false),
        map_field("attributes"),
        map_field("attribute_types"),
        Field::new("dropped_attributes_count", DataType::UInt32, false),
    ])
}

pub fn link_fields() -> Fields {
    Fields::from(vec![
        Field::new("trace_id", DataType::Utf8, false),
        Field::new("span_id", DataType::Utf8, false),
        Field::new("trace_state", DataType::Utf8, true),
        map_field("attributes"),
        map_field("attribute_types"),
        Field::new("dropped_attributes_count", DataType::UInt32, false),
        Field::new("flags", DataType::UInt32, false),
    ])
}

fn resource_and_scope() -> Vec<Field> {
    vec![
        Field::new("service_name", DataType::Utf8, false),
        map_field("resource_attributes"),
        map_field("resource_attribute_types"),
        Field::new("scope_name", DataType::Utf8, true),
        Field::new("scope_version", DataType::Utf8, true),
    ]
}

static SPANS: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        Field::new("trace_id", DataType::Utf8, false),
        Field::new("span_id", DataType::Utf8, false),
        Field::new("parent_span_id", DataType::Utf8, true),
        Field::new("trace_state", DataType::Utf8, true),
        Field::new("name", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("start_time", timestamp_type(), false),
        Field::new("end_time", timestamp_type(), false),
        Field::new("duration_ns", DataType::Int64, false),
        Field::new("status_code", DataType::Utf8, false),
        Field::new("status_message", DataType::Utf8, true),
    ];
    fields.extend(resource_and_scope());
    fields.extend([
        Field::new("http_route", DataType::Utf8, true),
        Field::new("http_request_method", DataType::Utf8, true),
        Field::new("http_response_status_code", DataType::Int64, true),
        map_field("attributes"),
        map_field("attribute_types"),
        Field::new("events", list_of(DataType::Struct(event_fields())), false),
        Field::new("links", list_of(DataType::Struct(link_fields())), false),
        Field::new("flags", DataType::UInt32, false),
        Field::new("dropped_attributes_count", DataType::UInt32, false),
        Field::new("dropped_events_count", DataType::UInt32, false),
        Field::new("dropped_links_count", DataType::UInt32, false),
    ]);
    Arc::new(Schema::new(fields))
});

static LOGS: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        Field::new("time", timestamp_type(), false),
        Field::new("observed_time", timestamp_type(), false),
        Field::new("severity_number", DataType::Int32, false),
        Field::new("severity_text", DataType::Utf8, true),
        Field::new("body", DataType::Utf8, true),
        Field::new("body_type", DataType::Utf8, true),
        Field::new("trace_id", DataType::Utf8, true),
        Field::new("span_id", DataType::Utf8, true),
        Field::new("flags", DataType::UInt32, false),
        Field::new("event_name", DataType::Utf8, true),
    ];
    fields.extend(resource_and_scope());
    fields.extend([
        map_field("attributes"),
        map_field("attribute_types"),
        Field::new("dropped_attributes_count", DataType::UInt32, false),
    ]);
    Arc::new(Schema::new(fields))
});

static METRICS: LazyLock<SchemaRef> = LazyLock::new(|| {
    let u64_list = list_of(DataType::UInt64);
    let f64_list = list_of(DataType::Float64);
    let mut fields = vec![
        Field::new("time", timestamp_type(), false),
        Field::new("start_time", timestamp_type(), true),
        Field::new("metric_name", DataType::Utf8, false),
        Field::new("metric_type", DataType::Utf8, false),
        Field::new("unit", DataType::Utf8, true),
        Field::new("description", DataType::Utf8, true),
        Field::new("temporality", DataType::Utf8, true),
        Field::new("is_monotonic", DataType::Boolean, true),
        Field::new("value", DataType::Float64, true),
        Field::new("count", DataType::UInt64, true),
        Field::new("sum", DataType::Float64, true),
        Field::new("min", DataType::Float64, true),
        Field::new("max", DataType::Float64, true),
        Field::new("bucket_counts", u64_list.clone(), true),
        Field::new("explicit_bounds", f64_list.clone(), true),
        Field::new("scale", DataType::Int32, true),
        Field::new("zero_count", DataType::UInt64, true),
        Field::new("zero_threshold", DataType::Float64, true),
        Field::new("positive_offset", DataType::Int32, true),
        Field::new("positive_bucket_counts", u64_list.clone(), true),
        Field::new("negative_offset", DataType::Int32, true),
        Field::new("negative_bucket_counts", u64_list, true),
        Field::new("quantiles", f64_list.clone(), true),
        Field::new("quantile_values", f64_list, true),
        Field::new("flags", DataType::UInt32, false),
    ];
    fields.extend(resource_and_scope());
    fields.extend([map_field("attributes"), map_field("attribute_types")]);
    Arc::new(Schema::new(fields))
});

static TRACE_FRAGMENTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("trace_id", DataType::Utf8, false),
        Field::new("start_time", timestamp_type(), false),
        Field::new("end_time", timestamp_type(), false),
        Field::new("root_service_name", DataType::Utf8, true),
        Field::new("root_span_name", DataType::Utf8, true),
        Field::new("span_count", DataType::Int64, false),
        Field::new("error_count", DataType::Int64, false),
    ]))
});

static SLO_COUNTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("slo", DataType::Utf8, false),
        // Changes when the SLO's indicator changes; counts of other versions are history.
        Field::new("slo_version", DataType::Utf8, false),
        // The value of the SLO's group_by ("" when it has none).
        Field::new("group_value", DataType::Utf8, false),
        Field::new("slice_start", timestamp_type(), false),
        Field::new("good", DataType::Int64, false),
        Field::new("total", DataType::Int64, false),
        // live (counted as the events arrived) or backfill (counted from stored events).
        Field::new("origin", DataType::Utf8, false),
    ]))
});

static SLO_ALERTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("time", timestamp_type(), false),
        Field::new("slo", DataType::Utf8, false),
        // The tier name (page-1h...), budget-exhausted or no-data.
        Field::new("rule", DataType::Utf8, false),
        Field::new("group_value", DataType::Utf8, false),
        Field::new("fingerprint", DataType::Utf8, false),
        // pending, firing or resolved.
        Field::new("state", DataType::Utf8, false),
        Field::new("severity", DataType::Utf8, false),
        // When the alert started firing (firing and resolved rows).
        Field::new("starts_at", timestamp_type(), true),
        map_field("labels"),
        Field::new("threshold", DataType::Float64, true),
        Field::new("burn_rate_long", DataType::Float64, true),
        Field::new("burn_rate_short", DataType::Float64, true),
        Field::new("budget_remaining", DataType::Float64, true),
    ]))
});

static NOTIFICATIONS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("time", timestamp_type(), false),
        // Unique per notification; also sent as the X-Sightline-Notification-Id header.
        Field::new("notification_id", DataType::Utf8, false),
        Field::new("receiver", DataType::Utf8, false),
        // webhook or email.
        Field::new("integration", DataType::Utf8, false),
        Field::new("group_key", DataType::Utf8, false),
        // firing or resolved.
        Field::new("status", DataType::Utf8, false),
        Field::new("alerts", DataType::Int64, false),
        // The alerts' fingerprints, comma-separated.
        Field::new("fingerprints", DataType::Utf8, false),
        // queued, delivered, retrying, rejected or expired.
        Field::new("outcome", DataType::Utf8, false),
        // Delivery attempt number (0 for queued rows; for expired rows, the attempts made).
        Field::new("attempt", DataType::Int64, false),
        // HTTP status, or SMTP reply code.
        Field::new("status_code", DataType::Int64, true),
        Field::new("error", DataType::Utf8, true),
        Field::new("latency_ms", DataType::Float64, true),
    ]))
});

static AUDIT: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("time", timestamp_type(), false),
        Field::new("tenant", DataType::Utf8, false),
        // silence.create, silence.expire, flush, key.create, key.revoke or auth.failure.
        Field::new("action", DataType::Utf8, false),
        // The key that acted (or failed), by id; never the key. cert:<name> for a client
        // certificate; null when none was presented or the server runs open.
        Field::new("key_id", DataType::Utf8, true),
        // The client's address; null for the command line.
        Field::new("client_address", DataType::Utf8, true),
        // Where: api, otlp_grpc, otlp_http or cli.
        Field::new("via", DataType::Utf8, false),
        // What was acted on: a silence id, a key id.
        Field::new("target", DataType::Utf8, true),
        // Why an attempt failed, or what was changed.
        Field::new("detail", DataType::Utf8, true),
    ]))
});

/// The `traces` view: one row per trace, aggregated from `trace_fragments`.
pub const TRACES_VIEW_SQL: &str = "SELECT trace_id, \
    min(start_time) AS start_time, \
    max(end_time) AS end_time, \
    CAST(max(end_time) AS BIGINT) - CAST(min(start_time) AS BIGINT) AS duration_ns, \
    max(root_service_name) AS root_service_name, \
    max(root_span_name) AS root_span_name, \
    sum(span_count) AS span_count, \
    sum(error_count) AS error_count \
    FROM trace_fragments GROUP BY trace_id";

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, MapBuilder, StringBuilder};

    #[test]
    fn map_type_matches_map_builder_output() {
        let mut b = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        b.keys().append_value("k");
        b.values().append_value("v");
        b.append(true).expect("append");
        assert_eq!(b.finish().data_type(), &string_map_type());
    }

    /// The notifications schema without its last column, as a release before that column
    /// would have written it.
    fn one_column_shorter(batch: &RecordBatch) -> RecordBatch {
        let n = batch.num_columns() - 1;
        batch.project(&(0..n).collect::<Vec<_>>()).expect("project")
    }

    #[test]
    fn earlier_batches_get_nulls_in_the_columns_they_lack() {
        let full = crate::fixtures::sample_batch(Table::Notifications, 4, 1);
        let short = one_column_shorter(&full);
        assert_eq!(
            full.schema().fields().last().map(|f| f.name().as_str()),
            Some("latency_ms")
        );
        let read = conform(Table::Notifications, 1, short).expect("conforms");
        assert_eq!(read.schema(), Table::Notifications.schema());
        let latency = read.column_by_name("latency_ms").expect("column");
        assert_eq!(latency.null_count(), 4);
        assert_eq!(read.column(0), full.column(0));
        // The current schema passes as it is.
        assert_eq!(conform(Table::Notifications, 1, full.clone()), Ok(full));
    }

    #[test]
    fn batches_that_cannot_be_read_say_why() {
        let full = crate::fixtures::sample_batch(Table::Notifications, 2, 1);
        let newer = conform(Table::Notifications, 9, full.clone()).expect_err("newer");
        assert!(matches!(
            newer,
            SchemaError::Newer {
                version: 9,
                current: 1,
                ..
            }
        ));
        // A non-nullable column missing.
        let no_time = full
            .project(&(1..full.num_columns()).collect::<Vec<_>>())
            .expect("p");
        assert!(matches!(
            conform(Table::Notifications, 1, no_time),
            Err(SchemaError::MissingColumn { .. })
        ));
        // A column no version has.
        let extra = Arc::new(Schema::new(vec![Field::new(
            "surprise",
            DataType::Int64,
            true,
        )]));
        let odd = RecordBatch::try_new(
            extra,
            vec![Arc::new(arrow::array::Int64Array::from(vec![1, 2]))],
        )
        .expect("batch");
        assert!(matches!(
            conform(Table::Notifications, 1, odd),
            Err(SchemaError::UnknownColumn { .. })
        ));
    }

    #[test]
    fn every_table_has_its_time_and_sort_columns() {
        for t in Table::ALL {
            let s = t.schema();
            assert!(s.field_with_name(t.time_column()).is_ok(), "{}", t.name());
            for c in t.sort_columns().iter().chain(t.bloom_columns()) {
                assert!(s.field_with_name(c).is_ok(), "{} {c}", t.name());
            }
            assert_eq!(Table::from_name(t.name()), Some(t));
        }
    }
}
