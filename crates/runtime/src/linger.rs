//! Lingering close for the gRPC server's connections.
//!
//! When a server closes a TCP socket that still holds unread input (an HTTP/2 client's
//! WINDOW_UPDATE or PING frames, say), the kernel answers with a reset instead of an orderly
//! close, and the client loses the answer bytes it has not read yet. That happened at
//! shutdown: a download still being read when SIGTERM arrived was cut short although the
//! server had sent all of it. So a closed connection first shuts its write side, then reads
//! and discards until the client closes (or [`LINGER`] passes), and only then closes; the
//! server waits for these lingering closes before it returns.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// How long a closed connection waits for its client to close.
pub const LINGER: Duration = Duration::from_secs(5);

/// A listener whose connections close lingering; see the module docs. It also caps the
/// connections open at once (lingering ones included, as they hold a file descriptor): a
/// connection over the cap is closed as soon as it is accepted, so a flood of connections
/// cannot exhaust the process's descriptors and stop every server in it.
pub struct LingeringListener {
    inner: TcpListener,
    /// Held by every open or lingering connection: the server waits until all are dropped.
    alive: mpsc::Sender<()>,
    /// One permit per connection allowed.
    permits: Arc<Semaphore>,
    component: &'static str,
}

impl LingeringListener {
    /// Wraps `inner`; `alive`'s receiver sees `None` once the listener and every connection
    /// (lingering included) are gone. At most `max_connections` are open at once.
    pub fn new(
        inner: TcpListener,
        alive: mpsc::Sender<()>,
        max_connections: usize,
        component: &'static str,
    ) -> Self {
        LingeringListener {
            inner,
            alive,
            permits: Arc::new(Semaphore::new(max_connections)),
            component,
        }
    }
}

impl axum::serve::Listener for LingeringListener {
    type Io = LingeringStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                // Closed at once, not lingering: it has sent nothing worth waiting for.
                metrics::counter!("aiaa_grpc_connections_refused_total", "component" => self.component)
                    .increment(1);
                tracing::debug!(component = self.component, %addr, "connection over the cap closed");
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let io = LingeringStream {
                inner: Some(stream),
                alive: Some((self.alive.clone(), permit)),
            };
            return (io, addr);
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection that closes lingering when dropped.
pub struct LingeringStream {
    inner: Option<TcpStream>,
    /// Released when the socket is finally closed.
    alive: Option<(mpsc::Sender<()>, OwnedSemaphorePermit)>,
}

impl LingeringStream {
    fn stream(&mut self) -> &mut TcpStream {
        self.inner.as_mut().expect("the stream is taken only on drop")
    }
}

impl AsyncRead for LingeringStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(self.stream()).poll_read(cx, buf)
    }
}

impl AsyncWrite for LingeringStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(self.stream()).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.stream()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|s| s.is_write_vectored())
    }
}

impl Drop for LingeringStream {
    fn drop(&mut self) {
        let (Some(mut stream), Ok(runtime)) = (self.inner.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let alive = self.alive.take();
        runtime.spawn(async move {
            let _alive = alive;
            let _ = stream.shutdown().await;
            let mut sink = [0u8; 4096];
            let _ = tokio::time::timeout(LINGER, async {
                while let Ok(n) = stream.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
        });
    }
}
