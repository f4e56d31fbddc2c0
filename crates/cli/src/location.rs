//! Where an inbox is: a file (the embedded store) or a PostgreSQL URL.

use thulium_inbox::EmbeddedStore;
use thulium_inbox::embedded::ReadOnlyInbox;
use thulium_inbox::postgres::{PostgresOptions, PostgresStore};

use crate::failure::Failure;

/// The environment variable with the PostgreSQL password (so that it need not be in
/// the URL on a command line), unless --inbox-password-env names another.
pub const INBOX_PASSWORD_ENV: &str = "THULIUM_INBOX_PASSWORD";

/// An opened inbox.
pub enum Opened {
    /// One redb file.
    File(EmbeddedStore),
    /// One redb file this process may only read (a read-only mount, a snapshot).
    ReadOnly(ReadOnlyInbox),
    /// A PostgreSQL schema.
    Postgres(PostgresStore),
}

/// Whether `location` names a PostgreSQL database rather than a file.
pub fn is_postgres(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// Opens the inbox at `location`. A file must exist unless `create`; a PostgreSQL
/// schema is migrated unless `migrate` is false.
pub async fn open(
    location: &str,
    schema: &str,
    password_env: &str,
    create: bool,
    migrate: bool,
) -> Result<Opened, Failure> {
    open_with(location, schema, password_env, create, migrate, false, None).await
}

/// [`open`], and with `search_index` a PostgreSQL inbox keeps its trigram index; a
/// file's page cache holds at most `cache_bytes` (redb's default if `None`).
pub async fn open_with(
    location: &str,
    schema: &str,
    password_env: &str,
    create: bool,
    migrate: bool,
    search_index: bool,
    cache_bytes: Option<usize>,
) -> Result<Opened, Failure> {
    if is_postgres(location) {
        let mut options = PostgresOptions::default()
            .schema(schema)
            .migrate(migrate)
            .search_index(search_index);
        if let Some(password) = std::env::var(password_env).ok().filter(|p| !p.is_empty()) {
            options = options.password(password);
        }
        return Ok(Opened::Postgres(
            PostgresStore::connect(location, options).await?,
        ));
    }
    let path = std::path::Path::new(location);
    if !create && !path.exists() {
        return Err(Failure::usage(format!(
            "no inbox at {location}; `thulium listen --inbox {location}` creates it"
        )));
    }
    // A file that exists but cannot be written is opened for reading: the read
    // commands work on a snapshot or a read-only mount; the others say why not.
    if !create && !migrate {
        let writable = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path);
        if let Err(error) = writable
            && matches!(
                error.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
            )
        {
            return Ok(Opened::ReadOnly(ReadOnlyInbox::open(path)?));
        }
    }
    Ok(Opened::File(match cache_bytes {
        Some(bytes) => EmbeddedStore::open_with_cache(path, bytes)?,
        None => EmbeddedStore::open(path)?,
    }))
}
