//! Listeners with limits. Every connection is counted — per client address and in total —
//! and refused past either cap; an HTTP connection must send a request's headers within the
//! header timeout (also the longest an HTTP/1 connection may wait idle between requests),
//! headers are bounded in size, and an HTTP/2 connection that carries nothing for the idle
//! timeout is closed. [`serve_http`] is the one HTTP serve loop for every HTTP listener;
//! [`Gate`] also counts the gRPC listener's connections.

use std::collections::HashMap;
use std::future::Future as _;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// What each listener allows (the `[listen]` section's connection keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once on one listener.
    pub max_connections: usize,
    /// Connections open at once from one client address.
    pub max_connections_per_client: usize,
    /// Time to send a request's headers; an idle HTTP/1 connection is closed after it too.
    pub header_read_timeout: Duration,
    /// A connection that carries no byte for this long is closed.
    pub idle_timeout: Duration,
    /// Largest request head (request line and headers), in bytes.
    pub max_header_bytes: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_connections_per_client: 128,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_header_bytes: 32 * 1024,
        }
    }
}

impl ConnectionLimits {
    /// # Errors
    /// The first value that cannot work, naming its key under `section`.
    pub fn validate(&self, section: &str) -> Result<(), String> {
        if self.max_connections == 0 || self.max_connections_per_client == 0 {
            return Err(format!(
                "{section}.max_connections and max_connections_per_client must be positive"
            ));
        }
        if self.header_read_timeout < Duration::from_millis(100)
            || self.idle_timeout < Duration::from_millis(100)
        {
            return Err(format!(
                "{section}.header_read_timeout and idle_timeout must be at least 100ms"
            ));
        }
        if !(8 * 1024..=1024 * 1024).contains(&self.max_header_bytes) {
            return Err(format!(
                "{section}.max_header_bytes must be between 8KiB and 1MiB"
            ));
        }
        Ok(())
    }
}

/// Counts of a listener's connections, its metrics.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Open now.
    pub open: Gauge,
    /// Refused because the listener was full.
    pub refused_total: Counter,
    /// Refused because the client had too many open.
    pub refused_per_client: Counter,
    /// Closed for carrying nothing for the idle timeout.
    pub timed_out: Counter,
    /// Closed before or during the TLS handshake: plain text on a TLS port, a handshake that
    /// failed or took longer than `tls.handshake_timeout`.
    pub tls_failed: Counter,
}

impl ConnectionStats {
    /// Registers the metrics, labelled with the listener's name.
    pub fn register(&self, registry: &mut Registry, listener: &'static str) {
        let registry = registry.sub_registry_with_label(("listener".into(), listener.into()));
        registry.register(
            "sightline_connections_open",
            "Connections open on the listener",
            self.open.clone(),
        );
        registry.register(
            "sightline_connections_refused_full",
            "Connections refused because the listener had listen.max_connections open",
            self.refused_total.clone(),
        );
        registry.register(
            "sightline_connections_refused_per_client",
            "Connections refused because their client had listen.max_connections_per_client open",
            self.refused_per_client.clone(),
        );
        registry.register(
            "sightline_connections_idle_closed",
            "Connections closed for carrying nothing for listen.idle_timeout",
            self.timed_out.clone(),
        );
        registry.register(
            "sightline_tls_handshake_failures",
            "Connections closed before a TLS session: plain text on a TLS port, a failed \
             handshake, or one slower than tls.handshake_timeout",
            self.tls_failed.clone(),
        );
    }
}

/// Admits connections within the limits; every admitted connection holds a [`Permit`].
#[derive(Debug, Clone)]
pub struct Gate {
    limits: ConnectionLimits,
    open: Arc<Mutex<Open>>,
    stats: Arc<ConnectionStats>,
}

/// The connections open, in total and by client address.
#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// An admitted connection's place, given back when it closes.
#[derive(Debug)]
pub struct Permit {
    ip: IpAddr,
    gate: Gate,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.stats.open.dec();
        let mut open = self.gate.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        if let Some(n) = open.by_client.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.by_client.remove(&self.ip);
            }
        }
    }
}

impl Gate {
    pub fn new(limits: ConnectionLimits) -> Self {
        Self {
            limits,
            open: Default::default(),
            stats: Default::default(),
        }
    }

