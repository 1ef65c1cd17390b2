//! Query results on the wire: JSON (`columns` + `rows`), CSV, Arrow IPC stream.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use sightline_store::query::QueryOutput;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Json,
    Csv,
    Arrow,
}

pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

impl OutputFormat {
    /// The body's `format` wins over the `Accept` header; JSON is the default.
    pub fn choose(format: Option<&str>, accept: Option<&str>) -> Result<Self, String> {
        if let Some(f) = format {
            return match f.to_ascii_lowercase().as_str() {
                "json" => Ok(Self::Json),
                "csv" => Ok(Self::Csv),
                "arrow" => Ok(Self::Arrow),
                other => Err(format!("unknown format {other:?}; use json, csv or arrow")),
            };
        }
        let accept = accept.unwrap_or("").to_ascii_lowercase();
        Ok(if accept.contains("text/csv") {
            Self::Csv
        } else if accept.contains(ARROW_STREAM) {
            Self::Arrow
        } else {
            Self::Json
        })
    }
}

/// Encodes a result; returns its content type and body.
pub fn render(
    out: &QueryOutput,
    format: OutputFormat,
    elapsed: Duration,
) -> Result<(&'static str, Vec<u8>), ArrowError> {
    match format {
        OutputFormat::Json => Ok(("application/json", json(out, elapsed)?)),
        OutputFormat::Csv => Ok(("text/csv; charset=utf-8", csv(out)?)),
        OutputFormat::Arrow => Ok((ARROW_STREAM, arrow_ipc(out)?)),
    }
}

/// A batch with columns renamed `c0..cN`, so duplicate output names survive JSON objects.
fn positional(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| Field::new(format!("c{i}"), f.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), batch.columns().to_vec())
}

/// Rows of a batch as JSON arrays (maps as objects, lists as arrays, timestamps RFC 3339).
pub fn json_rows(batch: &RecordBatch) -> Result<Vec<Vec<serde_json::Value>>, ArrowError> {
    if batch.num_rows() == 0 {
        return Ok(Vec::new());
    }
    let batch = positional(batch)?;
    let mut buf = Vec::new();
    {
        let mut writer = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow::json::writer::JsonArray>(&mut buf);
        writer.write(&batch)?;
        writer.finish()?;
    }
    let objects: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice(&buf).map_err(|e| ArrowError::JsonError(e.to_string()))?;
    let n = batch.num_columns();
    Ok(objects
        .into_iter()
        .map(|mut o| {
            (0..n)
                .map(|i| {
                    o.remove(&format!("c{i}"))
                        .unwrap_or(serde_json::Value::Null)
                })
                .collect()
        })
        .collect())
}

fn json(out: &QueryOutput, elapsed: Duration) -> Result<Vec<u8>, ArrowError> {
    let columns: Vec<serde_json::Value> = out
        .schema
        .fields()
        .iter()
        .map(|f| serde_json::json!({ "name": f.name(), "type": f.data_type().to_string() }))
        .collect();
    let mut rows = Vec::with_capacity(out.num_rows());
    for b in &out.batches {
        rows.extend(json_rows(b)?.into_iter().map(serde_json::Value::from));
    }
    let body = serde_json::json!({
        "columns": columns,
        "row_count": rows.len(),
        "rows": rows,
        "truncated": out.truncated,
        "elapsed_ms": elapsed.as_secs_f64() * 1000.0,
    });
    serde_json::to_vec(&body).map_err(|e| ArrowError::JsonError(e.to_string()))
}

fn is_nested(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Map(..)
            | DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(..)
            | DataType::Struct(_)
            | DataType::ListView(_)
            | DataType::LargeListView(_)
    )
}

/// Nested columns become JSON text so that CSV can hold them.
fn flatten_for_csv(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let schema = batch.schema();
    if !schema.fields().iter().any(|f| is_nested(f.data_type())) {
        return Ok(batch.clone());
    }
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (f, col) in schema.fields().iter().zip(batch.columns()) {
        if is_nested(f.data_type()) {
            let single = RecordBatch::try_new(
                Arc::new(Schema::new(vec![Field::new(
                    "c",
                    f.data_type().clone(),
                    true,
                )])),
                vec![col.clone()],
            )?;
            let texts: Vec<Option<String>> = json_rows(&single)?
                .into_iter()
                .map(|mut r| match r.pop() {
                    Some(serde_json::Value::Null) | None => None,
                    Some(v) => Some(v.to_string()),
                })
                .collect();
            fields.push(Field::new(f.name(), DataType::Utf8, true));
            columns.push(Arc::new(StringArray::from(texts)));
        } else {
            fields.push(Field::new(f.name(), f.data_type().clone(), true));
            columns.push(col.clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

fn csv(out: &QueryOutput) -> Result<Vec<u8>, ArrowError> {
    let mut buf = Vec::new();
    {
        let mut writer = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut buf);
        if out.batches.is_empty() {
            let names: Vec<&str> = out
                .schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            drop(writer);
            buf.extend_from_slice(names.join(",").as_bytes());
            buf.push(b'\n');
            return Ok(buf);
        }
        for b in &out.batches {
            writer.write(&flatten_for_csv(b)?)?;
        }
    }
    Ok(buf)
}

fn arrow_ipc(out: &QueryOutput) -> Result<Vec<u8>, ArrowError> {
    let mut buf = Vec::new();
    {
        let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut buf, &out.schema)?;
        for b in &out.batches {
            writer.write(b)?;
        }
        writer.finish()?;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array, MapBuilder, StringBuilder};

    fn output() -> QueryOutput {
        let mut m = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        m.keys().append_value("http.route");
        m.values().append_value("/cart");
        m.append(true).expect("map");
        let map = m.finish();
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("n", DataType::Int64, true),
            Field::new("attributes", map.data_type().clone(), true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![Some(1)])),
                Arc::new(Int64Array::from(vec![None])),
                Arc::new(map),
            ],
        )
        .expect("batch");
        QueryOutput::new(schema, vec![batch], false)
    }

    #[test]
    fn json_keeps_duplicate_names_nulls_and_maps() {
        let (_, body) = render(&output(), OutputFormat::Json, Duration::ZERO).expect("json");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("parse");
        assert_eq!(
            v["rows"],
            serde_json::json!([[1, null, {"http.route": "/cart"}]])
        );
        assert_eq!(v["columns"][1]["name"], "n");
        assert_eq!(v["row_count"], 1);
    }

    #[test]
    fn csv_renders_nested_columns_as_json_text() {
        let (_, body) = render(&output(), OutputFormat::Csv, Duration::ZERO).expect("csv");
        let text = String::from_utf8(body).expect("utf8");
        assert_eq!(
            text,
            "n,n,attributes\n1,,\"{\"\"http.route\"\":\"\"/cart\"\"}\"\n"
        );
    }

    #[test]
    fn arrow_ipc_round_trips() {
        let (_, body) = render(&output(), OutputFormat::Arrow, Duration::ZERO).expect("ipc");
        let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
            .expect("reader");
        let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().expect("read");
        assert_eq!(batches[0].num_rows(), 1);
    }

    #[test]
    fn format_choice() {
        assert_eq!(
            OutputFormat::choose(Some("CSV"), None),
            Ok(OutputFormat::Csv)
        );
        assert_eq!(
            OutputFormat::choose(None, Some(ARROW_STREAM)),
            Ok(OutputFormat::Arrow)
        );
        assert_eq!(OutputFormat::choose(None, None), Ok(OutputFormat::Json));
        assert!(OutputFormat::choose(Some("xml"), None).is_err());
    }
}
