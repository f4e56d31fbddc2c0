//! The tables of the inbox file, how an event's indexes follow its state, and the
//! upgrade of a file of an older schema.

use std::path::Path;

use redb::{Database, ReadableTable, Table, TableDefinition, WriteTransaction};

use super::file::storage;
use super::record::{
    DEFAULT_NO, Life, Payload, RouteNo, UNROUTED_NO, decode_payload, encode_payload,
};
use crate::model::{Attempt, EventId, NewEvent, Pause, RouteStats, State, StoredEvent};
use crate::routing::{RouteName, stored_route};
use crate::store::StoreError;
use crate::transition::{Decision, Lifecycle, forgotten_by};

/// The schema this code reads and writes. A file of an older version is upgraded in
/// place when opened (`upgrade_from_1`, `upgrade_from_2`); a newer one is refused.
pub const SCHEMA_VERSION: u64 = 3;

/// Each event's payload ([`super::record::encode_payload`]): written once at put.
pub(super) const PAYLOADS: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("payloads");
/// Each event's [`Life`]: what claims, heartbeats and finishes rewrite.
pub(super) const LIVES: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("lives");
/// Recorded attempts by (id, sequence), each as JSON, the newest
/// [`crate::model::MAX_KEPT_ATTEMPTS`] per event.
pub(super) const HISTORY: TableDefinition<'static, (u64, u32), &str> =
    TableDefinition::new("history");
/// Each event's last error, once it has one.
pub(super) const ERRORS: TableDefinition<'static, u64, &str> = TableDefinition::new("errors");
/// Pending events by (route, due time, id): each route's due events are a range.
pub(super) const DUE: TableDefinition<'static, (u32, u64, u64), ()> =
    TableDefinition::new("route_due");
/// In-flight events by (route, lease end, id).
pub(super) const LEASES: TableDefinition<'static, (u32, u64, u64), ()> =
    TableDefinition::new("route_leases");
/// Pending and in-flight events, by (route, id): a route's oldest open event is
/// its first.
pub(super) const OPEN: TableDefinition<'static, (u32, u64), ()> =
    TableDefinition::new("route_open");
/// Dead events by (route, id).
pub(super) const DEAD: TableDefinition<'static, (u32, u64), ()> =
    TableDefinition::new("route_dead");
/// Route names to their numbers in this file ([`UNROUTED_NO`] and [`DEFAULT_NO`]
/// are the same in every file).
pub(super) const ROUTES: TableDefinition<'static, &str, u32> = TableDefinition::new("routes");
/// Paused routes: name to the encoded [`crate::model::Pause`].
pub(super) const PAUSES: TableDefinition<'static, &str, &[u8]> =
    TableDefinition::new("route_pauses");
/// Each route's count of events per state: (route, state code) to count.
pub(super) const ROUTE_COUNTS: TableDefinition<'static, (u32, u8), u64> =
    TableDefinition::new("route_counts");
/// Done events by (finish time, id), for purges.
pub(super) const DONE: TableDefinition<'static, (u64, u64), ()> = TableDefinition::new("done");
/// `dedup key \x1f content digest` to (id, received at).
pub(super) const DEDUP: TableDefinition<'static, &str, (u64, u64)> = TableDefinition::new("dedup");
/// Dedup key to the first id stored under it (for conflicts).
pub(super) const KEYS: TableDefinition<'static, &str, u64> = TableDefinition::new("keys");
pub(super) const META: TableDefinition<'static, &str, u64> = TableDefinition::new("meta");

/// Schema 1 kept each event whole, as one JSON record; read only to upgrade.
const EVENTS_V1: TableDefinition<'static, u64, &str> = TableDefinition::new("events");
/// The indexes of schemas 1 and 2, without the route: dropped by the upgrade.
const DUE_V2: TableDefinition<'static, (u64, u64), ()> = TableDefinition::new("due");
const LEASES_V2: TableDefinition<'static, (u64, u64), ()> = TableDefinition::new("leases");
const OPEN_V2: TableDefinition<'static, u64, ()> = TableDefinition::new("open");
const DEAD_V2: TableDefinition<'static, u64, ()> = TableDefinition::new("dead");

