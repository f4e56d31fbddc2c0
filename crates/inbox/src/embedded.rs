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

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::time::Duration;

use redb::{
    ConcurrencyMode, Database, ReadableDatabase, ReadableTable, StorageBackend, Table,
    TableDefinition, WriteTransaction,
};
use tokio::sync::{Notify, oneshot};

use crate::model::{
    Attempt, ClaimToken, Claimed, EventId, Filter, NewEvent, Outcome, Purged, PutOutcome, Replay,
    State, Stats, StoredEvent, UnixMs, ms, now_ms,
};
use crate::store::{ClaimRequest, Store, StoreError};

/// The schema this code reads and writes. A file of another version is refused.
pub const SCHEMA_VERSION: u64 = 1;
/// The most operations one group commit takes.
pub const MAX_BATCH: usize = 4096;

const EVENTS: TableDefinition<'static, u64, &str> = TableDefinition::new("events");
/// Pending events by (due time, id).
const DUE: TableDefinition<'static, (u64, u64), ()> = TableDefinition::new("due");
/// In-flight events by (lease end, id).
const LEASES: TableDefinition<'static, (u64, u64), ()> = TableDefinition::new("leases");
/// Pending and in-flight events, by id: the oldest open event is the first.
const OPEN: TableDefinition<'static, u64, ()> = TableDefinition::new("open");
const DEAD: TableDefinition<'static, u64, ()> = TableDefinition::new("dead");
/// Done events by (finish time, id), for purges.
const DONE: TableDefinition<'static, (u64, u64), ()> = TableDefinition::new("done");
/// `dedup key \x1f content digest` to (id, received at).
const DEDUP: TableDefinition<'static, &str, (u64, u64)> = TableDefinition::new("dedup");
/// Dedup key to the first id stored under it (for conflicts).
const KEYS: TableDefinition<'static, &str, u64> = TableDefinition::new("keys");
const META: TableDefinition<'static, &str, u64> = TableDefinition::new("meta");

const META_SCHEMA: &str = "schema_version";
const META_NEXT_ID: &str = "next_id";
const META_RECEIVED: &str = "received";
const META_DUPLICATES: &str = "duplicates";
const META_CONFLICTS: &str = "conflicts";
const META_PING: &str = "ping";

fn state_counter(state: State) -> &'static str {
    match state {
        State::Pending => "count_pending",
        State::InFlight => "count_in_flight",
        State::Done => "count_done",
        State::Dead => "count_dead",
    }
}

/// The inbox in one redb file. Cheap to clone; clones share the file and the writer.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    db: Arc<Handle>,
    writer: Mutex<Option<mpsc::Sender<Request>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Pending plus in-flight events as of the last commit of this process.
    backlog: Arc<AtomicU64>,
    /// Signalled after every commit that may have made work due.
    work: Arc<Notify>,
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

/// Opens the database file (again, after an I/O error).
type Opener = Box<dyn Fn() -> Result<Database, redb::DatabaseError> + Send + Sync>;

/// The open database, and how to open it again: after an I/O error (a full disk)
/// redb refuses every further transaction until the file is reopened, which the
/// writer does by itself so that the store recovers once the disk has room again.
struct Handle {
    current: RwLock<Option<Arc<Database>>>,
    opener: Opener,
    path: PathBuf,
}

