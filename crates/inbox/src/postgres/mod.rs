//! [`PostgresStore`] (feature `postgres`): the inbox on PostgreSQL, so that several
//! receiver hosts share one durable queue.
//!
//! The same [`Store`] semantics as the embedded store, in SQL:
//!
//! - **put-if-absent** is `INSERT ... ON CONFLICT DO NOTHING` on the dedup table's
//!   primary key (dedup key, content digest), and **group commit** is a writer task
//!   that takes every waiting put into one transaction of multi-row statements
//!   (`unnest` of arrays): one round trip set and one WAL flush for many events;
//! - **claims** lock due rows with `SELECT ... FOR UPDATE SKIP LOCKED` (hosts never
//!   wait for each other's rows), and every state change (claim, heartbeat, ack,
//!   retry, dead letter, set-aside, replay, release) is decided by the rules all
//!   backends share (`transition`) on the locked rows, then written in one
//!   multi-row `UPDATE`; a worker whose claim token is no longer the row's changes
//!   nothing;
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

mod batch;
mod changes;
mod connect;
mod options;
mod rows;
mod schema;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{Notify, mpsc};

use self::changes::{ClaimChange, ClaimChangeKind};
use self::connect::db_error;
pub use self::options::PostgresOptions;
use self::rows::{COLUMNS, StateCode, event_of, i};
use self::schema::Names;
use crate::group_commit::Job;
use crate::model::{
    Attempt, ClaimToken, Claimed, EventId, Filter, NewEvent, Pause, Purged, PutOutcome, Replay,
    RouteStats, State, Stats, StoredEvent, UnixMs, ms, now_ms,
};
use crate::routing::RouteName;
use crate::store::{ClaimRequest, Store, StoreError};
use crate::transition::{CLAIMABLE, Change, Finish};

/// The schema version this code reads and writes.
pub const SCHEMA_VERSION: i32 = 3;
/// The most operations one group commit takes.
pub const MAX_BATCH: usize = 1000;

/// The inbox in PostgreSQL. Cheap to clone.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    names: Names,
    puts: mpsc::Sender<Job<NewEvent, PutOutcome>>,
    changes: mpsc::Sender<Job<ClaimChange, ()>>,
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

