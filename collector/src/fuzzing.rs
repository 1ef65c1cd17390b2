//! What the fuzz targets (`fuzz/`) run, and the test suite with them, a bounded number of
//! times (`tests/fuzz_replay.rs`): every path a sender's bytes take, which may reject any input
//! but never panic, never allocate past their budgets and never disagree with each other.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use crate::convert::{ConvertContext, logs, metrics, traces};
use crate::decode::{Encoding, Format, decode, decompress_reserving};
use crate::ingest::{ExportRequest, Signal};
use crate::limits::ItemLimits;
use crate::shape::{self, ShapeError};

/// A fixed arrival time inside the fuzzer's likely timestamps, so the window check is exercised.
const NOW_NS: i64 = 1_764_318_000_000_000_000;

/// What a fuzzed body may decompress to.
const DECOMPRESSED_LIMIT: usize = 4 << 20;

/// Decodes `data` as each OTLP request type and converts what decodes, as the receivers do;
/// for protobuf, the shape walk must accept whatever prost decodes.
pub fn otlp(data: &[u8], format: Format) {
    let ctx = ConvertContext::new(NOW_NS, ItemLimits::default());
    if format == Format::Protobuf {
        agrees::<ExportTraceServiceRequest>(data);
        agrees::<ExportMetricsServiceRequest>(data);
        agrees::<ExportLogsServiceRequest>(data);
    } else {
        let _ = shape::json(data);
    }
    if let Ok(req) = decode::<ExportTraceServiceRequest>(data, format) {
        let _ = traces::convert(&req, &ctx);
    }
    if let Ok(req) = decode::<ExportMetricsServiceRequest>(data, format) {
        let _ = metrics::convert(&req, &ctx);
    }
    if let Ok(req) = decode::<ExportLogsServiceRequest>(data, format) {
        let _ = logs::convert(&req, &ctx);
    }
}

/// The body of a gRPC export call, as the gRPC services take it: one length-prefixed message,
/// compressed (gzip, then zstd, is tried) or not, then everything [`otlp`] does.
pub fn grpc_body(data: &[u8]) {
    let Ok((compressed, message)) = crate::grpc::unframe(Bytes::copy_from_slice(data)) else {
        return;
    };
    if !compressed {
        otlp(&message, Format::Protobuf);
        return;
    }
    for encoding in [Encoding::Gzip, Encoding::Zstd] {
        let mut reserved = 0usize;
        let out = decompress_reserving(&message, encoding, DECOMPRESSED_LIMIT, &mut |n| {
            reserved += n;
            Ok(())
        });
        if let Ok(out) = out {
            assert!(
                reserved >= out.len(),
                "decompression produced more than it reserved"
            );
            otlp(&out, Format::Protobuf);
        }
    }
}

/// Whatever prost decodes as `R`, the shape walk accepts (it may only refuse nesting deeper
/// than prost's own limit, which prost refuses too).
fn agrees<R: ExportRequest>(data: &[u8]) {
    let signal: Signal = R::SIGNAL;
    let walked = shape::protobuf(signal, data);
    let decoded = decode::<R>(data, Format::Protobuf);
    if let (Err(e @ ShapeError::Protobuf(_)), Ok(_)) = (&walked, &decoded) {
        panic!("prost decodes what the shape walk refuses ({e}): {data:02x?}");
    }
}

#[cfg(test)]
mod tests {
    //! Bounded runs of the fuzz targets: the seeds, and mutations of them.

    use super::*;
    use std::io::Write;

    use sightline_common::seeded::Seeded as Rng;

    fn seeds(dir: &str) -> Vec<Vec<u8>> {
        let dir = sightline_common::durable::manifest_dir(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/seeds")
            .join(dir);
        let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .expect("the fuzz seeds")
            .map(|e| std::fs::read(e.expect("entry").path()).expect("seed"))
            .collect();
        out.sort();
        assert!(!out.is_empty(), "no seeds in {}", dir.display());
        out
    }

    /// `seed` changed in one of the ways a fuzzer starts with.
    fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
        let mut d = seed.to_vec();
        for _ in 0..=rng.below(4) {
            let at = rng.below(d.len());
            match rng.below(6) {
                0 if !d.is_empty() => d[at] ^= 1 << rng.below(8),
                1 if !d.is_empty() => d[at] = rng.next_u64() as u8,
                2 => d.truncate(at),
                3 => {
                    let end = (at + rng.below(64)).min(d.len());
                    let piece = d[at..end].to_vec();
                    let to = rng.below(d.len());
                    d.splice(to..to, piece);
                }
                4 => d.insert(at.min(d.len()), [0x0a, 0x00, 0xff, 0x80][rng.below(4)]),
                _ => {
                    let end = (at + rng.below(16)).min(d.len());
                    d.drain(at..end);
                }
            }
        }
        d
    }

    fn frame(flag: u8, message: &[u8]) -> Vec<u8> {
        let mut f = vec![flag];
        f.extend_from_slice(&(message.len() as u32).to_be_bytes());
        f.extend_from_slice(message);
        f
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).expect("write");
        e.finish().expect("finish")
    }

    const MUTATIONS_PER_SEED: usize = 5000;

    #[test]
    fn otlp_protobuf_and_json_seeds_and_mutations() {
        let mut rng = Rng::new(0x5eed_0001);
        for (dir, format) in [
            ("otlp_protobuf", Format::Protobuf),
            ("otlp_json", Format::Json),
        ] {
            for seed in seeds(dir) {
                otlp(&seed, format);
                for _ in 0..MUTATIONS_PER_SEED {
                    otlp(&mutate(&mut rng, &seed), format);
                }
            }
        }
    }

    #[test]
    fn grpc_bodies_seeds_and_mutations() {
        let mut rng = Rng::new(0x5eed_0002);
        for seed in seeds("otlp_protobuf") {
            for body in [frame(0, &seed), frame(1, &gzip(&seed))] {
                grpc_body(&body);
                for _ in 0..MUTATIONS_PER_SEED {
                    grpc_body(&mutate(&mut rng, &body));
                }
            }
            // A frame around a mutated message, so mutations reach the decoder too.
            for _ in 0..MUTATIONS_PER_SEED {
                grpc_body(&frame(0, &mutate(&mut rng, &seed)));
            }
        }
    }

    #[test]
    fn groups_prost_skips_are_walked_too() {
        // An unknown field 15 as a group (start 0x7b, end 0x7c) inside a trace request.
        let data = [0x7b, 0x08, 0x01, 0x7c];
        agrees::<ExportTraceServiceRequest>(&data);
        assert!(decode::<ExportTraceServiceRequest>(&data, Format::Protobuf).is_ok());
        assert!(shape::protobuf(Signal::Traces, &data).is_ok());
    }
}
