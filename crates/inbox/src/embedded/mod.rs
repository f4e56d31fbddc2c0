//! [`EmbeddedStore`]: the default backend, one redb file on local disk.
//!
//! redb is pure Rust, keeps one file, and checksums its commits: a crash or a kill
//! leaves the file as of its last commit. Writes go through one writer thread that
//! **group-commits**: it takes every operation waiting (up to [`MAX_BATCH`]) into one
//! transaction and one fsync, so concurrent puts share the cost of the sync, and each
//! caller is answered only after that commit. The file is opened in redb's
//! `MultiWriter` mode, so `thulium inbox replay` can write to it while a listener
//! runs; a lock file beside it ([`EmbeddedStore::lock_for_dispatch`]) keeps a second
//! listener from dispatching from the same file.
//!
//! Each concern has its module: creating and opening the file (`file.rs`), how an
//! event lies in it, in a payload written once and a small life record that claims
//! and finishes rewrite (`record.rs`), the tables, their indexes and the upgrade of
//! an older file (`tables.rs`), the writer thread (`writer.rs`), the operations it
//! applies through the shared rules of `transition.rs` (`apply.rs`), and the reads
//! (`read.rs`).

mod apply;
mod backup;
mod file;
mod read;
mod read_only;
mod record;
mod salvage;
mod search;
mod tables;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::time::Duration;

use redb::{Database, StorageBackend};
use tokio::sync::Notify;

pub use self::backup::Backup;
use self::file::{Handle, Opener, builder, create_whole, open_error};
pub use self::read_only::ReadOnlyInbox;
pub use self::salvage::{Salvage, salvage};
pub use self::tables::SCHEMA_VERSION;
use self::tables::prepare;
pub use self::writer::MAX_BATCH;
use self::writer::{Op, writer_loop};
use crate::group_commit::Job;
use crate::model::Pause;
use crate::model::{
    Attempt, ClaimToken, Claimed, EventId, Filter, Finish, NewEvent, Purged, PutOutcome, Replay,
    Stats, StoredEvent, UnixMs,
};
use crate::routing::RouteName;
use crate::store::{ClaimRequest, DispatchGuard, Store, StoreError};

/// The inbox in one redb file. Cheap to clone; clones share the file and the writer.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    db: Arc<Handle>,
    writer: Mutex<Option<mpsc::Sender<Op>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Pending plus in-flight events as of the last commit of this process.
    backlog: Arc<AtomicU64>,
    /// Signalled after every commit that may have made work due.
    work: Arc<Notify>,
    /// Text searches, on a low-priority thread of their own.
    searcher: search::Searcher,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the writer thread after its current batch.
        self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

/// The page cache of [`EmbeddedStore::open`]: redb's default, 1 GiB at most.
pub const DEFAULT_CACHE_BYTES: usize = 1024 * 1024 * 1024;

/// Holds the dispatch lock of an embedded store until dropped.
#[derive(Debug)]
pub struct DispatchLock {
    _file: File,
}

