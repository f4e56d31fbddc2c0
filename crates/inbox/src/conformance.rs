//! The tests every [`Store`] backend must pass, as library code so that each
//! backend's test suite runs the very same checks: each case on a fresh store, one
//! `#[test]` each ([`crate::conformance_tests!`]), and [`check_against_model`] for
//! random operation sequences compared with a simple in-memory model.
//!
//! Only with the `testing` feature: it is for the crate's own tests, for a backend
//! written elsewhere, and for tools that need sample events ([`ticket`]).
//!
//! Each function panics with a message naming the broken rule.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use thulium::event::Event;

use crate::model::{
    Attempt, ClaimToken, EventId, Filter, MAX_KEPT_ATTEMPTS, NewEvent, Outcome, PutOutcome, Replay,
    State, now_ms,
};
use crate::store::{ClaimRequest, Store, StoreError};

mod routes;
pub use routes::{
    accounts_keep_their_own_redeliveries, pauses_are_kept_per_route,
    routes_fan_out_with_their_own_state, unrouted_events_are_kept_done,
};

const HOUR: Duration = Duration::from_secs(3600);

/// A TICKET_CREATED event with this ticket id; `variant` changes its content (not its
/// dedup key, which is the ticket id and date).
pub fn ticket(ticket_id: u64, variant: u32) -> NewEvent {
    let body = format!(
        "action=TICKET_CREATED&ticket_id={ticket_id}&agent_login=agent{variant}&direction=in_behalf_of\
         &date=2014-11-17+12%3A59%3A32&customer_id=154"
    );
    let event = Event::parse(body.as_bytes(), Some("application/x-www-form-urlencoded"))
        .expect("a valid sample event");
    NewEvent::from_event(
        &event,
        body,
        Some("application/x-www-form-urlencoded".into()),
    )
}

fn attempt(number: u32, outcome: Outcome) -> Attempt {
    Attempt::ended_now(number, now_ms(), outcome)
}

fn failed() -> Outcome {
    Outcome::Failed("handler failed".into())
}

/// One `#[tokio::test]` per case of this suite, for a backend's test file, so that
/// a failure names its case. `setup` is an async fn taking the case's name and
/// returning a fresh, empty store with whatever keeps it alive (`None`: the backend
/// is not reachable here and the test says so), `teardown` an async fn taking that.
///
/// ```ignore
/// async fn setup(_case: &str) -> Option<(EmbeddedStore, tempfile::TempDir)> { ... }
/// async fn teardown(_dir: tempfile::TempDir) {}
/// thulium_inbox::conformance_tests!(setup, teardown);
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($setup:path, $teardown:path) => {
        $crate::conformance_tests!(@cases $setup, $teardown, put_is_put_if_absent, claims_ack_in_due_order, stale_claims_are_refused, retries_wait_until_due, dead_letters_and_replay, purge_keeps_keys_for_the_window, release_frees_every_claim, list_filters_and_pages, history_keeps_the_newest_attempts, a_claim_given_back_counts_nothing, hostile_bytes_fail_no_neighbour, routes_fan_out_with_their_own_state, unrouted_events_are_kept_done, pauses_are_kept_per_route, accounts_keep_their_own_redeliveries);
    };
    (@cases $setup:path, $teardown:path, $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some((store, kept)) = $setup(stringify!($case)).await else {
                    return;
                };
                $crate::conformance::$case(store).await;
                $teardown(kept).await;
            }
        )*
    };
}

/// The same event twice is one event; the same key with other content is a second
/// event, marked and counted as a conflict.
pub async fn put_is_put_if_absent<S: Store>(store: S) {
    let first = store.put(ticket(1, 0)).await.unwrap();
    let PutOutcome::Stored(id) = first else {
        panic!("a new event must be Stored, got {first:?}")
    };
    assert_eq!(
        store.put(ticket(1, 0)).await.unwrap(),
        PutOutcome::Duplicate(id)
    );
    let conflict = store.put(ticket(1, 1)).await.unwrap();
    assert!(
        matches!(conflict, PutOutcome::Conflict(other) if other != id),
        "{conflict:?}"
    );
    assert_eq!(
        store.put(ticket(1, 1)).await.unwrap(),
        PutOutcome::Duplicate(conflict.id())
    );
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (
            stats.pending,
            stats.received,
            stats.duplicates,
            stats.conflicts
        ),
        (2, 4, 2, 1)
    );
    let stored = store
        .get(conflict.id())
        .await
        .unwrap()
        .expect("the conflict is stored");
    assert!(stored.conflict);
    assert!(!store.get(id).await.unwrap().unwrap().conflict);
    assert!(stats.oldest_open_received_at.is_some());
}

