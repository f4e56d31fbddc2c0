//! State changes on PostgreSQL: lock the rows concerned (`FOR UPDATE`, claims with
//! `SKIP LOCKED`), ask [`crate::transition`] what becomes of each, and write what it
//! decided in one multi-row `UPDATE`. No rule of an event's life is decided here.

use std::collections::HashMap;

use deadpool_postgres::{Object, Transaction};
use tokio_postgres::types::ToSql;

use super::connect::db_error;
use super::rows::{COLUMNS, LIFECYCLE_COLUMNS, StateCode, event_of, i, lifecycle_of};
use super::schema::Names;
use super::{Inner, PostgresStore};
use crate::model::{
    Attempt, ClaimToken, Claimed, EventId, MAX_KEPT_ATTEMPTS, Replay, UnixMs, now_ms,
};
use crate::store::{ClaimRequest, StoreError};
use crate::transition::{
    CLAIMABLE, Change, Decision, Finish, Lifecycle, RELEASE_FROM, REPLAY_ALL_DEAD_FROM,
    REPLAY_FINISHED_FROM, Refusal, decide, fresh_token,
};

/// A change a worker asks for under its claim, waiting for the change writer.
pub(super) struct ClaimChange {
    pub claim: ClaimToken,
    pub kind: ClaimChangeKind,
}

pub(super) enum ClaimChangeKind {
    /// A heartbeat: the lease ends at this time.
    Extend(UnixMs),
    /// The attempt ended.
    Finish(Finish, Attempt),
    /// Given back unstarted.
    GiveBack,
}

impl ClaimChange {
    fn change(&self, now: UnixMs) -> Change<'_> {
        match &self.kind {
            ClaimChangeKind::Extend(until) => Change::Extend {
                token: self.claim.token,
                until: *until,
            },
            ClaimChangeKind::Finish(how, attempt) => Change::Finish {
                token: self.claim.token,
                how: *how,
                attempt,
                now,
            },
            ClaimChangeKind::GiveBack => Change::GiveBack {
                token: self.claim.token,
                now,
            },
        }
    }

    /// Whether this change, if it applies, makes the event due (a retry).
    pub fn makes_due(&self) -> bool {
        matches!(
            self.kind,
            ClaimChangeKind::Finish(Finish::RetryAt(_), _) | ClaimChangeKind::GiveBack
        )
    }
}

/// Writes a batch of workers' changes in one transaction; per change, its outcome.
pub(super) async fn change_batch(
    inner: &Inner,
    batch: &[&ClaimChange],
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let mut client = inner
        .pool
        .get()
        .await
        .map_err(|e| db_error("no database connection", e))?;
    let tx = begin(&mut client).await?;
    let mut ids: Vec<i64> = batch.iter().map(|c| i(c.claim.id.0)).collect();
    ids.sort_unstable();
    ids.dedup();
    let current = lock(&tx, &inner.names, "id = ANY($1)", &[&ids]).await?;
    let now = now_ms();
    let changes: Vec<(EventId, Change<'_>)> =
        batch.iter().map(|c| (c.claim.id, c.change(now))).collect();
    let (results, writes) = decide_all(current, &changes);
    write(&tx, &inner.names, &writes).await?;
    commit(tx).await?;
    Ok(results
        .into_iter()
        .zip(&changes)
        .map(|(result, (id, _))| result.map(drop).map_err(|r| r.into_error(*id)))
        .collect())
}

/// Claims up to `request.max` due events, oldest due first; rows other hosts are
/// claiming are skipped, not waited for.
pub(super) async fn claim(
    store: &PostgresStore,
    request: &ClaimRequest,
) -> Result<Vec<Claimed>, StoreError> {
    let mut client = store.client().await?;
    let tx = begin(&mut client).await?;
    let names = &store.inner.names;
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM {events} WHERE route = $3 AND state IN {claimable} AND due_at <= $1
                 ORDER BY due_at, id LIMIT $2 FOR UPDATE SKIP LOCKED",
                events = names.events,
                claimable = StateCode::list(&CLAIMABLE),
            ),
            &[&i(request.now), &(request.max as i64), &request.route.as_str()],
        )
        .await
        .map_err(|e| db_error("cannot claim events", e))?;
    let lease_until = request.now + crate::model::ms(request.lease);
    let mut claimed = Vec::with_capacity(rows.len());
    let mut writes = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut event = event_of(row);
        let token = fresh_token();
        let change = Change::Claim {
            token,
            now: request.now,
            lease_until,
        };
        if let Ok(decision) = decide(Some(event.lifecycle()), &change) {
            writes.push(Write::of(event.id, &decision));
            event.apply(decision);
            claimed.push(Claimed {
                claim: ClaimToken {
                    id: event.id,
                    token,
                },
                event,
            });
        }
    }
    write(&tx, names, &writes).await?;
    commit(tx).await?;
    claimed.sort_by_key(|c| c.event.id);
    Ok(claimed)
}

