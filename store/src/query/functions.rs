//! Functions whose output can be far larger than their input — `repeat('x', 1e9)`,
//! `range(0, 1e12)` — allocate outside DataFusion's memory accounting, in one step that no
//! timeout can interrupt. Each of them is registered here under its own name, wrapping the
//! built-in: before the built-in runs, the size of what it would build for the batch is worked
//! out from its arguments and refused past `query.max_function_bytes`; after it runs, what it
//! built is checked again.

use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;

/// How a function's output size follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(text, n)`: the text `n` times.
    Repeat,
    /// `lpad(text, n [, fill])`, `rpad`: `n` characters.
    Pad,
    /// `array_repeat(value, n)`: a list of `n` values.
    ArrayRepeat,
    /// `range([start,] stop [, step])`, `generate_series`: a list of `(stop - start) / step`
    /// values.
    Series,
    /// `replace(text, from, to)`: at most every position of `text` replaced by `to`.
    Replace,
    /// `regexp_replace(text, pattern, replacement [, flags])`: likewise, plus what the
    /// replacement's group references copy (at most all of `text` per reference).
    RegexpReplace,
}

const WRAPPED: &[(&str, Growth)] = &[
    ("repeat", Growth::Repeat),
    ("lpad", Growth::Pad),
    ("rpad", Growth::Pad),
    ("array_repeat", Growth::ArrayRepeat),
    ("range", Growth::Series),
    ("generate_series", Growth::Series),
    ("replace", Growth::Replace),
    ("regexp_replace", Growth::RegexpReplace),
];

/// Replaces the built-in functions that can build large values with bounded ones.
pub(crate) fn register(ctx: &SessionContext, max_bytes: usize) {
    for &(name, growth) in WRAPPED {
        if let Ok(inner) = ctx.udf(name) {
            ctx.register_udf(ScalarUDF::new_from_impl(Bounded {
                inner: (*inner).clone(),
                growth,
                max_bytes,
            }));
        }
    }
}

/// A built-in function with a bound on what it may build per batch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Bounded {
    inner: ScalarUDF,
    growth: Growth,
    max_bytes: usize,
}

impl Bounded {
    fn refuse(&self, bytes: u128, when: &str) -> DataFusionError {
        DataFusionError::ResourcesExhausted(format!(
            "{}() would build about {} MiB {when}; one call may build at most {} MiB per batch \
             of rows (query.max_function_bytes)",
            self.inner.name(),
            bytes >> 20,
            self.max_bytes >> 20
        ))
    }

    /// An upper bound of the bytes the function builds for these arguments.
    fn estimate(&self, args: &[ColumnarValue], rows: usize) -> Result<u128> {
        // A batch of scalars is evaluated once.
        let rows = if args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
            1
        } else {
            rows
        };
        let mut total = 0u128;
        for row in 0..rows {
            let at = |i: usize| value_at(args.get(i), row);
            total += match self.growth {
                Growth::Repeat => text_len(&at(0)?) * count(&at(1)?),
                Growth::Pad => 4 * count(&at(1)?) + text_len(&at(2)?),
                Growth::ArrayRepeat => (16 + text_len(&at(0)?)) * count(&at(1)?),
                Growth::Series => {
                    let values: Vec<ScalarValue> =
                        (0..args.len()).map(at).collect::<Result<_>>()?;
                    8 * series_len(&values)
                }
                Growth::Replace => {
                    let (text, to) = (text_len(&at(0)?), text_len(&at(2)?));
                    (text + 1) * to.max(1)
                }
                Growth::RegexpReplace => {
                    let text = text_len(&at(0)?);
                    let replacement = at(2)?;
                    let refs = group_references(&replacement);
                    (text + 1) * text_len(&replacement).max(1) + refs * text
                }
            };
            if total > self.max_bytes as u128 {
                break;
            }
        }
        Ok(total)
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.inner().schema_name(args)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let estimate = self.estimate(&args.args, args.number_rows)?;
        if estimate > self.max_bytes as u128 {
            return Err(self.refuse(estimate, "for these arguments"));
        }
        let out = self.inner.invoke_with_args(args)?;
        let built = match &out {
            ColumnarValue::Array(a) => a.get_array_memory_size() as u128,
            ColumnarValue::Scalar(s) => s.size() as u128,
        };
        if built > self.max_bytes as u128 {
            return Err(self.refuse(built, "(it did)"));
        }
        Ok(out)
    }
}

/// Argument `arg` at `row` (a scalar is the same for every row; a missing one is null).
fn value_at(arg: Option<&ColumnarValue>, row: usize) -> Result<ScalarValue> {
    match arg {
        None => Ok(ScalarValue::Null),
        Some(ColumnarValue::Scalar(s)) => Ok(s.clone()),
        Some(ColumnarValue::Array(a)) => ScalarValue::try_from_array(a, row),
    }
}

/// Bytes of a text or binary value (other values: a small fixed size).
fn text_len(v: &ScalarValue) -> u128 {
    match v {
        ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => {
            s.as_ref().map_or(0, |s| s.len() as u128)
        }
        ScalarValue::Binary(b) | ScalarValue::LargeBinary(b) | ScalarValue::BinaryView(b) => {
            b.as_ref().map_or(0, |b| b.len() as u128)
        }
        ScalarValue::Null => 0,
        _ => 16,
    }
}

/// A count argument: negative and null count as 0.
fn count(v: &ScalarValue) -> u128 {
    int(v).map_or(0, |n| n.max(0) as u128)
}

fn int(v: &ScalarValue) -> Option<i128> {
    match v.cast_to(&DataType::Int64).ok()? {
        ScalarValue::Int64(n) => n.map(i128::from),
        _ => None,
    }
}

