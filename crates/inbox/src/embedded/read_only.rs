//! An inbox file opened without writing to it: a read-only mount, a snapshot, a
//! backup, a file this user may only read. Every read works as on an
//! [`EmbeddedStore`](super::EmbeddedStore); every change is refused with
//! [`StoreError::ReadOnly`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use redb::{ReadOnlyDatabase, ReadableDatabase as _};

use super::file::{builder, open_error, storage, unpanicked};
use super::read;
use super::tables::{META, META_SCHEMA, SCHEMA_VERSION};
use crate::model::Pause;
use crate::model::{
    Attempt, ClaimToken, Claimed, EventId, Filter, Finish, NewEvent, Purged, PutOutcome, Replay,
    Stats, StoredEvent, UnixMs,
};
use crate::routing::RouteName;
use crate::store::{ClaimRequest, Store, StoreError};

/// An inbox file opened read-only. Cheap to clone.
#[derive(Clone)]
pub struct ReadOnlyInbox {
    path: PathBuf,
    db: Arc<ReadOnlyDatabase>,
}

impl std::fmt::Debug for ReadOnlyInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlyInbox")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ReadOnlyInbox {
    /// Opens the inbox file at `path` without writing to it. A file of an older
    /// schema is refused (upgrading it is a write): copy it somewhere writable.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let corrupt = |panic: String| StoreError::Open {
            path: path.clone(),
            reason: format!("the file is corrupt ({panic}); copy out what is readable"),
        };
        let db = unpanicked(|| builder().open_read_only(&path))
            .map_err(corrupt)?
            .map_err(|e| open_error(&path, e))?;
        let found = unpanicked(|| -> Result<Option<u64>, StoreError> {
            let txn = db.begin_read().map_err(storage)?;
            let meta = match txn.open_table(META) {
                Ok(meta) => meta,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(error) => return Err(storage(error)),
            };
            Ok(meta.get(META_SCHEMA).map_err(storage)?.map(|v| v.value()))
        })
        .map_err(corrupt)??;
        if found != Some(SCHEMA_VERSION) {
            return Err(StoreError::SchemaVersion {
                path,
                found: found.unwrap_or(0),
                expected: SCHEMA_VERSION,
            });
        }
        Ok(Self {
            path,
            db: Arc::new(db),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&ReadOnlyDatabase) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            unpanicked(|| read(&db)).map_err(|panic| StoreError::Storage {
                message: format!("an inbox read failed on the file; it may be corrupt ({panic})"),
                source: None,
            })?
        })
        .await
        .map_err(|e| StoreError::storage("an inbox read failed", e))?
    }

    fn refused<T>(&self) -> Result<T, StoreError> {
        Err(StoreError::ReadOnly {
            path: self.path.clone(),
        })
    }
}

impl Store for ReadOnlyInbox {
    async fn put(&self, _: NewEvent) -> Result<PutOutcome, StoreError> {
        self.refused()
    }

    async fn claim(&self, _: ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
        self.refused()
    }

    async fn extend(&self, _: ClaimToken, _: Duration) -> Result<(), StoreError> {
        self.refused()
    }

    async fn give_back(&self, _: ClaimToken) -> Result<(), StoreError> {
        self.refused()
    }

    async fn finish(&self, _: ClaimToken, _: Finish, _: Attempt) -> Result<(), StoreError> {
        self.refused()
    }

    async fn set_aside(&self, _: EventId, _: String) -> Result<(), StoreError> {
        self.refused()
    }

    async fn replay(&self, _: Replay) -> Result<u64, StoreError> {
        self.refused()
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        self.read(read::read_stats).await
    }

    async fn purge(&self, _: UnixMs, _: UnixMs) -> Result<Purged, StoreError> {
        self.refused()
    }

    async fn get(&self, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
        self.read(move |db| read::read_event(db, id)).await
    }

    async fn list(&self, filter: Filter) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(move |db| read::read_list(db, &filter)).await
    }

    async fn release_claims(&self) -> Result<u64, StoreError> {
        self.refused()
    }

    async fn set_pause(&self, _: RouteName, _: Option<Pause>) -> Result<(), StoreError> {
        self.refused()
    }

    async fn pause_of(&self, route: RouteName) -> Result<Option<Pause>, StoreError> {
        self.read(move |db| read::read_pause(db, &route)).await
    }

    async fn begin_dispatch(&self) -> Result<(crate::store::DispatchGuard, u64), StoreError> {
        self.refused()
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        self.refused()
    }
}