pub(super) const META_SCHEMA: &str = "schema_version";
pub(super) const META_NEXT_ID: &str = "next_id";
pub(super) const META_RECEIVED: &str = "received";
pub(super) const META_DUPLICATES: &str = "duplicates";
pub(super) const META_CONFLICTS: &str = "conflicts";
pub(super) const META_PING: &str = "ping";
/// The number the next new route gets.
const META_NEXT_ROUTE: &str = "next_route";

pub(super) fn state_counter(state: State) -> &'static str {
    match state {
        State::Pending => "count_pending",
        State::InFlight => "count_in_flight",
        State::Done => "count_done",
        State::Dead => "count_dead",
    }
}

/// Creates the tables, upgrades a file of schema 1 or 2, and refuses any other
/// version.
pub(super) fn prepare(db: &Database, path: &Path) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(storage)?;
    let found = {
        let meta = txn.open_table(META).map_err(storage)?;
        meta.get(META_SCHEMA).map_err(storage)?.map(|v| v.value())
    };
    match found {
        Some(SCHEMA_VERSION) | None => {}
        Some(old @ (1 | 2)) => {
            if old == 1 {
                upgrade_from_1(&txn).map_err(storage)?;
            } else {
                upgrade_from_2(&txn).map_err(storage)?;
            }
            let upgraded = rebuild_indexes(&txn).map_err(storage)?;
            tracing::info!(path = %path.display(), events = upgraded, from = old, to = SCHEMA_VERSION, "inbox file upgraded");
        }
        Some(found) => {
            return Err(StoreError::SchemaVersion {
                path: path.to_path_buf(),
                found,
                expected: SCHEMA_VERSION,
            });
        }
    }
    {
        txn.open_table(META)
            .map_err(storage)?
            .insert(META_SCHEMA, SCHEMA_VERSION)
            .map_err(storage)?;
        Tables::open(&txn).map_err(storage)?;
    }
    txn.commit().map_err(storage)
}

/// Splits every whole JSON record of schema 1 into the parts of today's schema,
/// inside the caller's transaction, so the upgrade is applied whole or not at all;
/// [`rebuild_indexes`] then replaces the old indexes. Every event is on the default
/// route. The dedup tables mean the same in every schema and stay as they are.
fn upgrade_from_1(txn: &WriteTransaction) -> Result<(), redb::Error> {
    let mut tables = Tables::open(txn)?;
    let default = RouteName::default_route();
    {
        let old = txn.open_table(EVENTS_V1)?;
        for entry in old.iter()? {
            let (key, json) = entry?;
            let id = key.value();
            let event: StoredEvent = serde_json::from_str(json.value()).map_err(|e| {
                redb::Error::Corrupted(format!("event {id} of schema 1 cannot be read: {e}"))
            })?;
            let life = Life {
                lifecycle: event.lifecycle(),
                received_at: event.received_at,
                recorded: 0,
                route: DEFAULT_NO,
            };
            let payload = encode_payload(&NewEvent::from(&event), &default, event.conflict);
            tables.payloads.insert(id, payload.as_slice())?;
            let mut life = life;
            for attempt in &event.history {
                tables.record(id, &mut life, attempt)?;
            }
            tables.lives.insert(id, life.encode().as_slice())?;
            if let Some(error) = &event.last_error {
                tables.errors.insert(id, error.as_str())?;
            }
        }
    }
    txn.delete_table(EVENTS_V1)?;
    Ok(())
}

