//! The rules of an event's life, written once.
//!
//! Every state change of a stored event is decided here, from the event's
//! [`Lifecycle`] (its state, attempts, due time, finish time and claim) and the
//! [`Change`] asked for: whether the change applies, what the event becomes, which
//! attempt joins its history, and, when it does not apply, the error with its reason.
//! The backends (the embedded file, PostgreSQL) find the events, lock them, call
//! [`decide`] and persist what it returned; none of them holds a rule of its own.
//! That is the seam River's driver interface draws between its job-queue logic and
//! each database driver.
//!
//! The functions are pure: no clock, no randomness (the caller passes `now` and the
//! new claim's token), so the tests below check every state against every change.

use thulium::text::visible;

use crate::model::{Attempt, EventId, MAX_KEPT_ATTEMPTS, Outcome, PutOutcome, State, UnixMs};
use crate::store::StoreError;

/// The part of a stored event that its life changes: small and `Copy`, so a backend
/// compares the before and after values to know which indexes to move.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Lifecycle {
    /// Where it stands.
    pub state: State,
    /// Attempts since it was stored or last replayed.
    pub attempts: u32,
    /// When it is due (pending) or when its lease ends (in flight); kept as it was
    /// once the event is done or dead.
    pub due_at: UnixMs,
    /// When it was done or dead-lettered.
    pub finished_at: Option<UnixMs>,
    /// The current claim's token, while in flight.
    pub claim_token: Option<u64>,
    /// Whether a route takes it; an event no route takes is kept on the `unrouted`
    /// route, done at once, and no change applies to it (there is nowhere to hand
    /// it over to). It never changes: the backends derive it from the route.
    pub routed: bool,
}

impl Lifecycle {
    /// A new route entry: pending, due when it was received; or, if no route takes
    /// it (`routed` false), done at once.
    pub fn received(at: UnixMs, routed: bool) -> Self {
        Self {
            state: if routed { State::Pending } else { State::Done },
            attempts: 0,
            due_at: at,
            finished_at: (!routed).then_some(at),
            claim_token: None,
            routed,
        }
    }

    /// Pending or in flight: not yet done or dead.
    pub fn is_open(self) -> bool {
        matches!(self.state, State::Pending | State::InFlight)
    }

    /// Whether a claim at `now` may take it: pending and due, or in flight with a
    /// lease that ran out (its worker died or stalled).
    pub fn is_claimable(self, now: UnixMs) -> bool {
        CLAIMABLE.contains(&self.state) && self.due_at <= now
    }
}

/// The states a claim takes events from (when their due time or lease end has come).
pub(crate) const CLAIMABLE: [State; 2] = [State::Pending, State::InFlight];
/// The states an operator may set an event aside from.
pub(crate) const SET_ASIDE_FROM: [State; 2] = [State::Pending, State::Dead];
/// The states [`Change::ReplayAllDead`] takes events from.
pub(crate) const REPLAY_ALL_DEAD_FROM: [State; 1] = [State::Dead];
/// The states [`Change::ReplayFinished`] takes events from.
pub(crate) const REPLAY_FINISHED_FROM: [State; 2] = [State::Done, State::Dead];
/// The states a release takes events from.
pub(crate) const RELEASE_FROM: [State; 1] = [State::InFlight];

pub(crate) use crate::model::Finish;

/// A state change asked of one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change<'a> {
    /// A worker claims it, with this fresh token, until `lease_until`.
    Claim {
        token: u64,
        now: UnixMs,
        lease_until: UnixMs,
    },
    /// The worker holding `token` extends its lease to `until` (a heartbeat).
    Extend { token: u64, until: UnixMs },
    /// The worker holding `token` records how its attempt ended.
    Finish {
        token: u64,
        how: Finish,
        attempt: &'a Attempt,
        now: UnixMs,
    },
    /// An operator sets it aside (dead) with a reason.
    SetAside { reason: &'a str, now: UnixMs },
    /// An operator replays this one event, whatever its state but in flight.
    ReplayOne { now: UnixMs },
    /// Part of "replay every dead event": dead events come back, others stay.
    ReplayAllDead { now: UnixMs },
    /// Part of "replay what was received between": done and dead events come back.
    ReplayFinished { now: UnixMs },
    /// The only process that dispatches frees claims a dead process left.
    Release { now: UnixMs },
    /// The worker holding `token` gives the event back unstarted (a dispatcher that
    /// claimed ahead and is stopping): pending and due at once, as if never claimed.
    GiveBack { token: u64, now: UnixMs },
}

