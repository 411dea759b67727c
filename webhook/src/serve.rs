//! The HTTPS listener: TLS handshakes, HTTP/1.1 and HTTP/2 connections, limits and draining.
//!
//! Limits: at most `max_connections` connections at once (more wait in the kernel's backlog), a
//! handshake timeout, a header read timeout and an idle timeout; the body timeout is the router's
//! (see [`crate::server::AppState::with_body_timeout`]): a 408 closes an HTTP/1.1 connection, and
//! an HTTP/2 stream answered before its body ended is reset. Draining (on SIGTERM): the
//! listener closes at once, every review already received is answered, HTTP/1.1 responses carry
//! `Connection: close`, HTTP/2 connections get GOAWAY, idle connections are closed, and the whole
//! thing ends within the drain timeout.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use http::HeaderValue;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;

/// Connection limits and timeouts of the HTTPS listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Concurrent connections; further connections wait in the listen backlog.
    pub max_connections: u32,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed to receive a request's headers (HTTP/1.1), counted from the first byte of the
    /// request; a keep-alive connection waiting for its next request is bound by `idle_timeout`.
    pub header_read_timeout: Duration,
    /// A connection with no request in progress for this long is closed.
    pub idle_timeout: Duration,
    /// After the drain starts, connections with no request for this long are closed.
    pub drain_idle: Duration,
    /// Upper bound for the whole drain.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            drain_idle: Duration::from_millis(500),
            drain_timeout: Duration::from_secs(20),
        }
    }
}

/// What happened during the drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Connections still open when the drain timeout expired (0 when everything finished).
    pub abandoned_connections: u32,
    /// How long the drain took.
    pub elapsed: Duration,
}

/// `head_started_ms` when no request head is being received.
const NO_HEAD: u64 = u64::MAX;

/// Per-connection bookkeeping for idle detection and the header read timeout.
struct ConnActivity {
    epoch: Instant,
    in_flight: AtomicUsize,
    last_done_ms: AtomicU64,
    /// When the first byte of a request head arrived while no request was in progress; [`NO_HEAD`]
    /// once the head is complete (the request is handed to the service) or before any byte.
    head_started_ms: AtomicU64,
}

impl ConnActivity {
    fn new() -> Self {
        ConnActivity {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(NO_HEAD),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(NO_HEAD - 1)
    }

    /// Bytes arrived: with no request in progress they start a request head.
    fn bytes_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 && self.head_started_ms.load(Ordering::Relaxed) == NO_HEAD {
            self.head_started_ms.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// How long the request head now being received has taken, if one is.
    fn head_for(&self) -> Option<Duration> {
        let started = self.head_started_ms.load(Ordering::Relaxed);
        if started == NO_HEAD || self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(Duration::from_millis(self.now_ms().saturating_sub(started)))
    }

    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_done_ms.load(Ordering::Acquire));
        Some(self.epoch.elapsed().saturating_sub(last))
    }
}

struct InFlight(Arc<ConnActivity>);

impl InFlight {
    fn begin(activity: &Arc<ConnActivity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.head_started_ms.store(NO_HEAD, Ordering::Relaxed);
        InFlight(activity.clone())
    }
}

/// The connection's transport, noting in [`ConnActivity`] when bytes arrive.
struct Watched<IO> {
    io: IO,
    activity: Arc<ConnActivity>,
}

impl<IO: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, std::task::Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl<IO: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_done_ms.store(ms, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `app` over TLS on `listener` until `shutdown` resolves, then drains (see the module docs).
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> DrainReport {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(Semaphore::new(limits.max_connections as usize));
    let (drain_tx, drain_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let drain_rx = drain_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            serve_connection(tls, h2, app, limits, drain_rx).await;
        });
    }
    drop(listener);
    let started = Instant::now();
    let _ = drain_tx.send(true);
    let all = limits.max_connections;
    let abandoned = match tokio::time::timeout(limits.drain_timeout, slots.acquire_many(all)).await {
        Ok(_) => 0,
        Err(_) => all - u32::try_from(slots.available_permits()).unwrap_or(all),
    };
    DrainReport { abandoned_connections: abandoned, elapsed: started.elapsed() }
}

async fn serve_connection<IO>(io: IO, h2: bool, app: Router, limits: Limits, mut drain_rx: watch::Receiver<bool>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(ConnActivity::new());
    let draining = drain_rx.clone();
    let service_activity = activity.clone();
    let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
        let in_flight = InFlight::begin(&service_activity);
        let app = app.clone();
        let draining = draining.clone();
        async move {
            let mut response = app.oneshot(request.map(axum::body::Body::new)).await?;
            // A request whose body did not arrive in time (408) ends its connection: the rest of
            // the body may never come.
            let timed_out = response.status() == http::StatusCode::REQUEST_TIMEOUT;
            if !h2 && (*draining.borrow() || timed_out) {
                response.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            }
            drop(in_flight);
            Ok::<_, Infallible>(response)
        }
    });
    let io = TokioIo::new(Watched { io, activity: activity.clone() });
    let tick = Duration::from_millis(100).min(limits.drain_idle).min(limits.header_read_timeout);
    if h2 {
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .serve_connection(io, service);
        tokio::pin!(conn);
        let mut shutting_down = false;
        loop {
            tokio::select! {
                _ = conn.as_mut() => return,
                changed = drain_rx.changed(), if !shutting_down => {
                    if changed.is_err() || *drain_rx.borrow() {
                        shutting_down = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
                _ = tokio::time::sleep(tick), if !shutting_down => {
                    if activity.idle_for().is_some_and(|idle| idle >= limits.idle_timeout) {
                        shutting_down = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    } else {
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            // Counted here from the first byte of a head (see the loop below): hyper's own timeout
            // also runs while a keep-alive connection waits for its next request.
            .header_read_timeout(None)
            .keep_alive(true)
            .serve_connection(io, service);
        tokio::pin!(conn);
        let mut shutting_down = false;
        loop {
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = tokio::time::sleep(tick), if !shutting_down => {
                    if activity.head_for().is_some_and(|taken| taken >= limits.header_read_timeout) {
                        tracing::debug!("request headers not received in time; closing the connection");
                        return;
                    }
                    let limit = if *drain_rx.borrow() { limits.drain_idle } else { limits.idle_timeout };
                    if activity.idle_for().is_some_and(|idle| idle >= limit) {
                        shutting_down = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