impl Handle {
    fn get(&self) -> Result<Arc<Database>, StoreError> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| StoreError::Storage {
                message: format!(
                    "{} is being reopened after an I/O error (a full disk?); try again",
                    self.path.display()
                ),
                source: None,
            })
    }

    /// Closes the database and opens it again; leaves it closed if that fails.
    fn reopen(&self) {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if let Some(mut old) = current.take() {
            // Readers may hold it for a moment; redb must be closed before reopening.
            for _ in 0..200 {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(still_shared) => {
                        old = still_shared;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        }
        match (self.opener)() {
            Ok(db) => {
                tracing::warn!(path = %self.path.display(), "inbox reopened after an I/O error");
                *current = Some(Arc::new(db));
            }
            Err(error) => {
                tracing::error!(path = %self.path.display(), %error, "cannot reopen the inbox yet");
            }
        }
    }
}

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
        let path = path.as_ref().to_path_buf();
        create_whole(&path)?;
        let file = path.clone();
        // Reopening after an I/O error only opens: a file that vanished meanwhile is
        // an error to report, not an empty inbox to start silently.
        Self::start(path, Box::new(move || builder().open(&file)))
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
        let db = opener().map_err(|e| open_error(&path, e))?;
        prepare(&db, &path)?;
        let db = Arc::new(Handle {
            current: RwLock::new(Some(Arc::new(db))),
            opener,
            path: path.clone(),
        });
        let backlog = Arc::new(AtomicU64::new(0));
        let work = Arc::new(Notify::new());
        let (sender, receiver) = mpsc::channel::<Request>();
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
            }),
        };
        let stats = read_stats(&*store.inner.db.get()?)?;
        store.inner.backlog.store(stats.open(), Ordering::Relaxed);
        Ok(store)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Takes the lock that lets one process dispatch from this file (a lock file
    /// beside it, `PATH.lock`, released when the process ends, even by a kill).
    /// Fails if another process holds it.
    pub fn lock_for_dispatch(&self) -> Result<DispatchLock, StoreError> {
        let mut lock_path = self.inner.path.clone().into_os_string();
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

    /// Pending plus in-flight events as of this process's last commit: cheap enough to
    /// read on every request (the receiver's back-pressure).
    pub fn backlog(&self) -> u64 {
        self.inner.backlog.load(Ordering::Relaxed)
    }

    /// Notified after each commit that may have made an event due.
    pub fn work_notify(&self) -> Arc<Notify> {
        Arc::clone(&self.inner.work)
    }

    async fn send(&self, op: Op) -> Result<Reply, StoreError> {
        let (reply, answer) = oneshot::channel();
        {
            let writer = self.inner.writer.lock().unwrap_or_else(|p| p.into_inner());
            let writer = writer.as_ref().ok_or(StoreError::Closed)?;
            writer
                .send(Request { op, reply })
                .map_err(|_| StoreError::Closed)?;
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.inner.db.get()?;
        tokio::task::spawn_blocking(move || read(&db))
            .await
            .map_err(|e| StoreError::storage("an inbox read panicked", e))?
    }
}

fn builder() -> redb::Builder {
    let mut builder = Database::builder();
    builder.set_concurrency_mode(ConcurrencyMode::MultiWriter);
    builder
}

/// Leftovers of creations cut short (`PATH.new-*`) older than this are removed.
const STALE_CREATION: Duration = Duration::from_secs(600);

/// Creates the inbox at `path` if nothing is there, so that `path` either does not
/// exist or holds a complete inbox.
///
/// redb initialises a new file in place and writes its magic number last: a kill
/// before that leaves a file every later open refuses ("not a redb database"),
/// however often the process is restarted. So the inbox is made whole (tables and
/// schema version committed and synced) under a temporary name beside `path`, then
/// hard-linked into place, which fails rather than replaces if another process got
/// there first, and the directory is synced. Where the file system has no hard
/// links, a rename does the same job, but may replace a file another process
/// created in the same instant.
fn create_whole(path: &Path) -> Result<(), StoreError> {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let io_error = |e: std::io::Error| open_error(path, redb::StorageError::Io(e).into());
    match std::fs::symlink_metadata(path) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(e)),
    }
    remove_stale_creations(path);
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(
        ".new-{}-{}",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    ));
    let temporary = PathBuf::from(temporary);
    let _ = std::fs::remove_file(&temporary); // a leftover of a killed process with our pid
    let made = (|| {
        let db = builder()
            .create(&temporary)
            .map_err(|e| open_error(path, e))?;
        prepare(&db, path)?;
        drop(db);
        File::open(&temporary)
            .and_then(|file| file.sync_all())
            .map_err(io_error)?;
        match std::fs::hard_link(&temporary, path) {
            Ok(()) => Ok(()),
            // Another process created it first: open theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(_) if !path.exists() => std::fs::rename(&temporary, path).map_err(io_error),
            Err(e) => Err(io_error(e)),
        }
    })();
    let _ = std::fs::remove_file(&temporary);
    made?;
    sync_directory(path).map_err(io_error)
}

