//! Applies one operation inside the writer's transaction: finds the events it
//! concerns through the indexes, asks [`crate::transition`] what becomes of each,
//! and persists that. No rule of an event's life is decided here.

use redb::ReadableTable;

use super::tables::{
    META_CONFLICTS, META_DUPLICATES, META_NEXT_ID, META_PING, META_RECEIVED, Tables,
};
use super::writer::Op;
use crate::group_commit::{Answer, Job};
use crate::model::{
    ClaimToken, Claimed, EventId, NewEvent, Purged, PutOutcome, Replay, UnixMs, ms, now_ms,
};
use crate::routing::RouteName;
use crate::store::{ClaimRequest, StoreError};
use crate::transition::{Change, Finish, Lifecycle, decide, decide_put, fresh_token};

/// What applying one operation gives: its answer, and whether it may have made an
/// event due; or the storage error that aborts the batch, with the answer of this
/// operation (it will carry the commit's error).
type Applied = Result<(Answer, bool), (redb::Error, Answer)>;

/// Applies `op` to the transaction's tables.
pub(super) fn apply(t: &mut Tables<'_>, op: Op) -> Applied {
    match op {
        Op::Put(job) => {
            let (event, identity) = &job.input;
            let outcome = put(t, event, identity);
            settle(
                job,
                outcome.map(|o| (Ok(o), !matches!(o, PutOutcome::Duplicate(_)))),
            )
        }
        Op::Claim(job) => {
            let claimed = claim(t, &job.input);
            settle(job, claimed.map(|c| (Ok(c), false)))
        }
        Op::Extend(job) => {
            let (claim, lease) = job.input;
            let change = Change::Extend {
                token: claim.token,
                until: now_ms() + ms(lease),
            };
            let changed = change_one(t, claim.id, &change);
            settle(job, changed.map(|c| (c.map(drop), false)))
        }
        Op::GiveBack(job) => {
            let claim = job.input;
            let change = Change::GiveBack {
                token: claim.token,
                now: now_ms(),
            };
            let changed = change_one(t, claim.id, &change);
            settle(job, changed.map(|c| (c.map(drop), true)))
        }
        Op::Finish(job) => {
            let (claim, how, attempt) = &job.input;
            let change = Change::Finish {
                token: claim.token,
                how: *how,
                attempt,
                now: now_ms(),
            };
            let retry = matches!(how, Finish::RetryAt(_));
            let changed = change_one(t, claim.id, &change).map(|c| (c.map(drop), retry));
            settle(job, changed)
        }
        Op::SetAside(job) => {
            let (id, reason) = &job.input;
            let change = Change::SetAside {
                reason,
                now: now_ms(),
            };
            let changed = change_one(t, *id, &change).map(|c| (c.map(drop), false));
            settle(job, changed)
        }
        Op::Replay(job) => {
            let replayed = replay(t, &job.input);
            settle(
                job,
                replayed.map(|r| {
                    let due = r.as_ref().is_ok_and(|count| *count > 0);
                    (r, due)
                }),
            )
        }
        Op::Purge(job) => {
            let (finished_before, keys_before) = job.input;
            let purged = purge(t, finished_before, keys_before);
            settle(job, purged.map(|p| (Ok(p), false)))
        }
        Op::Release(job) => {
            let released = release(t);
            settle(job, released.map(|count| (Ok(count), count > 0)))
        }
        Op::SetPause(job) => {
            let (route, pause) = &job.input;
            let resumed = pause.is_none();
            let set = t.set_pause(route, pause.as_ref());
            // A resume may make entries claimable again.
            settle(job, set.map(|()| (Ok(()), resumed)))
        }
        Op::Ping(job) => {
            let pinged = t.meta.insert(META_PING, now_ms()).map(drop);
            settle(job, pinged.map(|()| (Ok(()), false)).map_err(Into::into))
        }
    }
}

/// Pairs a job with its outcome, or with the storage error that aborts the batch.
fn settle<I, O: Send + 'static>(
    job: Job<I, O>,
    outcome: Result<(Result<O, StoreError>, bool), redb::Error>,
) -> Applied {
    match outcome {
        Ok((result, due)) => Ok((job.answer(result), due)),
        Err(error) => Err((error, job.unanswered())),
    }
}

/// Stores `event`, whose [`crate::model::dedup_identity`] is `identity`.
fn put(t: &mut Tables<'_>, event: &NewEvent, identity: &str) -> Result<PutOutcome, redb::Error> {
    t.add(META_RECEIVED, 1)?;
    let scope = event.dedup_scope();
    let same = t.dedup.get(identity)?.map(|v| EventId(v.value().0));
    let key_known = same.is_some() || t.keys.get(&*scope)?.is_some();
    let fresh = EventId(t.counter(META_NEXT_ID)?.max(1));
    let outcome = decide_put(same, key_known, fresh);
    match outcome {
        PutOutcome::Duplicate(_) => {
            t.add(META_DUPLICATES, 1)?;
            return Ok(outcome);
        }
        PutOutcome::Conflict(_) => t.add(META_CONFLICTS, 1)?,
        _ => drop(t.keys.insert(&*scope, fresh.0)?),
    }
    // One entry per route, with consecutive ids; the dedup key points at the first.
    let unrouted = [RouteName::unrouted()];
    let routes = if event.routes.is_empty() {
        &unrouted[..]
    } else {
        &event.routes[..]
    };
    t.set(META_NEXT_ID, fresh.0 + routes.len() as u64)?;
    t.dedup.insert(identity, (fresh.0, event.received_at))?;
    let conflict = matches!(outcome, PutOutcome::Conflict(_));
    for (offset, route) in routes.iter().enumerate() {
        t.insert(EventId(fresh.0 + offset as u64), event, route, conflict)?;
    }
    Ok(outcome)
}

