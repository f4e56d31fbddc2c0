//! [`PostgresStore`] (feature `postgres`): the inbox on PostgreSQL, so that several
//! receiver hosts share one durable queue.
//!
//! The same [`Store`] semantics as the embedded store, in SQL:
//!
//! - **put-if-absent** is `INSERT ... ON CONFLICT DO NOTHING` on the dedup table's
//!   primary key (dedup key, content digest), and **group commit** is a writer task
//!   that takes every waiting put into one transaction of multi-row statements
//!   (`unnest` of arrays): one round trip set and one WAL flush for many events;
//! - **claims** are `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)` with a
//!   random token per row; ack, retry and dead-letter match `id` *and* token, so a
//!   stale worker changes nothing;
//! - no `LISTEN/NOTIFY` (it takes a global lock at commit): dispatchers poll, and a put
//!   wakes the dispatcher of its own process;
//! - done rows are deleted by purges, and dedup rows once the window is over, so the
//!   tables do not grow without bound.
//!
//! The driver is tokio-postgres with a deadpool pool: plain async, no compile-time
//! query checking (the SQL is built at run time for configurable schema and table
//! names, which sqlx's checked queries cannot take). The schema ships as versioned
//! migrations applied at start, under an advisory lock so that several hosts starting
//! at once apply each version once; the runner is a few lines here rather than a crate
//! because the names are configurable.
//!
//! Connections to anything but a loopback host or a Unix socket must use TLS
//! (`sslmode=require`; rustls, system roots): the password never travels in clear.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use thulium::error::root_cause;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::types::ToSql;

use crate::model::{
    Attempt, ClaimToken, Claimed, EventId, Filter, MAX_KEPT_ATTEMPTS, NewEvent, Purged, PutOutcome,
    Replay, State, Stats, StoredEvent, UnixMs, ms, now_ms,
};
use crate::store::{ClaimRequest, Store, StoreError};

/// The schema version this code reads and writes.
pub const SCHEMA_VERSION: i32 = 1;
/// The most puts one group commit takes.
pub const MAX_BATCH: usize = 1000;

/// Where the inbox lives in PostgreSQL.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// The schema (created if missing; default `thulium_inbox`).
    pub schema: String,
    /// Prefixed to every table name (default empty).
    pub table_prefix: String,
    /// Pooled connections per process (default 8).
    pub pool_size: usize,
    /// Apply missing migrations at connect (default true); else check the version.
    pub migrate: bool,
    /// The database password, if the URL has none (so that it need not be on a
    /// command line).
    pub password: Option<thulium::Password>,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            schema: "thulium_inbox".into(),
            table_prefix: String::new(),
            pool_size: 8,
            migrate: true,
            password: None,
        }
    }
}

impl PostgresOptions {
    /// Sets [`Self::schema`].
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Sets [`Self::table_prefix`].
    pub fn table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.table_prefix = prefix.into();
        self
    }

    /// Sets [`Self::pool_size`].
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(2);
        self
    }

    /// Sets [`Self::migrate`].
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Sets [`Self::password`].
    pub fn password(mut self, password: impl Into<thulium::Password>) -> Self {
        self.password = Some(password.into());
        self
    }
}

/// Fully qualified table names.
#[derive(Debug)]
struct Names {
    schema: String,
    prefix: String,
    events: String,
    dedup: String,
    counters: String,
    migrations: String,
}

impl Names {
    fn new(options: &PostgresOptions) -> Result<Self, StoreError> {
        let valid = |name: &str, empty_ok: bool| {
            (empty_ok || !name.is_empty())
                && name.len() <= 40
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
        };
        if !valid(&options.schema, false) || !valid(&options.table_prefix, true) {
            return Err(StoreError::Open {
                path: options.schema.clone().into(),
                reason: "schema and table prefix must be lower-case letters, digits and _, up to 40 characters".into(),
            });
        }
        let table =
            |name: &str| format!("\"{}\".\"{}{name}\"", options.schema, options.table_prefix);
        Ok(Self {
            schema: format!("\"{}\"", options.schema),
            prefix: options.table_prefix.clone(),
            events: table("events"),
            dedup: table("dedup"),
            counters: table("counters"),
            migrations: table("migrations"),
        })
    }

