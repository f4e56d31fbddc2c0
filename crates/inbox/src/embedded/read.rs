//! Reads of the inbox file: they run on the blocking pool beside the writer (redb's
//! readers see the last commit and never wait for the writer).

use redb::{ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable};

use super::file::storage;
use super::record::{DEFAULT_NO, Life, RouteNo, UNROUTED_NO, decode_payload};
use super::tables::{
    DEAD, DUE, ERRORS, HISTORY, LEASES, LIVES, META, META_CONFLICTS, META_DUPLICATES,
    META_RECEIVED, OPEN, PAUSES, PAYLOADS, ROUTE_COUNTS, ROUTES, assemble, route_stats,
    state_counter,
};
use crate::model::{EventId, Filter, State, Stats, StoredEvent, UnixMs};
use crate::routing::RouteName;
use crate::store::StoreError;

/// Route `route`'s number in the file read by `txn`, if it has one.
fn route_number(txn: &ReadTransaction, route: &RouteName) -> Result<Option<RouteNo>, StoreError> {
    if route.is_unrouted() {
        return Ok(Some(UNROUTED_NO));
    }
    if *route == RouteName::default_route() {
        return Ok(Some(DEFAULT_NO));
    }
    let routes = txn.open_table(ROUTES).map_err(storage)?;
    Ok(routes
        .get(route.as_str())
        .map_err(storage)?
        .map(|v| v.value()))
}

/// The tables a whole event is read from, in one read transaction.
struct Events {
    payloads: ReadOnlyTable<u64, &'static [u8]>,
    lives: ReadOnlyTable<u64, &'static [u8]>,
    history: ReadOnlyTable<(u64, u32), &'static str>,
    errors: ReadOnlyTable<u64, &'static str>,
}

impl Events {
    fn open(txn: &ReadTransaction) -> Result<Self, StoreError> {
        Ok(Self {
            payloads: txn.open_table(PAYLOADS).map_err(storage)?,
            lives: txn.open_table(LIVES).map_err(storage)?,
            history: txn.open_table(HISTORY).map_err(storage)?,
            errors: txn.open_table(ERRORS).map_err(storage)?,
        })
    }

    fn get(&self, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
        assemble(&self.payloads, &self.lives, &self.history, &self.errors, id).map_err(storage)
    }

    /// Whether event `id`'s payload passes `filter`'s action and text conditions:
    /// read before the rest of the event, since a search passes over most events.
    fn content_matches(&self, id: u64, filter: &Filter) -> Result<bool, StoreError> {
        if filter.action.is_none() && filter.text.is_none() {
            return Ok(true);
        }
        match self.payloads.get(id).map_err(storage)? {
            Some(bytes) => {
                let payload = decode_payload(EventId(id), bytes.value()).map_err(storage)?;
                Ok(filter.matches_content(&payload.action, &payload.canonical, &payload.body))
            }
            None => Ok(false),
        }
    }
}

pub(super) fn read_stats(db: &impl ReadableDatabase) -> Result<Stats, StoreError> {
    let txn = db.begin_read().map_err(storage)?;
    let meta = txn.open_table(META).map_err(storage)?;
    let get = |key: &str| -> Result<u64, StoreError> {
        Ok(meta.get(key).map_err(storage)?.map_or(0, |v| v.value()))
    };
    let open = txn.open_table(OPEN).map_err(storage)?;
    let lives = txn.open_table(LIVES).map_err(storage)?;
    let routes = route_stats(
        &txn.open_table(ROUTES).map_err(storage)?,
        &txn.open_table(ROUTE_COUNTS).map_err(storage)?,
        &open,
        &lives,
        &txn.open_table(PAUSES).map_err(storage)?,
    )
    .map_err(storage)?;
    let oldest = routes
        .iter()
        .filter_map(|route| route.oldest_open_received_at)
        .min();
    Ok(Stats {
        pending: get(state_counter(State::Pending))?,
        in_flight: get(state_counter(State::InFlight))?,
        done: get(state_counter(State::Done))?,
        dead: get(state_counter(State::Dead))?,
        received: get(META_RECEIVED)?,
        duplicates: get(META_DUPLICATES)?,
        conflicts: get(META_CONFLICTS)?,
        oldest_open_received_at: oldest,
        routes,
    })
}