    pub fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    pub fn stats(&self) -> Arc<ConnectionStats> {
        self.stats.clone()
    }

    /// A place for a connection from `peer`, or `None` when the listener or the client is at
    /// its cap (the caller closes the connection).
    pub fn admit(&self, peer: SocketAddr) -> Option<Permit> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= self.limits.max_connections {
            self.stats.refused_total.inc();
            return None;
        }
        let mine = open.by_client.entry(peer.ip()).or_default();
        if *mine >= self.limits.max_connections_per_client {
            self.stats.refused_per_client.inc();
            return None;
        }
        *mine += 1;
        open.total += 1;
        self.stats.open.inc();
        Some(Permit {
            ip: peer.ip(),
            gate: self.clone(),
        })
    }

    /// Accepts the next connection within the limits (refused ones are closed at once).
    ///
    /// # Errors
    /// When the listener itself fails.
    pub async fn accept(&self, listener: &TcpListener) -> std::io::Result<(TcpStream, Permit)> {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                // Out of file descriptors and the like: the listener is fine, wait a little.
                Err(e) if is_transient(&e) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some(permit) = self.admit(peer) {
                let _ = stream.set_nodelay(true);
                return Ok((stream, permit));
            }
        }
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) || e.raw_os_error().is_some_and(|c| c == 24 || c == 23) // EMFILE, ENFILE
}

/// A connection's stream that fails with `TimedOut` once it has carried nothing (no byte read
/// or written) for the idle timeout, so that whatever serves it closes it; it holds the
/// connection's [`Permit`].
#[derive(Debug)]
pub struct Tracked<S> {
    inner: S,
    idle_timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
    stats: Arc<ConnectionStats>,
    permit: Permit,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, permit: Permit) -> Self {
        let idle_timeout = permit.gate.limits.idle_timeout;
        Self {
            inner,
            idle_timeout,
            deadline: Box::pin(tokio::time::sleep(idle_timeout)),
            stats: permit.gate.stats.clone(),
            permit,
        }
    }

    /// The client's address.
    pub fn peer_ip(&self) -> IpAddr {
        self.permit.ip
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    fn touch(&mut self) {
        let next = tokio::time::Instant::now() + self.idle_timeout;
        self.deadline.as_mut().reset(next);
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.stats.timed_out.inc();
            // Poll again later only if the caller ignores the error.
            self.touch();
            return true;
        }
        false
    }
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "the connection carried nothing for its idle timeout",
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.touch();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            // A client that does not read what it is sent is idle too.
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What a plain-text client on a TLS port is told before the connection is closed.
const PLAIN_TEXT_REFUSAL: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: 53\r\n\r\n\
this port speaks TLS: connect with https:// instead\r\n";

/// The first byte of every TLS connection (a handshake record).
const TLS_HANDSHAKE: u8 = 0x16;

/// The stream of an accepted connection, inside TLS or not.
#[derive(Debug)]
enum Stream {
    Plain(Tracked<TcpStream>),
    Tls(Box<tokio_rustls::server::TlsStream<Tracked<TcpStream>>>),
}

/// An accepted connection, ready to serve: counted by its listener's [`Gate`], closed when
/// idle, its TLS handshake (if any) done.
#[derive(Debug)]
pub struct Conn {
    stream: Stream,
    info: ConnInfo,
}

/// What a handler may know about its connection (gRPC: `tonic`'s connect info).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote_addr: Option<SocketAddr>,
    /// Who the client certificate says the client is, when it carries a configured name.
    pub certificate: Option<crate::auth::Principal>,
}

