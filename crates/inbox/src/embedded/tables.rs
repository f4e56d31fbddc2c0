//! The tables of the inbox file, and how an event's indexes follow its state.

use std::path::Path;

use redb::{Database, ReadableTable, Table, TableDefinition, WriteTransaction};

use super::file::storage;
use crate::model::{EventId, State, StoredEvent};
use crate::store::StoreError;
use crate::transition::Lifecycle;

/// The schema this code reads and writes. A file of another version is refused.
pub const SCHEMA_VERSION: u64 = 1;

pub(super) const EVENTS: TableDefinition<'static, u64, &str> = TableDefinition::new("events");
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

/// Creates the tables and checks the schema version.
pub(super) fn prepare(db: &Database, path: &Path) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(storage)?;
    {
        let mut meta = txn.open_table(META).map_err(storage)?;
        let found = meta.get(META_SCHEMA).map_err(storage)?.map(|v| v.value());
        match found {
            Some(SCHEMA_VERSION) => {}
            Some(found) => {
                return Err(StoreError::SchemaVersion {
                    path: path.to_path_buf(),
                    found,
                    expected: SCHEMA_VERSION,
                });
            }
            None => {
                meta.insert(META_SCHEMA, SCHEMA_VERSION).map_err(storage)?;
            }
        }
    }
    {
        txn.open_table(EVENTS).map_err(storage)?;
        txn.open_table(DUE).map_err(storage)?;
        txn.open_table(LEASES).map_err(storage)?;
        txn.open_table(OPEN).map_err(storage)?;
        txn.open_table(DEAD).map_err(storage)?;
        txn.open_table(DONE).map_err(storage)?;
        txn.open_table(DEDUP).map_err(storage)?;
        txn.open_table(KEYS).map_err(storage)?;
    }
    txn.commit().map_err(storage)
}

/// The tables of one write transaction.
pub(super) struct Tables<'t> {
    pub events: Table<'t, u64, &'static str>,
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
            events: txn.open_table(EVENTS)?,
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

    pub fn load(&self, id: EventId) -> Result<Option<StoredEvent>, redb::Error> {
        match self.events.get(id.0)? {
            Some(json) => Ok(Some(decode(id, json.value())?)),
            None => Ok(None),
        }
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

    /// Writes `event`, whose lifecycle was `before` (none for a new event), moving it
    /// to the indexes of its new one.
    pub fn save(
        &mut self,
        before: Option<Lifecycle>,
        event: &StoredEvent,
    ) -> Result<(), redb::Error> {
        self.reindex(event.id.0, before, event.lifecycle())?;
        let json =
            serde_json::to_string(event).map_err(|e| redb::Error::Corrupted(e.to_string()))?;
        self.events.insert(event.id.0, json.as_str())?;
        Ok(())
    }

    /// Removes a done event and its index entry.
    pub fn remove_done(&mut self, finished_at: u64, id: u64) -> Result<(), redb::Error> {
        self.done.remove((finished_at, id))?;
        self.events.remove(id)?;
        self.add(state_counter(State::Done), -1)
    }
}

pub(super) fn decode(id: EventId, json: &str) -> Result<StoredEvent, redb::Error> {
    serde_json::from_str(json)
        .map_err(|e| redb::Error::Corrupted(format!("event {id} cannot be read: {e}")))
}
