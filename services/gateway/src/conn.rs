//! Serving client connections under timeouts and a cap, so that slow or idle clients cannot
//! hold the gateway (or the process's file descriptors) hostage:
//!
//! - a connection cap (`--gateway-max-connections`): past it, a new connection is answered
//!   503 with `Retry-After` and closed at once;
//! - a header timeout (`--gateway-header-timeout`): from a request's first byte (a new
//!   connection's: from connecting) to the end of its headers;
//! - an idle timeout (`--gateway-idle-timeout`): a connection with no request in progress
//!   and no byte moving either way (a silent keep-alive, or a client that stopped reading
//!   its answer) is closed;
//! - a body rate (`--gateway-body-min-rate` over `--gateway-body-rate-window`): every window
//!   of a request body must bring at least that many bytes, else the read fails with
//!   [`BodyTooSlow`] (the handler answers 408) and the connection closes. A rate, not a
//!   total time: a 1 GB upload over a slow but steady link is fine.
//!
//! hyper's own header timeout also runs while a kept-alive connection waits, so the
//! timeouts live here instead: a watchdog per connection enforces the header and idle
//! deadlines while no request is being handled (dropping the connection), fed by
//! [`TimedIo`]'s record of the socket's activity; [`RateBody`] enforces the body rate while
//! a request is being handled.
//! HTTP/1.0, HTTP/1.1 (keep-alive) and HTTP/2 (prior knowledge) are served, as before.
//!
//! Each request carries its connection's peer address as axum's `ConnectInfo<SocketAddr>`
//! extension, taken from `accept` (never from a header such as `X-Forwarded-For`): the
//! address [`crate::auth`] checks against the trusted networks.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Connection limits and timeouts.
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    /// From a request's first byte to the end of its headers.
    pub header_timeout: Duration,
    /// Silence allowed between requests.
    pub idle_timeout: Duration,
    /// Slowest body accepted, bytes per second (0: no check).
    pub body_min_rate: u64,
    /// The window the rate is measured over.
    pub body_rate_window: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

/// Most connections answered 503 at the same time; more are closed without an answer.
const MAX_REFUSING: usize = 64;

/// Serves `service` on `listener` until `shutdown` is cancelled, then lets in-flight
/// requests finish (idle connections close at once) and returns when every connection is
/// closed.
pub async fn serve<S>(listener: TcpListener, service: S, limits: ConnLimits, shutdown: CancellationToken)
where
    S: tower::Service<Request<RateBody<Incoming>>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let (alive, mut all_closed) = mpsc::channel::<()>(1);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The header timeout is ours (see the module docs); hyper's would warn without a timer.
    builder.http1().header_read_timeout(None);
    let builder = Arc::new(builder);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors, say: wait a little rather than spin.
                tracing::warn!(error = %e, "gateway: accepting a connection failed");
                metrics::counter!("aiaa_http_accept_errors_total").increment(1);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics::counter!("aiaa_http_connections_refused_total").increment(1);
            if let Ok(slot) = refusing.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(stream, limits.max_connections).await;
                    drop(slot);
                });
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::new(ConnState::new(limits));
        let guard = ConnGuard {
            _permit: permit,
            _alive: alive.clone(),
        };
        let io = TokioIo::new(TimedIo::new(stream, state.clone(), guard));
        let service = ConnService {
            inner: service.clone(),
            state: state.clone(),
            limits,
            peer,
        };
        let builder = builder.clone();
        let shutdown = shutdown.clone();
        let alive = alive.clone();
        tokio::spawn(async move {
            let _alive = alive;
            metrics::gauge!("aiaa_http_connections_open").increment(1.0);
            let conn = builder.serve_connection(io, service);
            tokio::pin!(conn);
            // A timeout drops the connection (no request is in progress then).
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = watchdog(&state) => Ok(()),
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    tokio::select! {
                        r = conn => r,
                        _ = watchdog(&state) => Ok(()),
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "gateway: connection closed with an error");
            }
            metrics::gauge!("aiaa_http_connections_open").decrement(1.0);
        });
    }
    drop(listener);
    drop(alive);
    let _ = all_closed.recv().await;
}

