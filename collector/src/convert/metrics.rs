//! Metrics: one `metrics` row per data point, for every OTLP metric kind.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, ListBuilder, StringBuilder,
    UInt32Builder, UInt64Builder,
};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Metric, metric::Data, number_data_point,
};
use sightline_store::Table;

use super::{
    ConvertContext, Converted, ResourceScope, ResourceScopeColumns, non_empty, service_name,
    time_ns, ts_builder,
};
use crate::attributes::AttrColumns;
use crate::limits::ItemLimits;

pub fn temporality_name(t: i32) -> Option<&'static str> {
    match AggregationTemporality::try_from(t) {
        Ok(AggregationTemporality::Delta) => Some("delta"),
        Ok(AggregationTemporality::Cumulative) => Some("cumulative"),
        _ => None,
    }
}

/// The parts of a metric shared by all its points.
struct MetricInfo<'a> {
    name: &'a str,
    kind: &'static str,
    unit: Option<&'a str>,
    description: Option<&'a str>,
    temporality: Option<&'static str>,
    is_monotonic: Option<bool>,
}

/// The kind-specific values of one point; absent fields are NULL.
#[derive(Default)]
struct PointValues<'a> {
    value: Option<f64>,
    count: Option<u64>,
    sum: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    bucket_counts: Option<&'a [u64]>,
    explicit_bounds: Option<&'a [f64]>,
    scale: Option<i32>,
    zero_count: Option<u64>,
    zero_threshold: Option<f64>,
    positive: Option<(i32, &'a [u64])>,
    negative: Option<(i32, &'a [u64])>,
    quantiles: Option<(Vec<f64>, Vec<f64>)>,
}

#[derive(Debug)]
struct Columns {
    time: Vec<i64>,
    start: Vec<Option<i64>>,
    name: StringBuilder,
    kind: StringBuilder,
    unit: StringBuilder,
    description: StringBuilder,
    temporality: StringBuilder,
    is_monotonic: BooleanBuilder,
    value: Float64Builder,
    count: UInt64Builder,
    sum: Float64Builder,
    min: Float64Builder,
    max: Float64Builder,
    bucket_counts: ListBuilder<UInt64Builder>,
    explicit_bounds: ListBuilder<Float64Builder>,
    scale: Int32Builder,
    zero_count: UInt64Builder,
    zero_threshold: Float64Builder,
    positive_offset: Int32Builder,
    positive_counts: ListBuilder<UInt64Builder>,
    negative_offset: Int32Builder,
    negative_counts: ListBuilder<UInt64Builder>,
    quantiles: ListBuilder<Float64Builder>,
    quantile_values: ListBuilder<Float64Builder>,
    flags: UInt32Builder,
    rs: ResourceScopeColumns,
    attrs: AttrColumns,
}

impl Default for Columns {
    fn default() -> Self {
        Self {
            time: Vec::new(),
            start: Vec::new(),
            name: StringBuilder::new(),
            kind: StringBuilder::new(),
            unit: StringBuilder::new(),
            description: StringBuilder::new(),
            temporality: StringBuilder::new(),
            is_monotonic: BooleanBuilder::new(),
            value: Float64Builder::new(),
            count: UInt64Builder::new(),
            sum: Float64Builder::new(),
            min: Float64Builder::new(),
            max: Float64Builder::new(),
            bucket_counts: ListBuilder::new(UInt64Builder::new()),
            explicit_bounds: ListBuilder::new(Float64Builder::new()),
            scale: Int32Builder::new(),
            zero_count: UInt64Builder::new(),
            zero_threshold: Float64Builder::new(),
            positive_offset: Int32Builder::new(),
            positive_counts: ListBuilder::new(UInt64Builder::new()),
            negative_offset: Int32Builder::new(),
            negative_counts: ListBuilder::new(UInt64Builder::new()),
            quantiles: ListBuilder::new(Float64Builder::new()),
            quantile_values: ListBuilder::new(Float64Builder::new()),
            flags: UInt32Builder::new(),
            rs: ResourceScopeColumns::default(),
            attrs: AttrColumns::default(),
        }
    }
}

fn append_list<T, B>(list: &mut ListBuilder<B>, values: Option<&[T]>)
where
    T: Copy,
    B: arrow::array::ArrayBuilder + Extend<Option<T>>,
{
    match values {
        Some(v) => {
            list.values().extend(v.iter().copied().map(Some));
            list.append(true);
        }
        None => list.append(false),
    }
}

impl Columns {
    #[allow(clippy::too_many_arguments)]
    fn append(
        &mut self,
        ctx: &ResourceScope<'_>,
        m: &MetricInfo<'_>,
        time: i64,
        start: Option<i64>,
        attrs: &[KeyValue],
        flags: u32,
        p: PointValues<'_>,
        limits: &ItemLimits,
    ) {
        self.time.push(time);
        self.start.push(start);
        self.name.append_value(m.name);
        self.kind.append_value(m.kind);
        self.unit.append_option(m.unit);
        self.description.append_option(m.description);
        self.temporality.append_option(m.temporality);
        self.is_monotonic.append_option(m.is_monotonic);
        self.value.append_option(p.value);
        self.count.append_option(p.count);
        self.sum.append_option(p.sum);
        self.min.append_option(p.min);
        self.max.append_option(p.max);
        append_list(&mut self.bucket_counts, p.bucket_counts);
        append_list(&mut self.explicit_bounds, p.explicit_bounds);
        self.scale.append_option(p.scale);
        self.zero_count.append_option(p.zero_count);
        self.zero_threshold.append_option(p.zero_threshold);
        self.positive_offset.append_option(p.positive.map(|b| b.0));
        append_list(&mut self.positive_counts, p.positive.map(|b| b.1));
        self.negative_offset.append_option(p.negative.map(|b| b.0));
        append_list(&mut self.negative_counts, p.negative.map(|b| b.1));
        let (q, qv) = match &p.quantiles {
            Some((q, v)) => (Some(q.as_slice()), Some(v.as_slice())),
            None => (None, None),
        };
        append_list(&mut self.quantiles, q);
        append_list(&mut self.quantile_values, qv);
        self.flags.append_value(flags);
        self.rs.append(ctx);
        // Data points have no dropped-attributes count in OTLP; the limit still applies.
        self.attrs.append(attrs, limits);
    }

    fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let [service, res_attrs, res_types, scope_name, scope_version] = self.rs.finish();
        let (attrs, types) = self.attrs.finish();
        let mut time = ts_builder();
        time.append_slice(&self.time);
        let mut start = ts_builder();
        for s in &self.start {
            start.append_option(*s);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(time.finish()),
            Arc::new(start.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.unit.finish()),
            Arc::new(self.description.finish()),
            Arc::new(self.temporality.finish()),
            Arc::new(self.is_monotonic.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.count.finish()),
            Arc::new(self.sum.finish()),
            Arc::new(self.min.finish()),
            Arc::new(self.max.finish()),
            Arc::new(self.bucket_counts.finish()),
            Arc::new(self.explicit_bounds.finish()),
            Arc::new(self.scale.finish()),
            Arc::new(self.zero_count.finish()),
            Arc::new(self.zero_threshold.finish()),
            Arc::new(self.positive_offset.finish()),
            Arc::new(self.positive_counts.finish()),
            Arc::new(self.negative_offset.finish()),
            Arc::new(self.negative_counts.finish()),
            Arc::new(self.quantiles.finish()),
            Arc::new(self.quantile_values.finish()),
            Arc::new(self.flags.finish()),
            service,
            res_attrs,
            res_types,
            scope_name,
            scope_version,
            attrs,
            types,
        ];
        RecordBatch::try_new(Table::Metrics.schema(), columns)
    }
}

