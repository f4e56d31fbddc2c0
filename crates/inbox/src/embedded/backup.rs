//! A consistent copy of a running inbox: every table as of one read transaction
//! (a snapshot no writer changes), written into a new file made whole before it
//! appears under its name, as a new inbox is.

use std::path::{Path, PathBuf};

use redb::ReadableDatabase;

use super::EmbeddedStore;
use super::file::{build_whole, open_error, storage};
use super::tables::copy_all;
use crate::store::StoreError;

/// What a backup wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backup {
    /// The new file.
    pub path: PathBuf,
    /// Rows copied, every table together.
    pub rows: u64,
    /// The new file's size in bytes.
    pub bytes: u64,
}

impl EmbeddedStore {
    /// Writes a consistent copy of the inbox to `destination`, which must not exist,
    /// while the inbox stays in use: the copy holds every table as of one moment
    /// (one read transaction, which writers do not block and which does not block
    /// them). The copy is built under a temporary name beside `destination` and
    /// linked into place once synced, so `destination` is absent or whole.
    pub async fn backup_to(&self, destination: impl AsRef<Path>) -> Result<Backup, StoreError> {
        let destination = vacant(destination.as_ref())?;
        self.read(move |db| copy_to(db, destination)).await
    }
}

impl super::ReadOnlyInbox {
    /// [`EmbeddedStore::backup_to`] from a file opened read-only.
    pub async fn backup_to(&self, destination: impl AsRef<Path>) -> Result<Backup, StoreError> {
        let destination = vacant(destination.as_ref())?;
        self.read(move |db| copy_to(db, destination)).await
    }
}

/// `destination`, if nothing is there: a copy (a backup, a salvage) never replaces
/// a file.
pub(super) fn vacant(destination: &Path) -> Result<PathBuf, StoreError> {
    if destination.exists() {
        return Err(StoreError::Open {
            path: destination.to_path_buf(),
            reason: "a file is already there; a copy never replaces one: name a new file".into(),
        });
    }
    Ok(destination.to_path_buf())
}

/// Copies every table as of one read transaction of `db` into a new file.
fn copy_to(db: &impl ReadableDatabase, destination: PathBuf) -> Result<Backup, StoreError> {
    let snapshot = db.begin_read().map_err(storage)?;
    let mut rows = 0;
    let created = build_whole(&destination, |copy| {
        let txn = copy.begin_write().map_err(storage)?;
        rows = copy_all(&snapshot, &txn).map_err(storage)?;
        txn.commit().map_err(storage)
    })?;
    if !created {
        return Err(StoreError::Open {
            path: destination,
            reason: "another file appeared there during the backup; it was left as it is".into(),
        });
    }
    let bytes = std::fs::metadata(&destination)
        .map_err(|e| open_error(&destination, redb::StorageError::Io(e).into()))?
        .len();
    Ok(Backup {
        path: destination,
        rows,
        bytes,
    })
}
