//! What the inbox stores and hands out: events, their state, claims and attempts.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use thulium::event::Event;

use crate::routing::{AccountName, RouteName};
use crate::transition::Lifecycle;

/// Milliseconds since the Unix epoch: how every time in the inbox is kept, so that
/// backends compare and index times as plain integers.
pub type UnixMs = u64;

/// The current time as [`UnixMs`].
pub fn now_ms() -> UnixMs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `duration` in whole milliseconds, saturating.
pub(crate) fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The inbox's own identifier of a stored event, from 1 upwards in the order events
/// were stored. Thulium sends no event id; this is not one of Thulium's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(pub u64);

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An event as received, ready to be stored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewEvent {
    /// [`Event::dedup_key`]: the same for redeliveries of one event.
    pub dedup_key: String,
    /// The action, as sent.
    pub action: String,
    /// The event as its flat JSON object ([`Event::to_json`]): what identifies its
    /// content, whether it came form-encoded or as JSON.
    pub canonical: String,
    /// The body exactly as received, byte for byte.
    pub body: Bytes,
    /// The `Content-Type` it came with.
    pub content_type: Option<String>,
    /// When it was received.
    pub received_at: UnixMs,
    /// The routes that take it ([`crate::routing::Routing::routes_for`]): the store
    /// keeps one entry per route, each with its own delivery state. Empty: no route
    /// takes it, and it is kept once on [`RouteName::unrouted`], done at once.
    pub routes: Vec<RouteName>,
    /// The Thulium account it came from, when the relay receives for several: its
    /// redeliveries are recognised among that account's events only.
    pub account: Option<AccountName>,
}

impl NewEvent {
    /// An event received now with this body and content type.
    pub fn from_event(event: &Event, body: impl Into<Bytes>, content_type: Option<String>) -> Self {
        Self {
            dedup_key: event.dedup_key(),
            action: event.action().to_string(),
            canonical: event.to_json(),
            body: body.into(),
            content_type,
            received_at: now_ms(),
            routes: vec![RouteName::default_route()],
            account: None,
        }
    }

    /// The same event from `account`.
    pub fn from_account(mut self, account: Option<AccountName>) -> Self {
        self.account = account;
        self
    }

    /// The same event for these routes instead.
    pub fn for_routes(mut self, routes: Vec<RouteName>) -> Self {
        self.routes = routes;
        self
    }

    /// An event as Thulium would send it (form-encoded), received now: for tests and
    /// for tools that inject events.
    pub fn from_parsed(event: &Event) -> Self {
        Self::from_event(
            event,
            event.to_form(),
            Some("application/x-www-form-urlencoded".into()),
        )
    }

    /// A digest of [`Self::canonical`]: two events with one dedup key and different
    /// digests are a conflict, not a redelivery.
    pub fn content_digest(&self) -> String {
        content_digest(&self.canonical)
    }

    /// The dedup key within its account ([`dedup_scope`]): what the stores' dedup
    /// tables are keyed by.
    pub(crate) fn dedup_scope(&self) -> std::borrow::Cow<'_, str> {
        dedup_scope(self.account.as_ref(), &self.dedup_key)
    }
}

/// A dedup key within its account: the key alone for an event of no named account
/// (as every store kept it before accounts), `account \x1f key` otherwise, so that
/// two accounts' events with one key never pass for redeliveries of each other.
pub fn dedup_scope<'a>(
    account: Option<&AccountName>,
    dedup_key: &'a str,
) -> std::borrow::Cow<'a, str> {
    match account {
        None => std::borrow::Cow::Borrowed(dedup_key),
        Some(account) => std::borrow::Cow::Owned(format!("{account}\u{1f}{dedup_key}")),
    }
}

/// What a store's dedup table holds for an event: its scoped key and its content
/// digest, `\x1f` between (the digest, hex, never holds one).
pub(crate) fn dedup_identity(scope: &str, digest: &str) -> String {
    format!("{scope}\u{1f}{digest}")
}

/// The scoped key of a [`dedup_identity`].
pub(crate) fn scope_of_identity(identity: &str) -> &str {
    identity
        .rsplit_once('\u{1f}')
        .map_or(identity, |(scope, _)| scope)
}

/// The SHA-256 of `canonical`, in hex.
pub(crate) fn content_digest(canonical: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest.as_ref() {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    hex
}

/// Where an event stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum State {
    /// Waiting to be handed over (now, or at `next_attempt_at` after a failure).
    Pending,
    /// Claimed by a worker under a lease.
    InFlight,
    /// The handler took it.
    Done,
    /// Every attempt failed, or an operator set it aside: waits for a replay.
    Dead,
}