/// The directory that holds `path` (`.` for a bare file name).
fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Makes a new directory entry for `path` durable (a no-op where directories
/// cannot be opened, as on Windows).
fn sync_directory(path: &Path) -> std::io::Result<()> {
    if cfg!(unix) {
        File::open(directory_of(path))?.sync_all()
    } else {
        Ok(())
    }
}

/// Best effort: removes `PATH.new-*` files older than [`STALE_CREATION`] (a creation
/// takes milliseconds, so these were left by killed processes).
fn remove_stale_creations(path: &Path) {
    let Some(name) = path.file_name() else {
        return;
    };
    let mut prefix = name.to_owned();
    prefix.push(".new-");
    let prefix = prefix.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir(directory_of(path)) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry.file_name().to_string_lossy().starts_with(&prefix)
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age > STALE_CREATION);
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn open_error(path: &Path, error: redb::DatabaseError) -> StoreError {
    use redb::{DatabaseError as D, StorageError as S};
    let reason = match &error {
        D::DatabaseAlreadyOpen => {
            "another program holds the file exclusively; stop it first".to_string()
        }
        D::UpgradeRequired(version) => format!(
            "the file is in redb's old format {version}; it was not made by this version of thulium"
        ),
        D::Storage(S::Io(io)) => match io.kind() {
            std::io::ErrorKind::NotFound => {
                format!("{io}; does the directory exist?")
            }
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                format!("{io}; the inbox needs a file it can write")
            }
            // redb's words for a file that is empty or lacks its magic number.
            std::io::ErrorKind::InvalidData => format!(
                "the file is not an inbox ({io}); name a file that does not exist and \
                 thulium creates it, or move this one aside (an empty file, or one left \
                 by a creation that a kill cut short, holds no events)"
            ),
            _ => io.to_string(),
        },
        D::Storage(S::Corrupted(detail)) => {
            format!(
                "the file is corrupt or is not an inbox ({detail}); move it aside and start a new one"
            )
        }
        other => other.to_string(),
    };
    StoreError::Open {
        path: path.to_path_buf(),
        reason,
    }
}

fn storage(error: impl Into<redb::Error>) -> StoreError {
    let error: redb::Error = error.into();
    StoreError::storage(error.to_string(), error)
}

