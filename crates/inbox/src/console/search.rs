//! Text searches, kept from taking the cores that deliveries need: a search reads
//! up to [`super::SEARCH_WINDOW`] events (text has no index in the file), so at most
//! [`MAX_SEARCHES`] runs at once, and the next waits as long as the last took; one
//! that cannot start within [`QUEUE_WAIT`], or
//! does not finish within [`DEADLINE`], is answered "busy, try again" (`503` with
//! `Retry-After`) instead of piling up. The store's reads already run off the async
//! workers (the file's on the blocking pool, PostgreSQL's in the database).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use tokio::sync::Semaphore;

use super::html::Page;
use super::{Console, store_failure};
use crate::model::{Filter, StoredEvent};
use crate::store::Store;

/// Searches running at once, per console.
pub(super) const MAX_SEARCHES: usize = 1;
/// How long a search waits for its turn.
const QUEUE_WAIT: Duration = Duration::from_secs(2);
/// How long a search may take.
const DEADLINE: Duration = Duration::from_secs(10);

/// The searches' turns.
pub(super) fn turns() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(MAX_SEARCHES))
}

/// Lists `filter` (which has text) in its turn, within the deadline.
#[allow(clippy::result_large_err)] // a page to answer with at once
pub(super) async fn run<S: Store>(
    console: &Arc<Console<S>>,
    filter: Filter,
) -> Result<Vec<StoredEvent>, Response> {
    let turn = match tokio::time::timeout(QUEUE_WAIT, Arc::clone(&console.searches).acquire_owned())
        .await
    {
        Ok(Ok(turn)) => turn,
        _ => {
            metrics::counter!("thulium_console_searches_refused_total").increment(1);
            return Err(busy(
                "Other searches are running; try again in a few seconds.",
            ));
        }
    };
    // The search keeps its turn until it ends, even past the deadline (a read
    // cannot be stopped halfway, and a new one must not start beside it), then
    // for as long again: searches take at most half of one core, however many wait.
    let console = Arc::clone(console);
    let (found, search) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let started = Instant::now();
        let _ = found.send(console.store.list(filter).await);
        tokio::time::sleep(started.elapsed()).await;
        drop(turn);
    });
    match tokio::time::timeout(DEADLINE, search).await {
        Ok(Ok(Ok(events))) => Ok(events),
        Ok(Ok(Err(error))) => Err(store_failure(&error)),
        Ok(Err(_)) => Err(busy("The search failed; try again.")),
        Err(_) => {
            metrics::counter!("thulium_console_searches_refused_total").increment(1);
            Err(busy(
                "The search took too long; narrow it (an action, a time range) or try again.",
            ))
        }
    }
}

fn busy(message: &str) -> Response {
    let mut response = Page::error(StatusCode::SERVICE_UNAVAILABLE, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}