impl PostgresStore {
    /// Where the store is, without credentials: `postgres://host:port/db`.
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// Queues a change under `claim` for the change writer, and waits for its commit.
    async fn on_claim(&self, claim: ClaimToken, kind: ClaimChangeKind) -> Result<(), StoreError> {
        let (job, answer) = Job::new(ClaimChange { claim, kind });
        self.inner
            .changes
            .send(job)
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

impl Store for PostgresStore {
    async fn put(&self, event: NewEvent) -> Result<PutOutcome, StoreError> {
        let (job, answer) = Job::new(event);
        self.inner
            .puts
            .send(job)
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn claim(&self, request: ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
        changes::claim(self, &request).await
    }

    async fn extend(&self, claim: ClaimToken, lease: Duration) -> Result<(), StoreError> {
        let until = now_ms() + ms(lease);
        self.on_claim(claim, ClaimChangeKind::Extend(until)).await
    }

    async fn give_back(&self, claim: ClaimToken) -> Result<(), StoreError> {
        self.on_claim(claim, ClaimChangeKind::GiveBack).await
    }

    async fn finish(
        &self,
        claim: ClaimToken,
        how: Finish,
        attempt: Attempt,
    ) -> Result<(), StoreError> {
        // A retry's batch wakes this process's dispatcher.
        self.on_claim(claim, ClaimChangeKind::Finish(how, attempt))
            .await
    }

    async fn set_aside(&self, id: EventId, reason: String) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let change = Change::SetAside {
            reason: &reason,
            now: now_ms(),
        };
        changes::change_one(&mut client, &self.inner.names, id, &change).await
    }

    async fn replay(&self, selection: Replay) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let replayed = changes::replay(&mut client, &self.inner.names, &selection).await?;
        self.inner.work.notify_waiters();
        Ok(replayed)
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        let client = self.client().await?;
        let names = &self.inner.names;
        let mut stats = Stats::default();
        // Per route and state, with each route's oldest open entry (the open index
        // is by route and id).
        for row in client
            .query(
                &format!(
                    "SELECT route, state, count(*),
                       min(received_at) FILTER (WHERE state IN {open})
                     FROM {events} GROUP BY route, state",
                    events = names.events,
                    open = StateCode::list(&CLAIMABLE),
                ),
                &[],
            )
            .await
            .map_err(|e| db_error("cannot count events", e))?
        {
            let route = crate::routing::stored_route(row.get(0));
            let state = StateCode::state(row.get(1));
            let count = row.get::<_, i64>(2) as u64;
            let oldest = row.get::<_, Option<i64>>(3).map(|v| v as u64);
            *stats.count_mut(state) += count;
            let at = match stats.routes.iter().position(|r| r.route == route) {
                Some(at) => at,
                None => {
                    stats.routes.push(RouteStats::new(route));
                    stats.routes.len() - 1
                }
            };
            let entry = &mut stats.routes[at];
            *entry.count_mut(state) += count;
            if let Some(oldest) = oldest {
                let earliest = entry
                    .oldest_open_received_at
                    .map_or(oldest, |o| o.min(oldest));
                entry.oldest_open_received_at = Some(earliest);
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
        for row in client
            .query(
                &format!(
                    "SELECT since, reason, probe_at, route FROM {}",
                    names.pauses
                ),
                &[],
            )
            .await
            .map_err(|e| db_error("cannot read the paused routes", e))?
        {
            let route = crate::routing::stored_route(row.get(3));
            let pause = Some(rows::pause_of(&row));
            match stats.routes.iter_mut().find(|r| r.route == route) {
                Some(entry) => entry.paused = pause,
                None => {
                    let mut entry = RouteStats::new(route);
                    entry.paused = pause;
                    stats.routes.push(entry);
                }
            }
        }
        crate::model::sort_routes(&mut stats.routes);
        stats.oldest_open_received_at = stats
            .routes
            .iter()
            .filter_map(|r| r.oldest_open_received_at)
            .min();
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
                    "DELETE FROM {} WHERE state = {} AND finished_at < $1",
                    names.events,
                    StateCode::of(State::Done)
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
        let text = filter.text.as_deref().map(like_pattern);
        // The body is searched in its `escape` encoding (indexed by trigrams), a
        // superset of the byte matches: each row is checked again below.
        let escaped_text = filter
            .text
            .as_deref()
            .map(|t| like_pattern(&escape_encoding(t.as_bytes())));
        let state = filter.state.map(StateCode::of);
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM {} WHERE id < $1
                       AND ($2::smallint IS NULL OR state = $2)
                       AND ($3::text IS NULL OR action = $3)
                       AND ($4::bigint IS NULL OR received_at >= $4)
                       AND ($5::bigint IS NULL OR received_at < $5)
                       AND ($6::text IS NULL OR {searched} LIKE $6 OR {searched} LIKE $9)
                       AND ($8::bigint IS NULL OR id > $8)
                       AND ($10::text IS NULL OR route = $10)
                       AND ($11::text IS NULL OR account = $11)
                     ORDER BY id DESC LIMIT $7",
                    self.inner.names.events,
                    searched = schema::SEARCHED,
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
                    &escaped_text,
                    &filter.route.as_ref().map(|r| r.as_str()),
                    &filter.account.as_ref().map(|a| a.as_str()),
                ],
            )
            .await
            .map_err(|e| db_error("cannot list events", e))?;
        Ok(rows
            .iter()
            .map(event_of)
            .filter(|event| filter.text.is_none() || filter.matches(event))
            .collect())
    }

    async fn set_pause(&self, route: RouteName, pause: Option<Pause>) -> Result<(), StoreError> {
        let client = self.client().await?;
        let pauses = &self.inner.names.pauses;
        match pause {
            Some(pause) => client
                .execute(
                    &format!(
                        "INSERT INTO {pauses} (route, since, reason, probe_at) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (route) DO UPDATE SET since = EXCLUDED.since,
                           reason = EXCLUDED.reason, probe_at = EXCLUDED.probe_at"
                    ),
                    &[
                        &route.as_str(),
                        &i(pause.since),
                        &pause.reason,
                        &pause.probe_at.map(i),
                    ],
                )
                .await
                .map_err(|e| db_error("cannot pause the route", e))?,
            None => {
                let resumed = client
                    .execute(
                        &format!("DELETE FROM {pauses} WHERE route = $1"),
                        &[&route.as_str()],
                    )
                    .await
                    .map_err(|e| db_error("cannot resume the route", e))?;
                if resumed > 0 {
                    self.inner.work.notify_waiters();
                }
                resumed
            }
        };
        Ok(())
    }

    async fn pause_of(&self, route: RouteName) -> Result<Option<Pause>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT since, reason, probe_at FROM {} WHERE route = $1",
                    self.inner.names.pauses
                ),
                &[&route.as_str()],
            )
            .await
            .map_err(|e| db_error("cannot read the route's pause", e))?;
        Ok(row.as_ref().map(rows::pause_of))
    }

    async fn release_claims(&self) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let released = changes::release(&mut client, &self.inner.names).await?;
        self.inner.work.notify_waiters();
        Ok(released)
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

    fn backlog(&self) -> Option<u64> {
        Some(self.inner.backlog.load(Ordering::Relaxed))
    }

    fn work_signal(&self) -> Option<Arc<Notify>> {
        Some(Arc::clone(&self.inner.work))
    }
}

/// `%text%` for `LIKE`, with backslash, `%` and `_` taken literally.
fn like_pattern(text: &str) -> String {
    format!(
        "%{}%",
        text.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    )
}

/// `bytes` as PostgreSQL's `encode(..., 'escape')` writes them: a zero byte and
/// bytes with the high bit set as a backslash and three octal digits, a backslash
/// doubled.
fn escape_encoding(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &byte in bytes {
        match byte {
            0 | 0x80..=0xff => out.push_str(&format!("\\{byte:03o}")),
            b'\\' => out.push_str("\\\\"),
            _ => out.push(char::from(byte)),
        }
    }
    out
}