/// Creates the tables and checks the schema version.
fn prepare(db: &Database, path: &Path) -> Result<(), StoreError> {
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

enum Op {
    Put(NewEvent),
    Claim(ClaimRequest),
    Extend(ClaimToken, Duration),
    Ack(ClaimToken, Attempt),
    Retry(ClaimToken, UnixMs, Attempt),
    Dead(ClaimToken, Attempt),
    SetAside(EventId, String),
    Replay(Replay),
    Purge(UnixMs, UnixMs),
    Release,
    Ping,
}

enum Reply {
    Put(PutOutcome),
    Claimed(Vec<Claimed>),
    Unit,
    Count(u64),
    Purged(Purged),
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Reply, StoreError>>,
}

fn writer_loop(
    handle: &Handle,
    requests: &mpsc::Receiver<Request>,
    backlog: &AtomicU64,
    work: &Notify,
) {
    while let Ok(first) = requests.recv() {
        if handle
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
        {
            handle.reopen();
        }
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let ops: Vec<&Op> = batch.iter().map(|r| &r.op).collect();
        let committed = match handle.get() {
            Ok(db) => commit_batch(&db, &ops).map_err(|e| {
                let previous_io = matches!(e, redb::Error::PreviousIo | redb::Error::Io(_));
                (StoreError::storage(e.to_string(), e), previous_io)
            }),
            Err(e) => Err((e, false)),
        };
        match committed {
            Ok((replies, open)) => {
                backlog.store(open, Ordering::Relaxed);
                // Not after a claim: the dispatcher that claimed would wake itself.
                if ops.iter().any(|op| {
                    matches!(op, Op::Put(_) | Op::Retry(..) | Op::Replay(_) | Op::Release)
                }) {
                    work.notify_waiters();
                }
                for (request, reply) in batch.into_iter().zip(replies) {
                    let _ = request.reply.send(reply);
                }
            }
            Err((error, reopen)) => {
                tracing::error!(%error, operations = batch.len(), "inbox commit failed; nothing of it was applied");
                if reopen {
                    handle.reopen();
                }
                let message = error.to_string();
                for request in batch {
                    let _ = request.reply.send(Err(StoreError::Storage {
                        message: message.clone(),
                        source: None,
                    }));
                }
            }
        }
    }
}

/// The tables of one write transaction.
struct Tables<'t> {
    events: Table<'t, u64, &'static str>,
    due: Table<'t, (u64, u64), ()>,
    leases: Table<'t, (u64, u64), ()>,
    open: Table<'t, u64, ()>,
    dead: Table<'t, u64, ()>,
    done: Table<'t, (u64, u64), ()>,
    dedup: Table<'t, &'static str, (u64, u64)>,
    keys: Table<'t, &'static str, u64>,
    meta: Table<'t, &'static str, u64>,
    /// Counters read and changed during this batch, written once before the commit
    /// (a put changes four of them; writing each every time showed in profiles).
    counters: std::collections::HashMap<&'static str, u64>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, redb::Error> {
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

    fn counter(&mut self, key: &'static str) -> Result<u64, redb::Error> {
        if let Some(value) = self.counters.get(key) {
            return Ok(*value);
        }
        let value = self.meta.get(key)?.map_or(0, |v| v.value());
        self.counters.insert(key, value);
        Ok(value)
    }

    fn set(&mut self, key: &'static str, value: u64) -> Result<(), redb::Error> {
        self.counter(key)?;
        self.counters.insert(key, value);
        Ok(())
    }

    fn add(&mut self, key: &'static str, delta: i64) -> Result<(), redb::Error> {
        let value = self.counter(key)?.saturating_add_signed(delta);
        self.set(key, value)
    }

    /// Writes the counters changed in this batch.
    fn flush(&mut self) -> Result<(), redb::Error> {
        for (key, value) in std::mem::take(&mut self.counters) {
            self.meta.insert(key, value)?;
        }
        Ok(())
    }

    fn load(&self, id: EventId) -> Result<Option<StoredEvent>, redb::Error> {
        match self.events.get(id.0)? {
            Some(json) => Ok(Some(decode(id, json.value())?)),
            None => Ok(None),
        }
    }

    fn unindex(&mut self, event: &StoredEvent, stays_open: bool) -> Result<(), redb::Error> {
        let id = event.id.0;
        match event.state {
            State::Pending => {
                self.due.remove((event.due_at, id))?;
                if !stays_open {
                    self.open.remove(id)?;
                }
            }
            State::InFlight => {
                self.leases.remove((event.due_at, id))?;
                if !stays_open {
                    self.open.remove(id)?;
                }
            }
            State::Done => {
                self.done.remove((event.finished_at.unwrap_or(0), id))?;
            }
            State::Dead => {
                self.dead.remove(id)?;
            }
        }
        self.add(state_counter(event.state), -1)
    }

    fn index(&mut self, event: &StoredEvent, was_open: bool) -> Result<(), redb::Error> {
        let id = event.id.0;
        match event.state {
            State::Pending => {
                self.due.insert((event.due_at, id), ())?;
                if !was_open {
                    self.open.insert(id, ())?;
                }
            }
            State::InFlight => {
                self.leases.insert((event.due_at, id), ())?;
                if !was_open {
                    self.open.insert(id, ())?;
                }
            }
            State::Done => {
                self.done.insert((event.finished_at.unwrap_or(0), id), ())?;
            }
            State::Dead => {
                self.dead.insert(id, ())?;
            }
        }
        self.add(state_counter(event.state), 1)
    }

    /// Writes `event`, moving it from `before`'s indexes to its own.
    fn save(
        &mut self,
        before: Option<&StoredEvent>,
        event: &StoredEvent,
    ) -> Result<(), redb::Error> {
        // Claims, heartbeats and retries keep an event open: its `open` entry stays.
        let is_open = |s: State| matches!(s, State::Pending | State::InFlight);
        let stays_open = before.is_some_and(|b| is_open(b.state)) && is_open(event.state);
        if let Some(before) = before {
            self.unindex(before, stays_open)?;
        }
        self.index(event, stays_open)?;
        let json =
            serde_json::to_string(event).map_err(|e| redb::Error::Corrupted(e.to_string()))?;
        self.events.insert(event.id.0, json.as_str())?;
        Ok(())
    }

    /// The event under `claim`, if the claim is still its current one.
    fn claimed(&self, claim: ClaimToken) -> Result<Result<StoredEvent, StoreError>, redb::Error> {
        Ok(match self.load(claim.id)? {
            Some(event)
                if event.state == State::InFlight && event.claim_token == Some(claim.token) =>
            {
                Ok(event)
            }
            Some(_) => Err(StoreError::StaleClaim(claim.id)),
            None => Err(StoreError::NotFound(claim.id)),
        })
    }
}

