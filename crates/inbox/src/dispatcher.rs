//! [`Dispatcher`]: hands stored events to the application's [`Handler`].
//!
//! The dispatcher claims due events under a lease, in batches of up to `prefetch`
//! beyond its free handlers, and runs the handler on at most `concurrency` at a time,
//! each with a per-attempt timeout; outcomes are written after a handler's slot is
//! free, so many share one commit. `Ok` acks the event. An `Err`, a panic or a
//! timeout schedules a retry after a jittered, exponentially growing delay
//! ([`RetrySchedule`]); after the last attempt the event is dead-lettered, from where
//! a replay brings it back. The lease is longer than the handler timeout and is
//! extended while the handler runs, so no other worker takes the event meanwhile; a
//! worker that lost its claim (its lease ran out) cannot ack it, the store refuses.
//!
//! On shutdown the dispatcher stops claiming, gives back the events it claimed but
//! did not start, lets running handlers finish within a grace period, and leaves
//! everything else pending for the next start.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use thulium::event::Event;
use thulium::retry::{Backoff, Jitter};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument as _;

use crate::breaker::{Allowed, BreakerConfig, Gate};
use crate::handover::Handover;
use crate::model::{Attempt, ClaimToken, Claimed, EventId, Outcome, UnixMs, ms, now_ms};
use crate::routing::{AccountName, RouteName};
use crate::store::{ClaimRequest, Store, StoreError};

/// What the handler learns about a delivery besides the event.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Delivery {
    /// The inbox's id of the event.
    pub id: EventId,
    /// 1 for the first attempt (since it was stored or last replayed).
    pub attempt: u32,
    /// When Thulium's delivery was first received.
    pub first_received_at: UnixMs,
    /// The event's dedup key.
    pub dedup_key: String,
    /// The body as Thulium sent it, byte for byte.
    pub body: bytes::Bytes,
    /// The content type Thulium sent it with.
    pub content_type: Option<String>,
    /// The route it is handed over on.
    pub route: RouteName,
    /// The Thulium account it came from, when the relay receives for several.
    pub account: Option<AccountName>,
}

/// Why a handler did not take an event.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// A failure that trying again cannot mend: a handler returns it (converted into a
/// [`HandlerError`]) to dead-letter the event at once, with its reason, instead of
/// retrying it on the schedule. A replay still brings the event back.
///
/// ```
/// use thulium_inbox::dispatcher::{HandlerError, Permanent};
///
/// fn check(customer_known: bool) -> Result<(), HandlerError> {
///     if !customer_known {
///         return Err(Permanent::new("no such customer in the CRM").into());
///     }
///     Ok(())
/// }
/// assert_eq!(check(false).unwrap_err().to_string(), "no such customer in the CRM");
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct Permanent {
    reason: String,
}

impl Permanent {
    /// A permanent failure for `reason` (what the operator reads on the dead letter).
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }

    /// Why the event can never succeed.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// A failure the destination asked to retry after a while (HTTP `Retry-After`): the
/// next attempt is not before `after` (and not later than the schedule's longest
/// wait), instead of the schedule's own delay.
///
/// ```
/// use std::time::Duration;
/// use thulium_inbox::dispatcher::{HandlerError, RetryAfter};
///
/// let busy: HandlerError = RetryAfter::new("HTTP 429", Duration::from_secs(120)).into();
/// assert_eq!(busy.to_string(), "HTTP 429");
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct RetryAfter {
    reason: String,
    after: Duration,
}

impl RetryAfter {
    /// A failure to retry no sooner than `after`.
    pub fn new(reason: impl Into<String>, after: Duration) -> Self {
        Self {
            reason: reason.into(),
            after,
        }
    }

    /// How long the destination asked to wait.
    pub fn after(&self) -> Duration {
        self.after
    }
}

