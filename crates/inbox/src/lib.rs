//! A durable inbox for Thulium's webhooks.
//!
//! Thulium sends each event once, with no event id, and documents no retry policy.
//! A receiver that answers `200` only after the application handled an event ties
//! every event's fate to the application being up at that moment. The inbox does
//! what the best webhook systems advise instead: **verify, store durably, answer
//! `200` fast, then hand the event over asynchronously**, with retries, dead letters
//! and replay.
//!
//! - [`receiver::DurableReceiver`]: the SDK's checks (auth, body limit, parsing),
//!   then [`Store::put`]; `200` only once the event is durable (or was stored before),
//!   `503` with `Retry-After` when the store fails or is too full.
//! - [`dispatcher::Dispatcher`]: workers claim due events under a lease, run the
//!   application's handler with a timeout, and ack, retry with jittered exponential
//!   backoff, or dead-letter.
//! - [`Store`]: the storage boundary; [`EmbeddedStore`] is the default, one redb file.
//! - [`relay::Relay`]: all of the above, the operators' routes and the purge, in one
//!   call.
//!
//! # The guarantee
//!
//! **At least once.** Every event answered `200` is stored durably and handed to the
//! handler until it returns `Ok` (or the retry schedule ends and it is dead-lettered,
//! from where a replay brings it back). An event can be handed over more than once:
//! after a crash between the handler's `Ok` and the ack, after a lease ran out, or
//! when Thulium sends it again after the dedup window (7 days by default). Handlers
//! must be idempotent. Redeliveries are recognised by [`thulium::event::Event::dedup_key`]
//! and content within the window; an event with a known key and other content is
//! stored too, and counted as a conflict.
//!
//! # In your own server
//!
//! [`relay::Relay`] runs all of it in one call, as `thulium listen --inbox` does:
//! the receiver with `/healthz`, `/readyz` and `/metrics`, the dispatcher, and the
//! purge that keeps the file from growing past the dedup window; it shuts down in
//! order on Ctrl-C or SIGTERM.
//!
//! ```no_run
//! use thulium::event::Event;
//! use thulium::receiver::Receiver;
//! use thulium_inbox::dispatcher::{Delivery, HandlerError};
//! use thulium_inbox::relay::Relay;
//! use thulium_inbox::EmbeddedStore;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = EmbeddedStore::open("events.redb")?;
//! let receiver = Receiver::with_basic_auth("thulium", "a-long-random-password")?;
//! let metrics = thulium_inbox::ops::install_prometheus()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! Relay::new(store, receiver)
//!     .path("/thulium")
//!     .metrics(metrics)
//!     .run(listener, |event: Event, delivery: Delivery| async move {
//!         println!("{} (attempt {})", event.action(), delivery.attempt);
//!         Ok::<_, HandlerError>(()) // an Err is retried later; a Permanent one is not
//!     })
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! [`relay::RelayHandle`] (from [`relay::Relay::start`]) stops on demand, and its
//! `drained()` says when everything stored was handed over: for tests. The parts
//! ([`receiver::DurableReceiver`], [`dispatcher::Dispatcher`], [`ops::router`]) stay
//! public for a server that needs to assemble them otherwise.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod breaker;
pub mod bus;
#[cfg(any(test, feature = "testing"))]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod conformance;
pub mod console;
pub mod dispatcher;
pub mod embedded;
pub mod forward;
mod group_commit;
pub mod handover;
pub mod model;
pub mod ops;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
pub mod receiver;
pub mod relay;
pub mod routing;
pub mod signing;
pub mod store;
mod transition;

pub use embedded::EmbeddedStore;
pub use model::{
    Attempt, ClaimToken, Claimed, EventId, Filter, Finish, NewEvent, Outcome, Pause, PutOutcome,
    Replay, RouteStats, State, Stats, StoredEvent, UnixMs,
};
pub use routing::{ActionPattern, RouteName, Routing};
pub use store::{ClaimRequest, Store, StoreError};