fn decode(id: EventId, json: &str) -> Result<StoredEvent, redb::Error> {
    serde_json::from_str(json)
        .map_err(|e| redb::Error::Corrupted(format!("event {id} cannot be read: {e}")))
}

fn commit_batch(
    db: &Database,
    ops: &[&Op],
) -> Result<(Vec<Result<Reply, StoreError>>, u64), redb::Error> {
    let txn = db.begin_write()?;
    let mut replies = Vec::with_capacity(ops.len());
    let open;
    {
        let mut tables = Tables::open(&txn)?;
        for op in ops {
            replies.push(apply(&mut tables, op)?);
        }
        open = tables.counter(state_counter(State::Pending))?
            + tables.counter(state_counter(State::InFlight))?;
        tables.flush()?;
    }
    txn.commit()?;
    Ok((replies, open))
}

/// Applies one operation. An `Err` aborts the whole batch (the storage failed); an
/// `Ok(Err(..))` refuses this operation alone.
fn apply(t: &mut Tables<'_>, op: &Op) -> Result<Result<Reply, StoreError>, redb::Error> {
    Ok(match op {
        Op::Put(event) => Ok(Reply::Put(put(t, event)?)),
        Op::Claim(request) => Ok(Reply::Claimed(claim(t, request)?)),
        Op::Extend(claim, lease) => match t.claimed(*claim)? {
            Ok(before) => {
                let mut event = before.clone();
                event.due_at = now_ms() + ms(*lease);
                t.save(Some(&before), &event)?;
                Ok(Reply::Unit)
            }
            Err(e) => Err(e),
        },
        Op::Ack(claim, attempt) => finish(t, *claim, attempt, |event| {
            event.state = State::Done;
            event.finished_at = Some(now_ms());
        })?,
        Op::Retry(claim, at, attempt) => finish(t, *claim, attempt, |event| {
            event.state = State::Pending;
            event.due_at = *at;
        })?,
        Op::Dead(claim, attempt) => finish(t, *claim, attempt, |event| {
            event.state = State::Dead;
            event.finished_at = Some(now_ms());
        })?,
        Op::SetAside(id, reason) => match t.load(*id)? {
            None => Err(StoreError::NotFound(*id)),
            Some(before) if before.state == State::InFlight => Err(StoreError::WrongState {
                id: *id,
                state: before.state,
                reason: "a worker holds it; set it aside once the attempt ends",
            }),
            Some(before) if before.state == State::Done => Err(StoreError::WrongState {
                id: *id,
                state: before.state,
                reason: "it was handed over already",
            }),
            Some(before) => {
                let mut event = before.clone();
                let now = now_ms();
                event.state = State::Dead;
                event.finished_at = Some(now);
                event.record(Attempt {
                    number: event.attempts,
                    started_at: now,
                    duration_ms: 0,
                    outcome: Outcome::SetAside(reason.clone()),
                });
                t.save(Some(&before), &event)?;
                Ok(Reply::Unit)
            }
        },
        Op::Replay(selection) => replay(t, selection)?,
        Op::Purge(finished_before, keys_before) => {
            Ok(Reply::Purged(purge(t, *finished_before, *keys_before)?))
        }
        Op::Release => {
            let held: Vec<u64> = t
                .leases
                .iter()?
                .map(|entry| entry.map(|(k, _)| k.value().1))
                .collect::<Result<_, _>>()?;
            let now = now_ms();
            for id in &held {
                if let Some(before) = t.load(EventId(*id))? {
                    let mut event = before.clone();
                    event.state = State::Pending;
                    event.due_at = now;
                    event.claim_token = None;
                    t.save(Some(&before), &event)?;
                }
            }
            Ok(Reply::Count(held.len() as u64))
        }
        Op::Ping => {
            t.meta.insert(META_PING, now_ms())?;
            Ok(Reply::Unit)
        }
    })
}