/// The application's side: take one event. `Ok` means taken for good; a
/// [`Permanent`] error dead-letters the event at once; a [`RetryAfter`] is retried
/// when it says; any other error is retried on the schedule.
/// Must be idempotent: an event can come more than once.
pub trait Handler: Send + Sync + 'static {
    /// Handles one event.
    fn handle(
        &self,
        event: Event,
        delivery: Delivery,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

impl<F, Fut, E> Handler for F
where
    F: Fn(Event, Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: Into<HandlerError>,
{
    fn handle(
        &self,
        event: Event,
        delivery: Delivery,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let future = self(event, delivery);
        async move { future.await.map_err(Into::into) }
    }
}

/// When failed attempts are tried again.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RetrySchedule {
    /// Attempts in all, the first included (default 15); then the event is dead.
    pub max_attempts: u32,
    /// The wait after the first failure (default 1 s); it doubles after each.
    pub initial: Duration,
    /// The longest wait (default 1 h).
    pub max: Duration,
    /// Each wait is drawn from ±this fraction around its nominal value (default 0.2),
    /// so that events that failed together are not all retried together.
    pub jitter: f64,
}

impl Default for RetrySchedule {
    /// 15 attempts over about 6.6 hours: 1 s, 2 s, 4 s ... 2048 s, then 1 h four times.
    fn default() -> Self {
        Self {
            max_attempts: 15,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(3600),
            jitter: 0.2,
        }
    }
}

impl RetrySchedule {
    /// A schedule of `max_attempts` attempts, starting at `initial` and doubling up
    /// to `max`, with the default jitter.
    pub fn new(max_attempts: u32, initial: Duration, max: Duration) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            initial,
            max,
            ..Self::default()
        }
    }

    /// The wait after failed attempt number `attempt` (1 for the first): the
    /// workspace's one [`Backoff`], spread by [`Self::jitter`].
    pub fn delay(&self, attempt: u32) -> Duration {
        Backoff::new(self.initial, self.max)
            .jitter(Jitter::Proportional(self.jitter))
            .delay(attempt)
    }
}

/// How the dispatcher works.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DispatchConfig {
    /// The route whose entries this dispatcher hands over (default: the default
    /// route). Each route has its own dispatcher, so its concurrency, schedule and
    /// failures are its own.
    pub route: RouteName,
    /// Handlers running at once (default 16).
    pub concurrency: usize,
    /// The longest one attempt may take (default 30 s).
    pub handler_timeout: Duration,
    /// How long a claim lasts unless extended (default 90 s, three times the handler
    /// timeout). It is extended every third of itself while the handler runs; after a
    /// crash, the events a worker held wait this long before another claims them.
    pub lease: Duration,
    /// Events claimed ahead of the running handlers (default 512), so that one
    /// commit claims many: with fast handlers each claim and each batch of outcomes
    /// costs a sync, and 16 handlers alone would take 16 events per sync. An event
    /// that waited here a third of its lease has its lease renewed before it runs;
    /// at shutdown every event not started is given back, due at once. With several
    /// hosts on one PostgreSQL inbox, a smaller value spreads events more evenly.
    pub prefetch: usize,
    /// When failed attempts are repeated.
    pub schedule: RetrySchedule,
    /// How often to look for due events when the store gives no signal (default 250 ms).
    pub poll_interval: Duration,
    /// How long a shutdown waits for running handlers (default 10 s).
    pub shutdown_grace: Duration,
    /// The most attempts started per second (default `None`: no limit), for a
    /// destination that cannot take bursts; attempts are spaced evenly.
    pub rate_limit: Option<f64>,
    /// When the route pauses itself after failures in a row ([`crate::breaker`];
    /// default `None`: never by itself, though it still honours a pause and probes
    /// a breaker's pause another host opened).
    pub breaker: Option<BreakerConfig>,
    /// Where the receivers of this process leave the events they parsed, so that an
    /// event stored a moment ago is handed over without parsing it again from the
    /// store (default `None`: every event is parsed from the store;
    /// [`crate::relay::Relay`] sets one for all its receivers and routes).
    pub handover: Option<Handover>,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            route: RouteName::default_route(),
            concurrency: 16,
            handler_timeout: Duration::from_secs(30),
            lease: Duration::from_secs(90),
            prefetch: 512,
            schedule: RetrySchedule::default(),
            poll_interval: Duration::from_millis(250),
            shutdown_grace: Duration::from_secs(10),
            breaker: None,
            rate_limit: None,
            handover: None,
        }
    }
}