impl EmbeddedStore {
    /// Opens the inbox file at `path`, creating it first if there is none.
    ///
    /// A new file appears at `path` only once it is a complete inbox (made under a
    /// temporary name beside it, `PATH.new-*`, then linked into place), so a process
    /// killed while creating it never leaves a file that later opens refuse. An
    /// existing empty file is refused, not initialised in place, for the same reason.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// [`Self::open`], with the file's page cache bounded to `bytes` (default
    /// [`DEFAULT_CACHE_BYTES`]): the cache keeps the pages read and written most
    /// recently, and a relay that runs for months holds as much of the file as it
    /// allows. Smaller saves memory; reads of pages outside it go to the disk.
    pub fn open_with_cache(path: impl AsRef<Path>, bytes: usize) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        create_whole(&path)?;
        let file = path.clone();
        // Reopening after an I/O error only opens: a file that vanished meanwhile is
        // an error to report, not an empty inbox to start silently.
        Self::start(
            path,
            Box::new(move || {
                let mut builder = builder();
                builder.set_cache_size(bytes);
                builder.open(&file)
            }),
        )
    }

    /// Opens the inbox on a redb storage backend that `backend` makes (again after
    /// an I/O error); `label` names it in errors. For tests that must see or fail the
    /// file's syncs, and for custom storage.
    pub fn open_on<B: StorageBackend>(
        backend: impl Fn() -> B + Send + Sync + 'static,
        label: impl Into<PathBuf>,
    ) -> Result<Self, StoreError> {
        Self::start(
            label.into(),
            Box::new(move || builder().create_with_backend(backend())),
        )
    }

    fn start(path: PathBuf, opener: Opener) -> Result<Self, StoreError> {
        // redb panics on some corruptions (a page of an unknown type, a key that is
        // not UTF-8) instead of returning an error: at open that is a clear refusal.
        let opened = file::unpanicked(|| {
            let db = opener().map_err(|e| open_error(&path, e))?;
            prepare(&db, &path)?;
            Ok(db)
        });
        let db = opened.map_err(|panic| StoreError::Open {
            path: path.clone(),
            reason: format!(
                "the file is corrupt ({panic}); move it aside and start a new one, or copy out what is readable"
            ),
        })??;
        let db = Arc::new(Handle {
            current: RwLock::new(Some(Arc::new(db))),
            opener,
            path: path.clone(),
        });
        let backlog = Arc::new(AtomicU64::new(0));
        let work = Arc::new(Notify::new());
        let (sender, receiver) = mpsc::channel::<Op>();
        let thread = {
            let (db, backlog, work) = (Arc::clone(&db), Arc::clone(&backlog), Arc::clone(&work));
            std::thread::Builder::new()
                .name("inbox-writer".into())
                .spawn(move || writer_loop(&db, &receiver, &backlog, &work))
                .map_err(|e| StoreError::storage("cannot start the inbox writer thread", e))?
        };
        let store = Self {
            inner: Arc::new(Inner {
                path,
                db,
                writer: Mutex::new(Some(sender)),
                thread: Mutex::new(Some(thread)),
                backlog,
                work,
                searcher: search::Searcher::default(),
            }),
        };
        let stats = read::read_stats(&*store.inner.db.get()?)?;
        store.inner.backlog.store(stats.open(), Ordering::Relaxed);
        Ok(store)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Takes the lock that lets one process dispatch from this file (a lock file
    /// beside it, `PATH.lock` where `PATH` is the file's canonical path, so that a
    /// symlink to it finds the same lock; released when the process ends, even by a
    /// kill). Fails if another process holds it.
    pub fn lock_for_dispatch(&self) -> Result<DispatchLock, StoreError> {
        // Named from the file itself, not from the name it was opened by: a symlink
        // or another path to the same file must find the same lock.
        let file =
            std::fs::canonicalize(&self.inner.path).unwrap_or_else(|_| self.inner.path.clone());
        let mut lock_path = file.into_os_string();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::Open {
                path: lock_path.clone(),
                reason: format!("cannot create the dispatch lock file: {e}"),
            })?;
        match file.try_lock() {
            Ok(()) => Ok(DispatchLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Open {
                path: self.inner.path.clone(),
                reason:
                    "another listener is dispatching from this inbox; stop it, or use another file"
                        .into(),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Open {
                path: lock_path,
                reason: format!("cannot lock: {e}"),
            }),
        }
    }

    /// Ends the writer thread as a shutdown does, and waits until it has ended.
    #[cfg(test)]
    pub(crate) fn stop_writer_for_test(&self) {
        self.inner
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        while !self
            .inner
            .thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_none_or(std::thread::JoinHandle::is_finished)
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Hands `input` to the writer as the operation `op` makes of it, and waits for
    /// the answer, which comes once the batch that carried it is committed.
    async fn send<I, O: Send + 'static>(
        &self,
        op: fn(Job<I, O>) -> Op,
        input: I,
    ) -> Result<O, StoreError> {
        let (job, answer) = Job::new(input);
        {
            let writer = self.inner.writer.lock().unwrap_or_else(|p| p.into_inner());
            let writer = writer.as_ref().ok_or(StoreError::Closed)?;
            writer.send(op(job)).map_err(|_| StoreError::Closed)?;
        }
        // No answer: the writer dropped the operation when it failed on the file (a
        // corruption; it logged why), or the store was closed meanwhile.
        answer.await.map_err(|_| StoreError::Storage {
            message: format!(
                "the operation was not applied: the inbox at {} failed on its file (see the log; it may be corrupt) or was closed",
                self.inner.path.display()
            ),
            source: None,
        })?
    }

    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.inner.db.get()?;
        tokio::task::spawn_blocking(move || read(&db))
            .await
            .map_err(|e| {
                StoreError::storage(
                    "an inbox read failed on the file (it may be corrupt; see the log)",
                    e,
                )
            })?
    }
}

