//! Group commit on PostgreSQL: one writer task per kind of operation takes every
//! waiting one into one transaction of multi-row statements (`unnest` of arrays),
//! one round-trip set and one WAL flush for many. Puts are one kind; the changes a
//! worker asks for (heartbeats, acks, retries, dead letters) are the other.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;

use super::changes::{ClaimChange, change_batch};
use super::connect::{db_error, is_connection_lost};
use super::rows::{StateCode, i};
use super::{Inner, MAX_BATCH};
use crate::group_commit::{Job, answer_all};
use crate::model::{EventId, NewEvent, PutOutcome};
use crate::routing::RouteName;
use crate::store::StoreError;
use crate::transition::{CLAIMABLE, Lifecycle, decide_put};

/// A kind of operation written in batches: every waiting one in one round of
/// statements.
pub(super) trait Batched: Send + Sync + Sized + 'static {
    /// What each operation returns.
    type Outcome: Send + 'static;
    /// Writes one batch in one transaction; per operation, its outcome.
    fn write(
        inner: &Inner,
        batch: &[&Self],
    ) -> impl Future<Output = Result<Vec<Result<Self::Outcome, StoreError>>, StoreError>> + Send;
    /// Whether the written batch may have made events due (wakes this process's
    /// dispatcher).
    fn wakes(batch: &[&Self], outcomes: &[Result<Self::Outcome, StoreError>]) -> bool;
}