/// Claims take due events oldest first, each once; an ack makes an event done.
pub async fn claims_ack_in_due_order<S: Store>(store: S) {
    let mut ids = Vec::new();
    for ticket_id in 1..=3 {
        ids.push(store.put(ticket(ticket_id, 0)).await.unwrap().id());
    }
    let claimed = store.claim(ClaimRequest::now(2, HOUR)).await.unwrap();
    let claimed_ids: Vec<EventId> = claimed.iter().map(|c| c.event.id).collect();
    assert_eq!(claimed_ids, ids[..2], "oldest first");
    assert!(
        claimed
            .iter()
            .all(|c| c.event.attempts == 1 && c.event.state == State::InFlight)
    );
    let more = store.claim(ClaimRequest::now(10, HOUR)).await.unwrap();
    assert_eq!(
        more.iter().map(|c| c.event.id).collect::<Vec<_>>(),
        [ids[2]],
        "claimed twice"
    );
    store
        .ack(claimed[0].claim, attempt(1, Outcome::Delivered))
        .await
        .unwrap();
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.pending, stats.in_flight, stats.done), (0, 2, 1));
    let done = store.get(ids[0]).await.unwrap().unwrap();
    assert_eq!(done.state, State::Done);
    assert_eq!(done.history.len(), 1);
    assert!(done.finished_at.is_some());
    assert!(
        store
            .claim(ClaimRequest::now(10, HOUR))
            .await
            .unwrap()
            .is_empty()
    );
}

/// A claim whose lease ran out can be taken by another worker; the first worker's
/// token is then refused for every operation.
pub async fn stale_claims_are_refused<S: Store>(store: S) {
    store.put(ticket(1, 0)).await.unwrap();
    let first = store
        .claim(ClaimRequest::now(1, Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    let later = ClaimRequest {
        now: now_ms() + 1000,
        ..ClaimRequest::now(1, HOUR)
    };
    let second = store.claim(later).await.unwrap();
    assert_eq!(second.len(), 1, "an expired lease must be claimable");
    assert_eq!(second[0].event.attempts, 2);
    let stale = first[0].claim;
    assert_ne!(stale, second[0].claim);
    let is_stale = |r: Result<(), StoreError>| matches!(r, Err(StoreError::StaleClaim(_)));
    assert!(is_stale(
        store.ack(stale, attempt(1, Outcome::Delivered)).await
    ));
    assert!(is_stale(store.extend(stale, HOUR).await));
    assert!(is_stale(
        store.retry_at(stale, 0, attempt(1, failed())).await
    ));
    assert!(is_stale(
        store.dead_letter(stale, attempt(1, failed())).await
    ));
    assert_eq!(
        store.get(stale.id).await.unwrap().unwrap().state,
        State::InFlight
    );
    store.extend(second[0].claim, HOUR).await.unwrap();
    store
        .ack(second[0].claim, attempt(2, Outcome::Delivered))
        .await
        .unwrap();
    let unknown = ClaimToken {
        id: EventId(999_999),
        token: 1,
    };
    assert!(matches!(
        store.ack(unknown, attempt(1, Outcome::Delivered)).await,
        Err(StoreError::NotFound(_))
    ));
}

/// A retried event is pending again and claimable only once due.
pub async fn retries_wait_until_due<S: Store>(store: S) {
    store.put(ticket(1, 0)).await.unwrap();
    let claimed = store.claim(ClaimRequest::now(1, HOUR)).await.unwrap();
    let due = now_ms() + 3_600_000;
    store
        .retry_at(claimed[0].claim, due, attempt(1, failed()))
        .await
        .unwrap();
    let event = store.get(claimed[0].event.id).await.unwrap().unwrap();
    assert_eq!((event.state, event.due_at), (State::Pending, due));
    assert_eq!(event.last_error.as_deref(), Some("handler failed"));
    assert!(
        store
            .claim(ClaimRequest::now(1, HOUR))
            .await
            .unwrap()
            .is_empty()
    );
    let at_due = ClaimRequest {
        now: due,
        ..ClaimRequest::now(1, HOUR)
    };
    let again = store.claim(at_due).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].event.attempts, 2);
}