/// Rewrites every life record of schema 2 with its route (the default route: schema
/// 2 had no other); the payloads stay as they are (layout 1 reads as the default
/// route). [`rebuild_indexes`] then replaces the old indexes.
fn upgrade_from_2(txn: &WriteTransaction) -> Result<(), redb::Error> {
    let mut lives = txn.open_table(LIVES)?;
    let mut rewritten = Vec::new();
    for entry in lives.iter()? {
        let (key, bytes) = entry?;
        rewritten.push((key.value(), Life::decode_v2(key.value(), bytes.value())?));
    }
    for (id, life) in rewritten {
        lives.insert(id, life.encode().as_slice())?;
    }
    Ok(())
}

/// Drops the indexes of schemas 1 and 2 and builds today's from every life record,
/// with the state counts recounted (inside the upgrade's transaction). Returns how
/// many events were indexed.
fn rebuild_indexes(txn: &WriteTransaction) -> Result<u64, redb::Error> {
    for old in [DUE_V2, LEASES_V2] {
        txn.delete_table(old)?;
    }
    txn.delete_table(OPEN_V2)?;
    txn.delete_table(DEAD_V2)?;
    let mut tables = Tables::open(txn)?;
    for state in State::ALL {
        tables.set(state_counter(state), 0)?;
    }
    let lives: Vec<(u64, Life)> = tables
        .lives
        .iter()?
        .map(|entry| {
            let (key, bytes) = entry?;
            Life::decode(key.value(), bytes.value()).map(|life| (key.value(), life))
        })
        .collect::<Result<_, _>>()?;
    for (id, life) in &lives {
        tables.reindex(*id, life.route, None, life.lifecycle)?;
    }
    tables.flush()?;
    Ok(lives.len() as u64)
}

/// The tables of one write transaction.
pub(super) struct Tables<'t> {
    payloads: Table<'t, u64, &'static [u8]>,
    lives: Table<'t, u64, &'static [u8]>,
    history: Table<'t, (u64, u32), &'static str>,
    errors: Table<'t, u64, &'static str>,
    pub due: Table<'t, (u32, u64, u64), ()>,
    pub leases: Table<'t, (u32, u64, u64), ()>,
    open: Table<'t, (u32, u64), ()>,
    pub dead: Table<'t, (u32, u64), ()>,
    routes: Table<'t, &'static str, u32>,
    route_counts: Table<'t, (u32, u8), u64>,
    pauses: Table<'t, &'static str, &'static [u8]>,
    pub done: Table<'t, (u64, u64), ()>,
    pub dedup: Table<'t, &'static str, (u64, u64)>,
    pub keys: Table<'t, &'static str, u64>,
    pub meta: Table<'t, &'static str, u64>,
    /// Counters read and changed during this batch, written once before the commit
    /// (a put changes four of them; writing each every time showed in profiles).
    counters: std::collections::HashMap<&'static str, u64>,
    /// The same for the routes' state counts.
    route_counters: std::collections::HashMap<(RouteNo, u8), u64>,
    /// Route numbers looked up or given during this batch.
    route_numbers: std::collections::HashMap<RouteName, RouteNo>,
}

impl<'t> Tables<'t> {
    pub fn open(txn: &'t WriteTransaction) -> Result<Self, redb::Error> {
        Ok(Self {
            payloads: txn.open_table(PAYLOADS)?,
            lives: txn.open_table(LIVES)?,
            history: txn.open_table(HISTORY)?,
            errors: txn.open_table(ERRORS)?,
            due: txn.open_table(DUE)?,
            leases: txn.open_table(LEASES)?,
            open: txn.open_table(OPEN)?,
            dead: txn.open_table(DEAD)?,
            done: txn.open_table(DONE)?,
            dedup: txn.open_table(DEDUP)?,
            keys: txn.open_table(KEYS)?,
            meta: txn.open_table(META)?,
            routes: txn.open_table(ROUTES)?,
            route_counts: txn.open_table(ROUTE_COUNTS)?,
            pauses: txn.open_table(PAUSES)?,
            counters: std::collections::HashMap::new(),
            route_counters: std::collections::HashMap::new(),
            route_numbers: std::collections::HashMap::new(),
        })
    }