/// Takes every waiting operation of one kind into a batch, writes it, and answers
/// each; after a lost connection, flushes the pool and tries the batch once more
/// (every batched operation is safe to repeat: puts are put-if-absent, changes are
/// fenced by their claim token and decided again on the rows as they are then).
pub(super) async fn write_batches<T: Batched>(
    inner: std::sync::Weak<Inner>,
    mut queue: mpsc::Receiver<Job<T, T::Outcome>>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let Some(inner) = inner.upgrade() else { return };
        let items: Vec<&T> = batch.iter().map(|job| &job.input).collect();
        let mut result = T::write(&inner, &items).await;
        if result.as_ref().is_err_and(is_connection_lost) {
            // Every idle connection may be as dead as this one: drop them all.
            inner.pool.retain(|_, _| false);
            result = T::write(&inner, &items).await;
        }
        if result
            .as_ref()
            .is_err_and(|error| items.len() > 1 && !is_connection_lost(error))
        {
            // The database refused the batch for something in it (a value it cannot
            // hold): one bad operation must not fail the others. Each is written
            // alone, and only the one the database refuses is answered with the error.
            let mut outcomes = Vec::with_capacity(items.len());
            for item in &items {
                outcomes.push(match T::write(&inner, &[item]).await {
                    Ok(mut one) => one.pop().unwrap_or(Err(StoreError::Closed)),
                    Err(error) => Err(error),
                });
            }
            result = Ok(outcomes);
        }
        match result {
            Ok(outcomes) => {
                if T::wakes(&items, &outcomes) {
                    inner.work.notify_waiters();
                }
                let answers = batch.drain(..).zip(outcomes).map(|(job, o)| job.answer(o));
                answer_all(answers.collect(), Ok(()));
            }
            Err(error) => {
                let answers = batch.drain(..).map(Job::unanswered).collect();
                answer_all(answers, Err(error));
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

impl Batched for ClaimChange {
    type Outcome = ();

    fn write(
        inner: &Inner,
        batch: &[&Self],
    ) -> impl Future<Output = Result<Vec<Result<(), StoreError>>, StoreError>> + Send {
        change_batch(inner, batch)
    }

    fn wakes(batch: &[&Self], outcomes: &[Result<(), StoreError>]) -> bool {
        batch
            .iter()
            .zip(outcomes)
            .any(|(change, outcome)| change.makes_due() && outcome.is_ok())
    }
}

/// `sql` prepared once per connection and kept: the statements of a put batch are
/// the same every time (the connection plans each execution anew; see `connect`).
async fn cached(
    transaction: &deadpool_postgres::Transaction<'_>,
    sql: &str,
) -> Result<tokio_postgres::Statement, StoreError> {
    transaction
        .prepare_cached(sql)
        .await
        .map_err(|e| db_error("cannot prepare the statements that store events", e))
}

pub(super) async fn put_batch(
    inner: &Inner,
    events: &[&NewEvent],
) -> Result<Vec<PutOutcome>, StoreError> {
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
    // Each key within its account: two accounts' events never pass for each other's.
    let scopes: Vec<std::borrow::Cow<'_, str>> = events.iter().map(|e| e.dedup_scope()).collect();
    let keys: Vec<&str> = scopes.iter().map(|s| &**s).collect();
    let digests: Vec<String> = events.iter().map(|e| e.content_digest()).collect();
    let received: Vec<i64> = events.iter().map(|e| i(e.received_at)).collect();
    // 1. Claim each (key, digest) identity; the winners get a fresh event id. Within
    //    the batch the same identity may come twice: the first wins.
    // 2. The first id stored under each key tells conflicts apart.
    // Sent together (tokio-postgres pipelines them): the server runs them in order,
    // the second sees the first's rows, and the batch waits for one round trip, not
    // two.
    let claim = cached(&transaction, &format!(
        "INSERT INTO {dedup} (dedup_key, digest, event_id, received_at)
         SELECT k, d, nextval(pg_get_serial_sequence('{events_raw}', 'id')), r
         FROM (SELECT DISTINCT ON (k, d) k, d, r, o FROM unnest($1::text[], $2::text[], $3::bigint[])
               WITH ORDINALITY AS t(k, d, r, o) ORDER BY k, d, o) AS input
         ORDER BY k, d -- one lock order for every writer: no deadlocks between hosts
         ON CONFLICT DO NOTHING
         RETURNING dedup_key, digest, event_id",
        dedup = names.dedup,
        events_raw = names.events.replace('"', "")
    )).await?;
    let first_ids = cached(
        &transaction,
        &format!(
            "SELECT dedup_key, min(event_id) FROM {} WHERE dedup_key = ANY($1) GROUP BY dedup_key",
            names.dedup
        ),
    )
    .await?;
    let claim_parameters: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
        [&keys, &digests, &received];
    let first_parameters: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&keys];
    let (claimed, first_rows) = tokio::try_join!(
        transaction.query(&claim, &claim_parameters),
        transaction.query(&first_ids, &first_parameters),
    )
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
    let first: std::collections::HashMap<String, i64> = first_rows
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    // 3. The new events themselves.
    let mut outcomes = vec![None; events.len()];
    let mut rows: Vec<(usize, i64, bool)> = Vec::new();
    for position in 0..events.len() {
        let identity = (keys[position].to_string(), digests[position].clone());
        if let Some(id) = won.remove(&identity) {
            let key_known = first.get(keys[position]).is_some_and(|f| *f != id);
            let outcome = decide_put(None, key_known, EventId(id as u64));
            rows.push((position, id, matches!(outcome, PutOutcome::Conflict(_))));
            outcomes[position] = Some(outcome);
        }
    }
    if !rows.is_empty() {
        // One row per route: the first gets the id the dedup row holds, the others
        // the sequence's next (consecutive within the statement's order). An event
        // no route takes is one row on the unrouted route, done at once.
        let unrouted = [RouteName::unrouted()];
        let entries: Vec<(usize, Option<i64>, bool, &RouteName)> = rows
            .iter()
            .flat_map(|&(position, id, conflict)| {
                let routes = &events[position].routes;
                let routes = if routes.is_empty() {
                    &unrouted[..]
                } else {
                    &routes[..]
                };
                routes
                    .iter()
                    .enumerate()
                    .map(move |(n, route)| (position, (n == 0).then_some(id), conflict, route))
            })
            .collect();
        let ids: Vec<Option<i64>> = entries.iter().map(|r| r.1).collect();
        let conflicts: Vec<bool> = entries.iter().map(|r| r.2).collect();
        let routes: Vec<&str> = entries.iter().map(|r| r.3.as_str()).collect();
        let event = |r: &(usize, Option<i64>, bool, &RouteName)| events[r.0];
        let row_keys: Vec<&str> = entries
            .iter()
            .map(|r| event(r).dedup_key.as_str())
            .collect();
        let actions: Vec<&str> = entries.iter().map(|r| event(r).action.as_str()).collect();
        let canonicals: Vec<&str> = entries
            .iter()
            .map(|r| event(r).canonical.as_str())
            .collect();
        let bodies: Vec<&[u8]> = entries.iter().map(|r| &event(r).body[..]).collect();
        let content_types: Vec<Option<&str>> = entries
            .iter()
            .map(|r| event(r).content_type.as_deref())
            .collect();
        let times: Vec<i64> = entries.iter().map(|r| i(event(r).received_at)).collect();
        let accounts: Vec<Option<&str>> = entries
            .iter()
            .map(|r| event(r).account.as_ref().map(|a| a.as_str()))
            .collect();
        let lifecycles: Vec<Lifecycle> = entries
            .iter()
            .map(|r| Lifecycle::received(event(r).received_at, !r.3.is_unrouted()))
            .collect();
        let states: Vec<i16> = lifecycles.iter().map(|l| StateCode::of(l.state)).collect();
        let finished: Vec<Option<i64>> = lifecycles.iter().map(|l| l.finished_at.map(i)).collect();
        transaction
            .execute(
            &cached(&transaction, &format!(
                    "INSERT INTO {} (id, dedup_key, action, canonical, body, content_type, received_at, state, due_at, finished_at, conflict, route, account)
                     SELECT COALESCE(id, nextval(pg_get_serial_sequence('{}', 'id'))), k, a, c, b, t, r, s, r, f, x, o, m
                     FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::text[], $7::bigint[], $8::bool[], $9::text[], $10::smallint[], $11::bigint[], $12::text[])
                       WITH ORDINALITY AS u(id, k, a, c, b, t, r, x, o, s, f, m, n)
                     ORDER BY n",
                    names.events,
                    names.events.replace('"', ""),
                )).await?,
                &[&ids, &row_keys, &actions, &canonicals, &bodies, &content_types, &times, &conflicts, &routes, &states, &finished, &accounts],
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
            &cached(&transaction, &format!(
                    "SELECT d.dedup_key, d.digest, d.event_id FROM {} d
                     JOIN unnest($1::text[], $2::text[]) AS u(k, g) ON d.dedup_key = u.k AND d.digest = u.g",
                    names.dedup
                )).await?,
                &[&missing_keys, &missing_digests],
            )
            .await
            .map_err(|e| db_error("cannot store the events", e))?
            .iter()
            .map(|row| ((row.get(0), row.get(1)), row.get(2)))
            .collect();
        // A duplicate within this batch points at the event its first copy stored.
        let in_batch: std::collections::HashMap<(String, String), EventId> = (0..events.len())
            .filter_map(|p| {
                outcomes[p].map(|o| ((keys[p].to_string(), digests[p].clone()), o.id()))
            })
            .collect();
        for position in missing {
            let identity = (keys[position].to_string(), digests[position].clone());
            let same = in_batch
                .get(&identity)
                .copied()
                .or_else(|| known.get(&identity).map(|id| EventId(*id as u64)))
                .ok_or_else(|| StoreError::Storage {
                    message: "a concurrent writer holds this event's dedup key; deliver it again"
                        .into(),
                    source: None,
                })?;
            outcomes[position] = Some(decide_put(Some(same), true, same));
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
            &cached(&transaction, &format!(
                "INSERT INTO {} AS c (name, shard, value)
                 SELECT n, $1, v FROM unnest(ARRAY['received', 'duplicates', 'conflicts'], $2::bigint[]) AS u(n, v)
                 WHERE v > 0
                 ON CONFLICT (name, shard) DO UPDATE SET value = c.value + EXCLUDED.value",
                names.counters
            )).await?,
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

pub(super) async fn backlog_refresher(inner: std::sync::Weak<Inner>) {
    loop {
        {
            let Some(inner) = inner.upgrade() else { return };
            if let Ok(client) = inner.pool.get().await {
                let query = format!(
                    "SELECT count(*) FROM {} WHERE state IN {}",
                    inner.names.events,
                    StateCode::list(&CLAIMABLE)
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
