//! The application behind a relay: an HTTP endpoint that records what it is handed.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the sink has been handed. Shared with the test through an `Arc`.
#[derive(Debug, Default)]
pub struct Sink {
    seen: Mutex<HashSet<usize>>,
    running: Mutex<HashSet<String>>,
    overlaps: AtomicUsize,
    deliveries: AtomicUsize,
    refused: AtomicUsize,
}

impl Sink {
    /// The ticket ids of every event handed over at least once.
    pub fn seen(&self) -> HashSet<usize> {
        self.seen.lock().unwrap().clone()
    }

    /// Forwards received, redeliveries included.
    pub fn deliveries(&self) -> usize {
        self.deliveries.load(Ordering::SeqCst)
    }

    /// Forwards answered with an error status ([`start_answering`]).
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    /// How often an event (by its `X-Thulium-Inbox-Id`) was handed over while a
    /// forward of it was still running: two workers holding one event.
    pub fn overlaps(&self) -> usize {
        self.overlaps.load(Ordering::SeqCst)
    }
}

/// Marks an event as being handled until dropped.
struct Held {
    sink: Arc<Sink>,
    id: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.sink.running.lock().unwrap().remove(&self.id);
    }
}

/// Serves `POST /app` on a loopback port, answering `200` to everything after up to
/// `max_delay`, and records each forward in `sink`. Returns the address.
pub async fn start(sink: Arc<Sink>, max_delay: Duration) -> SocketAddr {
    start_answering(sink, max_delay, Arc::new(AtomicU16::new(200))).await
}

/// [`start`], answering each forward with the status `status` holds when it comes
/// (a test changes it to take the application down and up): a `2xx` is recorded
/// as handed over, anything else counted as refused.
pub async fn start_answering(
    sink: Arc<Sink>,
    max_delay: Duration,
    status: Arc<AtomicU16>,
) -> SocketAddr {
    let app = axum::Router::new().route(
        "/app",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let (sink, status) = (Arc::clone(&sink), Arc::clone(&status));
            async move {
                let answer = axum::http::StatusCode::from_u16(status.load(Ordering::SeqCst))
                    .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
                if !answer.is_success() {
                    sink.refused.fetch_add(1, Ordering::SeqCst);
                    return (answer, "refused by the test");
                }
                let id = headers
                    .get("x-thulium-inbox-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                if !id.is_empty() && !sink.running.lock().unwrap().insert(id.clone()) {
                    sink.overlaps.fetch_add(1, Ordering::SeqCst);
                }
                // Dropped with the request when its sender dies (a killed relay): a
                // worker that is gone holds nothing.
                let _held = Held {
                    sink: Arc::clone(&sink),
                    id,
                };
                let delay = u64::try_from(max_delay.as_millis()).unwrap_or(u64::MAX);
                if delay > 0 {
                    tokio::time::sleep(Duration::from_millis(fastrand::u64(0..delay))).await;
                }
                if let Some(ticket) = crate::events::ticket_id(&body) {
                    sink.seen.lock().unwrap().insert(ticket);
                }
                sink.deliveries.fetch_add(1, Ordering::SeqCst);
                (answer, "ok")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(thulium::server::serve(
        listener,
        app,
        thulium::server::ServerLimits::default(),
        std::future::pending(),
    ));
    addr
}
