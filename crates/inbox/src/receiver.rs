//! [`DurableReceiver`]: Thulium's deliveries checked by the SDK's receiver, stored
//! durably, and answered `200` only once stored.
//!
//! Per request: the SDK's checks (Basic auth in constant time, body limit, body read
//! timeout, parsing: `401`, `413`, `408`, `400` as today), then back-pressure (`503`
//! with `Retry-After` while more than `max_backlog` events wait), then
//! [`Store::put`]: `200` once the event is durable or was stored before; `503` with
//! `Retry-After` if the store fails, so that Thulium sends the event again. No event
//! answered `200` is lost: the put has returned only after its commit was synced.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use thulium::receiver::Receiver;

use crate::handover::Handover;
use crate::model::{NewEvent, PutOutcome};
use crate::routing::{AccountName, Routing};
use crate::store::Store;

/// Receives into a [`Store`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DurableReceiver<S> {
    receiver: Receiver,
    store: S,
    /// Which routes take each event.
    routing: Arc<Routing>,
    /// The account this receiver's deliveries come from, if the relay receives for
    /// several.
    account: Option<AccountName>,
    max_backlog: u64,
    retry_after: Duration,
    /// Puts under way: counted against the backlog too, so that many deliveries
    /// arriving at once cannot all pass the check before any is committed.
    storing: Arc<AtomicU64>,
    /// Where each stored event's parse is left for this process's dispatchers.
    handover: Option<Handover>,
}

/// The backlog past which deliveries are refused with `503` unless configured.
pub const DEFAULT_MAX_BACKLOG: u64 = 1_000_000;

impl<S: Store + Clone> DurableReceiver<S> {
    /// Checks deliveries with `receiver` and stores them in `store`.
    pub fn new(receiver: Receiver, store: S) -> Self {
        Self {
            receiver,
            store,
            routing: Arc::new(Routing::default()),
            account: None,
            max_backlog: DEFAULT_MAX_BACKLOG,
            retry_after: Duration::from_secs(30),
            storing: Arc::new(AtomicU64::new(0)),
            handover: None,
        }
    }

    /// Leaves each newly stored event, parsed, in `handover` for the dispatchers of
    /// this process ([`crate::dispatcher::DispatchConfig::handover`]).
    pub fn handover(mut self, handover: Handover) -> Self {
        self.handover = Some(handover);
        self
    }

    /// Stores each event for the routes `routing` gives its action (default: the
    /// one default route takes every action).
    pub fn routing(mut self, routing: Routing) -> Self {
        self.routing = Arc::new(routing);
        self
    }

    /// Stores each delivery as `account`'s: its redeliveries are recognised among
    /// that account's events only, and routes limited to accounts see it.
    pub fn account(mut self, account: AccountName) -> Self {
        self.account = Some(account);
        self
    }

    /// The same receiver (the same store, routing and backlog count) checking
    /// deliveries with `receiver` instead: one per account of a relay.
    pub fn with_receiver(&self, receiver: Receiver) -> Self {
        Self {
            receiver,
            ..self.clone()
        }
    }

    /// Refuse deliveries (`503`) while more than `events` wait to be handed over.
    pub fn max_backlog(mut self, events: u64) -> Self {
        self.max_backlog = events;
        self
    }