    /// Route `route`'s number, if it has one in this file.
    pub fn route_number(&mut self, route: &RouteName) -> Result<Option<RouteNo>, redb::Error> {
        if let Some(number) = self.route_numbers.get(route) {
            return Ok(Some(*number));
        }
        let number = match route.as_str() {
            _ if route.is_unrouted() => Some(UNROUTED_NO),
            _ if *route == RouteName::default_route() => Some(DEFAULT_NO),
            name => self.routes.get(name)?.map(|v| v.value()),
        };
        if let Some(number) = number {
            self.route_numbers.insert(route.clone(), number);
        }
        Ok(number)
    }

    /// Pauses `route` (`Some`) or resumes it (`None`).
    pub fn set_pause(
        &mut self,
        route: &RouteName,
        pause: Option<&Pause>,
    ) -> Result<(), redb::Error> {
        match pause {
            Some(pause) => drop(
                self.pauses
                    .insert(route.as_str(), pause.encode().as_slice())?,
            ),
            None => drop(self.pauses.remove(route.as_str())?),
        }
        Ok(())
    }

    /// Route `route`'s number, given now if it has none yet.
    fn route_number_or_new(&mut self, route: &RouteName) -> Result<RouteNo, redb::Error> {
        if let Some(number) = self.route_number(route)? {
            return Ok(number);
        }
        let number = u32::try_from(
            self.counter(META_NEXT_ROUTE)?
                .max(u64::from(DEFAULT_NO) + 1),
        )
        .map_err(|_| redb::Error::Corrupted("too many routes".into()))?;
        self.set(META_NEXT_ROUTE, u64::from(number) + 1)?;
        self.routes.insert(route.as_str(), number)?;
        self.route_numbers.insert(route.clone(), number);
        Ok(number)
    }

    fn add_route_count(
        &mut self,
        route: RouteNo,
        state: State,
        delta: i64,
    ) -> Result<(), redb::Error> {
        let key = (route, state.code());
        let value = match self.route_counters.get(&key) {
            Some(value) => *value,
            None => self.route_counts.get(key)?.map_or(0, |v| v.value()),
        };
        self.route_counters
            .insert(key, value.saturating_add_signed(delta));
        Ok(())
    }

    pub fn counter(&mut self, key: &'static str) -> Result<u64, redb::Error> {
        if let Some(value) = self.counters.get(key) {
            return Ok(*value);
        }
        let value = self.meta.get(key)?.map_or(0, |v| v.value());
        self.counters.insert(key, value);
        Ok(value)
    }

    pub fn set(&mut self, key: &'static str, value: u64) -> Result<(), redb::Error> {
        self.counter(key)?;
        self.counters.insert(key, value);
        Ok(())
    }

    pub fn add(&mut self, key: &'static str, delta: i64) -> Result<(), redb::Error> {
        let value = self.counter(key)?.saturating_add_signed(delta);
        self.set(key, value)
    }

    /// Pending plus in-flight events, as of the changes so far.
    pub fn open_count(&mut self) -> Result<u64, redb::Error> {
        Ok(self.counter(state_counter(State::Pending))?
            + self.counter(state_counter(State::InFlight))?)
    }

    /// Writes the counters changed in this batch.
    pub fn flush(&mut self) -> Result<(), redb::Error> {
        for (key, value) in std::mem::take(&mut self.counters) {
            self.meta.insert(key, value)?;
        }
        for (key, value) in std::mem::take(&mut self.route_counters) {
            self.route_counts.insert(key, value)?;
        }
        Ok(())
    }

    /// Event `id`'s life, if it is stored.
    pub fn life(&self, id: u64) -> Result<Option<Life>, redb::Error> {
        self.lives
            .get(id)?
            .map(|bytes| Life::decode(id, bytes.value()))
            .transpose()
    }

