#![allow(
    clippy::disallowed_methods,
    reason = "tests and benchmarks block on their runtimes and spawn freely"
)]
mod auth;
mod docs_sql;
mod http_json;
mod restart;
mod sdk_roundtrip;
mod server;
mod slo;
mod web;