fn put(t: &mut Tables<'_>, event: &NewEvent) -> Result<PutOutcome, redb::Error> {
    t.add(META_RECEIVED, 1)?;
    let identity = format!("{}\u{1f}{}", event.dedup_key, event.content_digest());
    let existing = t.dedup.get(identity.as_str())?.map(|v| v.value().0);
    if let Some(id) = existing {
        t.add(META_DUPLICATES, 1)?;
        return Ok(PutOutcome::Duplicate(EventId(id)));
    }
    let id = EventId(t.counter(META_NEXT_ID)?.max(1));
    t.set(META_NEXT_ID, id.0 + 1)?;
    let conflict = t.keys.get(event.dedup_key.as_str())?.is_some();
    if conflict {
        t.add(META_CONFLICTS, 1)?;
    } else {
        t.keys.insert(event.dedup_key.as_str(), id.0)?;
    }
    t.dedup
        .insert(identity.as_str(), (id.0, event.received_at))?;
    let stored = StoredEvent::new(id, event.clone(), conflict);
    t.save(None, &stored)?;
    Ok(if conflict {
        PutOutcome::Conflict(id)
    } else {
        PutOutcome::Stored(id)
    })
}

fn claim(t: &mut Tables<'_>, request: &ClaimRequest) -> Result<Vec<Claimed>, redb::Error> {
    let now = request.now;
    let mut ids = Vec::new();
    for entry in t.due.range(..=(now, u64::MAX))? {
        if ids.len() >= request.max {
            break;
        }
        ids.push(entry?.0.value().1);
    }
    if ids.len() < request.max {
        for entry in t.leases.range(..=(now, u64::MAX))? {
            if ids.len() >= request.max {
                break;
            }
            ids.push(entry?.0.value().1);
        }
    }
    let mut claimed = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(before) = t.load(EventId(id))? else {
            continue;
        };
        let mut event = before.clone();
        let token = fastrand::u64(1..);
        event.state = State::InFlight;
        event.attempts += 1;
        event.due_at = now + ms(request.lease);
        event.claim_token = Some(token);
        t.save(Some(&before), &event)?;
        claimed.push(Claimed {
            token: ClaimToken {
                id: event.id,
                token,
            },
            event,
        });
    }
    Ok(claimed)
}

fn finish(
    t: &mut Tables<'_>,
    claim: ClaimToken,
    attempt: &Attempt,
    change: impl FnOnce(&mut StoredEvent),
) -> Result<Result<Reply, StoreError>, redb::Error> {
    let before = match t.claimed(claim)? {
        Ok(event) => event,
        Err(e) => return Ok(Err(e)),
    };
    let mut event = before.clone();
    event.claim_token = None;
    event.record(attempt.clone());
    change(&mut event);
    t.save(Some(&before), &event)?;
    Ok(Ok(Reply::Unit))
}

