//! OTLP attribute values as text, and Arrow builders for attribute maps.
//!
//! Every attribute map is stored twice over: `attributes` (`Map<Utf8, Utf8>`, the value as
//! text, so `attributes['http.route']` reads naturally in SQL) and `attribute_types` (the OTLP
//! type of every attribute that is not a string), so no type information is lost on disk.

use arrow::array::{ArrayRef, MapBuilder, StringBuilder};
use base64::Engine;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use std::sync::Arc;

use crate::limits::ItemLimits;

/// Renders a double so that parsing the text gives the same double back.
pub fn double_text(d: f64) -> String {
    if d.is_nan() {
        "NaN".into()
    } else if d.is_infinite() {
        if d > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        // Rust's Display for f64 is the shortest representation that round-trips.
        format!("{d}")
    }
}

/// The OTLP type name of a non-string value; `None` for strings and empty values.
pub fn type_name(v: &Value) -> Option<&'static str> {
    match v {
        Value::StringValue(_) => None,
        Value::BoolValue(_) => Some("bool"),
        Value::IntValue(_) => Some("int"),
        Value::DoubleValue(_) => Some("double"),
        Value::ArrayValue(_) => Some("array"),
        Value::KvlistValue(_) => Some("kvlist"),
        Value::BytesValue(_) => Some("bytes"),
        Value::StringValueStrindex(_) => Some("strindex"),
    }
}

/// The text form of a value: strings as they are, ints in decimal, booleans `true`/`false`,
/// doubles round-tripping, bytes in base64, arrays and kvlists as JSON.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::StringValue(s) => s.clone(),
        Value::BoolValue(b) => b.to_string(),
        Value::IntValue(i) => i.to_string(),
        Value::DoubleValue(d) => double_text(*d),
        Value::BytesValue(b) => base64::engine::general_purpose::STANDARD.encode(b),
        Value::ArrayValue(_) | Value::KvlistValue(_) => value_json(v).to_string(),
        // An index into a profile's string table; only profiles use it.
        Value::StringValueStrindex(i) => i.to_string(),
    }
}

/// A value as JSON with its natural types (used for arrays and kvlists).
pub fn value_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::StringValue(s) => J::String(s.clone()),
        Value::BoolValue(b) => J::Bool(*b),
        Value::IntValue(i) => J::from(*i),
        Value::DoubleValue(d) => serde_json::Number::from_f64(*d)
            .map(J::Number)
            .unwrap_or_else(|| J::String(double_text(*d))),
        Value::BytesValue(b) => J::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Value::StringValueStrindex(i) => J::from(*i),
        Value::ArrayValue(a) => J::Array(
            a.values
                .iter()
                .map(|x| x.value.as_ref().map_or(J::Null, value_json))
                .collect(),
        ),
        Value::KvlistValue(kv) => J::Object(
            kv.values
                .iter()
                .map(|x| {
                    let v = x
                        .value
                        .as_ref()
                        .and_then(|v| v.value.as_ref())
                        .map_or(J::Null, value_json);
                    (x.key.clone(), v)
                })
                .collect(),
        ),
    }
}

/// Looks up a string-valued attribute.
pub fn find_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Value::StringValue(s)) => Some(s.as_str()),
            _ => None,
        }
    })
}

/// Looks up an int-valued attribute (also accepting a decimal string).
pub fn find_int(attrs: &[KeyValue], key: &str) -> Option<i64> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Value::IntValue(i)) => Some(*i),
            Some(Value::StringValue(s)) => s.parse().ok(),
            _ => None,
        }
    })
}

/// The text and the type name of an optional `AnyValue` (`None` text for an empty value),
/// within the limits: a too long string is truncated, a too long or too deep other value
/// becomes `None` with its type kept.
pub fn any_value_parts(
    v: Option<&AnyValue>,
    limits: &ItemLimits,
) -> (Option<String>, Option<&'static str>) {
    match v.and_then(|v| v.value.as_ref()) {
        Some(v) => (limited_text(v, limits), type_name(v)),
        None => (None, None),
    }
}

type StrMap = MapBuilder<StringBuilder, StringBuilder>;

/// How deep arrays and maps nest inside a value (a scalar is 0).
pub fn depth(v: &Value) -> usize {
    match v {
        Value::ArrayValue(a) => {
            1 + a
                .values
                .iter()
                .filter_map(|x| x.value.as_ref())
                .map(depth)
                .max()
                .unwrap_or(0)
        }
        Value::KvlistValue(kv) => {
            1 + kv
                .values
                .iter()
                .filter_map(|x| x.value.as_ref().and_then(|v| v.value.as_ref()))
                .map(depth)
                .max()
                .unwrap_or(0)
        }
        _ => 0,
    }
}

