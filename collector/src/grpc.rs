//! OTLP/gRPC receiver: the three collector services from `opentelemetry-proto`, gzip and zstd
//! accepted, errors mapped to gRPC codes (with `RetryInfo` when the sender should retry).

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::IngestError;
use crate::ingest::{ExportRequest, Ingest, Transport};

/// Implements the three OTLP collector services over [`Ingest`].
#[derive(Debug, Clone)]
pub struct GrpcReceiver {
    ingest: Ingest,
}

/// The gRPC status for an ingest error.
pub fn status(e: &IngestError) -> Status {
    match e.retry_after() {
        Some(delay) => Status::with_error_details(
            e.grpc_code(),
            e.to_string(),
            ErrorDetails::with_retry_info(Some(delay)),
        ),
        None => Status::new(e.grpc_code(), e.to_string()),
    }
}

impl GrpcReceiver {
    pub fn new(ingest: Ingest) -> Self {
        Self { ingest }
    }

    async fn handle<R: ExportRequest>(
        &self,
        request: Request<R>,
    ) -> Result<Response<R::Response>, Status> {
        let request = request.into_inner();
        let size = prost::Message::encoded_len(&request);
        self.ingest.count_bytes(R::SIGNAL, Transport::Grpc, size);
        // tonic has decoded the message already; its memory still counts until the answer.
        let _admitted = self
            .ingest
            .admit(R::SIGNAL, Transport::Grpc, size)
            .map_err(|e| {
                self.ingest.count_failure(R::SIGNAL, Transport::Grpc, &e);
                status(&e)
            })?;
        match self.ingest.export(&request, Transport::Grpc).await {
            Ok(outcome) => Ok(Response::new(outcome.response::<R>())),
            Err(e) => Err(status(&e)),
        }
    }

    /// A tonic router serving the three services with compression and size limits.
    pub fn into_router(self) -> tonic::service::Routes {
        let max = self.ingest.limits().max_decoded_bytes;
        let traces = TraceServiceServer::new(self.clone())
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd)
            .max_decoding_message_size(max);
        let metrics = MetricsServiceServer::new(self.clone())
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd)
            .max_decoding_message_size(max);
        let logs = LogsServiceServer::new(self)
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd)
            .max_decoding_message_size(max);
        tonic::service::Routes::new(traces)
            .add_service(metrics)
            .add_service(logs)
    }
}

#[async_trait::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.handle(request).await
    }
}

#[async_trait::async_trait]
impl MetricsService for GrpcReceiver {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.handle(request).await
    }
}

#[async_trait::async_trait]
impl LogsService for GrpcReceiver {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        self.handle(request).await
    }
}
