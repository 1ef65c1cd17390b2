#![no_main]
//! OTLP protobuf decode → Arrow conversion, for all three signals.

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::run(data, sightline_collector::decode::Format::Protobuf);
});