impl State {
    /// The name used in the CLI and the console.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::InFlight => "in_flight",
            State::Done => "done",
            State::Dead => "dead",
        }
    }

    /// Every state, in the order of an event's life.
    pub const ALL: [State; 4] = [State::Pending, State::InFlight, State::Done, State::Dead];

    /// The state's code in storage (the inbox file's life record, PostgreSQL's
    /// `state` column): the one place the codes are spelled. They are on disk, so
    /// they never change.
    pub(crate) fn code(self) -> u8 {
        match self {
            State::Pending => 0,
            State::InFlight => 1,
            State::Done => 2,
            State::Dead => 3,
        }
    }

    /// The state a stored code stands for, if any.
    pub(crate) fn from_code(code: u8) -> Option<State> {
        State::ALL.into_iter().find(|s| s.code() == code)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for State {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| format!("`{text}` is not a state (pending, in_flight, done, dead)"))
    }
}

/// How one attempt to hand an event over ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "error")]
#[non_exhaustive]
pub enum Outcome {
    /// The handler returned `Ok`.
    Delivered,
    /// The handler failed, panicked or timed out; the reason.
    Failed(String),
    /// An operator dead-lettered the event by hand.
    SetAside(String),
}

/// How a worker's attempt ended, as [`crate::Store::finish`] records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Finish {
    /// Handed over: the event is done.
    Ack,
    /// Failed: the event is pending again, due at this time.
    RetryAt(UnixMs),
    /// Failed for the last time (or for good): the event is dead until replayed.
    DeadLetter,
}

/// One attempt, as the store's history keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// When it started.
    pub started_at: UnixMs,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl Attempt {
    /// An attempt that started at `started_at` and ended now.
    pub fn ended_now(number: u32, started_at: UnixMs, outcome: Outcome) -> Self {
        Self {
            number,
            started_at,
            duration_ms: now_ms().saturating_sub(started_at),
            outcome,
        }
    }
}

/// The most attempts kept per event; older ones are counted, not kept, so that an
/// event replayed many times stays small.
pub const MAX_KEPT_ATTEMPTS: usize = 50;

/// A stored event with its delivery history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoredEvent {
    /// The inbox's id (of this route's entry: an event several routes take has one
    /// entry per route, with consecutive ids).
    pub id: EventId,
    /// The route this entry is delivered on (the default route when a record from
    /// before routes does not say).
    #[serde(default)]
    pub route: RouteName,
    /// The Thulium account it came from, when the relay receives for several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountName>,
    /// [`Event::dedup_key`].
    pub dedup_key: String,
    /// The action.
    pub action: String,
    /// The event as its flat JSON object.
    pub canonical: String,
    /// The body as received, byte for byte. In JSON it is a string when it is UTF-8
    /// (as every body Thulium sends is), else `{"base64": "..."}`.
    #[serde(with = "body_json")]
    pub body: Bytes,
    /// The content type it came with.
    pub content_type: Option<String>,
    /// When it was received.
    pub received_at: UnixMs,
    /// Where it stands.
    pub state: State,
    /// Attempts since it was stored or last replayed: what the retry schedule counts.
    pub attempts: u32,
    /// When it is due (pending), or when its lease runs out (in flight).
    pub due_at: UnixMs,
    /// When it was done or dead-lettered.
    pub finished_at: Option<UnixMs>,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// Whether another event with the same dedup key and other content came first.
    pub conflict: bool,
    /// The newest attempts (at most [`MAX_KEPT_ATTEMPTS`]), oldest first.
    pub history: Vec<Attempt>,
    /// The current claim's token, while in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) claim_token: Option<u64>,
}

impl StoredEvent {
    /// The event, parsed again from its canonical JSON.
    pub fn event(&self) -> Result<Event, thulium::event::ParseError> {
        Event::parse(self.canonical.as_bytes(), Some("application/json"))
    }

    /// Route `route`'s entry of `event`, as stored at put.
    pub(crate) fn new(id: EventId, route: RouteName, event: NewEvent, conflict: bool) -> Self {
        let lifecycle = Lifecycle::received(event.received_at, !route.is_unrouted());
        Self {
            id,
            route,
            account: event.account,
            dedup_key: event.dedup_key,
            action: event.action,
            canonical: event.canonical,
            body: event.body,
            content_type: event.content_type,
            received_at: event.received_at,
            state: lifecycle.state,
            attempts: lifecycle.attempts,
            due_at: lifecycle.due_at,
            finished_at: lifecycle.finished_at,
            last_error: None,
            conflict,
            history: Vec::new(),
            claim_token: lifecycle.claim_token,
        }
    }