/// What a change makes of an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Decision {
    /// The event's lifecycle after the change.
    pub after: Lifecycle,
    /// The attempt to add to its history, if any.
    pub record: Option<Attempt>,
}

impl Decision {
    fn to(after: Lifecycle) -> Self {
        Self {
            after,
            record: None,
        }
    }

    /// The event's last error after the change, if the change records one.
    pub fn last_error(&self) -> Option<&str> {
        match &self.record.as_ref()?.outcome {
            Outcome::Failed(reason) | Outcome::SetAside(reason) => Some(reason),
            Outcome::Delivered => None,
        }
    }
}

/// Why a change does not apply to an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The event is not there.
    NotFound,
    /// The claim's token is no longer the event's.
    StaleClaim,
    /// The change does not apply in this state; the reason says why.
    WrongState(State, &'static str),
    /// A bulk change that passes over an event in this state (not selected by it),
    /// or a claim of an event that is not due: the bulk change goes on to the next.
    Skip(State),
}

impl Refusal {
    /// The error to answer a change of event `id` with.
    pub fn into_error(self, id: EventId) -> StoreError {
        match self {
            Refusal::NotFound => StoreError::NotFound(id),
            Refusal::StaleClaim => StoreError::StaleClaim(id),
            Refusal::WrongState(state, reason) => StoreError::WrongState { id, state, reason },
            Refusal::Skip(state) => StoreError::WrongState {
                id,
                state,
                reason: "the change does not apply in this state",
            },
        }
    }
}

/// Decides what `change` makes of an event whose lifecycle is `before` (`None`: no
/// such event).
pub(crate) fn decide(before: Option<Lifecycle>, change: &Change<'_>) -> Result<Decision, Refusal> {
    let Some(before) = before else {
        return Err(Refusal::NotFound);
    };
    let held_by = |token: u64| before.state == State::InFlight && before.claim_token == Some(token);
    if !before.routed {
        return match change {
            Change::ReplayOne { .. } | Change::SetAside { .. } => Err(Refusal::WrongState(
                before.state,
                "no route takes its action; it is kept to be seen, not handed over",
            )),
            _ => Err(Refusal::Skip(before.state)),
        };
    }
    match *change {
        Change::Claim {
            token,
            now,
            lease_until,
        } => {
            if !before.is_claimable(now) {
                return Err(Refusal::Skip(before.state));
            }
            Ok(Decision::to(Lifecycle {
                state: State::InFlight,
                attempts: before.attempts.saturating_add(1),
                due_at: lease_until,
                finished_at: None,
                claim_token: Some(token),
                routed: true,
            }))
        }
        Change::Extend { token, until } => {
            if !held_by(token) {
                return Err(Refusal::StaleClaim);
            }
            Ok(Decision::to(Lifecycle {
                due_at: until,
                ..before
            }))
        }
        Change::Finish {
            token,
            how,
            attempt,
            now,
        } => {
            if !held_by(token) {
                return Err(Refusal::StaleClaim);
            }
            let after = match how {
                Finish::Ack => finished(before, State::Done, now),
                Finish::DeadLetter => finished(before, State::Dead, now),
                Finish::RetryAt(at) => Lifecycle {
                    state: State::Pending,
                    due_at: at,
                    claim_token: None,
                    ..before
                },
            };
            Ok(Decision {
                after,
                record: Some(recordable(attempt)),
            })
        }
        Change::SetAside { reason, now } => {
            if !SET_ASIDE_FROM.contains(&before.state) {
                let reason = if before.state == State::Done {
                    "it was handed over already"
                } else {
                    "a worker holds it; set it aside once the attempt ends"
                };
                return Err(Refusal::WrongState(before.state, reason));
            }
            Ok(Decision {
                after: finished(before, State::Dead, now),
                // Not an attempt of the handler's: numbered as the attempt it stopped
                // (0 if none ran), and taking no time.
                record: Some(Attempt {
                    number: before.attempts,
                    started_at: now,
                    duration_ms: 0,
                    outcome: Outcome::SetAside(visible(reason).into_owned()),
                }),
            })
        }
        Change::ReplayOne { now } => {
            if before.state == State::InFlight {
                return Err(Refusal::WrongState(before.state, "a worker holds it now"));
            }
            Ok(Decision::to(replayed(now)))
        }
        Change::ReplayAllDead { now } => {
            selected(before, &REPLAY_ALL_DEAD_FROM)?;
            Ok(Decision::to(replayed(now)))
        }
        Change::ReplayFinished { now } => {
            selected(before, &REPLAY_FINISHED_FROM)?;
            Ok(Decision::to(replayed(now)))
        }
        Change::GiveBack { token, now } => {
            if !held_by(token) {
                return Err(Refusal::StaleClaim);
            }
            Ok(Decision::to(Lifecycle {
                state: State::Pending,
                // The claim counted an attempt that never ran.
                attempts: before.attempts.saturating_sub(1),
                due_at: now,
                claim_token: None,
                ..before
            }))
        }
        Change::Release { now } => {
            selected(before, &RELEASE_FROM)?;
            Ok(Decision::to(Lifecycle {
                state: State::Pending,
                due_at: now,
                claim_token: None,
                ..before
            }))
        }
    }
}