    /// The versioned migrations, in order.
    fn migrations(&self) -> Vec<(i32, String)> {
        let Names {
            events,
            dedup,
            counters,
            prefix,
            ..
        } = self;
        vec![(
            1,
            format!(
                "CREATE TABLE {events} (
                   id BIGSERIAL PRIMARY KEY,
                   dedup_key TEXT NOT NULL,
                   action TEXT NOT NULL,
                   canonical TEXT NOT NULL,
                   body TEXT NOT NULL,
                   content_type TEXT,
                   received_at BIGINT NOT NULL,
                   state SMALLINT NOT NULL,
                   attempts INTEGER NOT NULL DEFAULT 0,
                   due_at BIGINT NOT NULL,
                   finished_at BIGINT,
                   last_error TEXT,
                   conflict BOOLEAN NOT NULL DEFAULT FALSE,
                   history JSONB NOT NULL DEFAULT '[]',
                   claim_token BIGINT
                 );
                 CREATE INDEX \"{prefix}events_due\" ON {events} (due_at, id) WHERE state IN (0, 1);
                 CREATE INDEX \"{prefix}events_open\" ON {events} (id) WHERE state IN (0, 1);
                 CREATE INDEX \"{prefix}events_dead\" ON {events} (id) WHERE state = 3;
                 CREATE INDEX \"{prefix}events_done\" ON {events} (finished_at) WHERE state = 2;
                 CREATE INDEX \"{prefix}events_action\" ON {events} (action, id);
                 CREATE TABLE {dedup} (
                   dedup_key TEXT NOT NULL,
                   digest TEXT NOT NULL,
                   event_id BIGINT NOT NULL,
                   received_at BIGINT NOT NULL,
                   PRIMARY KEY (dedup_key, digest)
                 );
                 CREATE INDEX \"{prefix}dedup_received\" ON {dedup} (received_at);
                 CREATE TABLE {counters} (
                   name TEXT NOT NULL,
                   shard SMALLINT NOT NULL,
                   value BIGINT NOT NULL,
                   PRIMARY KEY (name, shard)
                 );",
            ),
        )]
    }
}

/// The inbox in PostgreSQL. Cheap to clone.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    names: Names,
    puts: mpsc::Sender<Job<NewEvent>>,
    finishes: mpsc::Sender<Job<Finish>>,
    backlog: AtomicU64,
    work: Arc<Notify>,
    label: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("database", &self.inner.label)
            .field("schema", &self.inner.names.schema)
            .finish()
    }
}

fn db_error(what: &str, error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::storage(format!("{what}: {}", root_cause(&error)), error)
}

/// Whether `error` means the connection is gone (the server restarted, an
/// administrator terminated it, the network broke), so a new one may succeed.
fn is_connection_lost(error: &StoreError) -> bool {
    let StoreError::Storage {
        source: Some(source),
        ..
    } = error
    else {
        return false;
    };
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(&**source);
    while let Some(error) = current {
        if let Some(pg) = error.downcast_ref::<tokio_postgres::Error>() {
            use tokio_postgres::error::SqlState;
            if pg.is_closed()
                || pg.code().is_some_and(|c| {
                    [
                        SqlState::ADMIN_SHUTDOWN,
                        SqlState::CRASH_SHUTDOWN,
                        SqlState::CANNOT_CONNECT_NOW,
                    ]
                    .contains(c)
                })
            {
                return true;
            }
        }
        if error.is::<std::io::Error>() {
            return true;
        }
        current = error.source();
    }
    false
}