/// The text of a value within the item limits, or `None` when the attribute must be dropped.
fn limited_text(v: &Value, limits: &ItemLimits) -> Option<String> {
    if depth(v) > limits.max_depth {
        return None;
    }
    let mut text = value_text(v);
    if text.len() > limits.max_value_bytes {
        if !matches!(v, Value::StringValue(_)) {
            return None;
        }
        let mut cut = limits.max_value_bytes;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    Some(text)
}

/// Builds the `attributes` / `attribute_types` column pair, one map per row.
#[derive(Debug)]
pub struct AttrColumns {
    values: StrMap,
    types: StrMap,
}

impl Default for AttrColumns {
    fn default() -> Self {
        Self {
            values: MapBuilder::new(None, StringBuilder::new(), StringBuilder::new()),
            types: MapBuilder::new(None, StringBuilder::new(), StringBuilder::new()),
        }
    }
}

/// An attribute list as it will be stored: duplicates resolved, limits applied. Resolving
/// is linear in the list's length, and a resource's list is resolved once for all its items.
#[derive(Debug, Default)]
pub struct Resolved<'a> {
    /// Key, text (None for an attribute without a value) and type, in the list's order.
    kept: Vec<(&'a str, Option<String>, Option<&'static str>)>,
    /// Attributes dropped by the limits.
    pub dropped: u32,
}

/// Lists up to this long look for duplicates by scanning (cheaper than hashing them).
const SCAN_DUPLICATES_UP_TO: usize = 16;

impl<'a> Resolved<'a> {
    /// Resolves `attrs` within `limits`. Of duplicate keys the last one wins (as in the SDKs).
    pub fn new(attrs: &'a [KeyValue], limits: &ItemLimits) -> Self {
        let mut out = Resolved::default();
        let mut seen = std::collections::HashSet::new();
        // Whether `attrs[i]` is overridden by a later attribute of the same key: walk the
        // list from the end, so the last of each key is the first one seen.
        let mut overridden = vec![false; attrs.len()];
        if attrs.len() <= SCAN_DUPLICATES_UP_TO {
            for (i, kv) in attrs.iter().enumerate() {
                overridden[i] = attrs[i + 1..].iter().any(|later| later.key == kv.key);
            }
        } else {
            for (i, kv) in attrs.iter().enumerate().rev() {
                overridden[i] = !seen.insert(kv.key.as_str());
            }
        }
        for (kv, overridden) in attrs.iter().zip(overridden) {
            if overridden {
                continue;
            }
            if out.kept.len() >= limits.max_attributes || kv.key.len() > limits.max_key_bytes {
                out.dropped += 1;
                continue;
            }
            let value = kv.value.as_ref().and_then(|v| v.value.as_ref());
            let (text, ty) = match value {
                Some(v) => match limited_text(v, limits) {
                    Some(text) => (Some(text), type_name(v)),
                    None => {
                        out.dropped += 1;
                        continue;
                    }
                },
                None => (None, None),
            };
            out.kept.push((kv.key.as_str(), text, ty));
        }
        out
    }
}

impl AttrColumns {
    /// Appends one row's attributes within `limits`; returns how many were dropped. Of
    /// duplicate keys the last one wins (as in the SDKs).
    pub fn append(&mut self, attrs: &[KeyValue], limits: &ItemLimits) -> u32 {
        let resolved = Resolved::new(attrs, limits);
        self.append_resolved(&resolved);
        resolved.dropped
    }

    /// Appends one row of already resolved attributes.
    pub fn append_resolved(&mut self, resolved: &Resolved<'_>) {
        for (key, text, ty) in &resolved.kept {
            self.values.keys().append_value(key);
            self.values.values().append_option(text.as_deref());
            if let Some(ty) = ty {
                self.types.keys().append_value(key);
                self.types.values().append_value(ty);
            }
        }
        // Appending a present (non-null) map never fails: keys and values have equal lengths.
        let _ = self.values.append(true);
        let _ = self.types.append(true);
    }

