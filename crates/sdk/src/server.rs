//! [`serve`]: an HTTP/1.1 server loop for the receiver (and anything else built on
//! axum) that a hostile or broken client cannot exhaust (feature `axum`).
//!
//! `axum::serve` has no header-read timeout, no body timeout, no idle timeout and no
//! connection cap: half-sent headers stay open for ever, idle sockets pile up until
//! the process runs out of file descriptors, and an authenticated client can stall a
//! body for minutes. [`serve`] runs the same router with every one of those bounded by
//! [`ServerLimits`], and shuts down gracefully: it stops accepting, lets requests in
//! flight finish within a grace period, then closes what is left.
//!
//! ```no_run
//! use thulium::event::Event;
//! use thulium::receiver::Receiver;
//! use thulium::server::{ServerLimits, serve};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let app = Receiver::with_basic_auth("thulium", "a-long-random-password")?
//!     .router("/thulium", |event: Event| async move {
//!         println!("{}", event.action());
//!         Ok::<_, std::convert::Infallible>(())
//!     });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! serve(listener, app, ServerLimits::default(), async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_service::Service as _;

/// The address a request's connection was accepted on, in its extensions (with
/// axum's `ConnectInfo` holding the client's): what a `Host` header can be checked
/// against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalAddr(pub std::net::SocketAddr);

/// The bounds [`serve`] enforces on every connection. The defaults suit a webhook
/// receiver: Thulium sends small bodies at once, so a slow client is a broken one.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerLimits {
    /// How long a client may take to send a request's headers, counted from the moment
    /// the server waits for them; it also closes keep-alive connections that stay idle
    /// this long between requests (default 10 s).
    pub header_read_timeout: Duration,
    /// How long a client may take to send a whole request body, counted from the end
    /// of its headers (default 30 s). A body not complete by then fails to read, and
    /// the receiver answers `408`.
    pub body_read_timeout: Duration,
    /// The most connections served at once (default 1024). Connections past it are
    /// closed as soon as they are accepted, so they cannot hold file descriptors.
    pub max_connections: usize,
    /// How long a graceful shutdown waits for requests in flight (default 10 s).
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl ServerLimits {
    /// Sets [`Self::header_read_timeout`].
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Sets [`Self::body_read_timeout`].
    pub fn body_read_timeout(mut self, timeout: Duration) -> Self {
        self.body_read_timeout = timeout;
        self
    }

    /// Sets [`Self::max_connections`] (at least 1).
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// Sets [`Self::shutdown_grace`].
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }
}

/// The error a body read fails with once [`ServerLimits::body_read_timeout`] passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the client did not send the whole body within {0:?}")]
pub struct BodyTimeout(pub Duration);

/// Serves `app` on `listener` within `limits` until `shutdown` completes, then shuts
/// down gracefully. Returns an error only if the listener itself fails for good;
/// a failing connection is logged and closed, never fatal.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(64 * 1024);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) if is_per_connection(&error) => continue,
            Err(error) => {
                // Out of file descriptors or memory: wait for connections to close
                // rather than spin (as axum::serve and hyper's examples do).
                tracing::warn!(%error, "accept failed; pausing for 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(%peer, max = limits.max_connections, "connection limit reached; closing the new connection");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().ok().map(LocalAddr);
        let body_timeout = limits.body_read_timeout;
        let router = app.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let mut request = request.map(|body| Body::new(DeadlineBody::new(body, body_timeout)));
            // Who is asking and on which address: for per-client limits and for
            // checking the Host a browser sent against the address it reached.
            let extensions = request.extensions_mut();
            extensions.insert(axum::extract::ConnectInfo(peer));
            if let Some(local) = local {
                extensions.insert(local);
            }
            // Router is always ready; a clone per request is an Arc bump.
            router.clone().call(request)
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection closed with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?limits.shutdown_grace, "requests still running after the shutdown grace period; closing them");
    }
    Ok(())
}

/// Errors of one accepted connection (it was reset before we took it): not the
/// listener's problem.
fn is_per_connection(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    )
}

/// A request body that fails with [`BodyTimeout`] once its deadline passed.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        }
    }
}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout(self.timeout)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        hyper::body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> SizeHint {
        hyper::body::Body::size_hint(&self.inner)
    }
}

/// Whether a body read failed because the client was too slow ([`BodyTimeout`]).
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<BodyTimeout>() {
            return true;
        }
        current = error.source();
    }
    false
}
