//! # sightline-collector
//!
//! The OTLP front of Sightline: everything between a sender's bytes and a stored batch.
//!
//! - [`grpc`]: the OTLP/gRPC services (tonic, types from `opentelemetry-proto`), gzip and zstd;
//! - [`http`]: OTLP/HTTP `POST /v1/{traces,metrics,logs}`, protobuf or JSON, gzip or zstd;
//! - [`decode`]: content types, decompression capped while streaming, protobuf and OTLP/JSON;
//! - [`convert`]: OTLP → Arrow record batches for the store's tables, with per-item validation
//!   that feeds OTLP partial success;
//! - [`body`]: request bodies read within their size and time limits, admitted as they arrive;
//! - [`shape`]: what a body will cost to decode, measured on its bytes before decoding it;
//! - [`ingest`]: the shared path (admit → decode → convert → store → count → answer) both
//!   receivers call;
//! - [`error`]: ingest errors and their single mapping to HTTP and gRPC statuses;
//! - [`limits`] and [`config`]: what a request may cost (the `[limits]` config section);
//! - `quota`: each tenant's ingest rate and share of the memory ceiling (`[tenants]`).
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<sightline_store::Store>) {
//! use sightline_collector::{Ingest, Limits, metrics::CollectorMetrics};
//! let mut registry = prometheus_client::registry::Registry::default();
//! let ingest = Ingest::new(store, CollectorMetrics::new(&mut registry), Limits::default());
//! let http_routes = sightline_collector::http::router(ingest.clone());
//! let grpc_routes = sightline_collector::grpc::GrpcReceiver::new(ingest).into_router();
//! # }
//! ```

#![cfg_attr(
    test,
    allow(
        clippy::disallowed_methods,
        reason = "tests block on their runtimes and spawn freely"
    )
)]

mod admission;
pub mod attributes;
pub mod body;
pub mod config;
pub mod convert;
pub mod decode;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod grpc;
pub mod http;
pub mod ingest;
pub mod limits;
pub mod metrics;
mod quota;
pub mod request;
pub mod shape;

pub use error::IngestError;
pub use ingest::{Ingest, Outcome, Signal, Transport};
pub use limits::Limits;
