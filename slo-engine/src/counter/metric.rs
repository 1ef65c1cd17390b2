//! What metric indicators read of `metrics` rows: monotonic sums, histogram buckets, series,
//! and the increase a point adds to its series.

use std::collections::HashMap;

use arrow::array::{
    Array, BooleanArray, Float64Array, ListArray, MapArray, RecordBatch, StringArray,
    TimestampNanosecondArray, UInt64Array,
};

use super::{CountError, FRESH_SERIES, LastPoint, Selector};

/// Rows of `batch` (of `metrics`) that are points of `sel`'s metric and pass its filter.
pub(super) fn metric_rows(batch: &RecordBatch, sel: &Selector) -> Result<Vec<usize>, CountError> {
    let names = batch
        .column_by_name("metric_name")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or(CountError::Column("metric_name"))?;
    let filter = sel
        .filter
        .as_ref()
        .map(|f| super::mask(f, batch))
        .transpose()?;
    Ok((0..batch.num_rows())
        .filter(|&i| names.value(i) == sel.metric)
        .filter(|&i| filter.as_ref().is_none_or(|f| f.is_valid(i) && f.value(i)))
        .collect())
}

/// The columns of `metrics` rows that metric indicators read.
pub(super) struct MetricPoints<'a> {
    batch: &'a RecordBatch,
    metric_type: &'a StringArray,
    temporality: &'a StringArray,
    monotonic: &'a BooleanArray,
    value: &'a Float64Array,
    count: &'a UInt64Array,
    start: &'a TimestampNanosecondArray,
    time: &'a TimestampNanosecondArray,
    buckets: &'a ListArray,
    bounds: &'a ListArray,
}

impl<'a> MetricPoints<'a> {
    pub(super) fn of(batch: &'a RecordBatch) -> Result<Self, CountError> {
        fn col<'b, T: 'static>(
            b: &'b RecordBatch,
            name: &'static str,
        ) -> Result<&'b T, CountError> {
            b.column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<T>())
                .ok_or(CountError::Column(name))
        }
        Ok(Self {
            batch,
            metric_type: col(batch, "metric_type")?,
            temporality: col(batch, "temporality")?,
            monotonic: col(batch, "is_monotonic")?,
            value: col(batch, "value")?,
            count: col(batch, "count")?,
            start: col(batch, "start_time")?,
            time: col(batch, "time")?,
            buckets: col(batch, "bucket_counts")?,
            bounds: col(batch, "explicit_bounds")?,
        })
    }

    /// A monotonic sum's value (an UpDownCounter's increases are not events: none).
    pub(super) fn sum_value(&self, i: usize) -> Option<f64> {
        let monotonic = self.monotonic.is_valid(i) && self.monotonic.value(i);
        (self.metric_type.value(i) == "sum" && monotonic && self.value.is_valid(i))
            .then(|| self.value.value(i))
    }

    /// (observations at or under `threshold`, all observations) of a histogram point, when
    /// `threshold` is one of its bucket bounds.
    pub(super) fn histogram_split(&self, i: usize, threshold: f64) -> Option<(f64, f64)> {
        if self.metric_type.value(i) != "histogram" || !self.count.is_valid(i) {
            return None;
        }
        let bounds = self.bounds.value(i);
        let bounds = bounds.as_any().downcast_ref::<Float64Array>()?;
        let buckets = self.buckets.value(i);
        let buckets = buckets.as_any().downcast_ref::<UInt64Array>()?;
        // OTLP: one more bucket than bounds; anything else is malformed and counts nothing.
        if buckets.len() != bounds.len() + 1 {
            return None;
        }
        let tolerance = 1e-9 * threshold.abs().max(1.0);
        let at = (0..bounds.len()).find(|&b| (bounds.value(b) - threshold).abs() <= tolerance)?;
        // Bucket b holds observations in (bounds[b-1], bounds[b]].
        let good = (0..=at).fold(0u64, |g, b| g.saturating_add(buckets.value(b)));
        Some((good as f64, self.count.value(i) as f64))
    }

    /// What identifies a series: the metric, the resource, the scope and the attributes.
    pub(super) fn series_key(&self, i: usize) -> String {
        let mut key = String::new();
        for name in ["metric_name", "service_name", "scope_name"] {
            if let Some(c) = self
                .batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                && c.is_valid(i)
            {
                key.push_str(c.value(i));
            }
            key.push('\u{1f}');
        }
        for name in ["resource_attributes", "attributes"] {
            if let Some(m) = self
                .batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<MapArray>())
            {
                let entries = m.value(i);
                let k = entries.column(0).as_any().downcast_ref::<StringArray>();
                let v = entries.column(1).as_any().downcast_ref::<StringArray>();
                if let (Some(k), Some(v)) = (k, v) {
                    for e in 0..k.len() {
                        key.push_str(k.value(e));
                        key.push('=');
                        if v.is_valid(e) {
                            key.push_str(v.value(e));
                        }
                        key.push('\u{1e}');
                    }
                }
            }
            key.push('\u{1f}');
        }
        key
    }

    /// The increase a point adds: its values for delta temporality; for cumulative, the
    /// difference from the series' previous point, the whole value after a reset (a new start
    /// time, or a value that went down), and nothing for the first point of a series that did
    /// not just start (a baseline) or for a point not newer than the previous one.
    pub(super) fn increase(
        &self,
        last: &mut HashMap<String, LastPoint>,
        key: String,
        i: usize,
        values: [f64; 2],
    ) -> Option<[f64; 2]> {
        if self.temporality.is_valid(i) && self.temporality.value(i) == "delta" {
            return Some(values);
        }
        let time = self.time.value(i);
        let start = if self.start.is_valid(i) {
            self.start.value(i)
        } else {
            0
        };
        let point = LastPoint {
            start,
            time,
            values,
        };
        match last.get(&key) {
            None => {
                last.insert(key, point);
                (start > 0 && time - start <= FRESH_SERIES).then_some(values)
            }
            Some(prev) if time <= prev.time => None,
            Some(prev) => {
                let reset =
                    start != prev.start || values.iter().zip(prev.values).any(|(v, p)| *v < p);
                let inc = if reset {
                    values
                } else {
                    [values[0] - prev.values[0], values[1] - prev.values[1]]
                };
                last.insert(key, point);
                Some(inc)
            }
        }
    }
}
