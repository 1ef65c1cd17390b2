//! Shared by the OTLP fuzz targets: what they run is `sightline_collector::fuzzing`, which the
//! test suite also runs a bounded number of times on the seeds and their mutations.

pub use sightline_collector::decode::Format;

pub fn run(data: &[u8], format: Format) {
    sightline_collector::fuzzing::otlp(data, format);
}
