//! The envelope of every file alert delivery keeps (outbox entries, the notification log, API
//! silences): `{"format": N, "data": …}`.
//!
//! Format 1 files (before the envelope) are the bare `data`; they are read as they are.
//! A file of a format newer than [`CURRENT`] was written by a newer release: it is refused
//! with [`FormatError::Newer`] rather than read wrongly or set aside as damaged. A change that
//! old readers could not read raises [`CURRENT`], and the reader maps every earlier format.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The format this release writes.
pub const CURRENT: u64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error(
        "written by a newer release of Sightline (format {found}; this release reads up to {CURRENT})"
    )]
    Newer { found: u64 },
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

#[derive(Serialize)]
struct Envelope<'a, T> {
    format: u64,
    data: &'a T,
}

/// `data` in the envelope of the current format.
pub fn encode<T: Serialize>(data: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&Envelope {
        format: CURRENT,
        data,
    })
}

/// The data of a file of any format up to [`CURRENT`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FormatError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)?;
    let format = value.get("format").and_then(serde_json::Value::as_u64);
    match (format, value) {
        (Some(found), _) if found > CURRENT => Err(FormatError::Newer { found }),
        (Some(_), serde_json::Value::Object(mut o)) => Ok(serde_json::from_value(
            o.remove("data").unwrap_or(serde_json::Value::Null),
        )?),
        // Format 1: the data itself.
        (_, value) => Ok(serde_json::from_value(value)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_is_read_and_a_newer_one_is_refused() {
        let v: Vec<u32> = vec![1, 2];
        let encoded = encode(&v).expect("encode");
        assert_eq!(
            std::str::from_utf8(&encoded).expect("utf-8"),
            r#"{"format":2,"data":[1,2]}"#
        );
        assert_eq!(decode::<Vec<u32>>(&encoded).expect("v2"), v);
        assert_eq!(decode::<Vec<u32>>(b"[1,2]").expect("v1"), v);
        let newer = decode::<Vec<u32>>(br#"{"format":3,"data":[1]}"#).expect_err("newer");
        assert!(matches!(newer, FormatError::Newer { found: 3 }), "{newer}");
        assert!(matches!(
            decode::<Vec<u32>>(b"{"),
            Err(FormatError::Json(_))
        ));
    }
}