impl Store for EmbeddedStore {
    async fn put(&self, event: NewEvent) -> Result<PutOutcome, StoreError> {
        let identity = crate::model::dedup_identity(&event.dedup_scope(), &event.content_digest());
        self.send(Op::Put, (event, identity)).await
    }

    async fn claim(&self, request: ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
        // Idle dispatchers poll: answer "nothing due" from a read, without a commit.
        let (now, route) = (request.now, request.route.clone());
        if !self
            .read(move |db| read::anything_due(db, &route, now))
            .await?
        {
            return Ok(Vec::new());
        }
        self.send(Op::Claim, request).await
    }

    async fn extend(&self, claim: ClaimToken, lease: Duration) -> Result<(), StoreError> {
        self.send(Op::Extend, (claim, lease)).await
    }

    async fn give_back(&self, claim: ClaimToken) -> Result<(), StoreError> {
        self.send(Op::GiveBack, claim).await
    }

    async fn finish(
        &self,
        claim: ClaimToken,
        how: Finish,
        attempt: Attempt,
    ) -> Result<(), StoreError> {
        self.send(Op::Finish, (claim, how, attempt)).await
    }

    async fn set_aside(&self, id: EventId, reason: String) -> Result<(), StoreError> {
        self.send(Op::SetAside, (id, reason)).await
    }

    async fn replay(&self, selection: Replay) -> Result<u64, StoreError> {
        self.send(Op::Replay, selection).await
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        self.read(read::read_stats).await
    }

    async fn purge(
        &self,
        finished_before: UnixMs,
        keys_received_before: UnixMs,
    ) -> Result<Purged, StoreError> {
        self.send(Op::Purge, (finished_before, keys_received_before))
            .await
    }

    async fn get(&self, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
        self.read(move |db| read::read_event(db, id)).await
    }

    async fn list(&self, filter: Filter) -> Result<Vec<StoredEvent>, StoreError> {
        if filter.text.is_some() {
            return self.inner.searcher.list(self.inner.db.get()?, filter).await;
        }
        self.read(move |db| read::read_list(db, &filter)).await
    }

    async fn release_claims(&self) -> Result<u64, StoreError> {
        self.send(Op::Release, ()).await
    }

    async fn set_pause(&self, route: RouteName, pause: Option<Pause>) -> Result<(), StoreError> {
        self.send(Op::SetPause, (route, pause)).await
    }

    async fn pause_of(&self, route: RouteName) -> Result<Option<Pause>, StoreError> {
        self.read(move |db| read::read_pause(db, &route)).await
    }

    async fn begin_dispatch(&self) -> Result<(DispatchGuard, u64), StoreError> {
        let lock = self.lock_for_dispatch()?;
        // Only this process dispatches from the file now: what a process that died
        // was handing over is due again at once, not when its leases run out.
        let released = self.release_claims().await?;
        Ok((DispatchGuard::holding(lock), released))
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        self.send(Op::Ping, ()).await
    }

    fn check_alive(&self) -> Result<(), StoreError> {
        let thread = self.inner.thread.lock().unwrap_or_else(|p| p.into_inner());
        match thread.as_ref() {
            Some(thread) if !thread.is_finished() => Ok(()),
            _ => Err(StoreError::Storage {
                message: format!(
                    "the writer of the inbox at {} has stopped: nothing can be stored or handed over until the process restarts (see the log)",
                    self.inner.path.display()
                ),
                source: None,
            }),
        }
    }

    fn backlog(&self) -> Option<u64> {
        Some(self.inner.backlog.load(Ordering::Relaxed))
    }

    fn work_signal(&self) -> Option<Arc<Notify>> {
        Some(Arc::clone(&self.inner.work))
    }
}