/// Errors of one connection that say nothing about the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// Answers a connection over the cap with 503 and closes it.
async fn refuse(mut stream: TcpStream, limit: usize) {
    let body = serde_json::json!({
        "error": {
            "message": [format!(
                "the gateway has {limit} connections open, its limit (--gateway-max-connections, AIAA_GATEWAY_MAX_CONNECTIONS); retry shortly"
            )],
            "type": "unavailable",
        },
        "success": false,
    })
    .to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        discard_until_closed(&mut stream).await;
        Ok::<(), io::Error>(())
    })
    .await;
}

/// How long a closed connection keeps reading, so that its client gets the answer.
const LINGER: Duration = Duration::from_secs(2);

/// Reads and discards until the client closes.
async fn discard_until_closed(stream: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    while let Ok(n) = stream.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
}

/// Held by a connection until its socket is closed: its place under the cap, and the
/// server's wait at shutdown.
struct ConnGuard {
    _permit: OwnedSemaphorePermit,
    _alive: mpsc::Sender<()>,
}

/// What a connection's socket and its requests share.
#[derive(Debug)]
struct Shared {
    /// Requests being handled.
    in_flight: usize,
    /// The last byte read or written.
    last_activity: Instant,
    /// When the first byte of a request not yet being handled arrived (for a new
    /// connection: when it was accepted).
    request_started: Option<Instant>,
    /// Whether a timeout closed the connection (counted once).
    timed_out: bool,
}

/// One connection's timing state.
#[derive(Debug)]
pub struct ConnState {
    shared: Mutex<Shared>,
    limits: ConnLimits,
    /// Told when a request starts or ends (the deadline appears or goes).
    changed: Notify,
}

impl ConnState {
    fn new(limits: ConnLimits) -> Self {
        let now = Instant::now();
        ConnState {
            shared: Mutex::new(Shared {
                in_flight: 0,
                last_activity: now,
                request_started: Some(now),
                timed_out: false,
            }),
            limits,
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The deadline in force and its name; none while a request is handled.
    fn deadline(&self) -> Option<(Instant, &'static str)> {
        let s = self.lock();
        if s.in_flight > 0 {
            return None;
        }
        Some(match s.request_started {
            Some(t) => (t + self.limits.header_timeout, "header"),
            None => (s.last_activity + self.limits.idle_timeout, "idle"),
        })
    }

    fn on_read(&self) {
        let mut s = self.lock();
        let now = Instant::now();
        s.last_activity = now;
        if s.in_flight == 0 && s.request_started.is_none() {
            s.request_started = Some(now);
        }
    }

    fn on_write(&self) {
        self.lock().last_activity = Instant::now();
    }

    fn begin(&self) {
        {
            let mut s = self.lock();
            s.in_flight += 1;
            s.request_started = None;
        }
        self.changed.notify_one();
    }

    fn end(&self) {
        {
            let mut s = self.lock();
            s.in_flight = s.in_flight.saturating_sub(1);
            s.last_activity = Instant::now();
            s.request_started = None;
        }
        self.changed.notify_one();
    }

    /// Records that `which` timeout closes the connection.
    fn expire(&self, which: &'static str) {
        let mut s = self.lock();
        if !s.timed_out {
            s.timed_out = true;
            metrics::counter!("aiaa_http_connections_timed_out_total", "timeout" => which).increment(1);
            tracing::debug!(timeout = which, "gateway: closing a connection that timed out");
        }
    }
}

/// Returns when the connection's header or idle deadline passes (see the module docs);
/// sleeps through requests in progress. Independent of how hyper polls the socket.
async fn watchdog(state: &ConnState) {
    loop {
        let changed = state.changed.notified();
        match state.deadline() {
            None => changed.await,
            Some((deadline, which)) => {
                if Instant::now() >= deadline {
                    state.expire(which);
                    return;
                }
                // Woken at the deadline in force when it was read; activity since may have
                // moved it, so it is read again.
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => {}
                    _ = changed => {}
                }
            }
        }
    }
}

/// Marks a request in progress on its connection while it is alive.
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A socket that records its activity for the idle timeout, and closes lingering: when
/// the connection is done with it, its write side is shut and its input read and discarded
/// until the client closes (at most [`LINGER`]). Closing a socket with unread input (the rest
/// of a refused upload) makes the kernel send a reset, and the client would lose the answer
/// explaining the refusal.
pub struct TimedIo {
    inner: Option<TcpStream>,
    state: Arc<ConnState>,
    guard: Option<ConnGuard>,
}

impl TimedIo {
    fn new(inner: TcpStream, state: Arc<ConnState>, guard: ConnGuard) -> Self {
        TimedIo {
            inner: Some(inner),
            state,
            guard: Some(guard),
        }
    }