fn finished(before: Lifecycle, state: State, now: UnixMs) -> Lifecycle {
    Lifecycle {
        state,
        finished_at: Some(now),
        claim_token: None,
        ..before
    }
}

fn replayed(now: UnixMs) -> Lifecycle {
    Lifecycle::received(now, true)
}

fn selected(before: Lifecycle, from: &[State]) -> Result<(), Refusal> {
    if from.contains(&before.state) {
        Ok(())
    } else {
        Err(Refusal::Skip(before.state))
    }
}

/// What a put is, from what the store already holds: the id of an event with the
/// same dedup key and content (`same`), and whether any event has the key
/// (`key_known`). `fresh` is the id a new event gets.
pub(crate) fn decide_put(same: Option<EventId>, key_known: bool, fresh: EventId) -> PutOutcome {
    match same {
        Some(id) => PutOutcome::Duplicate(id),
        None if key_known => PutOutcome::Conflict(fresh),
        None => PutOutcome::Stored(fresh),
    }
}

/// A new claim's token: random, so that no worker can guess another's, and below
/// 2^63 so that it fits a signed 64-bit column.
pub(crate) fn fresh_token() -> u64 {
    fastrand::u64(1..=i64::MAX as u64)
}

/// `attempt` as the history keeps it: its error text made visible
/// ([`thulium::text::visible`]), so that a NUL or an escape sequence in an
/// application's answer is recorded as text every store holds and every page shows as
/// it was, instead of failing the write (PostgreSQL refuses NUL) or the display.
fn recordable(attempt: &Attempt) -> Attempt {
    let outcome = match &attempt.outcome {
        Outcome::Failed(reason) => Outcome::Failed(visible(reason).into_owned()),
        Outcome::SetAside(reason) => Outcome::SetAside(visible(reason).into_owned()),
        Outcome::Delivered => Outcome::Delivered,
    };
    Attempt {
        outcome,
        ..attempt.clone()
    }
}

/// When the attempt with sequence number `sequence` (0 for the first an event ever
/// recorded) joins a history kept as numbered rows, the row that falls out of the
/// newest [`MAX_KEPT_ATTEMPTS`], if any: the same cap as [`remember`].
pub(crate) fn forgotten_by(sequence: u32) -> Option<u32> {
    sequence.checked_sub(MAX_KEPT_ATTEMPTS as u32)
}

/// Adds `attempt` to `history`, keeping the newest [`MAX_KEPT_ATTEMPTS`].
#[cfg(any(feature = "postgres", test))]
pub(crate) fn remember(history: &mut Vec<Attempt>, attempt: Attempt) {
    history.push(attempt);
    if history.len() > MAX_KEPT_ATTEMPTS {
        let excess = history.len() - MAX_KEPT_ATTEMPTS;
        history.drain(..excess);
    }
}

#[cfg(test)]
mod tests;