    /// Event `id` whole: payload, life, last error and history.
    pub fn load(&self, id: EventId) -> Result<Option<StoredEvent>, redb::Error> {
        assemble(&self.payloads, &self.lives, &self.history, &self.errors, id)
    }

    /// Stores route `route`'s entry of a new event: its payload once, its life,
    /// its indexes.
    pub fn insert(
        &mut self,
        id: EventId,
        event: &NewEvent,
        route: &RouteName,
        conflict: bool,
    ) -> Result<(), redb::Error> {
        let number = self.route_number_or_new(route)?;
        let life = Life::received(event.received_at, number);
        self.payloads
            .insert(id.0, encode_payload(event, route, conflict).as_slice())?;
        self.lives.insert(id.0, life.encode().as_slice())?;
        self.reindex(id.0, number, None, life.lifecycle)
    }

    /// Persists what [`crate::transition::decide`] decided for event `id`, whose life
    /// was `before`: the new life, the attempt it records (if any) and the last
    /// error; the payload is not touched.
    pub fn apply(&mut self, id: u64, before: Life, decision: &Decision) -> Result<(), redb::Error> {
        let mut life = Life {
            lifecycle: decision.after,
            ..before
        };
        if let Some(attempt) = &decision.record {
            self.record(id, &mut life, attempt)?;
        }
        if let Some(error) = decision.last_error() {
            self.errors.insert(id, error)?;
        }
        self.lives.insert(id, life.encode().as_slice())?;
        self.reindex(id, before.route, Some(before.lifecycle), decision.after)
    }

    /// Adds `attempt` to event `id`'s history as the next in sequence, and drops the
    /// one that the history's cap lets go.
    fn record(&mut self, id: u64, life: &mut Life, attempt: &Attempt) -> Result<(), redb::Error> {
        let json = serde_json::to_string(attempt)
            .map_err(|e| redb::Error::Corrupted(format!("event {id}: an attempt: {e}")))?;
        self.history.insert((id, life.recorded), json.as_str())?;
        if let Some(forgotten) = forgotten_by(life.recorded) {
            self.history.remove((id, forgotten))?;
        }
        life.recorded = life.recorded.saturating_add(1);
        Ok(())
    }

    /// Moves event `id` of route number `route` from the indexes of `before` (none
    /// for a new event) to those of `after`, and its counts from one state to the
    /// other.
    fn reindex(
        &mut self,
        id: u64,
        route: RouteNo,
        before: Option<Lifecycle>,
        after: Lifecycle,
    ) -> Result<(), redb::Error> {
        // Claims, heartbeats and retries keep an event open: its `open` entry stays.
        let stays_open = before.is_some_and(Lifecycle::is_open) && after.is_open();
        if let Some(before) = before {
            match before.state {
                State::Pending => drop(self.due.remove((route, before.due_at, id))?),
                State::InFlight => drop(self.leases.remove((route, before.due_at, id))?),
                State::Done => drop(self.done.remove((before.finished_at.unwrap_or(0), id))?),
                State::Dead => drop(self.dead.remove((route, id))?),
            }
            if before.is_open() && !stays_open {
                self.open.remove((route, id))?;
            }
            self.add(state_counter(before.state), -1)?;
            self.add_route_count(route, before.state, -1)?;
        }
        match after.state {
            State::Pending => drop(self.due.insert((route, after.due_at, id), ())?),
            State::InFlight => drop(self.leases.insert((route, after.due_at, id), ())?),
            State::Done => drop(self.done.insert((after.finished_at.unwrap_or(0), id), ())?),
            State::Dead => drop(self.dead.insert((route, id), ())?),
        }
        if after.is_open() && !stays_open {
            self.open.insert((route, id), ())?;
        }
        self.add(state_counter(after.state), 1)?;
        self.add_route_count(route, after.state, 1)
    }

