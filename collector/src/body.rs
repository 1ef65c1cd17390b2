//! Reading a request body as it arrives: bounded in size and time, and admitted frame by
//! frame, so a client that announces a large body and sends nothing holds nothing.

use bytes::Bytes;
use http_body_util::BodyExt;

use crate::error::IngestError;
use crate::ingest::Admitted;

/// Reads `body` to its end. Each frame is admitted (`admitted` grows by its size) before it is
/// kept; the body may be at most `limit` bytes and must have arrived by `deadline`.
///
/// # Errors
/// [`IngestError::TooLarge`] past `limit`, [`IngestError::Timeout`] past `deadline`, what
/// admission refuses with, and [`IngestError::Malformed`] when the connection fails mid-body.
pub async fn read<B>(
    body: B,
    limit: usize,
    deadline: tokio::time::Instant,
    admitted: &mut Admitted,
) -> Result<Bytes, IngestError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + 'static,
{
    let read = async {
        let mut body = std::pin::pin!(body);
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                if timed_out(&e) {
                    IngestError::Timeout("the connection carried nothing for too long".into())
                } else {
                    IngestError::Malformed(format!("could not read the request body: {e}"))
                }
            })?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            if out.len() + data.len() > limit {
                return Err(IngestError::TooLarge { limit, stage: "" });
            }
            if out.is_empty() && body.is_end_stream() {
                // The whole body in one frame: keep it as it is, uncopied.
                admitted.try_grow(data.len())?;
                return Ok(data);
            }
            let needed = out.len() + data.len();
            if needed > out.capacity() {
                // Grow by doubling (bounded by the limit), admitting the new room first.
                let capacity = needed.max(2 * out.capacity()).min(limit);
                admitted.try_grow(capacity - out.capacity())?;
                out.reserve_exact(capacity - out.len());
            }
            out.extend_from_slice(&data);
        }
        // Keep (and hold) only what the body needs.
        let slack = out.capacity() - out.len();
        out.shrink_to_fit();
        admitted.release(slack);
        Ok(Bytes::from(out))
    };
    tokio::time::timeout_at(deadline, read)
        .await
        .unwrap_or_else(|_| {
            Err(IngestError::Timeout(
                "the request body did not arrive in time (limits.body_timeout)".into(),
            ))
        })
}

/// Whether a body's error comes from the connection's idle timeout.
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(e) = source {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = e.source();
    }
    false
}