/// Applies one change to one event (an operator's set-aside or replay).
pub(super) async fn change_one(
    client: &mut Object,
    names: &Names,
    id: EventId,
    change: &Change<'_>,
) -> Result<(), StoreError> {
    let tx = begin(client).await?;
    let current = lock(&tx, names, "id = $1", &[&i(id.0)]).await?;
    let (mut results, writes) = decide_all(current, &[(id, *change)]);
    write(&tx, names, &writes).await?;
    commit(tx).await?;
    match results.pop() {
        Some(Ok(_)) => Ok(()),
        Some(Err(refusal)) => Err(refusal.into_error(id)),
        None => Err(StoreError::NotFound(id)),
    }
}

/// Applies a bulk change to every event `condition` selects; returns how many it
/// changed.
async fn change_where(
    client: &mut Object,
    names: &Names,
    condition: &str,
    params: &[&(dyn ToSql + Sync)],
    change: Change<'_>,
) -> Result<u64, StoreError> {
    let tx = begin(client).await?;
    let current = lock(&tx, names, condition, params).await?;
    let changes: Vec<(EventId, Change<'_>)> = current.iter().map(|(id, _)| (*id, change)).collect();
    let (_, writes) = decide_all(current, &changes);
    write(&tx, names, &writes).await?;
    commit(tx).await?;
    Ok(writes.len() as u64)
}

/// Replays the selected events.
pub(super) async fn replay(
    client: &mut Object,
    names: &Names,
    selection: &Replay,
) -> Result<u64, StoreError> {
    let now = now_ms();
    match selection {
        Replay::Id(id) => change_one(client, names, *id, &Change::ReplayOne { now })
            .await
            .map(|()| 1),
        Replay::AllDead => {
            let condition = format!("state IN {}", StateCode::list(&REPLAY_ALL_DEAD_FROM));
            change_where(
                client,
                names,
                &condition,
                &[],
                Change::ReplayAllDead { now },
            )
            .await
        }
        Replay::DeadOn(route) => {
            let condition = format!(
                "route = $1 AND state IN {}",
                StateCode::list(&REPLAY_ALL_DEAD_FROM)
            );
            let change = Change::ReplayAllDead { now };
            change_where(client, names, &condition, &[&route.as_str()], change).await
        }
        Replay::ReceivedBetween { from, to } => {
            let condition = format!(
                "state IN {} AND received_at >= $1 AND received_at < $2",
                StateCode::list(&REPLAY_FINISHED_FROM)
            );
            let change = Change::ReplayFinished { now };
            change_where(client, names, &condition, &[&i(*from), &i(*to)], change).await
        }
    }
}

/// Frees every claim.
pub(super) async fn release(client: &mut Object, names: &Names) -> Result<u64, StoreError> {
    let condition = format!("state IN {}", StateCode::list(&RELEASE_FROM));
    change_where(
        client,
        names,
        &condition,
        &[],
        Change::Release { now: now_ms() },
    )
    .await
}

async fn begin(client: &mut Object) -> Result<Transaction<'_>, StoreError> {
    client
        .transaction()
        .await
        .map_err(|e| db_error("cannot start a transaction", e))
}

async fn commit(tx: Transaction<'_>) -> Result<(), StoreError> {
    tx.commit()
        .await
        .map_err(|e| db_error("cannot commit the change", e))
}