    /// Writes event `id` as it was read from another file (a salvage): its payload
    /// and life as they were (its route numbered in this file), its history rows
    /// and last error, its indexes and counts rebuilt from its life, and its dedup
    /// entries from its payload.
    pub fn restore(
        &mut self,
        id: u64,
        payload: (&[u8], &Payload),
        life: Life,
        history: &[(u32, String)],
        error: Option<&str>,
    ) -> Result<(), redb::Error> {
        let (bytes, decoded) = payload;
        let life = Life {
            route: self.route_number_or_new(&decoded.route)?,
            ..life
        };
        self.payloads.insert(id, bytes)?;
        self.lives.insert(id, life.encode().as_slice())?;
        for (sequence, attempt) in history {
            self.history.insert((id, *sequence), attempt.as_str())?;
        }
        if let Some(error) = error {
            self.errors.insert(id, error)?;
        }
        let scope = crate::model::dedup_scope(decoded.account.as_ref(), &decoded.dedup_key);
        let identity =
            crate::model::dedup_identity(&scope, &crate::model::content_digest(&decoded.canonical));
        if self.dedup.get(identity.as_str())?.is_none() {
            self.dedup
                .insert(identity.as_str(), (id, life.received_at))?;
        }
        if self.keys.get(&*scope)?.is_none() {
            self.keys.insert(&*scope, id)?;
        }
        self.reindex(id, life.route, None, life.lifecycle)
    }

    /// Whether event `id` is stored.
    pub fn contains(&self, id: u64) -> Result<bool, redb::Error> {
        Ok(self.lives.get(id)?.is_some())
    }

    /// The ids of events received in `[from, to)`.
    pub fn received_between(&self, from: u64, to: u64) -> Result<Vec<u64>, redb::Error> {
        let mut ids = Vec::new();
        for entry in self.lives.iter()? {
            let (key, bytes) = entry?;
            let life = Life::decode(key.value(), bytes.value())?;
            if life.received_at >= from && life.received_at < to {
                ids.push(key.value());
            }
        }
        Ok(ids)
    }

    /// Removes a done event: its index entry, every part of it, its counts.
    pub fn remove_done(&mut self, finished_at: u64, id: u64) -> Result<(), redb::Error> {
        let route = self.life(id)?.map_or(DEFAULT_NO, |life| life.route);
        self.done.remove((finished_at, id))?;
        self.payloads.remove(id)?;
        self.lives.remove(id)?;
        self.errors.remove(id)?;
        self.history
            .retain_in((id, 0)..=(id, u32::MAX), |_, _| false)?;
        self.add(state_counter(State::Done), -1)?;
        self.add_route_count(route, State::Done, -1)
    }
}

