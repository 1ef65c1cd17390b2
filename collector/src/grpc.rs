//! OTLP/gRPC receiver: the three collector services of `opentelemetry-proto`'s wire format,
//! gzip and zstd accepted, errors mapped to gRPC codes (with `RetryInfo` when the sender
//! should retry).
//!
//! Each service reads its request's body itself, like the HTTP receiver, so that a gRPC
//! request meets the same admission: refused before a byte is read when memory is short, its
//! body admitted as it arrives and within `limits.body_timeout`, its decompression admitted
//! as it expands, and its decoding — measured first, on the blocking pool — never larger
//! than what one request may take. Framing, trailers and statuses are tonic's.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut as _, Bytes};
use http::{HeaderMap, HeaderValue};
use http_body_util::BodyExt as _;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use sightline_common::listener::{Acceptor, Conn, ConnInfo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::Status;
use tonic::server::NamedService;
use tonic_types::{ErrorDetails, StatusExt};

use crate::decode::{Encoding, Format};
use crate::error::IngestError;
use crate::ingest::{ExportRequest, Ingest, Transport};

/// Streams (calls in progress) one connection may have open at once.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 64;

/// Serves `routes` on `acceptor`'s connections until `shutdown`: connections counted and
/// capped by its gate (and inside TLS if configured), closed when idle for its idle timeout (an HTTP/2 keepalive ping from the client counts
/// as traffic), request headers bounded by its header size, at most
/// [`MAX_STREAMS_PER_CONNECTION`] calls at once per connection, and every call given at most
/// twice `limits.body_timeout` (or the client's `grpc-timeout`, if shorter).
///
/// # Errors
/// When the server itself fails.
pub async fn serve(
    acceptor: Acceptor,
    routes: tonic::service::Routes,
    limits: &crate::Limits,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let header_bytes = u32::try_from(acceptor.gate().limits().max_header_bytes).unwrap_or(u32::MAX);
    let incoming = futures::stream::unfold(acceptor, |mut acceptor| async move {
        let next = acceptor.accept().await.map(Connection);
        Some((next, acceptor))
    });
    tonic::transport::Server::builder()
        .timeout(limits.body_timeout * 2)
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .http2_max_header_list_size(header_bytes)
        .http2_max_pending_accept_reset_streams(Some(64))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// A gRPC client's connection: counted by the listener's gate, closed when idle; its
/// [`ConnInfo`] (address, client certificate) is in every request's extensions.
#[derive(Debug)]
pub struct Connection(Conn);

impl tonic::transport::server::Connected for Connection {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.info().clone()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The three OTLP collector services over [`Ingest`].
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

    /// A tonic router serving the three services.
    pub fn into_router(self) -> tonic::service::Routes {
        tonic::service::Routes::new(Export::<ExportTraceServiceRequest>::new(
            self.ingest.clone(),
        ))
        .add_service(Export::<ExportMetricsServiceRequest>::new(
            self.ingest.clone(),
        ))
        .add_service(Export::<ExportLogsServiceRequest>::new(self.ingest))
    }
}

/// The service whose one method, `Export`, receives `R`.
struct Export<R> {
    ingest: Ingest,
    request: PhantomData<fn() -> R>,
}

impl<R> Export<R> {
    fn new(ingest: Ingest) -> Self {
        Self {
            ingest,
            request: PhantomData,
        }
    }
}

impl<R> Clone for Export<R> {
    fn clone(&self) -> Self {
        Self::new(self.ingest.clone())
    }
}

impl<R: ExportRequest> NamedService for Export<R> {
    const NAME: &'static str = R::GRPC_SERVICE;
}

type Reply = http::Response<tonic::body::Body>;

impl<R, B> tonic::codegen::Service<http::Request<B>> for Export<R>
where
    R: ExportRequest,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + 'static,
{
    type Response = Reply;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Reply, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let ingest = self.ingest.clone();
        Box::pin(async move {
            let reply = match export::<R, B>(&ingest, request).await {
                Ok(reply) => reply,
                Err(Refusal::Ingest(e)) => {
                    ingest.count_failure(R::SIGNAL, Transport::Grpc, &e);
                    status(&e).into_http()
                }
                Err(Refusal::Status(s)) => s.into_http(),
            };
            Ok(reply)
        })
    }
}

/// Why a call was not answered with a response message.
enum Refusal {
    /// The request reached ingest and was refused there (counted in its metrics).
    Ingest(IngestError),
    /// The call is not an export at all.
    Status(Status),
}

impl From<IngestError> for Refusal {
    fn from(e: IngestError) -> Self {
        Refusal::Ingest(e)
    }
}

/// Encodings a request message may come in.
const ACCEPTED_ENCODINGS: &str = "gzip,zstd,identity";

async fn export<R, B>(ingest: &Ingest, request: http::Request<B>) -> Result<Reply, Refusal>
where
    R: ExportRequest,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + 'static,
{
    let limits = *ingest.limits();
    let deadline = tokio::time::Instant::now() + limits.body_timeout;
    let (parts, body) = request.into_parts();
    if parts.uri.path().rsplit('/').next() != Some("Export") {
        return Err(Refusal::Status(Status::unimplemented(format!(
            "{} has one method, Export",
            R::GRPC_SERVICE
        ))));
    }
    // The key, as gRPC metadata (`authorization`), before anything else is read.
    let conn = parts.extensions.get::<ConnInfo>();
    let tenant = ingest.authorize(&sightline_common::auth::Credentials {
        authorization: parts
            .headers
            .get(http::header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
        client: conn.and_then(|c| c.remote_addr).map(|a| a.ip()),
        certificate: conn.and_then(|c| c.certificate.as_ref()),
        org_id: sightline_common::proxy::OrgId::of(&parts.headers),
        via: "otlp_grpc",
    })?;
    let encoding = match parts.headers.get("grpc-encoding").map(HeaderValue::to_str) {
        None => Encoding::Identity,
        Some(Ok("identity")) => Encoding::Identity,
        Some(Ok("gzip")) => Encoding::Gzip,
        Some(Ok("zstd")) => Encoding::Zstd,
        Some(_) => {
            let mut s = Status::unimplemented(format!(
                "unsupported grpc-encoding; use one of {ACCEPTED_ENCODINGS}"
            ));
            s.metadata_mut().insert(
                "grpc-accept-encoding",
                tonic::metadata::MetadataValue::from_static(ACCEPTED_ENCODINGS),
            );
            return Err(Refusal::Status(s));
        }
    };
    // Admission before reading the body, then as it arrives.
    let mut admitted = ingest.admit(R::SIGNAL, Transport::Grpc, tenant, 0)?;
    let frame = crate::body::read(body, limits.max_decoded_bytes + 5, deadline, &mut admitted)
        .await
        .map_err(|e| match e {
            IngestError::TooLarge { .. } => IngestError::TooLarge {
                limit: limits.max_decoded_bytes,
                stage: " (the message)",
            },
            e => e,
        })?;
    ingest.count_bytes(R::SIGNAL, Transport::Grpc, frame.len());
    let (compressed, message) = unframe(frame)?;
    let encoding = match (compressed, encoding) {
        (false, _) => Encoding::Identity,
        (true, Encoding::Identity) => {
            return Err(IngestError::Malformed(
                "the message is marked compressed, but the call has no grpc-encoding".into(),
            )
            .into());
        }
        (true, e) => e,
    };
    if compressed && message.len() > limits.max_body_bytes {
        return Err(IngestError::TooLarge {
            limit: limits.max_body_bytes,
            stage: " (compressed)",
        }
        .into());
    }
    let outcome = ingest
        .receive::<R>(
            message,
            encoding,
            Format::Protobuf,
            Transport::Grpc,
            admitted,
        )
        .await?;
    Ok(reply(&prost::Message::encode_to_vec(
        &outcome.response::<R>(),
    )))
}

/// The one length-prefixed message of a unary call: whether it is compressed, and its bytes.
pub(crate) fn unframe(mut frame: Bytes) -> Result<(bool, Bytes), IngestError> {
    let malformed = |what: &str| {
        IngestError::Malformed(format!(
            "a gRPC export carries exactly one length-prefixed message; {what}"
        ))
    };
    if frame.len() < 5 {
        return Err(malformed("this one has no complete prefix"));
    }
    let compressed = match frame[0] {
        0 => false,
        1 => true,
        flag => return Err(malformed(&format!("its compressed flag is {flag}"))),
    };
    let len = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
    if frame.len() - 5 != len {
        return Err(malformed(&format!(
            "the prefix says {len} bytes and {} follow",
            frame.len() - 5
        )));
    }
    Ok((compressed, frame.split_off(5)))
}

/// A successful unary reply carrying `message`.
fn reply(message: &[u8]) -> Reply {
    let mut framed = Vec::with_capacity(5 + message.len());
    framed.put_u8(0);
    framed.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    framed.put_slice(message);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let body = http_body_util::Full::new(Bytes::from(framed))
        .with_trailers(async move { Some(Ok(trailers)) });
    let mut reply = http::Response::new(tonic::body::Body::new(body));
    reply.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_checked() {
        let ok = Bytes::from_static(&[0, 0, 0, 0, 2, 8, 1]);
        assert_eq!(
            unframe(ok).expect("one message"),
            (false, Bytes::from_static(&[8, 1]))
        );
        for bad in [
            &[0u8, 0, 0][..],
            &[0, 0, 0, 0, 3, 8, 1],
            &[2, 0, 0, 0, 0],
            &[0, 0, 0, 0, 0, 9],
        ] {
            let err = unframe(Bytes::copy_from_slice(bad)).expect_err("refused");
            assert!(matches!(err, IngestError::Malformed(_)), "{bad:?}: {err}");
        }
    }
}