    /// The `Retry-After` of a `503` (default 30 s).
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = wait;
        self
    }

    /// A router that answers `POST path`.
    pub fn router(self, path: &str) -> Router {
        let this = Arc::new(self);
        Router::new().route(
            path,
            post(move |request: Request| {
                let this = Arc::clone(&this);
                async move { this.receive(request).await }
            }),
        )
    }

    /// Checks, stores and answers one delivery, in a `receive` span (what a trace
    /// exporter sends as the delivery's span).
    pub async fn receive(&self, request: Request) -> Response {
        use tracing::Instrument as _;
        let span = tracing::info_span!(
            "receive",
            otel.kind = "server",
            status = tracing::field::Empty
        );
        let response = self.receive_in_span(request).instrument(span.clone()).await;
        span.record("status", response.status().as_u16());
        response
    }

    async fn receive_in_span(&self, request: Request) -> Response {
        let delivery = match self.receiver.accept_delivery(request).await {
            Ok(delivery) => delivery,
            Err(rejection) => {
                metrics::counter!("thulium_inbox_rejected_total", "status" => rejection.status().as_str().to_string()).increment(1);
                return rejection.into_response();
            }
        };
        // This put's place in the backlog, held until it is committed (or failed).
        let storing = Storing::start(&self.storing);
        if let Some(backlog) = self.store.backlog()
            && backlog + storing.ahead >= self.max_backlog
        {
            tracing::warn!(
                backlog,
                max = self.max_backlog,
                "inbox full; refusing the delivery"
            );
            metrics::counter!("thulium_inbox_refused_total", "reason" => "full").increment(1);
            return self.unavailable("the inbox is full; deliver again later");
        }
        let routes = self
            .routing
            .routes_for_account(delivery.event.action().as_str(), self.account.as_ref());
        let event = NewEvent::from_event(&delivery.event, delivery.body, delivery.content_type)
            .for_routes(routes)
            .from_account(self.account.clone());
        metrics::counter!("thulium_inbox_received_total").increment(1);
        // The outcome lines' stable fields; the values came from outside, so control
        // and bidi characters are shown, not written raw into the log.
        // Copied only when a record can be written (the put takes the event).
        let (dedup_key, action) = if tracing::enabled!(tracing::Level::ERROR) {
            (
                thulium::text::visible(&event.dedup_key).into_owned(),
                thulium::text::visible(&event.action).into_owned(),
            )
        } else {
            Default::default()
        };
        // Left before the put: a dispatcher may claim the new entries before the
        // put's answer comes back here.
        let kept = self
            .handover
            .as_ref()
            .map(|handover| handover.keep(&event, delivery.event));
        let outcome = self.store.put(event).await;
        if let (Some(handover), Some(kept)) = (&self.handover, kept)
            && !matches!(outcome, Ok(PutOutcome::Stored(_) | PutOutcome::Conflict(_)))
        {
            handover.release(kept);
        }
        match outcome {
            Ok(PutOutcome::Stored(id)) => {
                metrics::counter!("thulium_inbox_stored_total").increment(1);
                tracing::info!(inbox_id = id.0, %dedup_key, %action, "stored");
                (StatusCode::OK, "stored").into_response()
            }
            Ok(PutOutcome::Conflict(id)) => {
                metrics::counter!("thulium_inbox_stored_total").increment(1);
                metrics::counter!("thulium_inbox_conflicts_total").increment(1);
                tracing::warn!(inbox_id = id.0, %dedup_key, %action, "conflict: a known dedup key with other content; stored as a new event");
                (StatusCode::OK, "stored").into_response()
            }
            Ok(PutOutcome::Duplicate(id)) => {
                metrics::counter!("thulium_inbox_duplicates_total").increment(1);
                tracing::info!(inbox_id = id.0, %dedup_key, %action, "duplicate: a redelivery of a stored event");
                (StatusCode::OK, "duplicate").into_response()
            }
            Err(error) => {
                tracing::error!(%dedup_key, %action, %error, "cannot store the delivery; answering 503 so Thulium delivers again");
                metrics::counter!("thulium_inbox_refused_total", "reason" => "store").increment(1);
                self.unavailable("the event could not be stored; deliver again later")
            }
        }
    }

    fn unavailable(&self, message: &'static str) -> Response {
        let mut response = (StatusCode::SERVICE_UNAVAILABLE, message).into_response();
        if let Ok(value) = HeaderValue::from_str(&self.retry_after.as_secs().max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// A put under way, counted in [`DurableReceiver`]'s `storing` until dropped.
struct Storing<'a> {
    count: &'a AtomicU64,
    /// Puts that were under way before this one.
    ahead: u64,
}

impl<'a> Storing<'a> {
    fn start(count: &'a AtomicU64) -> Self {
        let ahead = count.fetch_add(1, Ordering::AcqRel);
        Self { count, ahead }
    }
}

impl Drop for Storing<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}