/// Times of a point: the time is required, a start time of 0 means "unknown".
fn point_times(time: u64, start: u64, ctx: &ConvertContext) -> Result<(i64, Option<i64>), String> {
    let t = time_ns("time_unix_nano", time)?;
    let s = time_ns("start_time_unix_nano", start)?;
    ctx.check_window("time_unix_nano", t)?;
    Ok((t, (s != 0).then_some(s)))
}

fn info<'a>(
    m: &'a Metric,
    kind: &'static str,
    temporality: Option<i32>,
    mono: Option<bool>,
) -> MetricInfo<'a> {
    MetricInfo {
        name: &m.name,
        kind,
        unit: non_empty(&m.unit),
        description: non_empty(&m.description),
        temporality: temporality.and_then(temporality_name),
        is_monotonic: mono,
    }
}

fn convert_metric(
    scope_ctx: &ResourceScope<'_>,
    m: &Metric,
    cols: &mut Columns,
    out: &mut Converted,
    ctx: &ConvertContext,
) {
    let Some(data) = &m.data else {
        return;
    };
    macro_rules! each_point {
        ($points:expr, $info:expr, |$p:ident| $values:expr) => {{
            let info = $info;
            for $p in $points {
                match point_times($p.time_unix_nano, $p.start_time_unix_nano, ctx) {
                    Ok((t, s)) => {
                        cols.append(
                            scope_ctx,
                            &info,
                            t,
                            s,
                            &$p.attributes,
                            $p.flags,
                            $values,
                            &ctx.limits,
                        );
                        out.accepted += 1;
                    }
                    Err(reason) => out.reject(|| format!("metric {:?}: {reason}", m.name)),
                }
            }
        }};
    }
    let number = |v: &Option<number_data_point::Value>| match v {
        Some(number_data_point::Value::AsDouble(d)) => Some(*d),
        Some(number_data_point::Value::AsInt(i)) => Some(*i as f64),
        None => None,
    };
    match data {
        Data::Gauge(g) => each_point!(&g.data_points, info(m, "gauge", None, None), |p| {
            PointValues {
                value: number(&p.value),
                ..Default::default()
            }
        }),
        Data::Sum(s) => each_point!(
            &s.data_points,
            info(
                m,
                "sum",
                Some(s.aggregation_temporality),
                Some(s.is_monotonic)
            ),
            |p| PointValues {
                value: number(&p.value),
                ..Default::default()
            }
        ),
        Data::Histogram(h) => each_point!(
            &h.data_points,
            info(m, "histogram", Some(h.aggregation_temporality), None),
            |p| PointValues {
                count: Some(p.count),
                sum: p.sum,
                min: p.min,
                max: p.max,
                bucket_counts: Some(&p.bucket_counts),
                explicit_bounds: Some(&p.explicit_bounds),
                ..Default::default()
            }
        ),
        Data::ExponentialHistogram(h) => each_point!(
            &h.data_points,
            info(
                m,
                "exponential_histogram",
                Some(h.aggregation_temporality),
                None
            ),
            |p| PointValues {
                count: Some(p.count),
                sum: p.sum,
                min: p.min,
                max: p.max,
                scale: Some(p.scale),
                zero_count: Some(p.zero_count),
                zero_threshold: Some(p.zero_threshold),
                positive: Some(
                    p.positive
                        .as_ref()
                        .map_or((0, &[][..]), |b| (b.offset, b.bucket_counts.as_slice()))
                ),
                negative: Some(
                    p.negative
                        .as_ref()
                        .map_or((0, &[][..]), |b| (b.offset, b.bucket_counts.as_slice()))
                ),
                ..Default::default()
            }
        ),
        Data::Summary(s) => each_point!(&s.data_points, info(m, "summary", None, None), |p| {
            PointValues {
                count: Some(p.count),
                sum: Some(p.sum),
                quantiles: Some((
                    p.quantile_values.iter().map(|q| q.quantile).collect(),
                    p.quantile_values.iter().map(|q| q.value).collect(),
                )),
                ..Default::default()
            }
        }),
    }
}

/// Converts a metrics export request.
pub fn convert(
    req: &ExportMetricsServiceRequest,
    ctx: &ConvertContext,
) -> Result<Converted, ArrowError> {
    let mut out = Converted::default();
    let mut cols = Columns::default();
    for rm in &req.resource_metrics {
        let resource_attrs = rm
            .resource
            .as_ref()
            .map_or(&[][..], |r| r.attributes.as_slice());
        let service = service_name(resource_attrs);
        // Resolved once: every item under the resource shares it.
        let resource_attrs = &crate::attributes::Resolved::new(resource_attrs, &ctx.limits);
        for sm in &rm.scope_metrics {
            let scope = sm.scope.as_ref();
            let scope_ctx = ResourceScope {
                service,
                resource_attrs,
                scope_name: scope.and_then(|s| non_empty(&s.name)),
                scope_version: scope.and_then(|s| non_empty(&s.version)),
            };
            for m in &sm.metrics {
                convert_metric(&scope_ctx, m, &mut cols, &mut out, ctx);
            }
        }
    }
    if out.accepted > 0 {
        out.batches.push((Table::Metrics, cols.finish()?));
    }
    Ok(out)
}