impl DispatchConfig {
    /// Sets [`Self::handover`].
    pub fn handover(mut self, handover: Handover) -> Self {
        self.handover = Some(handover);
        self
    }

    /// Sets [`Self::route`].
    pub fn route(mut self, route: RouteName) -> Self {
        self.route = route;
        self
    }

    /// Sets [`Self::concurrency`] (at least 1).
    pub fn concurrency(mut self, handlers: usize) -> Self {
        self.concurrency = handlers.max(1);
        self
    }

    /// Sets [`Self::handler_timeout`], and the lease to three times it (so that a
    /// claim outlives the longest attempt, and a crashed worker's events come back
    /// after that long).
    pub fn handler_timeout(mut self, timeout: Duration) -> Self {
        self.handler_timeout = timeout;
        self.lease = timeout.saturating_mul(3);
        self
    }

    /// Sets [`Self::lease`].
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Sets [`Self::prefetch`] (0: claim only for free handlers).
    pub fn prefetch(mut self, events: usize) -> Self {
        self.prefetch = events;
        self
    }

    /// Sets [`Self::schedule`].
    pub fn schedule(mut self, schedule: RetrySchedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// Sets [`Self::poll_interval`].
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Sets [`Self::rate_limit`] (attempts per second; `None` or a value that is not
    /// above zero: no limit).
    pub fn rate_limit(mut self, per_second: Option<f64>) -> Self {
        self.rate_limit = per_second.filter(|rate| *rate > 0.0 && rate.is_finite());
        self
    }

    /// Sets [`Self::breaker`].
    pub fn breaker(mut self, breaker: Option<BreakerConfig>) -> Self {
        self.breaker = breaker;
        self
    }

    /// Sets [`Self::shutdown_grace`].
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }
}

/// Runs handlers over a store's due events.
#[derive(Debug)]
pub struct Dispatcher<S> {
    store: S,
    config: DispatchConfig,
}

impl<S: Store + Clone> Dispatcher<S> {
    /// A dispatcher over `store`.
    pub fn new(store: S, config: DispatchConfig) -> Self {
        Self { store, config }
    }

