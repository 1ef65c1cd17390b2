#![no_main]
//! The body of an OTLP/gRPC export call: framing, compression, the shape walk, decoding and
//! conversion, as the gRPC services take it.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sightline_collector::fuzzing::grpc_body(data);
});
