mod docs_sql;
mod http_json;
mod restart;
mod sdk_roundtrip;
mod server;
mod slo;
mod web;