    /// Puts back what a backend kept apart from the payload: the lifecycle, the last
    /// error and the kept history.
    pub(crate) fn restore(
        &mut self,
        lifecycle: Lifecycle,
        last_error: Option<String>,
        history: Vec<Attempt>,
    ) {
        let Lifecycle {
            state,
            attempts,
            due_at,
            finished_at,
            claim_token,
            routed: _,
        } = lifecycle;
        (self.state, self.attempts, self.due_at) = (state, attempts, due_at);
        (self.finished_at, self.claim_token) = (finished_at, claim_token);
        (self.last_error, self.history) = (last_error, history);
    }

    /// The part of the event that its life changes.
    pub(crate) fn lifecycle(&self) -> Lifecycle {
        Lifecycle {
            state: self.state,
            attempts: self.attempts,
            due_at: self.due_at,
            finished_at: self.finished_at,
            claim_token: self.claim_token,
            routed: !self.route.is_unrouted(),
        }
    }

    /// Applies what [`crate::transition::decide`] decided (for a backend that keeps
    /// the event whole in memory while it changes it).
    #[cfg(feature = "postgres")]
    pub(crate) fn apply(&mut self, decision: crate::transition::Decision) {
        let last_error = match decision.last_error() {
            Some(reason) => Some(reason.to_owned()),
            None => self.last_error.take(),
        };
        let mut history = std::mem::take(&mut self.history);
        if let Some(attempt) = decision.record {
            crate::transition::remember(&mut history, attempt);
        }
        self.restore(decision.after, last_error, history);
    }
}

impl From<&StoredEvent> for NewEvent {
    /// The event as it was received.
    fn from(event: &StoredEvent) -> Self {
        Self {
            dedup_key: event.dedup_key.clone(),
            action: event.action.clone(),
            canonical: event.canonical.clone(),
            body: event.body.clone(),
            content_type: event.content_type.clone(),
            received_at: event.received_at,
            routes: if event.route.is_unrouted() {
                Vec::new()
            } else {
                vec![event.route.clone()]
            },
            account: event.account.clone(),
        }
    }
}

/// A body in JSON: a string when it is UTF-8, else `{"base64": "..."}`, so that
/// what is shown is exactly what was received. For `#[serde(with = "...")]`, as on
/// [`StoredEvent::body`].
pub mod body_json {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Body {
        Text(String),
        Binary { base64: String },
    }

    /// Writes `body` as a string, or as `{"base64": "..."}` when it is not UTF-8.
    ///
    /// ```
    /// use thulium_inbox::model::body_json;
    /// let text = body_json::serialize(&"a=1".into(), serde_json::value::Serializer).unwrap();
    /// assert_eq!(text, "a=1");
    /// let bytes = body_json::serialize(&vec![0xff].into(), serde_json::value::Serializer).unwrap();
    /// assert_eq!(bytes, serde_json::json!({"base64": "/w=="}));
    /// ```
    pub fn serialize<S: Serializer>(body: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(body) {
            Ok(text) => serializer.serialize_str(text),
            Err(_) => Body::Binary {
                base64: STANDARD.encode(body),
            }
            .serialize(serializer),
        }
    }

    /// Reads what [`serialize`] wrote.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        match Body::deserialize(deserializer)? {
            Body::Text(text) => Ok(Bytes::from(text)),
            Body::Binary { base64 } => STANDARD
                .decode(base64)
                .map(Bytes::from)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// What a put did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PutOutcome {
    /// A new event, stored.
    Stored(EventId),
    /// The same event (same dedup key and content) was stored before: nothing new.
    Duplicate(EventId),
    /// Another event with this dedup key but other content was stored before; this one
    /// is stored too, marked as a conflict, and counted.
    Conflict(EventId),
}

impl PutOutcome {
    /// The id of the stored event (the earlier one, for a duplicate); of its first
    /// route's entry when several routes take it.
    pub fn id(self) -> EventId {
        match self {
            PutOutcome::Stored(id) | PutOutcome::Duplicate(id) | PutOutcome::Conflict(id) => id,
        }
    }
}

/// Proof of a claim: refused once another worker has claimed the event since.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClaimToken {
    /// The claimed event.
    pub id: EventId,
    /// The claim's random token.
    pub token: u64,
}

/// An event handed to a worker.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Claimed {
    /// Present it to extend, ack, retry or dead-letter.
    pub claim: ClaimToken,
    /// The event, with `attempts` counting this one.
    pub event: StoredEvent,
}