    /// Dispatches until `shutdown` completes, then stops claiming, waits up to the
    /// grace period for running handlers, and returns. Store failures are logged and
    /// retried, never fatal: events stay stored until the store is back.
    pub async fn run<H: Handler>(self, handler: H, shutdown: impl Future<Output = ()> + Send) {
        let handler = Arc::new(handler);
        let route = self.config.route.to_string();
        // Each series at zero from the start, for this route.
        for family in [
            "thulium_inbox_dispatched_total",
            "thulium_inbox_retried_total",
            "thulium_inbox_dead_total",
            "thulium_inbox_breaker_opened_total",
        ] {
            metrics::counter!(family, "route" => route.clone()).increment(0);
        }
        let slots = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let unrecorded = Arc::new(Semaphore::new(MAX_UNRECORDED));
        let signal = self.store.work_signal();
        // The route's pause, read again every second, and its breaker.
        let gate = Arc::new(Gate::new(
            self.config.route.clone(),
            self.config.breaker,
            Duration::from_secs(1),
        ));
        let mut running = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        // With a rate limit, when the next attempt may start.
        let spacing = self
            .config
            .rate_limit
            .map(|rate| Duration::from_secs_f64(1.0 / rate));
        let mut next_start = Instant::now();
        // Claimed events not yet started, oldest claim first, with when they came.
        let mut ready: VecDeque<(Claimed, Instant)> = VecDeque::new();
        loop {
            while running.try_join_next().is_some() {}
            // Wait for a free slot (or the end).
            let slot = tokio::select! {
                permit = Arc::clone(&slots).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
                () = &mut shutdown => break,
            };
            let allowed = gate.allowed(&self.store).await;
            if allowed == Allowed::Nothing {
                // Paused: what was claimed ahead goes back, due at once, so that it
                // waits for the resume rather than for its lease.
                for (claimed, _) in ready.drain(..) {
                    let _ = self.store.give_back(claimed.claim).await;
                }
                drop(slot);
                tokio::select! {
                    () = tokio::time::sleep(self.config.poll_interval) => {}
                    () = &mut shutdown => break,
                }
                continue;
            }
            if ready.is_empty() {
                // Acks free slots in bursts (one group commit answers many): let the
                // burst land before claiming, so that one claim takes many events.
                if slots.available_permits() + 1 < self.config.concurrency / 2 {
                    for _ in 0..4 {
                        tokio::task::yield_now().await;
                    }
                }
                let want = match allowed {
                    Allowed::Probe => 1,
                    _ => slots.available_permits() + 1 + self.config.prefetch,
                };
                // Register interest before claiming, so a put between the claim and
                // the wait still wakes us.
                let notified = signal.as_ref().map(Arc::clone);
                let mut wake = notified.as_ref().map(|s| Box::pin(s.notified()));
                if let Some(wake) = wake.as_mut() {
                    wake.as_mut().enable();
                }
                match self
                    .store
                    .claim(ClaimRequest::now(want, self.config.lease).on(self.config.route.clone()))
                    .await
                {
                    Ok(claimed) if claimed.is_empty() => {
                        if allowed == Allowed::Probe {
                            gate.probe_found_nothing();
                        }
                        drop(slot);
                        let poll = tokio::time::sleep(self.config.poll_interval);
                        tokio::select! {
                            () = poll => {}
                            () = async { match wake { Some(w) => w.await, None => std::future::pending().await } } => {}
                            () = &mut shutdown => break,
                        }
                        continue;
                    }
                    Ok(claimed) => {
                        let now = Instant::now();
                        ready.extend(claimed.into_iter().map(|c| (c, now)));
                    }
                    Err(error) => {
                        if allowed == Allowed::Probe {
                            gate.probe_found_nothing();
                        }
                        tracing::error!(%error, "cannot claim events; trying again");
                        drop(slot);
                        tokio::select! {
                            () = tokio::time::sleep(self.config.poll_interval.max(Duration::from_millis(100))) => {}
                            () = &mut shutdown => break,
                        }
                        continue;
                    }
                }
            }
            let Some((claim, since)) = ready.pop_front() else {
                continue;
            };
            if let Some(spacing) = spacing {
                let now = Instant::now();
                // Evenly spaced, with no burst after an idle spell.
                next_start = next_start.max(now);
                if next_start > now {
                    tokio::select! {
                        () = tokio::time::sleep_until(next_start.into()) => {}
                        () = &mut shutdown => {
                            ready.push_front((claim, since));
                            break;
                        }
                    }
                }
                next_start += spacing;
            }
            if since.elapsed() > self.config.lease / 3 && !self.renew(&claim).await {
                continue;
            }
            // The outcome is written after the handler's slot is given back, so the
            // next events run while it commits (and many outcomes share a commit); at
            // most MAX_UNRECORDED wait to be written at once.
            let recording = match Arc::clone(&unrecorded).acquire_owned().await {
                Ok(recording) => recording,
                Err(_) => break,
            };
            let (store, handler, config, gate) = (
                self.store.clone(),
                Arc::clone(&handler),
                self.config.clone(),
                Arc::clone(&gate),
            );
            running.spawn(async move {
                let taken = attempt(&store, &*handler, &config, claim, slot).await;
                drop(recording);
                gate.record(&store, taken).await;
            });
        }
        // Events claimed ahead and never started go back, due at once, so that
        // another worker need not wait for their leases to run out.
        let unstarted = ready.len();
        let given_back = futures_util::future::join_all(
            ready
                .drain(..)
                .map(|(claimed, _)| self.store.give_back(claimed.claim)),
        )
        .await;
        let kept = given_back.iter().filter(|r| r.is_err()).count();
        if kept > 0 {
            tracing::warn!(
                kept,
                unstarted,
                "cannot give back every event claimed ahead; they are handed over once their leases run out"
            );
        }
        // Stop claiming; let running handlers finish within the grace period. Those
        // cut off keep their claims, which run out (or are released at the next start).
        let grace = self.config.shutdown_grace;
        let finished = tokio::time::timeout(grace, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                running = running.len(),
                ?grace,
                "handlers still running after the shutdown grace period; their events stay in the inbox"
            );
            running.abort_all();
        }
    }
}