    fn stream(&mut self) -> &mut TcpStream {
        self.inner.as_mut().expect("the stream is taken only on drop")
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(this.stream()).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.state.on_read();
        }
        polled
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(this.stream()).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.state.on_write();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(this.stream()).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.state.on_write();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(TcpStream::is_write_vectored)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().stream()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().stream()).poll_shutdown(cx)
    }
}

impl Drop for TimedIo {
    fn drop(&mut self) {
        let (Some(mut stream), Ok(runtime)) = (self.inner.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let guard = self.guard.take();
        runtime.spawn(async move {
            let _guard = guard;
            let _ = stream.shutdown().await;
            let _ = tokio::time::timeout(LINGER, discard_until_closed(&mut stream)).await;
        });
    }
}

/// The per-connection service: marks requests in flight (suspending the socket deadlines),
/// wraps their bodies in [`RateBody`] and tags them with the peer address.
#[derive(Clone)]
struct ConnService<S> {
    inner: S,
    state: Arc<ConnState>,
    limits: ConnLimits,
    /// The connection's peer, as `accept` gave it.
    peer: SocketAddr,
}

impl<S> hyper::service::Service<Request<Incoming>> for ConnService<S>
where
    S: tower::Service<Request<RateBody<Incoming>>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.state.begin();
        let in_flight = InFlight(self.state.clone());
        let limits = self.limits;
        let mut req = req.map(|body| RateBody::new(body, limits.body_min_rate, limits.body_rate_window));
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let call = tower::ServiceExt::oneshot(self.inner.clone(), req);
        Box::pin(async move {
            let response = call.await;
            drop(in_flight);
            response
        })
    }
}

/// The error of a request body slower than the minimum rate.
#[derive(Debug)]
pub struct BodyTooSlow {
    min_rate: u64,
    window: Duration,
}

impl std::fmt::Display for BodyTooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body arrived slower than {} bytes/s over {} (--gateway-body-min-rate over --gateway-body-rate-window)",
            self.min_rate,
            humantime::format_duration(self.window)
        )
    }
}

impl std::error::Error for BodyTooSlow {}

/// A request body that fails with [`BodyTooSlow`] when a window of `window` passes without
/// `min_rate * window` bytes.
pub struct RateBody<B> {
    inner: B,
    min_rate: u64,
    /// Bytes each window must bring.
    need: u64,
    window: Duration,
    window_start: Instant,
    window_bytes: u64,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<B> RateBody<B> {
    /// Wraps `inner`; the first window starts now. `min_rate` 0 disables the check.
    pub fn new(inner: B, min_rate: u64, window: Duration) -> Self {
        RateBody {
            inner,
            min_rate,
            need: (min_rate as f64 * window.as_secs_f64()).ceil() as u64,
            window,
            window_start: Instant::now(),
            window_bytes: 0,
            sleep: None,
        }
    }

    fn too_slow(&self) -> BoxError {
        Box::new(BodyTooSlow {
            min_rate: self.min_rate,
            window: self.window,
        })
    }
}

impl<B> HttpBody for RateBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.window_bytes += data.len() as u64;
                    if this.window_bytes >= this.need {
                        this.window_start = Instant::now();
                        this.window_bytes = 0;
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending if this.need == 0 => Poll::Pending,
            Poll::Pending => {
                let deadline = this.window_start + this.window;
                if Instant::now() >= deadline {
                    return Poll::Ready(Some(Err(this.too_slow())));
                }
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.deadline() != deadline {
                    sleep.as_mut().reset(deadline);
                }
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(this.too_slow())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