/// The counts and oldest open event of every route that holds entries, from the
/// tables of a read transaction, in [`crate::model::sort_routes`]'s order.
pub(super) fn route_stats(
    routes: &impl ReadableTable<&'static str, u32>,
    counts: &impl ReadableTable<(u32, u8), u64>,
    open: &impl ReadableTable<(u32, u64), ()>,
    lives: &impl ReadableTable<u64, &'static [u8]>,
    pauses: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<RouteStats>, redb::Error> {
    let mut numbered = vec![
        (DEFAULT_NO, RouteName::default_route()),
        (UNROUTED_NO, RouteName::unrouted()),
    ];
    for entry in routes.iter()? {
        let (name, number) = entry?;
        numbered.push((number.value(), stored_route(name.value())));
    }
    let mut all = Vec::with_capacity(numbered.len());
    for (number, route) in numbered {
        let mut stats = RouteStats::new(route);
        for state in State::ALL {
            *stats.count_mut(state) = counts.get((number, state.code()))?.map_or(0, |v| v.value());
        }
        if let Some((key, _)) = open
            .range((number, 0)..=(number, u64::MAX))?
            .next()
            .transpose()?
        {
            let id = key.value().1;
            if let Some(bytes) = lives.get(id)? {
                stats.oldest_open_received_at = Some(Life::decode(id, bytes.value())?.received_at);
            }
        }
        stats.paused = pauses
            .get(stats.route.as_str())?
            .and_then(|bytes| Pause::decode(bytes.value()));
        if stats.open() + stats.done + stats.dead > 0 || stats.paused.is_some() {
            all.push(stats);
        }
    }
    // A route paused before it took anything is listed too.
    for entry in pauses.iter()? {
        let (name, bytes) = entry?;
        let route = stored_route(name.value());
        if !all.iter().any(|r| r.route == route) {
            let mut stats = RouteStats::new(route);
            stats.paused = Pause::decode(bytes.value());
            all.push(stats);
        }
    }
    crate::model::sort_routes(&mut all);
    Ok(all)
}

/// Event `id` whole, from the tables of a read or a write transaction.
pub(super) fn assemble(
    payloads: &impl ReadableTable<u64, &'static [u8]>,
    lives: &impl ReadableTable<u64, &'static [u8]>,
    history: &impl ReadableTable<(u64, u32), &'static str>,
    errors: &impl ReadableTable<u64, &'static str>,
    id: EventId,
) -> Result<Option<StoredEvent>, redb::Error> {
    let Some(life) = lives.get(id.0)? else {
        return Ok(None);
    };
    let life = Life::decode(id.0, life.value())?;
    let payload = match payloads.get(id.0)? {
        Some(bytes) => decode_payload(id, bytes.value())?,
        None => {
            return Err(redb::Error::Corrupted(format!("event {id} has no payload")));
        }
    };
    let mut kept = Vec::new();
    for entry in history.range((id.0, 0)..=(id.0, u32::MAX))? {
        let (_, json) = entry?;
        kept.push(serde_json::from_str::<Attempt>(json.value()).map_err(|e| {
            redb::Error::Corrupted(format!("event {id}: an attempt cannot be read: {e}"))
        })?);
    }
    let last_error = errors.get(id.0)?.map(|e| e.value().to_owned());
    let Payload {
        route,
        account,
        dedup_key,
        action,
        canonical,
        body,
        content_type,
        conflict,
    } = payload;
    let mut event = StoredEvent::new(
        id,
        route,
        NewEvent {
            dedup_key,
            action,
            canonical,
            body,
            content_type,
            received_at: life.received_at,
            routes: Vec::new(),
            account,
        },
        conflict,
    );
    event.restore(life.lifecycle, last_error, kept);
    Ok(Some(event))
}

/// Copies every table of this schema from `from` into `to` (a new file's first
/// transaction): a backup. Every table is named here, beside its definition, so a
/// table added later is copied too. Returns the rows copied.
pub(super) fn copy_all(
    from: &redb::ReadTransaction,
    to: &WriteTransaction,
) -> Result<u64, redb::Error> {
    fn copy<K: redb::Key + 'static, V: redb::Value + 'static>(
        from: &redb::ReadTransaction,
        to: &WriteTransaction,
        table: TableDefinition<'static, K, V>,
    ) -> Result<u64, redb::Error> {
        let source = from.open_table(table)?;
        let mut target = to.open_table(table)?;
        let mut rows = 0;
        for entry in source.iter()? {
            let (key, value) = entry?;
            target.insert(key.value(), value.value())?;
            rows += 1;
        }
        Ok(rows)
    }
    Ok(copy(from, to, PAYLOADS)?
        + copy(from, to, LIVES)?
        + copy(from, to, HISTORY)?
        + copy(from, to, ERRORS)?
        + copy(from, to, DUE)?
        + copy(from, to, LEASES)?
        + copy(from, to, OPEN)?
        + copy(from, to, DEAD)?
        + copy(from, to, DONE)?
        + copy(from, to, DEDUP)?
        + copy(from, to, KEYS)?
        + copy(from, to, ROUTES)?
        + copy(from, to, ROUTE_COUNTS)?
        + copy(from, to, PAUSES)?
        + copy(from, to, META)?)
}