impl<S: Store> Dispatcher<S> {
    /// Renews the lease of an event that waited long after its claim; `false` if the
    /// claim is no longer this worker's (another took the event meanwhile).
    async fn renew(&self, claimed: &Claimed) -> bool {
        match self.store.extend(claimed.claim, self.config.lease).await {
            Ok(()) => true,
            Err(StoreError::StaleClaim(_) | StoreError::NotFound(_)) => false,
            // The store is down: run it; the heartbeat tries again while it runs.
            Err(error) => {
                tracing::warn!(id = %claimed.claim.id, %error, "cannot renew a claim before running it");
                true
            }
        }
    }
}

/// Why one attempt did not end with `Ok`.
enum Failure {
    Handler(String),
    Permanent(String),
    Later(String, Duration),
    Panic,
    Timeout(Duration),
    Unreadable(String),
    LostClaim,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Handler(reason) | Failure::Later(reason, _) => {
                write!(f, "the handler failed: {reason}")
            }
            Failure::Permanent(reason) => {
                write!(f, "the handler failed for good (not retried): {reason}")
            }
            Failure::Panic => f.write_str("the handler panicked"),
            Failure::Timeout(limit) => write!(f, "the handler did not finish within {limit:?}"),
            Failure::Unreadable(reason) => write!(f, "the stored event cannot be read: {reason}"),
            Failure::LostClaim => f.write_str("the claim was lost while the handler ran"),
        }
    }
}

/// The most outcomes whose handlers have ended and that wait to be written: a bound
/// on what a slow store lets pile up (each is a few hundred bytes).
const MAX_UNRECORDED: usize = 4096;