fn replay(
    t: &mut Tables<'_>,
    selection: &Replay,
) -> Result<Result<Reply, StoreError>, redb::Error> {
    let ids: Vec<u64> = match selection {
        Replay::Id(id) => match t.load(*id)? {
            None => return Ok(Err(StoreError::NotFound(*id))),
            Some(event) if event.state == State::InFlight => {
                return Ok(Err(StoreError::WrongState {
                    id: *id,
                    state: event.state,
                    reason: "a worker holds it now",
                }));
            }
            Some(_) => vec![id.0],
        },
        Replay::AllDead => t
            .dead
            .iter()?
            .map(|e| e.map(|(k, _)| k.value()))
            .collect::<Result<_, _>>()?,
        Replay::ReceivedBetween { from, to } => {
            let mut ids = Vec::new();
            for entry in t.events.iter()? {
                let (key, value) = entry?;
                let event = decode(EventId(key.value()), value.value())?;
                if event.received_at >= *from
                    && event.received_at < *to
                    && matches!(event.state, State::Done | State::Dead)
                {
                    ids.push(key.value());
                }
            }
            ids
        }
    };
    let now = now_ms();
    let mut count = 0;
    for id in ids {
        let Some(before) = t.load(EventId(id))? else {
            continue;
        };
        if before.state == State::InFlight {
            continue;
        }
        let mut event = before.clone();
        event.state = State::Pending;
        event.due_at = now;
        event.attempts = 0;
        event.finished_at = None;
        t.save(Some(&before), &event)?;
        count += 1;
    }
    Ok(Ok(Reply::Count(count)))
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
        t.done.remove((*finished_at, *id))?;
        t.events.remove(*id)?;
    }
    t.add(state_counter(State::Done), -(finished.len() as i64))?;

    let mut forgotten = Vec::new();
    for entry in t.dedup.iter()? {
        let (key, value) = entry?;
        let (id, received_at) = value.value();
        if received_at < keys_before && t.events.get(id)?.is_none() {
            forgotten.push((key.value().to_string(), id));
        }
    }
    for (identity, id) in &forgotten {
        t.dedup.remove(identity.as_str())?;
        if let Some((key, _)) = identity.split_once('\u{1f}') {
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

fn read_stats(db: &Database) -> Result<Stats, StoreError> {
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

fn read_list(db: &Database, filter: &Filter) -> Result<Vec<StoredEvent>, StoreError> {
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

impl Store for EmbeddedStore {
    async fn put(&self, event: NewEvent) -> Result<PutOutcome, StoreError> {
        match self.send(Op::Put(event)).await? {
            Reply::Put(outcome) => Ok(outcome),
            _ => unreachable_reply(),
        }
    }

    async fn claim(&self, request: ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
        // Idle dispatchers poll: answer "nothing due" from a read, without a commit.
        let now = request.now;
        let anything_due = self
            .read(move |db| {
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
            })
            .await?;
        if !anything_due {
            return Ok(Vec::new());
        }
        match self.send(Op::Claim(request)).await? {
            Reply::Claimed(claimed) => Ok(claimed),
            _ => unreachable_reply(),
        }
    }

    async fn extend(&self, claim: ClaimToken, lease: Duration) -> Result<(), StoreError> {
        self.send(Op::Extend(claim, lease)).await.map(drop)
    }

    async fn ack(&self, claim: ClaimToken, attempt: Attempt) -> Result<(), StoreError> {
        self.send(Op::Ack(claim, attempt)).await.map(drop)
    }

    async fn retry_at(
        &self,
        claim: ClaimToken,
        at: UnixMs,
        attempt: Attempt,
    ) -> Result<(), StoreError> {
        self.send(Op::Retry(claim, at, attempt)).await.map(drop)
    }

    async fn dead_letter(&self, claim: ClaimToken, attempt: Attempt) -> Result<(), StoreError> {
        self.send(Op::Dead(claim, attempt)).await.map(drop)
    }

    async fn set_aside(&self, id: EventId, reason: String) -> Result<(), StoreError> {
        self.send(Op::SetAside(id, reason)).await.map(drop)
    }

    async fn replay(&self, selection: Replay) -> Result<u64, StoreError> {
        match self.send(Op::Replay(selection)).await? {
            Reply::Count(count) => Ok(count),
            _ => unreachable_reply(),
        }
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        self.read(read_stats).await
    }

    async fn purge(
        &self,
        finished_before: UnixMs,
        keys_received_before: UnixMs,
    ) -> Result<Purged, StoreError> {
        match self
            .send(Op::Purge(finished_before, keys_received_before))
            .await?
        {
            Reply::Purged(purged) => Ok(purged),
            _ => unreachable_reply(),
        }
    }

    async fn get(&self, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
        self.read(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let events = txn.open_table(EVENTS).map_err(storage)?;
            match events.get(id.0).map_err(storage)? {
                Some(json) => Ok(Some(decode(id, json.value()).map_err(storage)?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn list(&self, filter: Filter) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(move |db| read_list(db, &filter)).await
    }

    async fn release_claims(&self) -> Result<u64, StoreError> {
        match self.send(Op::Release).await? {
            Reply::Count(count) => Ok(count),
            _ => unreachable_reply(),
        }
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        self.send(Op::Ping).await.map(drop)
    }

    fn backlog_hint(&self) -> Option<u64> {
        Some(self.backlog())
    }

    fn work_signal(&self) -> Option<Arc<Notify>> {
        Some(self.work_notify())
    }
}

/// Each operation gets the reply of its own kind; anything else is a bug here.
fn unreachable_reply<T>() -> Result<T, StoreError> {
    Err(StoreError::Storage {
        message: "internal error: the inbox writer answered another operation's reply".into(),
        source: None,
    })
}