/// Dead events wait for a replay, which makes them pending with a fresh count; an
/// operator can set an event aside by hand, but not one in flight or done.
pub async fn dead_letters_and_replay<S: Store>(store: S) {
    let a = store.put(ticket(1, 0)).await.unwrap().id();
    let b = store.put(ticket(2, 0)).await.unwrap().id();
    let claimed = store.claim(ClaimRequest::now(1, HOUR)).await.unwrap();
    store
        .dead_letter(claimed[0].claim, attempt(1, failed()))
        .await
        .unwrap();
    store.set_aside(b, "by hand".into()).await.unwrap();
    let dead = store
        .list(Filter {
            state: Some(State::Dead),
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        dead.iter().map(|e| e.id).collect::<Vec<_>>(),
        [b, a],
        "newest first"
    );
    assert_eq!(store.stats().await.unwrap().dead, 2);
    assert_eq!(store.replay(Replay::Id(a)).await.unwrap(), 1);
    let replayed = store.get(a).await.unwrap().unwrap();
    assert_eq!((replayed.state, replayed.attempts), (State::Pending, 0));
    assert_eq!(replayed.history.len(), 1, "the history survives a replay");
    assert_eq!(store.replay(Replay::AllDead).await.unwrap(), 1);
    assert_eq!(store.stats().await.unwrap().pending, 2);
    let claimed = store.claim(ClaimRequest::now(1, HOUR)).await.unwrap();
    assert!(matches!(
        store.replay(Replay::Id(claimed[0].event.id)).await,
        Err(StoreError::WrongState { .. })
    ));
    assert!(matches!(
        store.set_aside(claimed[0].event.id, "x".into()).await,
        Err(StoreError::WrongState { .. })
    ));
    store
        .ack(claimed[0].claim, attempt(1, Outcome::Delivered))
        .await
        .unwrap();
    assert!(matches!(
        store.set_aside(claimed[0].event.id, "x".into()).await,
        Err(StoreError::WrongState { .. })
    ));
    let range = Replay::ReceivedBetween {
        from: 0,
        to: now_ms() + 1,
    };
    assert_eq!(store.replay(range).await.unwrap(), 1, "the done one");
    assert!(matches!(
        store.replay(Replay::Id(EventId(424_242))).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Purge removes done events but keeps their dedup keys for the window.
pub async fn purge_keeps_keys_for_the_window<S: Store>(store: S) {
    store.put(ticket(1, 0)).await.unwrap();
    let open = store.put(ticket(2, 0)).await.unwrap().id();
    let claimed = store.claim(ClaimRequest::now(1, HOUR)).await.unwrap();
    store
        .ack(claimed[0].claim, attempt(1, Outcome::Delivered))
        .await
        .unwrap();
    let purged = store.purge(now_ms() + 1, 0).await.unwrap();
    assert_eq!((purged.events, purged.keys), (1, 0));
    assert!(store.get(claimed[0].event.id).await.unwrap().is_none());
    assert!(
        store.get(open).await.unwrap().is_some(),
        "open events are never purged"
    );
    assert!(matches!(
        store.put(ticket(1, 0)).await.unwrap(),
        PutOutcome::Duplicate(_)
    ));
    let purged = store.purge(now_ms() + 1, now_ms() + 1).await.unwrap();
    assert_eq!(purged.keys, 1, "only the purged event's key is forgotten");
    assert!(matches!(
        store.put(ticket(1, 0)).await.unwrap(),
        PutOutcome::Stored(_)
    ));
    assert!(matches!(
        store.put(ticket(2, 0)).await.unwrap(),
        PutOutcome::Duplicate(_)
    ));
    assert_eq!(store.stats().await.unwrap().done, 0);
}

/// Releasing claims makes every in-flight event due again, and fences old tokens.
pub async fn release_frees_every_claim<S: Store>(store: S) {
    for ticket_id in 1..=3 {
        store.put(ticket(ticket_id, 0)).await.unwrap();
    }
    let claimed = store.claim(ClaimRequest::now(3, HOUR)).await.unwrap();
    assert_eq!(store.release_claims().await.unwrap(), 3);
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.pending, stats.in_flight), (3, 0));
    assert!(matches!(
        store
            .ack(claimed[0].claim, attempt(1, Outcome::Delivered))
            .await,
        Err(StoreError::StaleClaim(_))
    ));
    assert_eq!(
        store
            .claim(ClaimRequest::now(10, HOUR))
            .await
            .unwrap()
            .len(),
        3
    );
    store.check_writable().await.unwrap();
}

/// Lists filter by state, action, time and text, newest first, in pages.
pub async fn list_filters_and_pages<S: Store>(store: S) {
    for ticket_id in 1..=25 {
        store.put(ticket(ticket_id, 0)).await.unwrap();
    }
    let event = thulium::event::examples::event("CHAT_CONVERSATION_CLOSED", &[]).unwrap();
    let chat = event.to_form();
    let chat_id = store
        .put(NewEvent::from_event(&event, chat, None))
        .await
        .unwrap()
        .id();
    let page = store
        .list(Filter {
            limit: Some(10),
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 10);
    assert_eq!(page[0].id, chat_id, "newest first");
    let next = store
        .list(Filter {
            limit: Some(10),
            before: Some(page[9].id),
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(next.len(), 10);
    assert!(next[0].id < page[9].id);
    let chats = store
        .list(Filter {
            action: Some("CHAT_CONVERSATION_CLOSED".into()),
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(chats.iter().map(|e| e.id).collect::<Vec<_>>(), [chat_id]);
    let text = store
        .list(Filter {
            text: Some("ticket_id=17&".into()),
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(text.len(), 1);
    let future = store
        .list(Filter {
            received_from: Some(now_ms() + 60_000),
            ..Filter::default()
        })
        .await
        .unwrap();
    assert!(future.is_empty());
    let done = store
        .list(Filter {
            state: Some(State::Done),
            ..Filter::default()
        })
        .await
        .unwrap();
    assert!(done.is_empty());
    // A window of ids: strictly between `after` and `before`.
    let top = page[0].id.0;
    let window = store
        .list(Filter {
            before: Some(EventId(top - 2)),
            after: Some(EventId(top - 6)),
            ..Filter::default()
        })
        .await
        .unwrap();
    let ids: Vec<u64> = window.iter().map(|e| e.id.0).collect();
    assert_eq!(ids, [top - 3, top - 4, top - 5]);
}

/// An event retried more often than [`MAX_KEPT_ATTEMPTS`] keeps the newest attempts,
/// its last error, and a set-aside recorded as the attempt it stopped.
pub async fn history_keeps_the_newest_attempts<S: Store>(store: S) {
    let id = store.put(ticket(1, 0)).await.unwrap().id();
    let attempts = MAX_KEPT_ATTEMPTS as u32 + 2;
    for number in 1..=attempts {
        let claimed = store.claim(ClaimRequest::now(1, HOUR)).await.unwrap();
        assert_eq!(claimed.len(), 1, "attempt {number} claims the event");
        assert_eq!(claimed[0].event.attempts, number);
        let failure = Outcome::Failed(format!("failure {number}"));
        store
            .retry_at(claimed[0].claim, 0, attempt(number, failure))
            .await
            .unwrap();
    }
    let event = store.get(id).await.unwrap().unwrap();
    assert_eq!(event.history.len(), MAX_KEPT_ATTEMPTS);
    assert_eq!(event.history[0].number, 3, "the oldest two were dropped");
    assert_eq!(event.history.last().unwrap().number, attempts);
    assert_eq!(
        event.last_error.as_deref(),
        Some(&*format!("failure {attempts}"))
    );

    store.set_aside(id, "poison".into()).await.unwrap();
    let event = store.get(id).await.unwrap().unwrap();
    assert_eq!(event.state, State::Dead);
    assert_eq!(event.history.len(), MAX_KEPT_ATTEMPTS);
    let last = event.history.last().unwrap();
    assert_eq!(
        (last.number, &last.outcome),
        (attempts, &Outcome::SetAside("poison".into()))
    );
    assert_eq!(event.last_error.as_deref(), Some("poison"));
}

/// A claim given back unstarted leaves the event pending, due at once, with the
/// attempt count it had; only the current claim's holder can give it back.
pub async fn a_claim_given_back_counts_nothing<S: Store>(store: S) {
    let id = store.put(ticket(1, 0)).await.unwrap().id();
    let first = store.claim(ClaimRequest::now(1, HOUR)).await.unwrap();
    assert_eq!(first[0].event.attempts, 1);
    store.give_back(first[0].claim).await.unwrap();
    let back = store.get(id).await.unwrap().unwrap();
    assert_eq!((back.state, back.attempts), (State::Pending, 0));
    assert!(back.history.is_empty(), "nothing ran, nothing is recorded");
    assert!(matches!(
        store.give_back(first[0].claim).await,
        Err(StoreError::StaleClaim(_))
    ));
    let again = store.claim(ClaimRequest::now(1, HOUR)).await.unwrap();
    assert_eq!(again.len(), 1, "given back, it is due at once");
    assert_eq!(again[0].event.attempts, 1);
    assert!(matches!(
        store
            .ack(first[0].claim, attempt(1, Outcome::Delivered))
            .await,
        Err(StoreError::StaleClaim(_))
    ));
}

/// A body keeps every byte it arrived with (a NUL, bytes that are not UTF-8); an
/// event the store cannot hold fails alone, never the puts stored beside it; an
/// application's error text with a NUL or an escape sequence is recorded visibly and
/// fails neither its own outcome nor those finished beside it.
pub async fn hostile_bytes_fail_no_neighbour<S: Store + Clone>(store: S) {
    let mut raw = ticket(1, 0);
    raw.body = bytes::Bytes::from_static(b"action=TICKET_CREATED&ticket_id=1&note=a\x00b\xff");
    let id = store.put(raw.clone()).await.unwrap().id();
    assert_eq!(store.get(id).await.unwrap().unwrap().body, raw.body);

    // Puts sent together share a batch where the backend batches them; a NUL in the
    // dedup key is something PostgreSQL's text cannot hold.
    let mut poisoned = ticket(2, 0);
    poisoned.dedup_key.push('\0');
    poisoned.action.push('\0');
    let mut puts: Vec<_> = (10..40)
        .map(|ticket_id| {
            let store = store.clone();
            tokio::spawn(async move { store.put(ticket(ticket_id, 0)).await })
        })
        .collect();
    puts.insert(15, {
        let store = store.clone();
        tokio::spawn(async move { store.put(poisoned).await })
    });
    for (position, put) in puts.into_iter().enumerate() {
        let outcome = put.await.unwrap();
        if position != 15 {
            assert!(
                matches!(outcome, Ok(PutOutcome::Stored(_))),
                "a put beside an event the store cannot hold failed: {outcome:?}"
            );
        }
    }

    // Outcomes finished together: one with an error text a database may refuse.
    let claimed = store.claim(ClaimRequest::now(20, HOUR)).await.unwrap();
    assert!(claimed.len() >= 10, "{} claimed", claimed.len());
    let finishes: Vec<_> = claimed
        .iter()
        .enumerate()
        .map(|(n, c)| {
            let (store, claim) = (store.clone(), c.claim);
            tokio::spawn(async move {
                if n == 3 {
                    let ugly = Outcome::Failed("bad\0body\u{1b}[31m".into());
                    store.retry_at(claim, 0, attempt(1, ugly)).await
                } else {
                    store.ack(claim, attempt(1, Outcome::Delivered)).await
                }
            })
        })
        .collect();
    for finish in finishes {
        finish.await.unwrap().expect("every outcome is recorded");
    }
    let ugly = store.get(claimed[3].claim.id).await.unwrap().unwrap();
    assert_eq!(ugly.state, State::Pending);
    assert_eq!(
        ugly.history.last().map(|a| &a.outcome),
        Some(&Outcome::Failed("bad\\u{0}body\\u{1b}[31m".into()))
    );
    assert_eq!(ugly.last_error.as_deref(), Some("bad\\u{0}body\\u{1b}[31m"));
}

/// One step of a random operation sequence for [`check_against_model`].
#[derive(Clone, Debug)]
pub enum ModelOp {
    /// Put ticket `id` (0..) in content variant `variant` (0 or 1).
    Put {
        /// The ticket id.
        id: u64,
        /// The content variant.
        variant: u32,
    },
    /// Claim up to this many.
    Claim(usize),
    /// Ack the n-th token ever issued (modulo their number): stale ones must be refused.
    Ack(usize),
    /// Retry the n-th token, due at once.
    Retry(usize),
    /// Dead-letter the n-th token.
    Dead(usize),
    /// Replay every dead event.
    ReplayDead,
    /// Release every claim.
    Release,
}

#[derive(Clone, Debug)]
struct ModelEvent {
    state: State,
    token: Option<u64>,
    attempts: u32,
}

/// Runs `ops` on `store` (fresh and empty) and on an in-memory model side by side,
/// comparing every outcome and, at the end, the counts.
pub async fn check_against_model<S: Store>(store: &S, ops: &[ModelOp]) {
    let mut events: BTreeMap<EventId, ModelEvent> = BTreeMap::new();
    let mut identities: HashMap<(u64, u32), EventId> = HashMap::new();
    let mut keys: HashMap<u64, EventId> = HashMap::new();
    let mut tokens: Vec<ClaimToken> = Vec::new();
    let (mut received, mut duplicates, mut conflicts) = (0, 0, 0);
    for (step, op) in ops.iter().enumerate() {
        let context = format!("step {step}: {op:?}");
        match op {
            ModelOp::Put { id, variant } => {
                received += 1;
                let outcome = store.put(ticket(*id, *variant)).await.unwrap();
                match identities.get(&(*id, *variant)) {
                    Some(known) => {
                        duplicates += 1;
                        assert_eq!(outcome, PutOutcome::Duplicate(*known), "{context}");
                    }
                    None => {
                        let conflict = keys.contains_key(id);
                        if conflict {
                            conflicts += 1;
                            assert!(
                                matches!(outcome, PutOutcome::Conflict(_)),
                                "{context}: {outcome:?}"
                            );
                        } else {
                            assert!(
                                matches!(outcome, PutOutcome::Stored(_)),
                                "{context}: {outcome:?}"
                            );
                            keys.insert(*id, outcome.id());
                        }
                        assert!(!events.contains_key(&outcome.id()), "{context}: id reused");
                        identities.insert((*id, *variant), outcome.id());
                        events.insert(
                            outcome.id(),
                            ModelEvent {
                                state: State::Pending,
                                token: None,
                                attempts: 0,
                            },
                        );
                    }
                }
            }
            ModelOp::Claim(max) => {
                let due: Vec<EventId> = events
                    .iter()
                    .filter(|(_, e)| e.state == State::Pending)
                    .map(|(id, _)| *id)
                    .collect();
                let claimed = store.claim(ClaimRequest::now(*max, HOUR)).await.unwrap();
                assert_eq!(claimed.len(), due.len().min(*max), "{context}");
                for claim in claimed {
                    let event = events.get_mut(&claim.event.id).expect("a known event");
                    assert_eq!(event.state, State::Pending, "{context}: claimed twice");
                    event.state = State::InFlight;
                    event.token = Some(claim.claim.token);
                    event.attempts += 1;
                    assert_eq!(claim.event.attempts, event.attempts, "{context}");
                    tokens.push(claim.claim);
                }
            }
            ModelOp::Ack(n) | ModelOp::Retry(n) | ModelOp::Dead(n) => {
                if tokens.is_empty() {
                    continue;
                }
                let token = tokens[n % tokens.len()];
                let event = events.get_mut(&token.id).expect("a known event");
                let current = event.state == State::InFlight && event.token == Some(token.token);
                let result = match op {
                    ModelOp::Ack(_) => store.ack(token, attempt(1, Outcome::Delivered)).await,
                    ModelOp::Retry(_) => store.retry_at(token, 0, attempt(1, failed())).await,
                    _ => store.dead_letter(token, attempt(1, failed())).await,
                };
                if current {
                    assert!(result.is_ok(), "{context}: {result:?}");
                    event.token = None;
                    event.state = match op {
                        ModelOp::Ack(_) => State::Done,
                        ModelOp::Retry(_) => State::Pending,
                        _ => State::Dead,
                    };
                } else {
                    assert!(
                        matches!(result, Err(StoreError::StaleClaim(_))),
                        "{context}: {result:?}"
                    );
                }
            }
            ModelOp::ReplayDead => {
                let mut expected = 0;
                for event in events.values_mut().filter(|e| e.state == State::Dead) {
                    event.state = State::Pending;
                    event.attempts = 0;
                    expected += 1;
                }
                assert_eq!(
                    store.replay(Replay::AllDead).await.unwrap(),
                    expected,
                    "{context}"
                );
            }
            ModelOp::Release => {
                let mut expected = 0;
                for event in events.values_mut().filter(|e| e.state == State::InFlight) {
                    event.state = State::Pending;
                    event.token = None;
                    expected += 1;
                }
                assert_eq!(store.release_claims().await.unwrap(), expected, "{context}");
            }
        }
    }
    let count = |state: State| events.values().filter(|e| e.state == state).count() as u64;
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.pending, stats.in_flight, stats.done, stats.dead),
        (
            count(State::Pending),
            count(State::InFlight),
            count(State::Done),
            count(State::Dead)
        ),
        "counts per state after {} operations",
        ops.len()
    );
    assert_eq!(
        (stats.received, stats.duplicates, stats.conflicts),
        (received, duplicates, conflicts)
    );
    for (id, model) in &events {
        let stored = store
            .get(*id)
            .await
            .unwrap()
            .expect("every stored event is kept");
        assert_eq!(stored.state, model.state, "event {id}");
    }
}