/// Runs the handler once for a claimed event, gives back its handler slot, and
/// records the outcome. Everything it logs is inside one `attempt` span with the
/// event's stable fields; a handler may record the `status` its destination answered
/// on it ([`record_status`]). Returns what the breaker counts: whether the
/// destination took it (`None` for a verdict about this one event: a final answer,
/// an unreadable event, a lost claim).
async fn attempt<S: Store, H: Handler>(
    store: &S,
    handler: &H,
    config: &DispatchConfig,
    claimed: Claimed,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> Option<bool> {
    // Signed integers: a trace exporter writes an unsigned one as text.
    let span = tracing::info_span!(
        "attempt",
        inbox_id = i64::try_from(claimed.claim.id.0).unwrap_or(i64::MAX),
        route = %claimed.event.route,
        dedup_key = %thulium::text::visible(&claimed.event.dedup_key),
        action = %thulium::text::visible(&claimed.event.action),
        attempt = i64::from(claimed.event.attempts),
        status = tracing::field::Empty,
    );
    run_and_record(store, handler, config, claimed, slot)
        .instrument(span)
        .await
}

/// Records on the current `attempt` span what the destination answered (an HTTP
/// status, a broker's confirm), so that the outcome line says it. A handler that
/// runs outside the dispatcher records nothing.
pub fn record_status(status: impl fmt::Display) {
    tracing::Span::current().record("status", tracing::field::display(status));
}

async fn run_and_record<S: Store, H: Handler>(
    store: &S,
    handler: &H,
    config: &DispatchConfig,
    claimed: Claimed,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> Option<bool> {
    let Claimed {
        claim: token,
        event: stored,
    } = claimed;
    let number = stored.attempts;
    let started_at = now_ms();
    let clock = Instant::now();
    let parsed = match config.handover.as_ref().and_then(|kept| kept.take(&stored)) {
        Some(event) => Ok(event),
        None => stored.event(),
    };
    let outcome = match parsed {
        Err(error) => Err(Failure::Unreadable(error.to_string())),
        Ok(event) => {
            let delivery = Delivery {
                id: stored.id,
                attempt: number,
                first_received_at: stored.received_at,
                dedup_key: stored.dedup_key.clone(),
                body: stored.body.clone(),
                content_type: stored.content_type.clone(),
                route: stored.route.clone(),
                account: stored.account.clone(),
            };
            let run = AssertUnwindSafe(handler.handle(event, delivery)).catch_unwind();
            tokio::select! {
                result = tokio::time::timeout(config.handler_timeout, run) => match result {
                    Ok(Ok(Ok(()))) => Ok(()),
                    Ok(Ok(Err(error))) => Err(if let Some(permanent) = error.downcast_ref::<Permanent>() {
                        Failure::Permanent(permanent.reason().to_string())
                    } else if let Some(later) = error.downcast_ref::<RetryAfter>() {
                        Failure::Later(later.to_string(), later.after())
                    } else {
                        Failure::Handler(error.to_string())
                    }),
                    Ok(Err(_)) => Err(Failure::Panic),
                    Err(_) => Err(Failure::Timeout(config.handler_timeout)),
                },
                () = keep_claim(store, token, config.lease) => Err(Failure::LostClaim),
            }
        }
    };
    let elapsed = clock.elapsed();
    drop(slot);
    let route = stored.route.to_string();
    metrics::histogram!("thulium_inbox_handler_duration_seconds", "route" => route.clone())
        .record(elapsed.as_secs_f64());
    let duration_ms = ms(elapsed);
    let record = |outcome| Attempt {
        number,
        started_at,
        duration_ms,
        outcome,
    };
    let taken = match &outcome {
        Ok(()) => Some(true),
        Err(Failure::Permanent(_) | Failure::Unreadable(_) | Failure::LostClaim) => None,
        Err(_) => Some(false),
    };
    let result = match outcome {
        Ok(()) => {
            metrics::counter!("thulium_inbox_dispatched_total", "route" => route).increment(1);
            tracing::info!(duration_ms, "handed over");
            store.ack(token, record(Outcome::Delivered)).await
        }
        Err(Failure::LostClaim) => {
            tracing::warn!("lost the claim while the handler ran; another worker has the event");
            return taken;
        }
        Err(failure) => {
            let reason = failure.to_string();
            let permanent = matches!(failure, Failure::Permanent(_));
            if permanent || number >= config.schedule.max_attempts {
                tracing::error!(duration_ms, %reason, "dead: the event waits for a replay");
                metrics::counter!("thulium_inbox_dead_total", "route" => route).increment(1);
                store
                    .dead_letter(token, record(Outcome::Failed(reason)))
                    .await
            } else {
                let wait = match failure {
                    // As the destination asked, within the schedule's longest wait.
                    Failure::Later(_, after) => after.min(config.schedule.max),
                    _ => config.schedule.delay(number),
                };
                tracing::warn!(duration_ms, %reason, retry_in_ms = ms(wait), "failed; retrying later");
                metrics::counter!("thulium_inbox_retried_total", "route" => route).increment(1);
                store
                    .retry_at(token, now_ms() + ms(wait), record(Outcome::Failed(reason)))
                    .await
            }
        }
    };
    match result {
        Ok(()) => {}
        Err(StoreError::StaleClaim(_)) => {
            tracing::warn!(
                "the claim ran out before the outcome was recorded; the event will be handed over again"
            );
        }
        Err(error) => {
            tracing::error!(%error, "cannot record the outcome; the event will be handed over again once its lease runs out");
        }
    }
    taken
}

/// Extends the claim every third of the lease; returns only if the claim is lost.
async fn keep_claim<S: Store>(store: &S, token: ClaimToken, lease: Duration) {
    let every = (lease / 3).max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(every).await;
        match store.extend(token, lease).await {
            Ok(()) => {}
            Err(StoreError::StaleClaim(_) | StoreError::NotFound(_)) => return,
            // The store is down: keep the handler running; the next beat may work.
            Err(error) => tracing::warn!(id = %token.id, %error, "cannot extend the claim"),
        }
    }
}
