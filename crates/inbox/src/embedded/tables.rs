//! The tables of the inbox file, how an event's indexes follow its state, and the
//! upgrade of a file of the previous schema.

use std::path::Path;

use redb::{Database, ReadableTable, Table, TableDefinition, WriteTransaction};

use super::file::storage;
use super::record::{Life, Payload, decode_payload, encode_payload};
use crate::model::{Attempt, EventId, NewEvent, State, StoredEvent};
use crate::store::StoreError;
use crate::transition::{Decision, Lifecycle, forgotten_by};

/// The schema this code reads and writes. A file of an older version is upgraded in
/// place when opened (`upgrade_from_1`); a newer one is refused.
pub const SCHEMA_VERSION: u64 = 2;

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
/// Pending events by (due time, id).
pub(super) const DUE: TableDefinition<'static, (u64, u64), ()> = TableDefinition::new("due");
/// In-flight events by (lease end, id).
pub(super) const LEASES: TableDefinition<'static, (u64, u64), ()> = TableDefinition::new("leases");
/// Pending and in-flight events, by id: the oldest open event is the first.
pub(super) const OPEN: TableDefinition<'static, u64, ()> = TableDefinition::new("open");
pub(super) const DEAD: TableDefinition<'static, u64, ()> = TableDefinition::new("dead");
/// Done events by (finish time, id), for purges.
pub(super) const DONE: TableDefinition<'static, (u64, u64), ()> = TableDefinition::new("done");
/// `dedup key \x1f content digest` to (id, received at).
pub(super) const DEDUP: TableDefinition<'static, &str, (u64, u64)> = TableDefinition::new("dedup");
/// Dedup key to the first id stored under it (for conflicts).
pub(super) const KEYS: TableDefinition<'static, &str, u64> = TableDefinition::new("keys");
pub(super) const META: TableDefinition<'static, &str, u64> = TableDefinition::new("meta");

/// Schema 1 kept each event whole, as one JSON record; read only to upgrade.
const EVENTS_V1: TableDefinition<'static, u64, &str> = TableDefinition::new("events");

pub(super) const META_SCHEMA: &str = "schema_version";
pub(super) const META_NEXT_ID: &str = "next_id";
pub(super) const META_RECEIVED: &str = "received";
pub(super) const META_DUPLICATES: &str = "duplicates";
pub(super) const META_CONFLICTS: &str = "conflicts";
pub(super) const META_PING: &str = "ping";

pub(super) fn state_counter(state: State) -> &'static str {
    match state {
        State::Pending => "count_pending",
        State::InFlight => "count_in_flight",
        State::Done => "count_done",
        State::Dead => "count_dead",
    }
}

/// Creates the tables, upgrades a file of schema 1, and refuses any other version.
pub(super) fn prepare(db: &Database, path: &Path) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(storage)?;
    let found = {
        let meta = txn.open_table(META).map_err(storage)?;
        meta.get(META_SCHEMA).map_err(storage)?.map(|v| v.value())
    };
    match found {
        Some(SCHEMA_VERSION) | None => {}
        Some(1) => {
            let upgraded = upgrade_from_1(&txn).map_err(storage)?;
            tracing::info!(path = %path.display(), events = upgraded, "inbox file upgraded from schema 1 to 2");
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

/// Splits every whole JSON record of schema 1 into the parts of schema 2, inside the
/// caller's transaction, so the upgrade is applied whole or not at all. The indexes,
/// counters and dedup tables mean the same in both schemas and stay as they are.
/// Returns how many events were upgraded.
fn upgrade_from_1(txn: &WriteTransaction) -> Result<u64, redb::Error> {
    let mut tables = Tables::open(txn)?;
    let mut upgraded = 0;
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
            };
            let payload = encode_payload(&NewEvent::from(&event), event.conflict);
            tables.payloads.insert(id, payload.as_slice())?;
            let mut life = life;
            for attempt in &event.history {
                tables.record(id, &mut life, attempt)?;
            }
            tables.lives.insert(id, life.encode().as_slice())?;
            if let Some(error) = &event.last_error {
                tables.errors.insert(id, error.as_str())?;
            }
            upgraded += 1;
        }
    }
    txn.delete_table(EVENTS_V1)?;
    Ok(upgraded)
}

