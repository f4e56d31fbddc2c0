//! [`Store`]: the storage boundary. The receiver and the dispatcher use nothing else,
//! so a backend (the embedded redb file, PostgreSQL) slots in without touching them.
//!
//! Every operation is atomic. `put` returns only once the event is durable. Operations
//! on a claim are refused with [`StoreError::StaleClaim`] once the claim's token is no
//! longer the event's, so a worker whose lease ran out can never ack, retry or
//! dead-letter an event another worker now holds.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use crate::model::{
    Attempt, ClaimToken, Claimed, EventId, Filter, Finish, NewEvent, Pause, Purged, PutOutcome,
    Replay, Stats, StoredEvent, UnixMs,
};
use crate::routing::RouteName;

/// Why a store operation failed. `Display` says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The claim's token is stale: the lease ran out and another worker (or a replay)
    /// took the event. Nothing was changed.
    #[error(
        "event {0}: the claim is no longer valid (its lease ran out or it was replayed); nothing was changed"
    )]
    StaleClaim(EventId),
    /// No such event.
    #[error("no event {0} in the inbox")]
    NotFound(EventId),
    /// The operation does not apply to the event in its state.
    #[error("event {id} is {state}: {reason}")]
    WrongState {
        /// The event.
        id: EventId,
        /// Its state.
        state: crate::model::State,
        /// Why that forbids the operation.
        reason: &'static str,
    },
    /// The file was written by a version of the inbox with another schema.
    #[error(
        "{path}: the inbox schema is version {found}, this program reads version {expected}; use the matching thulium version or a new file"
    )]
    SchemaVersion {
        /// The store's path.
        path: PathBuf,
        /// The schema version found.
        found: u64,
        /// The schema version this code reads.
        expected: u64,
    },
    /// The store cannot be opened (missing directory, no permission, corrupt file,
    /// another program's file).
    #[error("cannot open the inbox at {path}: {reason}")]
    Open {
        /// The store's path.
        path: PathBuf,
        /// What went wrong and what to do.
        reason: String,
    },
    /// The store failed while reading or writing (a full disk, an I/O error, a lost
    /// database connection). Nothing of the failed operation was applied.
    #[error("the inbox store failed: {message}")]
    Storage {
        /// What failed.
        message: String,
        /// The cause.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The store was closed.
    #[error("the inbox store is closed")]
    Closed,
    /// The store was opened read-only (a read-only mount, a file this user may not
    /// write): it can be read, not changed.
    #[error(
        "{path} is opened read-only (a read-only mount or file); it can be read but not changed: copy it somewhere writable first"
    )]
    ReadOnly {
        /// The store's path.
        path: PathBuf,
    },
}

impl StoreError {
    /// A storage failure with its cause.
    pub fn storage(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Storage {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// Whether trying again later may succeed (the store is unavailable rather than
    /// the request wrong).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Storage { .. } | StoreError::Closed)
    }
}

/// What [`Store::begin_dispatch`] took (a lock), held until dropped.
#[must_use = "dropping the guard gives up what it holds"]
pub struct DispatchGuard(Option<Box<dyn std::any::Any + Send + Sync>>);

impl DispatchGuard {
    /// A guard that holds nothing.
    pub fn none() -> Self {
        Self(None)
    }

    /// A guard that holds `held` until dropped.
    pub fn holding(held: impl std::any::Any + Send + Sync) -> Self {
        Self(Some(Box::new(held)))
    }
}

impl std::fmt::Debug for DispatchGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "DispatchGuard(held)"
        } else {
            "DispatchGuard(none)"
        })
    }
}

/// What a claim asks for.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClaimRequest {
    /// The route whose entries are claimed (each route is dispatched on its own).
    pub route: RouteName,
    /// At most this many events.
    pub max: usize,
    /// How long the claims last unless extended.
    pub lease: Duration,
    /// The time to compare due dates and leases with (normally now).
    pub now: UnixMs,
}

impl ClaimRequest {
    /// Up to `max` events of the default route due now, each for `lease`.
    pub fn now(max: usize, lease: Duration) -> Self {
        Self {
            route: RouteName::default_route(),
            max,
            lease,
            now: crate::model::now_ms(),
        }
    }

    /// The same request for `route`'s entries.
    pub fn on(mut self, route: RouteName) -> Self {
        self.route = route;
        self
    }
}