/// Locks the events `condition` selects (in id order, so that hosts never wait for
/// each other in a cycle) and reads their lifecycles.
async fn lock(
    tx: &Transaction<'_>,
    names: &Names,
    condition: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<(EventId, Lifecycle)>, StoreError> {
    let rows = tx
        .query(
            &format!(
                "SELECT {LIFECYCLE_COLUMNS} FROM {} WHERE {condition} ORDER BY id FOR UPDATE",
                names.events
            ),
            params,
        )
        .await
        .map_err(|e| db_error("cannot read the events", e))?;
    Ok(rows.iter().map(lifecycle_of).collect())
}

/// What to write for one event a batch changed: its last lifecycle, the attempts
/// to add to its history, and its last error if one was recorded.
struct Write {
    id: EventId,
    after: Lifecycle,
    records: Vec<Attempt>,
    last_error: Option<String>,
}

impl Write {
    fn of(id: EventId, decision: &Decision) -> Self {
        Self {
            id,
            after: decision.after,
            records: decision.record.iter().cloned().collect(),
            last_error: decision.last_error().map(str::to_owned),
        }
    }
}

/// Decides `changes` in order on the locked lifecycles (a later change to the same
/// event sees what an earlier one made of it); returns each change's result and,
/// per changed event, what to write.
fn decide_all(
    current: Vec<(EventId, Lifecycle)>,
    changes: &[(EventId, Change<'_>)],
) -> (Vec<Result<Decision, Refusal>>, Vec<Write>) {
    let mut now: HashMap<EventId, Lifecycle> = current.into_iter().collect();
    let mut writes: Vec<Write> = Vec::new();
    let mut position: HashMap<EventId, usize> = HashMap::new();
    let results = changes
        .iter()
        .map(|(id, change)| {
            let decision = decide(now.get(id).copied(), change)?;
            now.insert(*id, decision.after);
            match position.get(id) {
                Some(&at) => {
                    let write = &mut writes[at];
                    write.after = decision.after;
                    write.records.extend(decision.record.iter().cloned());
                    if let Some(error) = decision.last_error() {
                        write.last_error = Some(error.to_owned());
                    }
                }
                None => {
                    position.insert(*id, writes.len());
                    writes.push(Write::of(*id, &decision));
                }
            }
            Ok(decision)
        })
        .collect();
    (results, writes)
}

/// Writes the decided lifecycles, appends the recorded attempts to each history
/// (keeping the newest [`MAX_KEPT_ATTEMPTS`]) and sets the last errors: one statement.
async fn write(tx: &Transaction<'_>, names: &Names, writes: &[Write]) -> Result<(), StoreError> {
    if writes.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = writes.iter().map(|w| i(w.id.0)).collect();
    let states: Vec<i16> = writes
        .iter()
        .map(|w| StateCode::of(w.after.state))
        .collect();
    let attempts: Vec<i32> = writes
        .iter()
        .map(|w| i32::try_from(w.after.attempts).unwrap_or(i32::MAX))
        .collect();
    let dues: Vec<i64> = writes.iter().map(|w| i(w.after.due_at)).collect();
    let finished: Vec<Option<i64>> = writes.iter().map(|w| w.after.finished_at.map(i)).collect();
    let tokens: Vec<Option<i64>> = writes.iter().map(|w| w.after.claim_token.map(i)).collect();
    let errors: Vec<Option<&str>> = writes.iter().map(|w| w.last_error.as_deref()).collect();
    let records = writes
        .iter()
        .map(|w| {
            if w.records.is_empty() {
                Ok(None)
            } else {
                serde_json::to_string(&w.records).map(Some)
            }
        })
        .collect::<Result<Vec<Option<String>>, _>>()
        .map_err(|e| db_error("cannot encode the attempts", e))?;
    tx.execute(
        &format!(
            "UPDATE {events} e SET state = u.state, attempts = u.attempts, due_at = u.due_at,
               finished_at = u.finished_at, claim_token = u.token,
               last_error = COALESCE(u.error, e.last_error),
               history = CASE WHEN u.records IS NULL THEN e.history ELSE (
                 SELECT COALESCE(jsonb_agg(h.x ORDER BY h.o), '[]'::jsonb)
                 FROM jsonb_array_elements(e.history || u.records::jsonb) WITH ORDINALITY AS h(x, o)
                 WHERE h.o > jsonb_array_length(e.history || u.records::jsonb) - {MAX_KEPT_ATTEMPTS}
               ) END
             FROM unnest($1::bigint[], $2::smallint[], $3::integer[], $4::bigint[], $5::bigint[],
                         $6::bigint[], $7::text[], $8::text[])
               AS u(id, state, attempts, due_at, finished_at, token, error, records)
             WHERE e.id = u.id",
            events = names.events
        ),
        &[
            &ids, &states, &attempts, &dues, &finished, &tokens, &errors, &records,
        ],
    )
    .await
    .map_err(|e| db_error("cannot record the change", e))?;
    Ok(())
}
