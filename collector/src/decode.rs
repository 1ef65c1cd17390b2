//! Request bodies: content types, capped decompression, protobuf and OTLP/JSON decoding.

use std::io::Read;

use crate::error::IngestError;

/// How a request body is encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

impl Format {
    /// Parses a `Content-Type` header value (parameters such as `charset` are ignored).
    pub fn from_content_type(value: Option<&str>) -> Result<Self, IngestError> {
        let Some(value) = value else {
            return Err(IngestError::UnsupportedMediaType(
                "missing Content-Type; use application/x-protobuf or application/json".into(),
            ));
        };
        let essence = value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/x-protobuf" | "application/protobuf" => Ok(Format::Protobuf),
            "application/json" => Ok(Format::Json),
            other => Err(IngestError::UnsupportedMediaType(format!(
                "unsupported Content-Type {other:?}; use application/x-protobuf or application/json"
            ))),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

/// Content encodings the HTTP receiver accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Zstd,
}

impl Encoding {
    pub fn from_header(value: Option<&str>) -> Result<Self, IngestError> {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("identity") => Ok(Encoding::Identity),
            Some("gzip") | Some("x-gzip") => Ok(Encoding::Gzip),
            Some("zstd") => Ok(Encoding::Zstd),
            Some(other) => Err(IngestError::UnsupportedMediaType(format!(
                "unsupported Content-Encoding {other:?}; use gzip, zstd or none"
            ))),
        }
    }
}

/// Decompresses `body`, refusing to produce more than `limit` bytes: the output is read in
/// bounded steps, so a small "bomb" costs at most `limit` bytes of memory.
///
/// # Errors
/// [`IngestError::TooLarge`] past `limit`, [`IngestError::Malformed`] for a corrupt body.
pub fn decompress(body: &[u8], encoding: Encoding, limit: usize) -> Result<Vec<u8>, IngestError> {
    decompress_reserving(body, encoding, limit, &mut |_| Ok(()))
}

/// Output is produced, and reserved, in steps of this size.
const DECOMPRESS_STEP: usize = 1 << 20;

/// [`decompress`], asking `reserve` for each step of output before producing it, so that
/// what a compressed body expands to is admitted as it grows, not after.
///
/// # Errors
/// As [`decompress`], and whatever `reserve` refuses with.
pub fn decompress_reserving(
    body: &[u8],
    encoding: Encoding,
    limit: usize,
    reserve: &mut dyn FnMut(usize) -> Result<(), IngestError>,
) -> Result<Vec<u8>, IngestError> {
    let mut reader: Box<dyn Read + '_> = match encoding {
        Encoding::Identity => {
            if body.len() > limit {
                return Err(IngestError::TooLarge { limit, stage: "" });
            }
            reserve(body.len())?;
            return Ok(body.to_vec());
        }
        Encoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(body)),
        Encoding::Zstd => Box::new(
            zstd::stream::read::Decoder::new(body)
                .map_err(|e| IngestError::Malformed(format!("invalid zstd body: {e}")))?,
        ),
    };
    let mut out = Vec::new();
    loop {
        // One byte past the limit tells a body of exactly `limit` from a larger one.
        let step = DECOMPRESS_STEP.min(limit + 1 - out.len());
        reserve(step)?;
        out.reserve_exact(step);
        let read = (&mut reader)
            .take(step as u64)
            .read_to_end(&mut out)
            .map_err(|e| IngestError::Malformed(format!("invalid compressed body: {e}")))?;
        if out.len() > limit {
            return Err(IngestError::TooLarge {
                limit,
                stage: " after decompression",
            });
        }
        if read < step {
            return Ok(out);
        }
    }
}

/// Decodes an OTLP request message from protobuf or OTLP/JSON.
pub fn decode<T>(bytes: &[u8], format: Format) -> Result<T, IngestError>
where
    T: prost::Message + Default + serde::de::DeserializeOwned,
{
    match format {
        Format::Protobuf => {
            T::decode(bytes).map_err(|e| IngestError::Malformed(format!("invalid protobuf: {e}")))
        }
        Format::Json => serde_json::from_slice(bytes)
            .map_err(|e| IngestError::Malformed(format!("invalid OTLP/JSON: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).expect("write");
        e.finish().expect("finish")
    }

    #[test]
    fn content_types_are_parsed_with_parameters() {
        assert_eq!(
            Format::from_content_type(Some("application/json; charset=utf-8")).ok(),
            Some(Format::Json)
        );
        assert_eq!(
            Format::from_content_type(Some("Application/X-Protobuf")).ok(),
            Some(Format::Protobuf)
        );
        assert!(matches!(
            Format::from_content_type(Some("text/plain")),
            Err(IngestError::UnsupportedMediaType(_))
        ));
        assert!(Format::from_content_type(None).is_err());
    }

    #[test]
    fn gzip_bomb_is_refused_without_inflating_it() {
        let bomb = gzip(&vec![0u8; 10 * 1024 * 1024]);
        assert!(bomb.len() < 20 * 1024);
        let err = decompress(&bomb, Encoding::Gzip, 1024 * 1024).expect_err("too large");
        assert!(matches!(err, IngestError::TooLarge { .. }), "{err}");
        let ok = decompress(&gzip(b"hello"), Encoding::Gzip, 5).expect("fits exactly");
        assert_eq!(ok, b"hello");
    }

    #[test]
    fn decompression_reserves_before_it_expands() {
        let body = gzip(&vec![7u8; 5 * DECOMPRESS_STEP / 2]);
        let mut reserved = 0;
        let out = decompress_reserving(&body, Encoding::Gzip, 64 << 20, &mut |n| {
            reserved += n;
            Ok(())
        })
        .expect("fits");
        assert_eq!(out.len(), 5 * DECOMPRESS_STEP / 2);
        assert!(reserved >= out.len() && reserved <= out.len() + DECOMPRESS_STEP);
        // A refusal stops the expansion at the step it refuses.
        let mut steps = 0;
        let err = decompress_reserving(&body, Encoding::Gzip, 64 << 20, &mut |_| {
            steps += 1;
            if steps > 1 {
                Err(IngestError::TooCostly("no more".into()))
            } else {
                Ok(())
            }
        })
        .expect_err("refused");
        assert!(matches!(err, IngestError::TooCostly(_)), "{err}");
        assert_eq!(steps, 2);
    }

    #[test]
    fn garbage_gzip_is_malformed() {
        let err = decompress(b"not gzip at all", Encoding::Gzip, 1024).expect_err("bad");
        assert!(matches!(err, IngestError::Malformed(_)), "{err}");
        assert!(Encoding::from_header(Some("br")).is_err());
    }
}
