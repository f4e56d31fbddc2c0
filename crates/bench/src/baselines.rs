//! The durable inbox's baselines: what the same work costs done another way, behind
//! the same SDK receiver checks, so that the inbox bench compares like with like.
//!
//! - SQLite (WAL, `synchronous=FULL`) the naive way: one transaction per event.
//! - SQLite with the inbox's semantics and group commit: the same event record
//!   (dedup key, canonical JSON, body, content type, times, state), the dedup table
//!   keyed by (dedup key, content digest) with conflicts told apart, the partial
//!   indexes of open and due events, and the counters; one transaction and one sync
//!   per batch, each caller answered after it.
//! - PostgreSQL's ceiling: the same rows in one multi-row `INSERT ... unnest` per
//!   batch into a bare table (no dedup, no indexes but the key, no counters), with the
//!   same group commit: what the server does at best for the inbox's ingest.

use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use thulium::receiver::Receiver;
use thulium_inbox::NewEvent;
use tokio::sync::oneshot;

type Reply = oneshot::Sender<Result<(), String>>;

/// A router that checks each delivery with `receiver` (as the inbox's receiver
/// does), makes the event the inbox would store of it, and hands it to `store`;
/// `200` once `store`'s reply says it is durable, `503` otherwise.
fn checked(receiver: Receiver, store: impl Fn(NewEvent, Reply) + Send + Sync + 'static) -> Router {
    let store = Arc::new(store);
    Router::new().route(
        "/hook",
        post(move |request: Request| {
            let (receiver, store) = (receiver.clone(), Arc::clone(&store));
            async move {
                let delivery = match receiver.accept_delivery(request).await {
                    Ok(delivery) => delivery,
                    Err(rejection) => return rejection.into_response(),
                };
                let event =
                    NewEvent::from_event(&delivery.event, delivery.body, delivery.content_type);
                let (reply, answer) = oneshot::channel();
                store(event, reply);
                answered(answer.await)
            }
        }),
    )
}

fn answered(outcome: Result<Result<(), String>, oneshot::error::RecvError>) -> Response {
    match outcome {
        Ok(Ok(())) => (StatusCode::OK, "stored").into_response(),
        Ok(Err(error)) => (StatusCode::SERVICE_UNAVAILABLE, error).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "the writer is gone").into_response(),
    }
}

/// SQLite in WAL mode with `synchronous=FULL`, holding what the inbox holds.
fn sqlite(path: &Path) -> rusqlite::Connection {
    let connection = rusqlite::Connection::open(path).expect("sqlite opens");
    connection
        .execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, dedup_key TEXT NOT NULL,
               action TEXT NOT NULL, canonical TEXT NOT NULL, body BLOB NOT NULL, content_type TEXT,
               received_at INTEGER NOT NULL, state INTEGER NOT NULL, attempts INTEGER NOT NULL,
               due_at INTEGER NOT NULL, conflict INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS events_due ON events (due_at, id) WHERE state IN (0, 1);
             CREATE INDEX IF NOT EXISTS events_open ON events (id) WHERE state IN (0, 1);
             CREATE TABLE IF NOT EXISTS dedup (dedup_key TEXT NOT NULL, digest TEXT NOT NULL,
               event_id INTEGER NOT NULL, received_at INTEGER NOT NULL,
               PRIMARY KEY (dedup_key, digest)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
             INSERT OR IGNORE INTO counters VALUES ('received', 0), ('duplicates', 0),
               ('conflicts', 0), ('pending', 0);",
        )
        .expect("the schema");
    connection
}

/// What one batch did, for the counters.
#[derive(Default)]
struct Counted {
    received: i64,
    duplicates: i64,
    conflicts: i64,
    stored: i64,
}

/// Stores `event` as the inbox would: a redelivery (same key and digest) is counted
/// and not stored; a known key with other content is stored as a conflict.
fn put(
    transaction: &rusqlite::Transaction<'_>,
    event: &NewEvent,
    counted: &mut Counted,
) -> rusqlite::Result<()> {
    use rusqlite::OptionalExtension as _;
    counted.received += 1;
    let digest = event.content_digest();
    let same: Option<i64> = transaction
        .prepare_cached("SELECT event_id FROM dedup WHERE dedup_key = ?1 AND digest = ?2")?
        .query_row((&event.dedup_key, &digest), |row| row.get(0))
        .optional()?;
    if same.is_some() {
        counted.duplicates += 1;
        return Ok(());
    }
    let key_known: bool = transaction
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM dedup WHERE dedup_key = ?1)")?
        .query_row([&event.dedup_key], |row| row.get(0))?;
    let received_at = i64::try_from(event.received_at).unwrap_or(i64::MAX);
    transaction
        .prepare_cached(
            "INSERT INTO events (dedup_key, action, canonical, body, content_type, received_at, state, attempts, due_at, conflict)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 0, ?6, ?7)",
        )?
        .execute((
            &event.dedup_key,
            &event.action,
            &event.canonical,
            &event.body[..],
            &event.content_type,
            received_at,
            key_known,
        ))?;
    let id = transaction.last_insert_rowid();
    transaction
        .prepare_cached("INSERT INTO dedup VALUES (?1, ?2, ?3, ?4)")?
        .execute((&event.dedup_key, &digest, id, received_at))?;
    counted.conflicts += i64::from(key_known);
    counted.stored += 1;
    Ok(())
}