/// The tables of one write transaction.
pub(super) struct Tables<'t> {
    payloads: Table<'t, u64, &'static [u8]>,
    lives: Table<'t, u64, &'static [u8]>,
    history: Table<'t, (u64, u32), &'static str>,
    errors: Table<'t, u64, &'static str>,
    pub due: Table<'t, (u64, u64), ()>,
    pub leases: Table<'t, (u64, u64), ()>,
    open: Table<'t, u64, ()>,
    pub dead: Table<'t, u64, ()>,
    pub done: Table<'t, (u64, u64), ()>,
    pub dedup: Table<'t, &'static str, (u64, u64)>,
    pub keys: Table<'t, &'static str, u64>,
    pub meta: Table<'t, &'static str, u64>,
    /// Counters read and changed during this batch, written once before the commit
    /// (a put changes four of them; writing each every time showed in profiles).
    counters: std::collections::HashMap<&'static str, u64>,
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
            counters: std::collections::HashMap::new(),
        })
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

    /// Stores a new event: its payload once, its life, its indexes.
    pub fn insert(
        &mut self,
        id: EventId,
        event: &NewEvent,
        conflict: bool,
    ) -> Result<(), redb::Error> {
        let life = Life::received(event.received_at);
        self.payloads
            .insert(id.0, encode_payload(event, conflict).as_slice())?;
        self.lives.insert(id.0, life.encode().as_slice())?;
        self.reindex(id.0, None, life.lifecycle)
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
        self.reindex(id, Some(before.lifecycle), decision.after)
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

    /// Moves event `id` from the indexes of `before` (none for a new event) to those
    /// of `after`, and its count from one state to the other.
    fn reindex(
        &mut self,
        id: u64,
        before: Option<Lifecycle>,
        after: Lifecycle,
    ) -> Result<(), redb::Error> {
        // Claims, heartbeats and retries keep an event open: its `open` entry stays.
        let stays_open = before.is_some_and(Lifecycle::is_open) && after.is_open();
        if let Some(before) = before {
            match before.state {
                State::Pending => drop(self.due.remove((before.due_at, id))?),
                State::InFlight => drop(self.leases.remove((before.due_at, id))?),
                State::Done => drop(self.done.remove((before.finished_at.unwrap_or(0), id))?),
                State::Dead => drop(self.dead.remove(id)?),
            }
            if before.is_open() && !stays_open {
                self.open.remove(id)?;
            }
            self.add(state_counter(before.state), -1)?;
        }
        match after.state {
            State::Pending => drop(self.due.insert((after.due_at, id), ())?),
            State::InFlight => drop(self.leases.insert((after.due_at, id), ())?),
            State::Done => drop(self.done.insert((after.finished_at.unwrap_or(0), id), ())?),
            State::Dead => drop(self.dead.insert(id, ())?),
        }
        if after.is_open() && !stays_open {
            self.open.insert(id, ())?;
        }
        self.add(state_counter(after.state), 1)
    }

    /// Writes event `id` as it was read from another file (a salvage): its payload
    /// and life as they were, its history rows and last error, its indexes and
    /// counts rebuilt from its life, and its dedup entries from its payload.
    pub fn restore(
        &mut self,
        id: u64,
        payload: (&[u8], &Payload),
        life: Life,
        history: &[(u32, String)],
        error: Option<&str>,
    ) -> Result<(), redb::Error> {
        let (bytes, decoded) = payload;
        self.payloads.insert(id, bytes)?;
        self.lives.insert(id, life.encode().as_slice())?;
        for (sequence, attempt) in history {
            self.history.insert((id, *sequence), attempt.as_str())?;
        }
        if let Some(error) = error {
            self.errors.insert(id, error)?;
        }
        let identity = format!(
            "{}\u{1f}{}",
            decoded.dedup_key,
            crate::model::content_digest(&decoded.canonical)
        );
        if self.dedup.get(identity.as_str())?.is_none() {
            self.dedup
                .insert(identity.as_str(), (id, life.received_at))?;
        }
        if self.keys.get(decoded.dedup_key.as_str())?.is_none() {
            self.keys.insert(decoded.dedup_key.as_str(), id)?;
        }
        self.reindex(id, None, life.lifecycle)
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

    /// Removes a done event: its index entry, every part of it, its count.
    pub fn remove_done(&mut self, finished_at: u64, id: u64) -> Result<(), redb::Error> {
        self.done.remove((finished_at, id))?;
        self.payloads.remove(id)?;
        self.lives.remove(id)?;
        self.errors.remove(id)?;
        self.history
            .retain_in((id, 0)..=(id, u32::MAX), |_, _| false)?;
        self.add(state_counter(State::Done), -1)
    }
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
        dedup_key,
        action,
        canonical,
        body,
        content_type,
        conflict,
    } = payload;
    let mut event = StoredEvent::new(
        id,
        NewEvent {
            dedup_key,
            action,
            canonical,
            body,
            content_type,
            received_at: life.received_at,
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
        + copy(from, to, META)?)
}
