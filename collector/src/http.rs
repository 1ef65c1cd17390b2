//! OTLP/HTTP receiver: `POST /v1/traces`, `/v1/metrics`, `/v1/logs`, protobuf or JSON,
//! optionally gzip or zstd compressed, answered in the request's own content type.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use crate::decode::{Encoding, Format};
use crate::error::{IngestError, RpcStatus};
use crate::ingest::{ExportRequest, Ingest, Transport};
use crate::limits::Limits;

#[derive(Debug, Clone)]
struct HttpState {
    ingest: Ingest,
    limits: Limits,
}

/// The OTLP/HTTP routes (limits from `ingest`).
pub fn router(ingest: Ingest) -> Router {
    let limits = *ingest.limits();
    Router::new()
        .route("/v1/traces", post(export::<ExportTraceServiceRequest>))
        .route("/v1/metrics", post(export::<ExportMetricsServiceRequest>))
        .route("/v1/logs", post(export::<ExportLogsServiceRequest>))
        .fallback(not_found)
        .with_state(HttpState { ingest, limits })
}

async fn not_found() -> Response {
    error_response(
        Format::Json,
        &IngestError::NotFound(
            "no such OTLP endpoint; use /v1/traces, /v1/metrics or /v1/logs".into(),
        ),
    )
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn export<R: ExportRequest>(
    State(state): State<HttpState>,
    client: Option<axum::Extension<sightline_common::auth::ClientIp>>,
    certificate: Option<axum::Extension<sightline_common::auth::ClientCertificate>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // Until the content type is known, errors are answered in JSON.
    let format = match Format::from_content_type(header_str(&headers, header::CONTENT_TYPE)) {
        Ok(f) => f,
        Err(e) => return refuse_unread::<R>(&state, Format::Json, e, body).await,
    };
    let credentials = sightline_common::auth::Credentials {
        authorization: headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
        client: client.map(|c| c.0.0),
        certificate: certificate.as_ref().map(|c| &c.0.0),
        org_id: sightline_common::proxy::OrgId::of(&headers),
        via: "otlp_http",
    };
    let tenant = match state.ingest.authorize(&credentials) {
        Ok(t) => t,
        Err(e) => return refuse_unread::<R>(&state, format, e, body).await,
    };
    let encoding = match Encoding::from_header(header_str(&headers, header::CONTENT_ENCODING)) {
        Ok(e) => e,
        Err(e) => return refuse_unread::<R>(&state, format, e, body).await,
    };
    let limit = state.limits.max_body_bytes;
    let declared = header_str(&headers, header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        // Not read: the sender is told at once, and the connection closes.
        return fail::<R>(&state, format, IngestError::TooLarge { limit, stage: "" });
    }
    // Admission before reading the body: an overloaded server, or a tenant over its rate, is
    // refused cheaply. The body is then admitted as it arrives, never reserved ahead from
    // what the client announces.
    let admitted = match state.ingest.admit(R::SIGNAL, Transport::Http, tenant, 0) {
        Ok(a) => a,
        Err(e) => return refuse_unread::<R>(&state, format, e, body).await,
    };
    match receive::<R>(&state, encoding, body, format, admitted).await {
        Ok(response) => response,
        Err(e) => fail::<R>(&state, format, e),
    }
}

/// How long a refused request's body is read (and thrown away) before the answer.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// Answers a request refused before its body was read, after reading the body and throwing
/// it away (at most `limits.max_body_bytes`, for at most a second, one frame held at a time).
/// A body left unread makes the server close the connection: an exporter that keeps its
/// connection alive, as they do, would find it broken at its next request (and over TLS
/// would pay a new handshake for every refusal). A body that cannot be read within the
/// bounds is left, and the answer says `Connection: close`.
async fn refuse_unread<R: ExportRequest>(
    state: &HttpState,
    format: Format,
    e: IngestError,
    body: Body,
) -> Response {
    use http_body_util::BodyExt as _;
    let limit = state.limits.max_body_bytes;
    let drain = async {
        let mut body = std::pin::pin!(body);
        let mut read = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return false;
            };
            read += frame.data_ref().map_or(0, |d| d.len());
            if read > limit {
                return false;
            }
        }
        true
    };
    let drained = tokio::time::timeout(DRAIN_TIME, drain)
        .await
        .unwrap_or(false);
    let mut response = fail::<R>(state, format, e);
    if !drained {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

fn fail<R: ExportRequest>(state: &HttpState, format: Format, e: IngestError) -> Response {
    state.ingest.count_failure(R::SIGNAL, Transport::Http, &e);
    error_response(format, &e)
}

async fn receive<R: ExportRequest>(
    state: &HttpState,
    encoding: Encoding,
    body: Body,
    format: Format,
    mut admitted: crate::admission::Admitted,
) -> Result<Response, IngestError> {
    let deadline = tokio::time::Instant::now() + state.limits.body_timeout;
    let raw = crate::body::read(body, state.limits.max_body_bytes, deadline, &mut admitted).await?;
    state
        .ingest
        .count_bytes(R::SIGNAL, Transport::Http, raw.len());
    let outcome = state
        .ingest
        .receive::<R>(raw, encoding, format, Transport::Http, admitted)
        .await?;
    let body = match format {
        Format::Protobuf => prost::Message::encode_to_vec(&outcome.response::<R>()),
        Format::Json => outcome.json::<R>().to_string().into_bytes(),
    };
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        )],
        body,
    )
        .into_response())
}

/// An error as the OTLP spec wants it: the status code, a `google.rpc.Status` body in the
/// request's encoding, and `Retry-After` when the sender should retry.
pub fn error_response(format: Format, e: &IngestError) -> Response {
    let status = RpcStatus::from(e);
    let body = match format {
        Format::Protobuf => prost::Message::encode_to_vec(&status),
        Format::Json => serde_json::json!({ "code": status.code, "message": status.message })
            .to_string()
            .into_bytes(),
    };
    let mut response = (
        e.http_status(),
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        )],
        Body::from(body),
    )
        .into_response();
    if let Some(after) = e.retry_after() {
        let secs = after.as_secs().max(1).to_string();
        if let Ok(v) = HeaderValue::from_str(&secs) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    response
}