/// Asks the rules what `change` makes of event `id`, and writes it; `Ok(Err(..))`
/// refuses this operation alone. Reads and rewrites only the event's life record
/// (and adds the attempt it records): the payload is never read here. Returns the
/// event's lifecycle as changed.
fn change_one(
    t: &mut Tables<'_>,
    id: EventId,
    change: &Change<'_>,
) -> Result<Result<Lifecycle, StoreError>, redb::Error> {
    let Some(before) = t.life(id.0)? else {
        return Ok(Err(StoreError::NotFound(id)));
    };
    match decide(Some(before.lifecycle), change) {
        Ok(decision) => {
            t.apply(id.0, before, &decision)?;
            Ok(Ok(decision.after))
        }
        Err(refusal) => Ok(Err(refusal.into_error(id))),
    }
}

/// Applies a bulk `change` to each of `ids` that it selects; returns how many.
fn change_each(t: &mut Tables<'_>, ids: Vec<u64>, change: &Change<'_>) -> Result<u64, redb::Error> {
    let mut count = 0;
    for id in ids {
        if change_one(t, EventId(id), change)?.is_ok() {
            count += 1;
        }
    }
    Ok(count)
}

fn claim(t: &mut Tables<'_>, request: &ClaimRequest) -> Result<Vec<Claimed>, redb::Error> {
    let now = request.now;
    let Some(route) = t.route_number(&request.route)? else {
        return Ok(Vec::new());
    };
    let mut ids = Vec::new();
    for entry in t.due.range((route, 0, 0)..=(route, now, u64::MAX))? {
        if ids.len() >= request.max {
            break;
        }
        ids.push(entry?.0.value().2);
    }
    if ids.len() < request.max {
        for entry in t.leases.range((route, 0, 0)..=(route, now, u64::MAX))? {
            if ids.len() >= request.max {
                break;
            }
            ids.push(entry?.0.value().2);
        }
    }
    let mut claimed = Vec::with_capacity(ids.len());
    for id in ids {
        let token = fresh_token();
        let change = Change::Claim {
            token,
            now,
            lease_until: now + ms(request.lease),
        };
        if change_one(t, EventId(id), &change)?.is_ok() {
            let event = t.load(EventId(id))?.ok_or_else(|| {
                redb::Error::Corrupted(format!("event {id} vanished while being claimed"))
            })?;
            claimed.push(Claimed {
                claim: ClaimToken {
                    id: EventId(id),
                    token,
                },
                event,
            });
        }
    }
    Ok(claimed)
}

fn replay(t: &mut Tables<'_>, selection: &Replay) -> Result<Result<u64, StoreError>, redb::Error> {
    let now = now_ms();
    match selection {
        Replay::Id(id) => Ok(change_one(t, *id, &Change::ReplayOne { now })?.map(|_| 1)),
        Replay::AllDead => {
            let ids = t
                .dead
                .iter()?
                .map(|e| e.map(|(k, _)| k.value().1))
                .collect::<Result<_, _>>()?;
            Ok(Ok(change_each(t, ids, &Change::ReplayAllDead { now })?))
        }
        Replay::DeadOn(route) => {
            let Some(route) = t.route_number(route)? else {
                return Ok(Ok(0));
            };
            let ids = t
                .dead
                .range((route, 0)..=(route, u64::MAX))?
                .map(|e| e.map(|(k, _)| k.value().1))
                .collect::<Result<_, _>>()?;
            Ok(Ok(change_each(t, ids, &Change::ReplayAllDead { now })?))
        }
        Replay::ReceivedBetween { from, to } => {
            let ids = t.received_between(*from, *to)?;
            Ok(Ok(change_each(t, ids, &Change::ReplayFinished { now })?))
        }
    }
}

fn release(t: &mut Tables<'_>) -> Result<u64, redb::Error> {
    let held: Vec<u64> = t
        .leases
        .iter()?
        .map(|entry| entry.map(|(k, _)| k.value().2))
        .collect::<Result<_, _>>()?;
    change_each(t, held, &Change::Release { now: now_ms() })
}

fn purge(
    t: &mut Tables<'_>,
    finished_before: UnixMs,
    keys_before: UnixMs,
) -> Result<Purged, redb::Error> {
    let finished: Vec<(u64, u64)> = t
        .done
        .range(..(finished_before, 0))?
        .map(|e| e.map(|(k, _)| k.value()))
        .collect::<Result<_, _>>()?;
    for (finished_at, id) in &finished {
        t.remove_done(*finished_at, *id)?;
    }
    let mut forgotten = Vec::new();
    for entry in t.dedup.iter()? {
        let (key, value) = entry?;
        let (id, received_at) = value.value();
        if received_at < keys_before && !t.contains(id)? {
            forgotten.push((key.value().to_string(), id));
        }
    }
    for (identity, id) in &forgotten {
        t.dedup.remove(identity.as_str())?;
        {
            let key = crate::model::scope_of_identity(identity);
            let first = t.keys.get(key)?.map(|v| v.value());
            if first == Some(*id) {
                t.keys.remove(key)?;
            }
        }
    }
    Ok(Purged {
        events: finished.len() as u64,
        keys: forgotten.len() as u64,
    })
}
