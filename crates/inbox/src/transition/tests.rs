//! Every change against every state, as a table, and random sequences against the
//! invariants every backend relies on.

use proptest::prelude::*;

use super::*;

const NOW: UnixMs = 1_000_000;
const TOKEN: u64 = 42;

fn attempt() -> Attempt {
    Attempt {
        number: 1,
        started_at: NOW - 10,
        duration_ms: 10,
        outcome: Outcome::Failed("boom".into()),
    }
}

/// An event in `state`, due (or with a lease that ended) at `due_at`.
fn event(state: State, due_at: UnixMs) -> Lifecycle {
    Lifecycle {
        state,
        attempts: 3,
        due_at,
        finished_at: matches!(state, State::Done | State::Dead).then_some(NOW - 500),
        claim_token: (state == State::InFlight).then_some(TOKEN),
        routed: true,
    }
}

/// What each change does to an event in each state, written out by hand: the rules
/// as a reader would state them. `Ok(state)` is the state after.
#[test]
fn every_change_against_every_state() {
    let record = attempt();
    let changes: [(&str, Change<'_>); 14] = [
        (
            "claim",
            Change::Claim {
                token: 7,
                now: NOW,
                lease_until: NOW + 90,
            },
        ),
        (
            "extend",
            Change::Extend {
                token: TOKEN,
                until: NOW + 90,
            },
        ),
        (
            "extend (other token)",
            Change::Extend {
                token: 1,
                until: NOW + 90,
            },
        ),
        (
            "ack",
            Change::Finish {
                token: TOKEN,
                how: Finish::Ack,
                attempt: &record,
                now: NOW,
            },
        ),
        (
            "ack (other token)",
            Change::Finish {
                token: 1,
                how: Finish::Ack,
                attempt: &record,
                now: NOW,
            },
        ),
        (
            "retry",
            Change::Finish {
                token: TOKEN,
                how: Finish::RetryAt(NOW + 5),
                attempt: &record,
                now: NOW,
            },
        ),
        (
            "dead-letter",
            Change::Finish {
                token: TOKEN,
                how: Finish::DeadLetter,
                attempt: &record,
                now: NOW,
            },
        ),
        (
            "set aside",
            Change::SetAside {
                reason: "by hand",
                now: NOW,
            },
        ),
        ("replay one", Change::ReplayOne { now: NOW }),
        ("replay all dead", Change::ReplayAllDead { now: NOW }),
        ("replay finished", Change::ReplayFinished { now: NOW }),
        ("release", Change::Release { now: NOW }),
        (
            "give back",
            Change::GiveBack {
                token: TOKEN,
                now: NOW,
            },
        ),
        (
            "give back (other token)",
            Change::GiveBack { token: 1, now: NOW },
        ),
    ];
    use Refusal::*;
    use State::*;
    let busy = WrongState(
        InFlight,
        "a worker holds it; set it aside once the attempt ends",
    );
    let handed = WrongState(Done, "it was handed over already");
    let held = WrongState(InFlight, "a worker holds it now");
    // Rows: the changes above; columns: pending, in flight, done, dead (all due).
    let expected: [[Result<State, Refusal>; 4]; 14] = [
        [Ok(InFlight), Ok(InFlight), Err(Skip(Done)), Err(Skip(Dead))],
        [
            Err(StaleClaim),
            Ok(InFlight),
            Err(StaleClaim),
            Err(StaleClaim),
        ],
        [Err(StaleClaim); 4],
        [Err(StaleClaim), Ok(Done), Err(StaleClaim), Err(StaleClaim)],
        [Err(StaleClaim); 4],
        [
            Err(StaleClaim),
            Ok(Pending),
            Err(StaleClaim),
            Err(StaleClaim),
        ],
        [Err(StaleClaim), Ok(Dead), Err(StaleClaim), Err(StaleClaim)],
        [Ok(Dead), Err(busy), Err(handed), Ok(Dead)],
        [Ok(Pending), Err(held), Ok(Pending), Ok(Pending)],
        [
            Err(Skip(Pending)),
            Err(Skip(InFlight)),
            Err(Skip(Done)),
            Ok(Pending),
        ],
        [
            Err(Skip(Pending)),
            Err(Skip(InFlight)),
            Ok(Pending),
            Ok(Pending),
        ],
        [
            Err(Skip(Pending)),
            Ok(Pending),
            Err(Skip(Done)),
            Err(Skip(Dead)),
        ],
        [
            Err(StaleClaim),
            Ok(Pending),
            Err(StaleClaim),
            Err(StaleClaim),
        ],
        [Err(StaleClaim); 4],
    ];
    for ((name, change), row) in changes.iter().zip(expected) {
        for (state, want) in State::ALL.into_iter().zip(row) {
            let got = decide(Some(event(state, NOW)), change).map(|d| d.after.state);
            assert_eq!(got, want, "{name} on a {state} event");
        }
        assert_eq!(
            decide(None, change),
            Err(NotFound),
            "{name} on a missing event"
        );
    }
}

#[test]
fn a_claim_given_back_unstarted_counts_no_attempt() {
    let claimed = decide(
        Some(event(State::Pending, NOW)),
        &Change::Claim {
            token: 7,
            now: NOW,
            lease_until: NOW + 90,
        },
    )
    .unwrap();
    let back = decide(
        Some(claimed.after),
        &Change::GiveBack {
            token: 7,
            now: NOW + 1,
        },
    )
    .unwrap();
    assert_eq!(back.after, event(State::Pending, NOW + 1));
    assert_eq!(back.record, None);
}

#[test]
fn a_claim_waits_for_the_due_time_and_for_the_lease_to_end() {
    let claim = Change::Claim {
        token: 7,
        now: NOW,
        lease_until: NOW + 90,
    };
    for state in [State::Pending, State::InFlight] {
        assert_eq!(
            decide(Some(event(state, NOW + 1)), &claim),
            Err(Refusal::Skip(state))
        );
    }
    let decision = decide(Some(event(State::Pending, NOW)), &claim).unwrap();
    assert_eq!(
        decision.after,
        Lifecycle {
            state: State::InFlight,
            attempts: 4,
            due_at: NOW + 90,
            finished_at: None,
            claim_token: Some(7),
            routed: true,
        }
    );
    assert_eq!(decision.record, None);
}

#[test]
fn a_set_aside_records_its_reason_as_the_stopped_attempt() {
    let decision = decide(
        Some(event(State::Pending, NOW)),
        &Change::SetAside {
            reason: "poison",
            now: NOW,
        },
    )
    .unwrap();
    assert_eq!(
        decision.record,
        Some(Attempt {
            number: 3,
            started_at: NOW,
            duration_ms: 0,
            outcome: Outcome::SetAside("poison".into()),
        })
    );
    assert_eq!(decision.last_error(), Some("poison"));
    assert_eq!(decision.after.finished_at, Some(NOW));
}

#[test]
fn a_replay_starts_the_count_again() {
    let decision = decide(
        Some(event(State::Dead, NOW)),
        &Change::ReplayOne { now: NOW + 1 },
    )
    .unwrap();
    assert_eq!(decision.after, Lifecycle::received(NOW + 1, true));
}

#[test]
fn an_event_no_route_takes_is_done_at_once_and_never_changes() {
    let unrouted = Lifecycle::received(NOW, false);
    assert_eq!(
        (unrouted.state, unrouted.finished_at, unrouted.routed),
        (State::Done, Some(NOW), false)
    );
    let record = attempt();
    for kind in 0..11 {
        let change = change_of((kind, NOW + 10, 5, true), unrouted, &record, 77);
        let refused = decide(Some(unrouted), &change).unwrap_err();
        match change {
            // An operator asking for it by id is told why.
            Change::ReplayOne { .. } | Change::SetAside { .. } => assert!(
                matches!(refused, Refusal::WrongState(State::Done, reason) if reason.contains("no route")),
                "{change:?}: {refused:?}"
            ),
            // Bulk changes and claims pass over it.
            _ => assert_eq!(refused, Refusal::Skip(State::Done), "{change:?}"),
        }
    }
}

#[test]
fn puts_are_new_duplicates_or_conflicts() {
    assert_eq!(
        decide_put(Some(EventId(3)), true, EventId(9)),
        PutOutcome::Duplicate(EventId(3))
    );
    assert_eq!(
        decide_put(None, true, EventId(9)),
        PutOutcome::Conflict(EventId(9))
    );
    assert_eq!(
        decide_put(None, false, EventId(9)),
        PutOutcome::Stored(EventId(9))
    );
}

#[test]
fn the_history_keeps_the_newest_attempts() {
    let mut history = Vec::new();
    for number in 1..=(MAX_KEPT_ATTEMPTS as u32 + 7) {
        remember(
            &mut history,
            Attempt {
                number,
                ..attempt()
            },
        );
    }
    assert_eq!(history.len(), MAX_KEPT_ATTEMPTS);
    assert_eq!(history[0].number, 8);
    assert_eq!(history.last().unwrap().number, MAX_KEPT_ATTEMPTS as u32 + 7);

    // The same cap for a history kept as numbered rows: recording every sequence
    // number and dropping what `forgotten_by` names keeps the same newest ones.
    let mut rows = std::collections::BTreeSet::new();
    for sequence in 0..(MAX_KEPT_ATTEMPTS as u32 + 7) {
        rows.insert(sequence);
        if let Some(forgotten) = forgotten_by(sequence) {
            assert!(rows.remove(&forgotten), "{forgotten} was never kept");
        }
    }
    assert_eq!(rows.len(), MAX_KEPT_ATTEMPTS);
    assert_eq!(rows.first(), Some(&7));
}

fn any_state() -> impl Strategy<Value = State> {
    prop::sample::select(State::ALL.to_vec())
}

fn any_change() -> impl Strategy<Value = (u8, u64, u64, bool)> {
    (0u8..11, 0u64..200, 0u64..200, any::<bool>())
}

/// Builds a change from generated numbers; `right_token` picks the event's own token.
fn change_of<'a>(
    (kind, a, b, right_token): (u8, u64, u64, bool),
    current: Lifecycle,
    record: &'a Attempt,
    fresh: u64,
) -> Change<'a> {
    let token = if right_token {
        current.claim_token.unwrap_or(0)
    } else {
        fresh ^ 1
    };
    let now = a;
    match kind {
        0 => Change::Claim {
            token: fresh,
            now,
            lease_until: now + b,
        },
        1 => Change::Extend {
            token,
            until: now + b,
        },
        2 => Change::Finish {
            token,
            how: Finish::Ack,
            attempt: record,
            now,
        },
        3 => Change::Finish {
            token,
            how: Finish::RetryAt(now + b),
            attempt: record,
            now,
        },
        4 => Change::Finish {
            token,
            how: Finish::DeadLetter,
            attempt: record,
            now,
        },
        5 => Change::SetAside {
            reason: "by hand",
            now,
        },
        6 => Change::ReplayOne { now },
        7 => Change::ReplayAllDead { now },
        8 => Change::ReplayFinished { now },
        9 => Change::GiveBack { token, now },
        _ => Change::Release { now },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Whatever happens to an event, the invariants the backends' indexes rely on hold
    /// after every change, and a refused change changes nothing.
    #[test]
    fn invariants_hold_after_any_sequence(
        start in any_state(),
        steps in prop::collection::vec(any_change(), 1..40),
    ) {
        let record = attempt();
        let mut current = event(start, 0);
        let mut next_token = 1000;
        for step in steps {
            next_token += 1;
            let change = change_of(step, current, &record, next_token);
            match decide(Some(current), &change) {
                Ok(decision) => {
                    let after = decision.after;
                    // A claim token exactly while in flight.
                    prop_assert_eq!(after.claim_token.is_some(), after.state == State::InFlight);
                    // A finish time exactly while done or dead.
                    prop_assert_eq!(after.finished_at.is_some(), !after.is_open());
                    // Attempts grow by one per claim, restart only with a replay.
                    match change {
                        Change::Claim { token, .. } => {
                            prop_assert_eq!(after.attempts, current.attempts + 1);
                            prop_assert_eq!(after.claim_token, Some(token));
                        }
                        Change::ReplayOne { .. } | Change::ReplayAllDead { .. } | Change::ReplayFinished { .. } => {
                            prop_assert_eq!(after.attempts, 0);
                        }
                        // A claim given back unstarted takes back its count.
                        Change::GiveBack { .. } => {
                            prop_assert_eq!(after.attempts, current.attempts.saturating_sub(1));
                        }
                        _ => prop_assert_eq!(after.attempts, current.attempts),
                    }
                    // Only the holder of the current claim acts on an event in flight.
                    if let Change::Extend { token, .. } | Change::Finish { token, .. } | Change::GiveBack { token, .. } = change {
                        prop_assert_eq!(current.claim_token, Some(token));
                    }
                    // Only the handler's attempts and set-asides are recorded.
                    prop_assert_eq!(
                        decision.record.is_some(),
                        matches!(change, Change::Finish { .. } | Change::SetAside { .. })
                    );
                    current = after;
                }
                Err(Refusal::NotFound) => prop_assert!(false, "a present event is never missing"),
                Err(_) => {}
            }
        }
    }
}
