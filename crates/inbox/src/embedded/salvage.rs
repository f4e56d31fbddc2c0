//! What can be saved from a damaged inbox file: every event whose records still
//! decode, copied one by one into a new file with its indexes rebuilt, and a list
//! of the events that could not be read, with why.
//!
//! Each event is read in a transaction of its own and behind a panic guard (redb
//! panics on some corruptions), so one bad page loses the events on it, not the
//! file.

use std::path::{Path, PathBuf};

use redb::{ReadOnlyDatabase, ReadableDatabase as _, ReadableTable as _};

use super::file::{build_whole, builder, open_error, storage, unpanicked};
use super::record::{Life, decode_payload};
use super::tables::{
    ERRORS, HISTORY, LIVES, META, META_CONFLICTS, META_DUPLICATES, META_NEXT_ID, META_RECEIVED,
    PAYLOADS, Tables, prepare,
};
use crate::model::EventId;
use crate::store::StoreError;

/// What a salvage saved and lost.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Salvage {
    /// The new file.
    pub path: PathBuf,
    /// Events copied whole.
    pub saved: u64,
    /// Events that could not be read, with why (an id the file's counter names but
    /// whose records are gone or damaged).
    pub lost: Vec<(EventId, String)>,
}

/// One event's records as read from the damaged file.
struct Found {
    payload: Vec<u8>,
    life: Life,
    history: Vec<(u32, String)>,
    error: Option<String>,
}

/// Copies every readable event of the inbox file at `source` into a new inbox
/// file at `destination` (which must not exist), without writing to `source`.
/// Fails only if `source` cannot be opened at all (then nothing is readable with
/// redb) or `destination` cannot be written.
pub fn salvage(source: &Path, destination: &Path) -> Result<Salvage, StoreError> {
    super::backup::vacant(destination)?;
    let db = unpanicked(|| builder().open_read_only(source))
        .map_err(|panic| StoreError::Open {
            path: source.to_path_buf(),
            reason: format!(
                "the file is too damaged to open ({panic}): nothing in it can be read; restore a backup"
            ),
        })?
        .map_err(|e| open_error(source, e))?;
    let meta = |key: &'static str| {
        unpanicked(|| -> Option<u64> {
            let txn = db.begin_read().ok()?;
            let meta = txn.open_table(META).ok()?;
            meta.get(key).ok()?.map(|v| v.value())
        })
        .ok()
        .flatten()
    };
    let next_id = match meta(META_NEXT_ID) {
        Some(next) => next,
        None => highest_id(&db).map_or(1, |id| id + 1),
    };
    let mut report = Salvage {
        path: destination.to_path_buf(),
        ..Salvage::default()
    };
    let created = build_whole(destination, |copy| {
        prepare(copy, destination)?;
        let txn = copy.begin_write().map_err(storage)?;
        {
            let mut tables = Tables::open(&txn).map_err(storage)?;
            for id in 1..next_id {
                match unpanicked(|| read_one(&db, id)) {
                    Ok(Ok(Some(found))) => {
                        let payload =
                            decode_payload(EventId(id), &found.payload).map_err(storage)?;
                        tables
                            .restore(
                                id,
                                (&found.payload, &payload),
                                found.life,
                                &found.history,
                                found.error.as_deref(),
                            )
                            .map_err(storage)?;
                        report.saved += 1;
                    }
                    // Purged, or never stored (a duplicate's id is not used).
                    Ok(Ok(None)) => {}
                    Ok(Err(reason)) => report.lost.push((EventId(id), reason)),
                    Err(panic) => report
                        .lost
                        .push((EventId(id), format!("the file is damaged here ({panic})"))),
                }
            }
            tables.set(META_NEXT_ID, next_id).map_err(storage)?;
            let counted = report.saved + report.lost.len() as u64;
            for key in [META_RECEIVED, META_DUPLICATES, META_CONFLICTS] {
                let value = meta(key).unwrap_or(if key == META_RECEIVED { counted } else { 0 });
                tables.set(key, value).map_err(storage)?;
            }
            tables.flush().map_err(storage)?;
        }
        txn.commit().map_err(storage)
    })?;
    if !created {
        return Err(StoreError::Open {
            path: destination.to_path_buf(),
            reason: "another file appeared there during the salvage; it was left as it is".into(),
        });
    }
    Ok(report)
}

/// Event `id`'s records, each decoded to prove it is whole; `Ok(None)` if it has
/// none (purged); `Err` with why if any is damaged.
fn read_one(db: &ReadOnlyDatabase, id: u64) -> Result<Option<Found>, String> {
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let read = |e: redb::StorageError| format!("cannot read its records: {e}");
    let table = |e: redb::TableError| format!("cannot open a table: {e}");
    let payloads = txn.open_table(PAYLOADS).map_err(table)?;
    let lives = txn.open_table(LIVES).map_err(table)?;
    let payload = payloads.get(id).map_err(read)?.map(|v| v.value().to_vec());
    let life = lives.get(id).map_err(read)?.map(|v| v.value().to_vec());
    let (payload, life) = match (payload, life) {
        (None, None) => return Ok(None),
        (Some(payload), Some(life)) => (payload, life),
        (Some(_), None) => return Err("its life record is missing".into()),
        (None, Some(_)) => return Err("its payload is missing".into()),
    };
    decode_payload(EventId(id), &payload).map_err(|e| format!("its payload is damaged: {e}"))?;
    let life = Life::decode(id, &life).map_err(|e| format!("its life record is damaged: {e}"))?;
    let history_table = txn.open_table(HISTORY).map_err(table)?;
    let mut history = Vec::new();
    for row in history_table.range((id, 0)..(id + 1, 0)).map_err(read)? {
        let (key, attempt) = row.map_err(read)?;
        let attempt = attempt.value().to_string();
        serde_json::from_str::<crate::model::Attempt>(&attempt)
            .map_err(|e| format!("an attempt is damaged: {e}"))?;
        history.push((key.value().1, attempt));
    }
    let errors = txn.open_table(ERRORS).map_err(table)?;
    let error = errors.get(id).map_err(read)?.map(|v| v.value().to_string());
    Ok(Some(Found {
        payload,
        life,
        history,
        error,
    }))
}

/// The highest id with a life record, when the counter cannot be read.
fn highest_id(db: &ReadOnlyDatabase) -> Option<u64> {
    unpanicked(|| -> Option<u64> {
        let txn = db.begin_read().ok()?;
        let lives = txn.open_table(LIVES).ok()?;
        let last = lives.last().ok()??;
        Some(last.0.value())
    })
    .ok()
    .flatten()
}