/// `$1`, `${name}` and `\1` references in a replacement.
fn group_references(v: &ScalarValue) -> u128 {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => s.matches(['$', '\\']).count() as u128,
        _ => 0,
    }
}

/// A point of a series in whole units of its type: integers, days, or its timestamp unit.
fn point(v: &ScalarValue) -> Option<(i128, Unit)> {
    Some(match v {
        ScalarValue::Date32(d) => ((*d)?.into(), Unit::Nanos(86_400_000_000_000)),
        ScalarValue::Date64(ms) => ((*ms)?.into(), Unit::Nanos(1_000_000)),
        ScalarValue::TimestampSecond(t, _) => ((*t)?.into(), Unit::Nanos(1_000_000_000)),
        ScalarValue::TimestampMillisecond(t, _) => ((*t)?.into(), Unit::Nanos(1_000_000)),
        ScalarValue::TimestampMicrosecond(t, _) => ((*t)?.into(), Unit::Nanos(1_000)),
        ScalarValue::TimestampNanosecond(t, _) => ((*t)?.into(), Unit::Nanos(1)),
        other => (int(other)?, Unit::Integer),
    })
}

#[derive(Debug, Clone, Copy)]
enum Unit {
    Integer,
    /// Nanoseconds per unit.
    Nanos(i128),
}

/// A step in the units of the series' points (months count as 28 days: the most steps).
fn step(v: &ScalarValue, unit: Unit) -> Option<i128> {
    const DAY: i128 = 86_400_000_000_000;
    let nanos = match v {
        ScalarValue::IntervalMonthDayNano(Some(i)) => {
            (i128::from(i.months) * 28 + i128::from(i.days)) * DAY + i128::from(i.nanoseconds)
        }
        ScalarValue::IntervalDayTime(Some(i)) => {
            i128::from(i.days) * DAY + i128::from(i.milliseconds) * 1_000_000
        }
        ScalarValue::IntervalYearMonth(Some(m)) => i128::from(*m) * 28 * DAY,
        other => return int(other),
    };
    match unit {
        Unit::Integer => Some(nanos),
        Unit::Nanos(per) => Some(nanos / per),
    }
}

/// Values in `range(stop)`, `range(start, stop)` or `range(start, stop, step)`.
fn series_len(args: &[ScalarValue]) -> u128 {
    let (start, stop, step_arg) = match args {
        [stop] => (ScalarValue::Int64(Some(0)), stop, None),
        [start, stop] => (start.clone(), stop, None),
        [start, stop, step, ..] => (start.clone(), stop, Some(step)),
        [] => return 0,
    };
    let (Some((start, unit)), Some((stop, _))) = (point(&start), point(stop)) else {
        return 0; // a null bound: an empty or null list
    };
    let step = match step_arg {
        None => 1,
        Some(s) => step(s, unit).unwrap_or(1),
    };
    // A step of zero (or less than a unit) is refused by the function itself; a step of one
    // unit is the most values it can mean.
    (stop - start).unsigned_abs() / step.unsigned_abs().max(1) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(ctx: &SessionContext, sql: &str) -> Result<usize> {
        let batches = ctx.sql(sql).await?.collect().await?;
        Ok(batches.iter().map(|b| b.num_rows()).sum())
    }

    fn bounded() -> SessionContext {
        let ctx = SessionContext::new();
        register(&ctx, 1 << 20);
        ctx
    }

    #[tokio::test]
    async fn functions_that_would_build_too_much_are_refused_before_they_run() {
        let ctx = bounded();
        for sql in [
            "SELECT repeat('x', 1000000000)",
            "SELECT lpad('x', 1000000000)",
            "SELECT rpad('x', 1000000000, 'ab')",
            "SELECT array_repeat(1, 1000000000)",
            "SELECT range(1000000000000)",
            "SELECT generate_series(0, 1000000000000, 1)",
            "SELECT range(DATE '1970-01-01', DATE '9999-01-01', INTERVAL '1 day')",
            "SELECT generate_series(TIMESTAMP '2020-01-01', TIMESTAMP '2020-01-02', INTERVAL '1 microsecond')",
            "SELECT replace(repeat('x', 100000), '', repeat('y', 100))",
            "SELECT regexp_replace(repeat('x', 100000), '', repeat('y', 100), 'g')",
            "SELECT repeat(name, 200000) FROM (VALUES ('abcdefghij')) AS t(name)",
        ] {
            let err = run(&ctx, sql).await.expect_err(sql);
            assert!(
                err.to_string().contains("query.max_function_bytes"),
                "{sql}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn ordinary_calls_still_work() {
        let ctx = bounded();
        for sql in [
            "SELECT repeat('ab', 3)",
            "SELECT lpad('7', 3, '0')",
            "SELECT array_repeat('a', 3)",
            "SELECT range(10)",
            "SELECT range(1, 10, 2)",
            "SELECT generate_series(DATE '2024-01-01', DATE '2024-12-31', INTERVAL '1 month')",
            "SELECT replace('hello', 'l', 'L')",
            "SELECT regexp_replace('a1b2', '([0-9])', '<$1>', 'g')",
            "SELECT * FROM range(5)",
        ] {
            assert!(run(&ctx, sql).await.expect(sql) > 0, "{sql}");
        }
        let ok = ctx
            .sql("SELECT repeat('ab', 3) AS r")
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        let text = arrow::util::pretty::pretty_format_batches(&ok).expect("format");
        assert!(text.to_string().contains("ababab"), "{text}");
    }
}
