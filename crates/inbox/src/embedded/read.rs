//! Reads of the inbox file: they run on the blocking pool beside the writer (redb's
//! readers see the last commit and never wait for the writer).

use redb::{Database, ReadableDatabase, ReadableTable};

use super::file::storage;
use super::tables::{
    DEAD, DUE, EVENTS, LEASES, META, META_CONFLICTS, META_DUPLICATES, META_RECEIVED, OPEN, decode,
    state_counter,
};
use crate::model::{EventId, Filter, State, Stats, StoredEvent, UnixMs};
use crate::store::StoreError;

pub(super) fn read_stats(db: &Database) -> Result<Stats, StoreError> {
    let txn = db.begin_read().map_err(storage)?;
    let meta = txn.open_table(META).map_err(storage)?;
    let get = |key: &str| -> Result<u64, StoreError> {
        Ok(meta.get(key).map_err(storage)?.map_or(0, |v| v.value()))
    };
    let open = txn.open_table(OPEN).map_err(storage)?;
    let oldest = match open.first().map_err(storage)? {
        Some((id, _)) => {
            let events = txn.open_table(EVENTS).map_err(storage)?;
            let event = events.get(id.value()).map_err(storage)?;
            match event {
                Some(json) => Some(
                    decode(EventId(id.value()), json.value())
                        .map_err(storage)?
                        .received_at,
                ),
                None => None,
            }
        }
        None => None,
    };
    Ok(Stats {
        pending: get(state_counter(State::Pending))?,
        in_flight: get(state_counter(State::InFlight))?,
        done: get(state_counter(State::Done))?,
        dead: get(state_counter(State::Dead))?,
        received: get(META_RECEIVED)?,
        duplicates: get(META_DUPLICATES)?,
        conflicts: get(META_CONFLICTS)?,
        oldest_open_received_at: oldest,
    })
}

pub(super) fn read_list(db: &Database, filter: &Filter) -> Result<Vec<StoredEvent>, StoreError> {
    let txn = db.begin_read().map_err(storage)?;
    let events = txn.open_table(EVENTS).map_err(storage)?;
    let limit = filter.page_size();
    let upper = filter.before.map_or(u64::MAX, |b| b.0);
    let lower = filter.after.map_or(0, |a| a.0.saturating_add(1));
    if lower >= upper {
        return Ok(Vec::new());
    }
    let mut page = Vec::new();
    // Dead events have their own index: a dead-letter page needs no scan.
    if filter.state == Some(State::Dead) {
        let dead = txn.open_table(DEAD).map_err(storage)?;
        for entry in dead.range(lower..upper).map_err(storage)?.rev() {
            let id = entry.map_err(storage)?.0.value();
            if let Some(json) = events.get(id).map_err(storage)? {
                let event = decode(EventId(id), json.value()).map_err(storage)?;
                if filter.matches(&event) {
                    page.push(event);
                    if page.len() >= limit {
                        break;
                    }
                }
            }
        }
        return Ok(page);
    }
    for entry in events.range(lower..upper).map_err(storage)?.rev() {
        let (key, value) = entry.map_err(storage)?;
        let event = decode(EventId(key.value()), value.value()).map_err(storage)?;
        if filter
            .received_from
            .is_some_and(|from| event.received_at < from)
        {
            // Ids grow with the time received: nothing older can match.
            break;
        }
        if filter.matches(&event) {
            page.push(event);
            if page.len() >= limit {
                break;
            }
        }
    }
    Ok(page)
}

/// One event.
pub(super) fn read_event(db: &Database, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
    let txn = db.begin_read().map_err(storage)?;
    let events = txn.open_table(EVENTS).map_err(storage)?;
    match events.get(id.0).map_err(storage)? {
        Some(json) => Ok(Some(decode(id, json.value()).map_err(storage)?)),
        None => Ok(None),
    }
}

/// Whether any event is due at `now` (pending and due, or with a lease that ran
/// out): idle dispatchers poll, and this answers "nothing" without a commit.
pub(super) fn anything_due(db: &Database, now: UnixMs) -> Result<bool, StoreError> {
    let txn = db.begin_read().map_err(storage)?;
    let due = txn.open_table(DUE).map_err(storage)?;
    let leases = txn.open_table(LEASES).map_err(storage)?;
    Ok(due
        .range(..=(now, u64::MAX))
        .map_err(storage)?
        .next()
        .is_some()
        || leases
            .range(..=(now, u64::MAX))
            .map_err(storage)?
            .next()
            .is_some())
}