pub(super) fn read_list(
    db: &impl ReadableDatabase,
    filter: &Filter,
) -> Result<Vec<StoredEvent>, StoreError> {
    let txn = db.begin_read().map_err(storage)?;
    let events = Events::open(&txn)?;
    let limit = filter.page_size();
    let upper = filter.before.map_or(u64::MAX, |b| b.0);
    let lower = filter.after.map_or(0, |a| a.0.saturating_add(1));
    if lower >= upper {
        return Ok(Vec::new());
    }
    let route = match &filter.route {
        Some(route) => match route_number(&txn, route)? {
            Some(number) => Some(number),
            None => return Ok(Vec::new()),
        },
        None => None,
    };
    let mut page = Vec::new();
    // Dead events have their own index per route: a dead-letter page needs no scan.
    if filter.state == Some(State::Dead) {
        let dead = txn.open_table(DEAD).map_err(storage)?;
        let numbers: Vec<RouteNo> = match route {
            Some(number) => vec![number],
            None => {
                let mut all = vec![UNROUTED_NO, DEFAULT_NO];
                for entry in txn
                    .open_table(ROUTES)
                    .map_err(storage)?
                    .iter()
                    .map_err(storage)?
                {
                    all.push(entry.map_err(storage)?.1.value());
                }
                all
            }
        };
        // Each route's newest matching dead events, then the newest of them all.
        for number in numbers {
            let mut taken = 0;
            let range = dead
                .range((number, lower)..(number, upper))
                .map_err(storage)?;
            for entry in range.rev() {
                let id = entry.map_err(storage)?.0.value().1;
                if let Some(event) = events.get(EventId(id))?
                    && filter.matches(&event)
                {
                    page.push(event);
                    taken += 1;
                    if taken >= limit {
                        break;
                    }
                }
            }
        }
        page.sort_by_key(|event| std::cmp::Reverse(event.id));
        page.truncate(limit);
        return Ok(page);
    }
    for entry in events.lives.range(lower..upper).map_err(storage)?.rev() {
        let (key, bytes) = entry.map_err(storage)?;
        let life = Life::decode(key.value(), bytes.value()).map_err(storage)?;
        if filter
            .received_from
            .is_some_and(|from| life.received_at < from)
        {
            // Ids grow with the time received: nothing older can match.
            break;
        }
        // The life answers the state and time conditions without reading the payload.
        if filter.state.is_some_and(|s| s != life.lifecycle.state)
            || route.is_some_and(|r| r != life.route)
            || filter.received_to.is_some_and(|to| life.received_at >= to)
            || !events.content_matches(key.value(), filter)?
        {
            continue;
        }
        if let Some(event) = events.get(EventId(key.value()))?
            && filter.matches(&event)
        {
            page.push(event);
            if page.len() >= limit {
                break;
            }
        }
    }
    Ok(page)
}

/// `route`'s pause, if it is paused.
pub(super) fn read_pause(
    db: &impl ReadableDatabase,
    route: &RouteName,
) -> Result<Option<crate::model::Pause>, StoreError> {
    let txn = db.begin_read().map_err(storage)?;
    let pauses = txn.open_table(PAUSES).map_err(storage)?;
    Ok(pauses
        .get(route.as_str())
        .map_err(storage)?
        .and_then(|bytes| crate::model::Pause::decode(bytes.value())))
}

/// One event.
pub(super) fn read_event(
    db: &impl ReadableDatabase,
    id: EventId,
) -> Result<Option<StoredEvent>, StoreError> {
    let txn = db.begin_read().map_err(storage)?;
    Events::open(&txn)?.get(id)
}

/// Whether any entry of `route` is due at `now` (pending and due, or with a lease
/// that ran out): idle dispatchers poll, and this answers "nothing" without a
/// commit.
pub(super) fn anything_due(
    db: &impl ReadableDatabase,
    route: &RouteName,
    now: UnixMs,
) -> Result<bool, StoreError> {
    let txn = db.begin_read().map_err(storage)?;
    let Some(route) = route_number(&txn, route)? else {
        return Ok(false);
    };
    let due = txn.open_table(DUE).map_err(storage)?;
    let leases = txn.open_table(LEASES).map_err(storage)?;
    let range = (route, 0, 0)..=(route, now, u64::MAX);
    Ok(due.range(range.clone()).map_err(storage)?.next().is_some()
        || leases.range(range).map_err(storage)?.next().is_some())
}
