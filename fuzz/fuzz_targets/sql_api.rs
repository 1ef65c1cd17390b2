#![no_main]
//! Any text as a statement for the SQL API, run by the real query engine over empty tables:
//! answered or refused within its timeout, never a crash.

use std::sync::OnceLock;
use std::time::Duration;

use sightline_store::fuzzing::SqlTarget;

fn target() -> &'static SqlTarget {
    static TARGET: OnceLock<(SqlTarget, tempfile::TempDir)> = OnceLock::new();
    &TARGET
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temporary directory");
            (SqlTarget::new(dir.path(), Duration::from_secs(2)), dir)
        })
        .0
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(sql) = std::str::from_utf8(data) {
        let _ = target().run(sql);
    }
});