    pub fn finish(mut self) -> (ArrayRef, ArrayRef) {
        (
            Arc::new(self.values.finish()),
            Arc::new(self.types.finish()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, MapArray, StringArray};
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};

    fn kv(key: &str, v: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    #[test]
    fn text_forms_follow_the_contract() {
        assert_eq!(value_text(&Value::IntValue(-42)), "-42");
        assert_eq!(value_text(&Value::BoolValue(true)), "true");
        assert_eq!(value_text(&Value::DoubleValue(0.1)), "0.1");
        assert_eq!(value_text(&Value::DoubleValue(3.0)), "3");
        assert_eq!(value_text(&Value::DoubleValue(f64::NAN)), "NaN");
        assert_eq!(
            value_text(&Value::DoubleValue(f64::NEG_INFINITY)),
            "-Infinity"
        );
        assert_eq!(value_text(&Value::BytesValue(vec![1, 2, 3])), "AQID");
        let arr = Value::ArrayValue(ArrayValue {
            values: vec![
                AnyValue {
                    value: Some(Value::StringValue("a".into())),
                },
                AnyValue {
                    value: Some(Value::IntValue(2)),
                },
            ],
        });
        assert_eq!(value_text(&arr), r#"["a",2]"#);
        let kvl = Value::KvlistValue(KeyValueList {
            values: vec![kv("x", Value::DoubleValue(1.5))],
        });
        assert_eq!(value_text(&kvl), r#"{"x":1.5}"#);
    }

    #[test]
    fn doubles_round_trip_through_text() {
        for d in [
            0.1,
            1e300,
            -2.5e-310,
            123456.789,
            f64::MAX,
            f64::MIN_POSITIVE,
        ] {
            assert_eq!(
                value_text(&Value::DoubleValue(d)).parse::<f64>().ok(),
                Some(d)
            );
        }
    }

    #[test]
    fn maps_hold_text_and_types_and_last_duplicate_wins() {
        let mut b = AttrColumns::default();
        let limits = ItemLimits::default();
        b.append(
            &[
                kv("s", Value::StringValue("x".into())),
                kv("i", Value::IntValue(7)),
                kv("s", Value::StringValue("y".into())),
            ],
            &limits,
        );
        b.append(&[], &limits);
        let (values, types) = b.finish();
        let values = values.as_any().downcast_ref::<MapArray>().expect("map");
        let types = types.as_any().downcast_ref::<MapArray>().expect("map");
        assert_eq!(values.len(), 2);
        let row = values.value(0);
        let keys = row
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("k");
        let vals = row
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("v");
        assert_eq!(keys.iter().flatten().collect::<Vec<_>>(), vec!["i", "s"]);
        assert_eq!(vals.iter().flatten().collect::<Vec<_>>(), vec!["7", "y"]);
        let trow = types.value(0);
        let tkeys = trow
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("k");
        assert_eq!(tkeys.iter().flatten().collect::<Vec<_>>(), vec!["i"]);
        assert_eq!(values.value(1).len(), 0);
    }

    #[test]
    fn limits_drop_and_truncate_and_count() {
        let limits = ItemLimits {
            max_attributes: 3,
            max_key_bytes: 5,
            max_value_bytes: 4,
            max_depth: 1,
            ..ItemLimits::default()
        };
        let nested = Value::ArrayValue(ArrayValue {
            values: vec![AnyValue {
                value: Some(Value::ArrayValue(ArrayValue { values: vec![] })),
            }],
        });
        let mut b = AttrColumns::default();
        let dropped = b.append(
            &[
                kv("long-key", Value::IntValue(1)),
                kv("deep", nested),
                kv("s", Value::StringValue("héllo".into())),
                kv("b", Value::BytesValue(vec![0; 10])),
                kv("i", Value::IntValue(1)),
                kv("j", Value::IntValue(2)),
                kv("k", Value::IntValue(3)),
            ],
            &limits,
        );
        // long-key, deep and b (too long, not a string) dropped; k is past the count limit.
        assert_eq!(dropped, 4);
        let (values, _) = b.finish();
        let values = values.as_any().downcast_ref::<MapArray>().expect("map");
        let row = values.value(0);
        let vals = row
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("v");
        assert_eq!(
            vals.iter().flatten().collect::<Vec<_>>(),
            vec!["hél", "1", "2"]
        );
    }

    #[test]
    fn long_lists_resolve_duplicates_the_same_way_as_short_ones() {
        let limits = ItemLimits::default();
        // 60,000 keys, each twice: the second (later) value wins, and past the count limit
        // every unique key is one dropped attribute.
        let attrs: Vec<KeyValue> = (0..2)
            .flat_map(|round| {
                (0..30_000).map(move |i| kv(&format!("k{i}"), Value::IntValue(round)))
            })
            .collect();
        let resolved = Resolved::new(&attrs, &limits);
        assert_eq!(resolved.kept.len(), limits.max_attributes);
        assert_eq!(resolved.dropped as usize, 30_000 - limits.max_attributes);
        assert!(
            resolved
                .kept
                .iter()
                .all(|(_, text, _)| text.as_deref() == Some("1"))
        );
        assert_eq!(resolved.kept[0].0, "k0");
        // The same list short enough to be scanned gives the same answer.
        let short: Vec<KeyValue> = (0..2)
            .flat_map(|round| (0..5).map(move |i| kv(&format!("k{i}"), Value::IntValue(round))))
            .collect();
        let scanned = Resolved::new(&short, &limits);
        assert_eq!(
            scanned
                .kept
                .iter()
                .map(|(k, t, _)| (*k, t.clone()))
                .collect::<Vec<_>>(),
            (0..5)
                .map(|i| (["k0", "k1", "k2", "k3", "k4"][i], Some("1".to_string())))
                .collect::<Vec<_>>()
        );
        let hashed_list: Vec<KeyValue> = short.iter().cycle().take(40).cloned().collect();
        let hashed = Resolved::new(&hashed_list, &limits);
        assert_eq!(hashed.kept.len(), 5);
        assert_eq!(hashed.dropped, 0);
    }
}
