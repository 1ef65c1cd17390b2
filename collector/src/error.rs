//! Ingest errors and their one mapping to HTTP and gRPC statuses (OTLP spec, "Failures").

use std::time::Duration;

use http::StatusCode;
use sightline_store::StoreError;

/// Why an export request was not (fully) stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The body can't be decoded: malformed protobuf or JSON, a bad compressed stream.
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotFound(String),
    #[error("request body exceeds the limit of {limit} bytes{stage}")]
    TooLarge { limit: usize, stage: &'static str },
    /// The request would take more memory to decode or store than one request may; the
    /// sender must split it (not retryable as it is).
    #[error("{0}")]
    TooCostly(String),
    /// The body did not arrive within the request timeout.
    #[error("{0}")]
    Timeout(String),
    /// A passing condition (shutting down, a full disk); the sender should retry.
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after: Duration,
    },
    #[error("internal error: {0}")]
    Internal(String),
    /// No API key, or one that is not valid (not retryable).
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid key without the ingest role (not retryable).
    #[error("{0}")]
    PermissionDenied(String),
    /// Too many failed attempts from the sender's address.
    #[error("{message}")]
    Throttled {
        message: String,
        retry_after: Duration,
    },
    /// The tenant is over its ingest rate or its share of the memory ceiling.
    #[error("{message}")]
    OverQuota {
        message: String,
        retry_after: Duration,
    },
}

impl From<sightline_common::auth::Denied> for IngestError {
    fn from(d: sightline_common::auth::Denied) -> Self {
        use sightline_common::auth::Denied;
        match d {
            Denied::Unauthenticated(_) => IngestError::Unauthenticated(d.to_string()),
            Denied::Forbidden(_) => IngestError::PermissionDenied(d.to_string()),
            Denied::TooManyFailures { retry_after } => IngestError::Throttled {
                message: d.to_string(),
                retry_after,
            },
        }
    }
}

impl IngestError {
    pub fn http_status(&self) -> StatusCode {
        match self {
            IngestError::Malformed(_) => StatusCode::BAD_REQUEST,
            IngestError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IngestError::NotFound(_) => StatusCode::NOT_FOUND,
            IngestError::TooLarge { .. } | IngestError::TooCostly(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            IngestError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            IngestError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            IngestError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            IngestError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            IngestError::PermissionDenied(_) => StatusCode::FORBIDDEN,
            IngestError::Throttled { .. } | IngestError::OverQuota { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
        }
    }

    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            IngestError::Malformed(_) | IngestError::UnsupportedMediaType(_) => {
                tonic::Code::InvalidArgument
            }
            IngestError::NotFound(_) => tonic::Code::Unimplemented,
            // Not retryable without RetryInfo, which the OTLP spec says makes it permanent.
            IngestError::TooLarge { .. } | IngestError::TooCostly(_) => {
                tonic::Code::InvalidArgument
            }
            IngestError::Timeout(_) => tonic::Code::DeadlineExceeded,
            IngestError::Unavailable { .. } => tonic::Code::Unavailable,
            IngestError::Internal(_) => tonic::Code::Internal,
            IngestError::Unauthenticated(_) => tonic::Code::Unauthenticated,
            IngestError::PermissionDenied(_) => tonic::Code::PermissionDenied,
            // Retryable: the status carries RetryInfo.
            IngestError::Throttled { .. } | IngestError::OverQuota { .. } => {
                tonic::Code::ResourceExhausted
            }
        }
    }

    /// How long a sender should wait before retrying, for retryable errors.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            IngestError::Unavailable { retry_after, .. }
            | IngestError::Throttled { retry_after, .. }
            | IngestError::OverQuota { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Short, bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            IngestError::Malformed(_) => "malformed",
            IngestError::UnsupportedMediaType(_) => "unsupported_media_type",
            IngestError::NotFound(_) => "not_found",
            IngestError::TooLarge { .. } => "too_large",
            IngestError::TooCostly(_) => "too_costly",
            IngestError::Timeout(_) => "timeout",
            IngestError::Unavailable { .. } => "unavailable",
            IngestError::Internal(_) => "internal",
            IngestError::Unauthenticated(_) => "unauthenticated",
            IngestError::PermissionDenied(_) => "permission_denied",
            IngestError::Throttled { .. } => "throttled",
            IngestError::OverQuota { .. } => "over_quota",
        }
    }
}

impl From<StoreError> for IngestError {
    fn from(e: StoreError) -> Self {
        // A tenant that cannot be opened (too many open, its directory unreadable): the
        // sender keeps its data and retries; the operator sees why in the log.
        if let StoreError::Tenant(why) = &e {
            tracing::warn!(error = %why, "a tenant cannot be opened; sender will retry");
            return IngestError::Unavailable {
                message: "this tenant cannot be served now; retry later".into(),
                retry_after: Duration::from_secs(5),
            };
        }
        if e.is_retryable() {
            tracing::warn!(error = %e, "store refused a write; sender will retry");
            IngestError::Unavailable {
                message: format!("temporarily unable to store data: {e}"),
                retry_after: Duration::from_secs(1),
            }
        } else {
            tracing::error!(error = %e, "store rejected a converted batch");
            IngestError::Internal(e.to_string())
        }
    }
}

impl From<arrow::error::ArrowError> for IngestError {
    fn from(e: arrow::error::ArrowError) -> Self {
        IngestError::Internal(format!("building columns: {e}"))
    }
}

/// `google.rpc.Status`, the body of OTLP/HTTP error responses.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

impl From<&IngestError> for RpcStatus {
    fn from(e: &IngestError) -> Self {
        RpcStatus {
            code: e.grpc_code() as i32,
            message: e.to_string(),
        }
    }
}