/// Whether the password may go to this host without TLS.
fn is_local(host: &Host) -> bool {
    match host {
        Host::Tcp(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost"
                || name.ends_with(".localhost")
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        #[cfg(unix)]
        Host::Unix(_) => true,
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host/db?sslmode=require`), applies missing
    /// migrations (unless disabled) and starts the group-commit writer.
    pub async fn connect(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let names = Names::new(&options)?;
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| StoreError::Open {
            path: "postgres".into(),
            reason: format!("not a PostgreSQL URL: {e}"),
        })?;
        if let (None, Some(password)) = (config.get_password(), &options.password) {
            config.password(password.expose());
        }
        let host = config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            })
            .collect::<Vec<_>>()
            .join(",");
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let label = format!(
            "postgres://{host}:{port}/{}",
            config.get_dbname().unwrap_or("")
        );
        let local = config.get_hosts().iter().all(is_local);
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = if config.get_ssl_mode() == SslMode::Require {
            // The SDK's configuration: ring, and the platform's trust store.
            let tls = thulium::tls::client_config().map_err(|e| StoreError::Open {
                path: label.clone().into(),
                reason: format!("cannot set up TLS: {e}"),
            })?;
            Manager::from_config(
                config,
                tokio_postgres_rustls::MakeRustlsConnect::new(tls),
                manager_config,
            )
        } else if local {
            Manager::from_config(config, tokio_postgres::NoTls, manager_config)
        } else {
            return Err(StoreError::Open {
                path: label.into(),
                reason: "refusing to send the database password in clear to a non-loopback host; add ?sslmode=require".into(),
            });
        };
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(2))
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(10)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Open {
                path: label.clone().into(),
                reason: e.to_string(),
            })?;
        {
            let mut client = pool.get().await.map_err(|e| StoreError::Open {
                path: label.clone().into(),
                reason: format!("cannot connect: {}", root_cause(&e)),
            })?;
            if options.migrate {
                migrate(&mut client, &names).await?;
            } else {
                check_version(&client, &names).await?;
            }
        }
        let (puts, queue) = mpsc::channel(MAX_BATCH * 8);
        let (finishes, finish_queue) = mpsc::channel(MAX_BATCH * 8);
        let store = Self {
            inner: Arc::new(Inner {
                pool,
                names,
                puts,
                finishes,
                backlog: AtomicU64::new(0),
                work: Arc::new(Notify::new()),
                label,
            }),
        };
        tokio::spawn(write_batches(Arc::downgrade(&store.inner), queue));
        tokio::spawn(write_batches(Arc::downgrade(&store.inner), finish_queue));
        tokio::spawn(backlog_refresher(Arc::downgrade(&store.inner)));
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        let client = self
            .inner
            .pool
            .get()
            .await
            .map_err(|e| db_error("no database connection", e))?;
        if client.is_closed() {
            // The server closed it while idle: start over with fresh connections.
            drop(client);
            self.inner.pool.retain(|_, _| false);
            return self
                .inner
                .pool
                .get()
                .await
                .map_err(|e| db_error("no database connection", e));
        }
        Ok(client)
    }
}

async fn migrate(client: &mut deadpool_postgres::Object, names: &Names) -> Result<(), StoreError> {
    let transaction = client
        .transaction()
        .await
        .map_err(|e| db_error("cannot start the migration", e))?;
    let lock_key = format!("thulium-inbox {}", names.migrations);
    transaction
        .execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&lock_key])
        .await
        .map_err(|e| db_error("cannot take the migration lock", e))?;
    transaction
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {migrations} (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());",
            schema = names.schema,
            migrations = names.migrations
        ))
        .await
        .map_err(|e| migration_failed(0, e))?;
    let current: i32 = transaction
        .query_one(
            &format!("SELECT COALESCE(max(version), 0) FROM {}", names.migrations),
            &[],
        )
        .await
        .map_err(|e| db_error("cannot read the schema version", e))?
        .get(0);
    if current > SCHEMA_VERSION {
        return Err(StoreError::SchemaVersion {
            path: names.schema.clone().into(),
            found: current as u64,
            expected: SCHEMA_VERSION as u64,
        });
    }
    for (version, sql) in names.migrations() {
        if version <= current {
            continue;
        }
        transaction
            .batch_execute(&sql)
            .await
            .map_err(|e| migration_failed(version, e))?;
        transaction
            .execute(
                &format!("INSERT INTO {} (version) VALUES ($1)", names.migrations),
                &[&version],
            )
            .await
            .map_err(|e| migration_failed(version, e))?;
        tracing::info!(version, schema = %names.schema, "inbox migration applied");
    }
    transaction
        .commit()
        .await
        .map_err(|e| db_error("cannot commit the migration", e))
}

fn migration_failed(version: i32, error: tokio_postgres::Error) -> StoreError {
    StoreError::Open {
        path: "postgres".into(),
        reason: format!(
            "migration {version} failed and was rolled back: {}; nothing was changed",
            root_cause(&error)
        ),
    }
}

async fn check_version(
    client: &deadpool_postgres::Object,
    names: &Names,
) -> Result<(), StoreError> {
    let row = client
        .query_one(
            &format!("SELECT COALESCE(max(version), 0) FROM {}", names.migrations),
            &[],
        )
        .await
        .map_err(|e| StoreError::Open {
            path: names.schema.clone().into(),
            reason: format!(
                "the inbox schema is missing ({}); run `thulium inbox migrate`",
                root_cause(&e)
            ),
        })?;
    let found: i32 = row.get(0);
    if found != SCHEMA_VERSION {
        return Err(StoreError::SchemaVersion {
            path: names.schema.clone().into(),
            found: found as u64,
            expected: SCHEMA_VERSION as u64,
        });
    }
    Ok(())
}

const COLUMNS: &str = "id, dedup_key, action, canonical, body, content_type, received_at, state, attempts, due_at, finished_at, last_error, conflict, history::text, claim_token";

fn state_code(state: State) -> i16 {
    match state {
        State::Pending => 0,
        State::InFlight => 1,
        State::Done => 2,
        State::Dead => 3,
    }
}

fn state_of(code: i16) -> State {
    match code {
        0 => State::Pending,
        1 => State::InFlight,
        2 => State::Done,
        _ => State::Dead,
    }
}

fn event_of(row: &tokio_postgres::Row) -> StoredEvent {
    let history: String = row.get(13);
    StoredEvent {
        id: EventId(row.get::<_, i64>(0) as u64),
        dedup_key: row.get(1),
        action: row.get(2),
        canonical: row.get(3),
        body: row.get(4),
        content_type: row.get(5),
        received_at: row.get::<_, i64>(6) as u64,
        state: state_of(row.get(7)),
        attempts: row.get::<_, i32>(8) as u32,
        due_at: row.get::<_, i64>(9) as u64,
        finished_at: row.get::<_, Option<i64>>(10).map(|v| v as u64),
        last_error: row.get(11),
        conflict: row.get(12),
        history: serde_json::from_str(&history).unwrap_or_default(),
        claim_token: row.get::<_, Option<i64>>(14).map(|v| v as u64),
    }
}

fn i(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The group-commit writer: every waiting put in one transaction.
/// A kind of operation written in batches: every waiting one in one round of
/// statements, the way puts, acks, retries and dead letters are written.
trait Batched: Send + Sync + 'static {
    /// What each operation returns.
    type Outcome: Send + 'static;
    /// Writes one batch; per operation, its outcome.
    fn write(
        inner: &Inner,
        batch: &[&Self],
    ) -> impl Future<Output = Result<Vec<Result<Self::Outcome, StoreError>>, StoreError>> + Send;
    /// Whether the written batch may have made events due (wakes this process's
    /// dispatcher).
    fn wakes(batch: &[&Self], outcomes: &[Result<Self::Outcome, StoreError>]) -> bool;
}

type Job<T> = (
    T,
    oneshot::Sender<Result<<T as Batched>::Outcome, StoreError>>,
);

/// Takes every waiting operation of one kind into a batch, writes it, and answers
/// each; after a lost connection, flushes the pool and tries the batch once more
/// (every batched operation is safe to repeat: puts are put-if-absent, outcomes are
/// fenced by their claim token).
async fn write_batches<T: Batched>(
    inner: std::sync::Weak<Inner>,
    mut queue: mpsc::Receiver<Job<T>>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let Some(inner) = inner.upgrade() else { return };
        let items: Vec<&T> = batch.iter().map(|(item, _)| item).collect();
        let mut result = T::write(&inner, &items).await;
        if result.as_ref().is_err_and(is_connection_lost) {
            // Every idle connection may be as dead as this one: drop them all.
            inner.pool.retain(|_, _| false);
            result = T::write(&inner, &items).await;
        }
        match result {
            Ok(outcomes) => {
                if T::wakes(&items, &outcomes) {
                    inner.work.notify_waiters();
                }
                for ((_, reply), outcome) in batch.drain(..).zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(error) => {
                tracing::error!(%error, operations = batch.len(), "inbox commit failed; nothing of it was applied");
                let message = error.to_string();
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(StoreError::Storage {
                        message: message.clone(),
                        source: None,
                    }));
                }
            }
        }
    }
}

impl Batched for NewEvent {
    type Outcome = PutOutcome;

    async fn write(
        inner: &Inner,
        batch: &[&Self],
    ) -> Result<Vec<Result<PutOutcome, StoreError>>, StoreError> {
        Ok(put_batch(inner, batch).await?.into_iter().map(Ok).collect())
    }

    fn wakes(_: &[&Self], outcomes: &[Result<PutOutcome, StoreError>]) -> bool {
        outcomes
            .iter()
            .any(|o| !matches!(o, Ok(PutOutcome::Duplicate(_))))
    }
}

async fn put_batch(inner: &Inner, events: &[&NewEvent]) -> Result<Vec<PutOutcome>, StoreError> {
    let names = &inner.names;
    let mut client = inner
        .pool
        .get()
        .await
        .map_err(|e| db_error("no database connection", e))?;
    let transaction = client
        .transaction()
        .await
        .map_err(|e| db_error("cannot start a transaction", e))?;
    let keys: Vec<&str> = events.iter().map(|e| e.dedup_key.as_str()).collect();
    let digests: Vec<String> = events.iter().map(|e| e.content_digest()).collect();
    let received: Vec<i64> = events.iter().map(|e| i(e.received_at)).collect();
    // 1. Claim each (key, digest) identity; the winners get a fresh event id. Within
    //    the batch the same identity may come twice: the first wins.
    let claimed = transaction
        .query(
            &format!(
                "INSERT INTO {dedup} (dedup_key, digest, event_id, received_at)
                 SELECT k, d, nextval(pg_get_serial_sequence('{events_raw}', 'id')), r
                 FROM (SELECT DISTINCT ON (k, d) k, d, r, o FROM unnest($1::text[], $2::text[], $3::bigint[])
                       WITH ORDINALITY AS t(k, d, r, o) ORDER BY k, d, o) AS input
                 ORDER BY k, d -- one lock order for every writer: no deadlocks between hosts
                 ON CONFLICT DO NOTHING
                 RETURNING dedup_key, digest, event_id",
                dedup = names.dedup,
                events_raw = names.events.replace('"', "")
            ),
            &[&keys, &digests, &received],
        )
        .await
        .map_err(|e| db_error("cannot store the events", e))?;
    let mut won: std::collections::HashMap<(String, String), i64> = claimed
        .iter()
        .map(|row| {
            (
                (row.get::<_, String>(0), row.get::<_, String>(1)),
                row.get::<_, i64>(2),
            )
        })
        .collect();
    // 2. The first id stored under each key tells conflicts apart.
    let first: std::collections::HashMap<String, i64> = if won.is_empty() {
        std::collections::HashMap::new()
    } else {
        transaction
        .query(
            &format!(
                "SELECT dedup_key, min(event_id) FROM {} WHERE dedup_key = ANY($1) GROUP BY dedup_key",
                names.dedup
            ),
            &[&keys],
        )
        .await
        .map_err(|e| db_error("cannot store the events", e))?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
    };
    // 3. The new events themselves.
    let mut outcomes = vec![None; events.len()];
    let mut rows: Vec<(usize, i64, bool)> = Vec::new();
    for (position, event) in events.iter().enumerate() {
        let identity = (event.dedup_key.clone(), digests[position].clone());
        if let Some(id) = won.remove(&identity) {
            let conflict = first.get(&event.dedup_key).is_some_and(|f| *f != id);
            rows.push((position, id, conflict));
            outcomes[position] = Some(if conflict {
                PutOutcome::Conflict(EventId(id as u64))
            } else {
                PutOutcome::Stored(EventId(id as u64))
            });
        }
    }
    if !rows.is_empty() {
        let ids: Vec<i64> = rows.iter().map(|r| r.1).collect();
        let conflicts: Vec<bool> = rows.iter().map(|r| r.2).collect();
        let pick = |f: &dyn Fn(&NewEvent) -> Option<String>| -> Vec<Option<String>> {
            rows.iter().map(|r| f(events[r.0])).collect()
        };
        let row_keys = pick(&|e| Some(e.dedup_key.clone()));
        let actions = pick(&|e| Some(e.action.clone()));
        let canonicals = pick(&|e| Some(e.canonical.clone()));
        let bodies = pick(&|e| Some(e.body.clone()));
        let content_types = pick(&|e| e.content_type.clone());
        let times: Vec<i64> = rows.iter().map(|r| i(events[r.0].received_at)).collect();
        transaction
            .execute(
                &format!(
                    "INSERT INTO {} (id, dedup_key, action, canonical, body, content_type, received_at, state, due_at, conflict)
                     SELECT id, k, a, c, b, t, r, 0, r, x
                     FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::bool[])
                       AS u(id, k, a, c, b, t, r, x)",
                    names.events
                ),
                &[&ids, &row_keys, &actions, &canonicals, &bodies, &content_types, &times, &conflicts],
            )
            .await
            .map_err(|e| db_error("cannot store the events", e))?;
    }
    // 4. The rest are redeliveries of stored events.
    let missing: Vec<usize> = (0..events.len())
        .filter(|p| outcomes[*p].is_none())
        .collect();
    if !missing.is_empty() {
        let missing_keys: Vec<&str> = missing.iter().map(|p| keys[*p]).collect();
        let missing_digests: Vec<&str> = missing.iter().map(|p| digests[*p].as_str()).collect();
        let known: std::collections::HashMap<(String, String), i64> = transaction
            .query(
                &format!(
                    "SELECT d.dedup_key, d.digest, d.event_id FROM {} d
                     JOIN unnest($1::text[], $2::text[]) AS u(k, g) ON d.dedup_key = u.k AND d.digest = u.g",
                    names.dedup
                ),
                &[&missing_keys, &missing_digests],
            )
            .await
            .map_err(|e| db_error("cannot store the events", e))?
            .iter()
            .map(|row| ((row.get(0), row.get(1)), row.get(2)))
            .collect();
        // A duplicate within this batch points at the event its first copy stored.
        let in_batch: std::collections::HashMap<(String, String), EventId> = events
            .iter()
            .enumerate()
            .filter_map(|(p, e)| {
                outcomes[p].map(|o| ((e.dedup_key.clone(), digests[p].clone()), o.id()))
            })
            .collect();
        for position in missing {
            let identity = (
                events[position].dedup_key.clone(),
                digests[position].clone(),
            );
            let id = in_batch
                .get(&identity)
                .copied()
                .or_else(|| known.get(&identity).map(|id| EventId(*id as u64)))
                .ok_or_else(|| StoreError::Storage {
                    message: "a concurrent writer holds this event's dedup key; deliver it again"
                        .into(),
                    source: None,
                })?;
            outcomes[position] = Some(PutOutcome::Duplicate(id));
        }
    }
    let outcomes: Vec<PutOutcome> = outcomes
        .into_iter()
        .map(|o| o.expect("every put has an outcome"))
        .collect();
    let count = |f: fn(&PutOutcome) -> bool| outcomes.iter().filter(|o| f(o)).count() as i64;
    // One statement for the three counters, on one of 16 shards so that writers on
    // several hosts rarely wait for each other's row locks.
    let shard = fastrand::i16(0..16);
    let values = [
        outcomes.len() as i64,
        count(|o| matches!(o, PutOutcome::Duplicate(_))),
        count(|o| matches!(o, PutOutcome::Conflict(_))),
    ];
    transaction
        .execute(
            &format!(
                "INSERT INTO {} AS c (name, shard, value)
                 SELECT n, $1, v FROM unnest(ARRAY['received', 'duplicates', 'conflicts'], $2::bigint[]) AS u(n, v)
                 WHERE v > 0
                 ON CONFLICT (name, shard) DO UPDATE SET value = c.value + EXCLUDED.value",
                names.counters
            ),
            &[&shard, &values.as_slice()],
        )
        .await
        .map_err(|e| db_error("cannot store the events", e))?;
    transaction
        .commit()
        .await
        .map_err(|e| db_error("cannot commit the events", e))?;
    Ok(outcomes)
}

async fn backlog_refresher(inner: std::sync::Weak<Inner>) {
    loop {
        {
            let Some(inner) = inner.upgrade() else { return };
            if let Ok(client) = inner.pool.get().await {
                let query = format!(
                    "SELECT count(*) FROM {} WHERE state IN (0, 1)",
                    inner.names.events
                );
                if let Ok(row) = client.query_one(&query, &[]).await {
                    inner
                        .backlog
                        .store(row.get::<_, i64>(0) as u64, Ordering::Relaxed);
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl PostgresStore {
    /// Where the store is, without credentials: `postgres://host:port/db`.
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// Runs one statement that changes the event under `claim`; refuses stale claims.
    async fn on_claim(
        &self,
        claim: ClaimToken,
        set: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let mut all: Vec<&(dyn ToSql + Sync)> = vec![];
        let id = i(claim.id.0);
        let token = i(claim.token);
        all.push(&id);
        all.push(&token);
        all.extend_from_slice(params);
        let changed = client
            .execute(
                &format!(
                    "UPDATE {} SET {set} WHERE id = $1 AND claim_token = $2 AND state = 1",
                    self.inner.names.events
                ),
                &all,
            )
            .await
            .map_err(|e| db_error("cannot update the event", e))?;
        if changed == 1 {
            return Ok(());
        }
        let exists = client
            .query_opt(
                &format!("SELECT 1 FROM {} WHERE id = $1", self.inner.names.events),
                &[&id],
            )
            .await
            .map_err(|e| db_error("cannot read the event", e))?
            .is_some();
        Err(if exists {
            StoreError::StaleClaim(claim.id)
        } else {
            StoreError::NotFound(claim.id)
        })
    }

    async fn finish(
        &self,
        claim: ClaimToken,
        state: State,
        due: Option<UnixMs>,
        attempt: &Attempt,
    ) -> Result<(), StoreError> {
        let attempt_json =
            serde_json::to_string(attempt).map_err(|e| db_error("cannot encode the attempt", e))?;
        let error = match &attempt.outcome {
            crate::model::Outcome::Failed(e) | crate::model::Outcome::SetAside(e) => {
                Some(e.clone())
            }
            _ => None,
        };
        let finish = Finish {
            claim,
            state: state_code(state),
            due: i(due.unwrap_or(now_ms())),
            now: i(now_ms()),
            error,
            attempt: attempt_json,
        };
        let (reply, answer) = oneshot::channel();
        self.inner
            .finishes
            .send((finish, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

/// An ack, a retry or a dead-letter, waiting for the finisher.
struct Finish {
    claim: ClaimToken,
    state: i16,
    due: i64,
    now: i64,
    error: Option<String>,
    attempt: String,
}

impl Batched for Finish {
    type Outcome = ();

    fn write(
        inner: &Inner,
        batch: &[&Self],
    ) -> impl Future<Output = Result<Vec<Result<(), StoreError>>, StoreError>> + Send {
        finish_batch(inner, batch)
    }

    fn wakes(batch: &[&Self], _: &[Result<(), StoreError>]) -> bool {
        batch.iter().any(|f| f.state == state_code(State::Pending))
    }
}

async fn finish_batch(
    inner: &Inner,
    finishes: &[&Finish],
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let client = inner
        .pool
        .get()
        .await
        .map_err(|e| db_error("no database connection", e))?;
    let ids: Vec<i64> = finishes.iter().map(|f| i(f.claim.id.0)).collect();
    let tokens: Vec<i64> = finishes.iter().map(|f| i(f.claim.token)).collect();
    let states: Vec<i16> = finishes.iter().map(|f| f.state).collect();
    let dues: Vec<i64> = finishes.iter().map(|f| f.due).collect();
    let nows: Vec<i64> = finishes.iter().map(|f| f.now).collect();
    let errors: Vec<Option<&str>> = finishes.iter().map(|f| f.error.as_deref()).collect();
    let attempts: Vec<&str> = finishes.iter().map(|f| f.attempt.as_str()).collect();
    let done: std::collections::HashSet<(i64, i64)> = client
        .query(
            &format!(
                "UPDATE {events} e SET state = u.state, claim_token = NULL, due_at = u.due,
                   finished_at = CASE WHEN u.state IN (2, 3) THEN u.now ELSE NULL END,
                   last_error = COALESCE(u.error, e.last_error),
                   history = CASE WHEN jsonb_array_length(e.history) >= {MAX_KEPT_ATTEMPTS}
                             THEN (e.history - 0) || u.attempt::jsonb ELSE e.history || u.attempt::jsonb END
                 FROM unnest($1::bigint[], $2::bigint[], $3::smallint[], $4::bigint[], $5::bigint[], $6::text[], $7::text[])
                   AS u(id, token, state, due, now, error, attempt)
                 WHERE e.id = u.id AND e.claim_token = u.token AND e.state = 1
                 RETURNING e.id, u.token",
                events = inner.names.events
            ),
            &[&ids, &tokens, &states, &dues, &nows, &errors, &attempts],
        )
        .await
        .map_err(|e| db_error("cannot record the outcomes", e))?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let refused: Vec<i64> = finishes
        .iter()
        .filter(|f| !done.contains(&(i(f.claim.id.0), i(f.claim.token))))
        .map(|f| i(f.claim.id.0))
        .collect();
    let existing: std::collections::HashSet<i64> = if refused.is_empty() {
        std::collections::HashSet::new()
    } else {
        client
            .query(
                &format!("SELECT id FROM {} WHERE id = ANY($1)", inner.names.events),
                &[&refused],
            )
            .await
            .map_err(|e| db_error("cannot read the events", e))?
            .iter()
            .map(|row| row.get(0))
            .collect()
    };
    Ok(finishes
        .iter()
        .map(|f| {
            let id = i(f.claim.id.0);
            if done.contains(&(id, i(f.claim.token))) {
                Ok(())
            } else if existing.contains(&id) {
                Err(StoreError::StaleClaim(f.claim.id))
            } else {
                Err(StoreError::NotFound(f.claim.id))
            }
        })
        .collect())
}

impl Store for PostgresStore {
    async fn put(&self, event: NewEvent) -> Result<PutOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .puts
            .send((event, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn claim(&self, request: ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
        let client = self.client().await?;
        let events = &self.inner.names.events;
        let rows = client
            .query(
                &format!(
                    "UPDATE {events} SET state = 1, attempts = attempts + 1, due_at = $2,
                       claim_token = floor(random() * 9007199254740991)::bigint + 1
                     WHERE id IN (SELECT id FROM {events} WHERE state IN (0, 1) AND due_at <= $1
                                  ORDER BY due_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
                     RETURNING {COLUMNS}"
                ),
                &[
                    &i(request.now),
                    &i(request.now + ms(request.lease)),
                    &(request.max as i64),
                ],
            )
            .await
            .map_err(|e| db_error("cannot claim events", e))?;
        let mut claimed: Vec<Claimed> = rows
            .iter()
            .map(event_of)
            .map(|event| Claimed {
                token: ClaimToken {
                    id: event.id,
                    token: event.claim_token.unwrap_or(0),
                },
                event,
            })
            .collect();
        claimed.sort_by_key(|c| c.event.id);
        Ok(claimed)
    }

    async fn extend(&self, claim: ClaimToken, lease: Duration) -> Result<(), StoreError> {
        let until = i(now_ms() + ms(lease));
        self.on_claim(claim, "due_at = $3", &[&until]).await
    }

    async fn ack(&self, claim: ClaimToken, attempt: Attempt) -> Result<(), StoreError> {
        self.finish(claim, State::Done, None, &attempt).await
    }

    async fn retry_at(
        &self,
        claim: ClaimToken,
        at: UnixMs,
        attempt: Attempt,
    ) -> Result<(), StoreError> {
        // The batch that records it wakes this process's dispatcher.
        self.finish(claim, State::Pending, Some(at), &attempt).await
    }

    async fn dead_letter(&self, claim: ClaimToken, attempt: Attempt) -> Result<(), StoreError> {
        self.finish(claim, State::Dead, None, &attempt).await
    }

    async fn set_aside(&self, id: EventId, reason: String) -> Result<(), StoreError> {
        let client = self.client().await?;
        let events = &self.inner.names.events;
        let now = now_ms();
        let attempt = serde_json::json!({"number": 0, "started_at": now, "duration_ms": 0, "outcome": "set_aside", "error": reason}).to_string();
        let changed = client
            .execute(
                &format!(
                    "UPDATE {events} SET state = 3, finished_at = $2, last_error = $3, history = history || $4::text::jsonb
                     WHERE id = $1 AND state IN (0, 3)"
                ),
                &[&i(id.0), &i(now), &reason, &attempt],
            )
            .await
            .map_err(|e| db_error("cannot set the event aside", e))?;
        if changed == 1 {
            return Ok(());
        }
        let state = client
            .query_opt(
                &format!("SELECT state FROM {events} WHERE id = $1"),
                &[&i(id.0)],
            )
            .await
            .map_err(|e| db_error("cannot read the event", e))?
            .map(|row| state_of(row.get(0)));
        Err(match state {
            None => StoreError::NotFound(id),
            Some(State::Done) => StoreError::WrongState {
                id,
                state: State::Done,
                reason: "it was handed over already",
            },
            Some(state) => StoreError::WrongState {
                id,
                state,
                reason: "a worker holds it; set it aside once the attempt ends",
            },
        })
    }

    async fn replay(&self, selection: Replay) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let events = &self.inner.names.events;
        let set = "state = 0, due_at = $1, attempts = 0, finished_at = NULL, claim_token = NULL";
        let now = i(now_ms());
        let changed = match selection {
            Replay::Id(id) => {
                let state = client
                    .query_opt(&format!("SELECT state FROM {events} WHERE id = $1"), &[&i(id.0)])
                    .await
                    .map_err(|e| db_error("cannot read the event", e))?
                    .map(|row| state_of(row.get(0)));
                match state {
                    None => return Err(StoreError::NotFound(id)),
                    Some(State::InFlight) => {
                        return Err(StoreError::WrongState { id, state: State::InFlight, reason: "a worker holds it now" });
                    }
                    Some(_) => client
                        .execute(&format!("UPDATE {events} SET {set} WHERE id = $2 AND state <> 1"), &[&now, &i(id.0)])
                        .await,
                }
            }
            Replay::AllDead => client.execute(&format!("UPDATE {events} SET {set} WHERE state = 3"), &[&now]).await,
            Replay::ReceivedBetween { from, to } => {
                client
                    .execute(
                        &format!("UPDATE {events} SET {set} WHERE state IN (2, 3) AND received_at >= $2 AND received_at < $3"),
                        &[&now, &i(from), &i(to)],
                    )
                    .await
            }
        }
        .map_err(|e| db_error("cannot replay", e))?;
        self.inner.work.notify_waiters();
        Ok(changed)
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        let client = self.client().await?;
        let names = &self.inner.names;
        let mut stats = Stats::default();
        for row in client
            .query(
                &format!(
                    "SELECT state, count(*) FROM {} GROUP BY state",
                    names.events
                ),
                &[],
            )
            .await
            .map_err(|e| db_error("cannot count events", e))?
        {
            let count = row.get::<_, i64>(1) as u64;
            match state_of(row.get(0)) {
                State::Pending => stats.pending = count,
                State::InFlight => stats.in_flight = count,
                State::Done => stats.done = count,
                State::Dead => stats.dead = count,
            }
        }
        for row in client
            .query(
                &format!(
                    "SELECT name, sum(value)::bigint FROM {} GROUP BY name",
                    names.counters
                ),
                &[],
            )
            .await
            .map_err(|e| db_error("cannot read the counters", e))?
        {
            let value = row.get::<_, i64>(1) as u64;
            match row.get::<_, &str>(0) {
                "received" => stats.received = value,
                "duplicates" => stats.duplicates = value,
                "conflicts" => stats.conflicts = value,
                _ => {}
            }
        }
        stats.oldest_open_received_at = client
            .query_opt(
                &format!(
                    "SELECT received_at FROM {} WHERE state IN (0, 1) ORDER BY id LIMIT 1",
                    names.events
                ),
                &[],
            )
            .await
            .map_err(|e| db_error("cannot read the oldest event", e))?
            .map(|row| row.get::<_, i64>(0) as u64);
        self.inner.backlog.store(stats.open(), Ordering::Relaxed);
        Ok(stats)
    }

    async fn purge(
        &self,
        finished_before: UnixMs,
        keys_received_before: UnixMs,
    ) -> Result<Purged, StoreError> {
        let client = self.client().await?;
        let names = &self.inner.names;
        let events = client
            .execute(
                &format!(
                    "DELETE FROM {} WHERE state = 2 AND finished_at < $1",
                    names.events
                ),
                &[&i(finished_before)],
            )
            .await
            .map_err(|e| db_error("cannot purge events", e))?;
        let keys = client
            .execute(
                &format!(
                    "DELETE FROM {dedup} d WHERE d.received_at < $1
                     AND NOT EXISTS (SELECT 1 FROM {events} e WHERE e.id = d.event_id)",
                    dedup = names.dedup,
                    events = names.events
                ),
                &[&i(keys_received_before)],
            )
            .await
            .map_err(|e| db_error("cannot purge dedup keys", e))?;
        Ok(Purged { events, keys })
    }

    async fn get(&self, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM {} WHERE id = $1",
                    self.inner.names.events
                ),
                &[&i(id.0)],
            )
            .await
            .map_err(|e| db_error("cannot read the event", e))?
            .as_ref()
            .map(event_of))
    }

    async fn list(&self, filter: Filter) -> Result<Vec<StoredEvent>, StoreError> {
        let client = self.client().await?;
        let text = filter.text.as_ref().map(|t| {
            format!(
                "%{}%",
                t.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            )
        });
        let state = filter.state.map(state_code);
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM {} WHERE id < $1
                       AND ($2::smallint IS NULL OR state = $2)
                       AND ($3::text IS NULL OR action = $3)
                       AND ($4::bigint IS NULL OR received_at >= $4)
                       AND ($5::bigint IS NULL OR received_at < $5)
                       AND ($6::text IS NULL OR body LIKE $6 OR canonical LIKE $6)
                       AND ($8::bigint IS NULL OR id > $8)
                     ORDER BY id DESC LIMIT $7",
                    self.inner.names.events
                ),
                &[
                    &filter.before.map_or(i64::MAX, |b| i(b.0)),
                    &state,
                    &filter.action,
                    &filter.received_from.map(i),
                    &filter.received_to.map(i),
                    &text,
                    &(filter.page_size() as i64),
                    &filter.after.map(|a| i(a.0)),
                ],
            )
            .await
            .map_err(|e| db_error("cannot list events", e))?;
        Ok(rows.iter().map(event_of).collect())
    }

    async fn release_claims(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let changed = client
            .execute(
                &format!(
                    "UPDATE {} SET state = 0, due_at = $1, claim_token = NULL WHERE state = 1",
                    self.inner.names.events
                ),
                &[&i(now_ms())],
            )
            .await
            .map_err(|e| db_error("cannot release claims", e))?;
        Ok(changed)
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT pg_is_in_recovery(), current_setting('transaction_read_only')",
                &[],
            )
            .await
            .map_err(|e| db_error("the database does not answer", e))?;
        let (recovery, read_only): (bool, String) = (row.get(0), row.get(1));
        if recovery || read_only == "on" {
            return Err(StoreError::Storage {
                message: format!(
                    "{} is read-only (a replica?); point the inbox at the primary",
                    self.inner.label
                ),
                source: None,
            });
        }
        Ok(())
    }

    fn backlog_hint(&self) -> Option<u64> {
        Some(self.inner.backlog.load(Ordering::Relaxed))
    }

    fn work_signal(&self) -> Option<Arc<Notify>> {
        Some(Arc::clone(&self.inner.work))
    }
}