/// Counts and ages, for [`crate::Store::stats`]'s callers: `/metrics`, the console,
/// the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// Events waiting.
    pub pending: u64,
    /// Events claimed by a worker.
    pub in_flight: u64,
    /// Events handed over (until purged).
    pub done: u64,
    /// Dead-lettered events.
    pub dead: u64,
    /// Deliveries received and accepted, duplicates included.
    pub received: u64,
    /// Redeliveries recognised by their dedup key.
    pub duplicates: u64,
    /// Events stored although their dedup key was known with other content.
    pub conflicts: u64,
    /// When the oldest event not yet done or dead was received.
    pub oldest_open_received_at: Option<UnixMs>,
    /// The counts of each route's entries, by route name (the counts above are
    /// their sums).
    pub routes: Vec<RouteStats>,
}

/// Why a route hands nothing over, and until when: an operator paused it (until
/// resumed), or its circuit breaker opened after failures in a row (until a probe at
/// `probe_at` succeeds). Its entries wait; nothing is dropped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Pause {
    /// When it was paused.
    pub since: UnixMs,
    /// Why (an operator's words, or the breaker's).
    pub reason: String,
    /// For a breaker: when one entry may be tried again (half-open); `None` for an
    /// operator's pause, which only a resume ends.
    pub probe_at: Option<UnixMs>,
}

impl Pause {
    /// An operator's pause, from now; the reason's control and bidi characters are
    /// made visible ([`thulium::text::visible`]), as all text from outside.
    pub fn by_hand(reason: &str) -> Self {
        Self {
            since: now_ms(),
            reason: thulium::text::visible(reason).into_owned(),
            probe_at: None,
        }
    }

    /// `Pause` as its storage bytes: `since u64 | probe flag u8 | probe_at u64 |
    /// reason`, little-endian (the file's `route_pauses` table).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(17 + self.reason.len());
        out.extend_from_slice(&self.since.to_le_bytes());
        out.push(u8::from(self.probe_at.is_some()));
        out.extend_from_slice(&self.probe_at.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(self.reason.as_bytes());
        out
    }

    /// Reads what [`Self::encode`] wrote; `None` if it is cut short.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let since = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
        let probe = *bytes.get(8)? != 0;
        let probe_at = u64::from_le_bytes(bytes.get(9..17)?.try_into().ok()?);
        Some(Self {
            since,
            reason: String::from_utf8_lossy(bytes.get(17..)?).into_owned(),
            probe_at: probe.then_some(probe_at),
        })
    }
}

/// One route's entries per state, and its oldest open one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RouteStats {
    /// The route.
    pub route: RouteName,
    /// Entries waiting.
    pub pending: u64,
    /// Entries claimed by a worker.
    pub in_flight: u64,
    /// Entries handed over (until purged).
    pub done: u64,
    /// Dead-lettered entries.
    pub dead: u64,
    /// When its oldest entry not yet done or dead was received.
    pub oldest_open_received_at: Option<UnixMs>,
    /// Whether it is paused, and why.
    pub paused: Option<Pause>,
}

/// Routes in the order every view shows them: the default route first, then by name.
pub(crate) fn sort_routes(routes: &mut [RouteStats]) {
    routes.sort_by(|a, b| {
        (a.route != RouteName::default_route(), &a.route)
            .cmp(&(b.route != RouteName::default_route(), &b.route))
    });
}

impl RouteStats {
    /// A route with nothing counted yet.
    pub fn new(route: RouteName) -> Self {
        Self {
            route,
            pending: 0,
            in_flight: 0,
            done: 0,
            dead: 0,
            oldest_open_received_at: None,
            paused: None,
        }
    }

    /// The count of `state`, to change.
    pub(crate) fn count_mut(&mut self, state: State) -> &mut u64 {
        match state {
            State::Pending => &mut self.pending,
            State::InFlight => &mut self.in_flight,
            State::Done => &mut self.done,
            State::Dead => &mut self.dead,
        }
    }

    /// Entries not yet done or dead.
    pub fn open(&self) -> u64 {
        self.pending + self.in_flight
    }
}

impl Stats {
    /// The count of `state`, to change.
    #[cfg(feature = "postgres")]
    pub(crate) fn count_mut(&mut self, state: State) -> &mut u64 {
        match state {
            State::Pending => &mut self.pending,
            State::InFlight => &mut self.in_flight,
            State::Done => &mut self.done,
            State::Dead => &mut self.dead,
        }
    }

    /// Events not yet done or dead: the queue's depth.
    pub fn open(&self) -> u64 {
        self.pending + self.in_flight
    }

    /// How long the oldest open event has waited, at `now`.
    pub fn oldest_open_age(&self, now: UnixMs) -> Option<Duration> {
        self.oldest_open_received_at
            .map(|at| Duration::from_millis(now.saturating_sub(at)))
    }

