//! The inbox file itself: creating it whole, opening it (again after an I/O error),
//! and the errors that say what to do when it cannot be opened.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redb::{ConcurrencyMode, Database};

use super::tables::prepare;
use crate::store::StoreError;

/// Opens the database file (again, after an I/O error).
pub(super) type Opener = Box<dyn Fn() -> Result<Database, redb::DatabaseError> + Send + Sync>;

/// The open database, and how to open it again: after an I/O error (a full disk)
/// redb refuses every further transaction until the file is reopened, which the
/// writer does by itself so that the store recovers once the disk has room again.
pub(super) struct Handle {
    pub(super) current: RwLock<Option<Arc<Database>>>,
    pub(super) opener: Opener,
    pub(super) path: PathBuf,
}

impl Handle {
    pub(super) fn get(&self) -> Result<Arc<Database>, StoreError> {
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
    pub(super) fn reopen(&self) {
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

pub(super) fn builder() -> redb::Builder {
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
pub(super) fn create_whole(path: &Path) -> Result<(), StoreError> {
    let io_error = |e: std::io::Error| open_error(path, redb::StorageError::Io(e).into());
    match std::fs::symlink_metadata(path) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(e)),
    }
    // Another process may create it in the same instant: then theirs is opened.
    build_whole(path, |db| prepare(db, path)).map(|_created| ())
}

/// Makes a new inbox file at `path` whole under a temporary name beside it, filled
/// by `fill`, synced, then linked into place (see [`create_whole`]). `false` if
/// another file appeared at `path` meanwhile (it is left as it is).
pub(super) fn build_whole(
    path: &Path,
    fill: impl FnOnce(&Database) -> Result<(), StoreError>,
) -> Result<bool, StoreError> {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let io_error = |e: std::io::Error| open_error(path, redb::StorageError::Io(e).into());
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
        fill(&db)?;
        drop(db);
        File::open(&temporary)
            .and_then(|file| file.sync_all())
            .map_err(io_error)?;
        match std::fs::hard_link(&temporary, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(_) if !path.exists() => std::fs::rename(&temporary, path)
                .map(|()| true)
                .map_err(io_error),
            Err(e) => Err(io_error(e)),
        }
    })();
    let _ = std::fs::remove_file(&temporary);
    let created = made?;
    sync_directory(path).map_err(io_error)?;
    Ok(created)
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

pub(super) fn open_error(path: &Path, error: redb::DatabaseError) -> StoreError {
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

pub(super) fn storage(error: impl Into<redb::Error>) -> StoreError {
    let error: redb::Error = error.into();
    StoreError::storage(error.to_string(), error)
}

/// Runs `work`, turning a panic inside it (redb panics on some corruptions instead of
/// returning an error) into `Err` with the panic's message, so that a bad page fails
/// the operation that met it, never the process.
pub(super) fn unpanicked<T>(work: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).map_err(|panic| {
        panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into())
    })
}