/// A durable queue of Thulium events: the storage boundary of the inbox.
///
/// Implementations must make each method atomic, and `put` durable before it
/// returns. See the module docs for the claim rules; `crate::conformance` holds the
/// tests every implementation must pass.
pub trait Store: Send + Sync + 'static {
    /// Stores `event` unless an event with the same dedup key and content is stored
    /// (one atomic put-if-absent): one entry per route in `event.routes` (one on
    /// the unrouted route, done, if none), each with its own id (the outcome names
    /// the first route's); returns once it is durable.
    fn put(&self, event: NewEvent) -> impl Future<Output = Result<PutOutcome, StoreError>> + Send;

    /// Claims up to `request.max` due entries of `request.route` (pending and due,
    /// or in flight with an expired lease), oldest due first, each with a fresh
    /// token and a lease. Other routes' entries are never claimed nor read.
    fn claim(
        &self,
        request: ClaimRequest,
    ) -> impl Future<Output = Result<Vec<Claimed>, StoreError>> + Send;

    /// Extends a claim's lease to `lease` from now (a heartbeat).
    fn extend(
        &self,
        claim: ClaimToken,
        lease: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Gives a claimed event back unstarted: pending and due at once, its attempt
    /// count as before the claim (a dispatcher that claimed ahead of its handlers
    /// hands back what it will not run before it stops).
    fn give_back(&self, claim: ClaimToken) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records how the claim's attempt ended (`how`) with `attempt` in the event's
    /// history: done, pending again at a time, or dead. [`Self::ack`],
    /// [`Self::retry_at`] and [`Self::dead_letter`] say the same in one word each.
    fn finish(
        &self,
        claim: ClaimToken,
        how: Finish,
        attempt: Attempt,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The handler took the event: it is done.
    fn ack(
        &self,
        claim: ClaimToken,
        attempt: Attempt,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.finish(claim, Finish::Ack, attempt)
    }

    /// The attempt failed: the event is pending again, due at `at`.
    fn retry_at(
        &self,
        claim: ClaimToken,
        at: UnixMs,
        attempt: Attempt,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.finish(claim, Finish::RetryAt(at), attempt)
    }

    /// The last attempt failed: the event is dead until replayed.
    fn dead_letter(
        &self,
        claim: ClaimToken,
        attempt: Attempt,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.finish(claim, Finish::DeadLetter, attempt)
    }

    /// An operator sets a pending or dead event aside by hand (it becomes dead).
    fn set_aside(
        &self,
        id: EventId,
        reason: String,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Makes the selected events pending and due now, with their attempt count reset;
    /// returns how many. Events in flight are left alone.
    fn replay(&self, selection: Replay) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Counts per state, totals and the oldest open event; per route, its counts
    /// and its pause (every paused route is listed, entries or not).
    fn stats(&self) -> impl Future<Output = Result<Stats, StoreError>> + Send;

    /// Pauses `route` (`Some`: its dispatchers, on every host, claim nothing until
    /// it is resumed or, for a breaker's pause, until a probe succeeds) or resumes
    /// it (`None`). Its entries wait; nothing is dropped.
    fn set_pause(
        &self,
        route: RouteName,
        pause: Option<Pause>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// `route`'s pause, if it is paused: what its dispatchers check before claiming.
    fn pause_of(
        &self,
        route: RouteName,
    ) -> impl Future<Output = Result<Option<Pause>, StoreError>> + Send;

    /// Removes done events finished before `finished_before`, and forgets dedup keys
    /// of events received before `keys_received_before` (so that late redeliveries
    /// are still recognised within the window).
    fn purge(
        &self,
        finished_before: UnixMs,
        keys_received_before: UnixMs,
    ) -> impl Future<Output = Result<Purged, StoreError>> + Send;

    /// One event.
    fn get(
        &self,
        id: EventId,
    ) -> impl Future<Output = Result<Option<StoredEvent>, StoreError>> + Send;

    /// A page of events matching `filter`, newest first.
    fn list(
        &self,
        filter: Filter,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, StoreError>> + Send;

    /// Makes every in-flight event due now: for a process that knows no other holds
    /// claims on the store (the embedded store at start-up). Returns how many.
    fn release_claims(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Readies the store for this process's dispatcher, before it starts: the
    /// embedded store takes its dispatch lock (one dispatching process per file) and
    /// releases the claims a process that died left ([`Self::release_claims`]); a
    /// shared database does nothing (other hosts' claims run out by their leases).
    /// The guard holds what was taken until dropped; the count is how many events
    /// were released.
    fn begin_dispatch(
        &self,
    ) -> impl Future<Output = Result<(DispatchGuard, u64), StoreError>> + Send {
        async { Ok((DispatchGuard::none(), 0)) }
    }

    /// Whether the store's machinery is running (for `/healthz`): the embedded
    /// store's writer thread, without which no event can be stored or handed over
    /// until a restart. Cheap: it does no I/O.
    fn check_alive(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Proves the store can commit a write now (for `/readyz`).
    fn check_writable(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Pending plus in-flight events, if the backend knows it without a query (the
    /// receiver reads it on every request to apply back-pressure; the embedded store
    /// counts as of its last commit, PostgreSQL refreshes it every second).
    fn backlog(&self) -> Option<u64> {
        None
    }

    /// Signalled when events may have become due (after a put, retry or replay), if
    /// the backend can tell; the dispatcher polls otherwise.
    fn work_signal(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }
}