    /// The counts as JSON, with the oldest open event's age in seconds at `now`:
    /// the one shape every JSON view of the counts shares (the console's
    /// `/api/stats`, the command line's JSON output).
    ///
    /// ```
    /// let mut stats = thulium_inbox::Stats::default();
    /// (stats.pending, stats.in_flight) = (2, 1);
    /// let json = stats.to_json(0);
    /// assert_eq!((json["pending"].as_u64(), json["open"].as_u64()), (Some(2), Some(3)));
    /// assert!(json["oldest_open_age_seconds"].is_null());
    /// ```
    pub fn to_json(&self, now: UnixMs) -> serde_json::Value {
        serde_json::json!({
            "pending": self.pending,
            "in_flight": self.in_flight,
            "done": self.done,
            "dead": self.dead,
            "open": self.open(),
            "received": self.received,
            "duplicates": self.duplicates,
            "conflicts": self.conflicts,
            "oldest_open_age_seconds": self.oldest_open_age(now).map(|a| a.as_secs()),
            "routes": self.routes.iter().map(|r| (r.route.to_string(), serde_json::json!({
                "pending": r.pending,
                "in_flight": r.in_flight,
                "done": r.done,
                "dead": r.dead,
                "open": r.open(),
                "oldest_open_age_seconds": r.oldest_open_received_at.map(|at| now.saturating_sub(at) / 1000),
                "paused": r.paused.as_ref().map(|p| serde_json::json!({
                    "reason": p.reason,
                    "since_seconds": now.saturating_sub(p.since) / 1000,
                    "probe_in_seconds": p.probe_at.map(|at| at.saturating_sub(now).div_ceil(1000)),
                })),
            }))).collect::<serde_json::Map<_, _>>(),
        })
    }
}

/// Which events a replay brings back to pending.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Replay {
    /// One event, whatever its state (unless in flight).
    Id(EventId),
    /// Every dead event.
    AllDead,
    /// Every dead entry of one route.
    DeadOn(RouteName),
    /// Every done or dead event received in `[from, to)`.
    ReceivedBetween {
        /// Start, inclusive.
        from: UnixMs,
        /// End, exclusive.
        to: UnixMs,
    },
}

/// Which events a list returns: a page, newest first. Build it with
/// `Filter { state: Some(State::Dead), ..Filter::default() }`; fields added later
/// will default to "no condition".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only events in this state.
    pub state: Option<State>,
    /// Only the entries of this route.
    pub route: Option<RouteName>,
    /// Only the events of this account.
    pub account: Option<AccountName>,
    /// Only events of this action.
    pub action: Option<String>,
    /// Only events received at or after this time.
    pub received_from: Option<UnixMs>,
    /// Only events received before this time.
    pub received_to: Option<UnixMs>,
    /// Only events whose body contains this text.
    pub text: Option<String>,
    /// Only events with an id below this one (the previous page's last id).
    pub before: Option<EventId>,
    /// Only events with an id above this one: with `before`, bounds how many events a
    /// search reads (the console searches text in windows of ids, so that a search
    /// nothing matches still answers fast).
    pub after: Option<EventId>,
    /// At most this many (default 50, at most 1000).
    pub limit: Option<usize>,
}

impl Filter {
    /// The page size in force.
    pub fn page_size(&self) -> usize {
        self.limit.unwrap_or(50).clamp(1, 1000)
    }

    /// Whether `event` passes every condition but the cursor.
    pub fn matches(&self, event: &StoredEvent) -> bool {
        self.state.is_none_or(|s| s == event.state)
            && self.route.as_ref().is_none_or(|r| *r == event.route)
            && self
                .account
                .as_ref()
                .is_none_or(|a| event.account.as_ref() == Some(a))
            && self.received_from.is_none_or(|t| event.received_at >= t)
            && self.received_to.is_none_or(|t| event.received_at < t)
            && self.matches_content(&event.action, &event.canonical, &event.body)
    }

    /// Whether an event with this action, canonical JSON and body passes the action
    /// and text conditions (a store may check them on the payload alone).
    pub(crate) fn matches_content(&self, action: &str, canonical: &str, body: &[u8]) -> bool {
        self.action.as_ref().is_none_or(|a| a == action)
            && self.text.as_ref().is_none_or(|t| {
                canonical.contains(t.as_str()) || memchr::memmem::find(body, t.as_bytes()).is_some()
            })
    }
}

/// What a purge removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Purged {
    /// Done events removed.
    pub events: u64,
    /// Dedup keys forgotten (older than the window).
    pub keys: u64,
}