fn count(transaction: &rusqlite::Transaction<'_>, counted: &Counted) -> rusqlite::Result<()> {
    let mut update =
        transaction.prepare_cached("UPDATE counters SET value = value + ?1 WHERE name = ?2")?;
    for (name, delta) in [
        ("received", counted.received),
        ("duplicates", counted.duplicates),
        ("conflicts", counted.conflicts),
        ("pending", counted.stored),
    ] {
        update.execute((delta, name))?;
    }
    Ok(())
}

/// The naive way: one transaction (one sync) per event, under a lock.
pub fn naive_sqlite(receiver: Receiver, path: &Path) -> Router {
    let connection = Arc::new(Mutex::new(sqlite(path)));
    checked(receiver, move |event, reply| {
        let connection = Arc::clone(&connection);
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().expect("the connection");
            let result = (|| {
                let transaction = connection.transaction()?;
                let mut counted = Counted::default();
                put(&transaction, &event, &mut counted)?;
                count(&transaction, &counted)?;
                transaction.commit()
            })();
            let _ = reply.send(result.map_err(|e| e.to_string()));
        });
    })
}

/// The inbox's work on SQLite with the inbox's group commit: a writer thread takes
/// every waiting event (up to 4096) into one transaction and answers each after it.
pub fn grouped_sqlite(receiver: Receiver, path: &Path) -> Router {
    let (jobs, queue) = mpsc::channel::<(NewEvent, Reply)>();
    let mut connection = sqlite(path);
    std::thread::spawn(move || {
        while let Ok(first) = queue.recv() {
            let mut batch = vec![first];
            while batch.len() < 4096 {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let result = (|| {
                let transaction = connection.transaction()?;
                let mut counted = Counted::default();
                for (event, _) in &batch {
                    put(&transaction, event, &mut counted)?;
                }
                count(&transaction, &counted)?;
                transaction.commit()
            })();
            let result = result.map_err(|e| e.to_string());
            for (_, reply) in batch {
                let _ = reply.send(result.clone());
            }
        }
    });
    let jobs = Mutex::new(jobs);
    checked(receiver, move |event, reply| {
        let _ = jobs.lock().expect("the queue").send((event, reply));
    })
}

/// PostgreSQL's ceiling for the inbox's ingest: each batch of waiting events (up to
/// 4096) in one multi-row `INSERT ... SELECT FROM unnest(...)` into the bare table
/// `table` (created here), on one connection of its own, answered after the commit.
pub async fn postgres_ceiling(receiver: Receiver, url: &str, table: &str) -> Router {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("a connection for the ceiling");
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (id BIGSERIAL PRIMARY KEY, dedup_key TEXT NOT NULL,
               action TEXT NOT NULL, canonical TEXT NOT NULL, body BYTEA NOT NULL, content_type TEXT,
               received_at BIGINT NOT NULL, state SMALLINT NOT NULL, due_at BIGINT NOT NULL)"
        ))
        .await
        .expect("the ceiling's table");
    let insert = format!(
        "INSERT INTO {table} (dedup_key, action, canonical, body, content_type, received_at, state, due_at)
         SELECT k, a, c, b, t, r, 0, r
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::bigint[]) AS u(k, a, c, b, t, r)"
    );
    let (jobs, mut queue) = tokio::sync::mpsc::unbounded_channel::<(NewEvent, Reply)>();
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(4096);
        while queue.recv_many(&mut batch, 4096).await > 0 {
            let column = |f: &dyn Fn(&NewEvent) -> Option<String>| -> Vec<Option<String>> {
                batch.iter().map(|(e, _)| f(e)).collect()
            };
            let keys = column(&|e| Some(e.dedup_key.clone()));
            let actions = column(&|e| Some(e.action.clone()));
            let canonicals = column(&|e| Some(e.canonical.clone()));
            let types = column(&|e| e.content_type.clone());
            let bodies: Vec<&[u8]> = batch.iter().map(|(e, _)| &e.body[..]).collect();
            let times: Vec<i64> = batch
                .iter()
                .map(|(e, _)| i64::try_from(e.received_at).unwrap_or(i64::MAX))
                .collect();
            let result = client
                .execute(
                    &insert,
                    &[&keys, &actions, &canonicals, &bodies, &types, &times],
                )
                .await
                .map(drop)
                .map_err(|e| e.to_string());
            for (_, reply) in batch.drain(..) {
                let _ = reply.send(result.clone());
            }
        }
    });
    checked(receiver, move |event, reply| {
        let _ = jobs.send((event, reply));
    })
}