impl Conn {
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }

    /// The client's address.
    pub fn peer_ip(&self) -> IpAddr {
        match &self.stream {
            Stream::Plain(s) => s.peer_ip(),
            Stream::Tls(s) => s.get_ref().0.peer_ip(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match &mut self.stream {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.stream {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.stream {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.stream {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A listener with its gate and, if configured, TLS: yields connections ready to serve.
/// Handshakes run concurrently (each within `tls.handshake_timeout`, each holding its
/// connection's place at the gate), so a client that never finishes one holds up no other.
#[derive(Debug)]
pub struct Acceptor {
    listener: TcpListener,
    gate: Gate,
    tls: Option<(Arc<crate::tls::Tls>, crate::tls::Alpn)>,
    handshakes: JoinSet<Option<Conn>>,
}

impl Acceptor {
    pub fn new(
        listener: TcpListener,
        gate: Gate,
        tls: Option<(Arc<crate::tls::Tls>, crate::tls::Alpn)>,
    ) -> Self {
        Self {
            listener,
            gate,
            tls,
            handshakes: JoinSet::new(),
        }
    }

    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// The next connection ready to serve. Cancel-safe.
    ///
    /// # Errors
    /// When the listener itself fails.
    pub async fn accept(&mut self) -> std::io::Result<Conn> {
        loop {
            tokio::select! {
                accepted = self.gate.accept(&self.listener) => {
                    let (stream, permit) = accepted?;
                    let remote_addr = stream.peer_addr().ok();
                    let stream = Tracked::new(stream, permit);
                    match &self.tls {
                        None => {
                            return Ok(Conn {
                                stream: Stream::Plain(stream),
                                info: ConnInfo { remote_addr, certificate: None },
                            });
                        }
                        Some((tls, alpn)) => {
                            let (tls, alpn) = (tls.clone(), *alpn);
                            let stats = self.gate.stats.clone();
                            self.handshakes.spawn(async move {
                                let conn = handshake(&tls, alpn, stream, remote_addr).await;
                                if conn.is_none() {
                                    stats.tls_failed.inc();
                                }
                                conn
                            });
                        }
                    }
                }
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(conn)) = done {
                        return Ok(conn);
                    }
                }
            }
        }
    }
}

/// Completes a TLS handshake within the timeout; a client that sends plain text is told to use
/// TLS. `None` when the connection is to be closed.
async fn handshake(
    tls: &crate::tls::Tls,
    alpn: crate::tls::Alpn,
    mut stream: Tracked<TcpStream>,
    remote_addr: Option<SocketAddr>,
) -> Option<Conn> {
    use tokio::io::AsyncWriteExt as _;
    let work = async {
        let mut first = [0u8; 1];
        if stream.get_ref().peek(&mut first).await.ok()? == 0 {
            return None;
        }
        if first[0] != TLS_HANDSHAKE {
            let _ = stream.write_all(PLAIN_TEXT_REFUSAL).await;
            let _ = stream.shutdown().await;
            return None;
        }
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config(alpn));
        let session = match acceptor.accept(stream).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, client = ?remote_addr, "TLS handshake failed");
                return None;
            }
        };
        let certificate = session
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| tls.identity(leaf));
        Some(Conn {
            stream: Stream::Tls(Box::new(session)),
            info: ConnInfo {
                remote_addr,
                certificate,
            },
        })
    };
    tokio::time::timeout(tls.handshake_timeout(), work)
        .await
        .ok()
        .flatten()
}

/// Serves `app` on `acceptor`'s connections until `shutdown` resolves; then lets requests in
/// progress finish for up to `drain`. Handlers find the client's address as a
/// [`crate::auth::ClientIp`] extension and a client certificate's identity as a
/// [`crate::auth::ClientCertificate`].
///
/// # Errors
/// When the listener fails (a connection's errors only close that connection).
pub async fn serve_http(
    mut acceptor: Acceptor,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    let limits = *acceptor.gate().limits();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8 * 1024));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        .max_pending_accept_reset_streams(64);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let conn = tokio::select! {
            _ = &mut shutdown => break,
            accepted = acceptor.accept() => accepted?,
            // Reap finished connections so the set stays small.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        // Who is calling, for handlers that count per client (failed API keys) and those
        // that take a client certificate for credentials.
        let mut app = app
            .clone()
            .layer(axum::Extension(crate::auth::ClientIp(conn.peer_ip())));
        if let Some(p) = &conn.info().certificate {
            app = app.layer(axum::Extension(crate::auth::ClientCertificate(p.clone())));
        }
        let service = hyper_util::service::TowerToHyperService::new(app);
        let conn = builder
            .serve_connection(TokioIo::new(conn), service)
            .into_owned();
        let conn = graceful.watch(conn);
        connections.spawn(async move {
            // A connection's errors (a client gone, a timeout) concern that connection only.
            let _ = conn.await;
        });
    }
    drop(acceptor);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        connections.abort_all();
    }
    while connections.join_next().await.is_some() {}
    Ok(())
}
