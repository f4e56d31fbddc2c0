//! The writer thread: group commit on the inbox file. It takes every operation
//! waiting (up to [`MAX_BATCH`]) into one transaction and one fsync, so concurrent
//! callers share the cost of the sync; each is answered only after that commit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use redb::Database;
use tokio::sync::Notify;

use super::apply::apply;
use super::file::Handle;
use super::tables::Tables;
use crate::group_commit::{Answer, Job, answer_all};
use crate::model::{
    Attempt, ClaimToken, Claimed, EventId, NewEvent, Pause, Purged, PutOutcome, Replay, UnixMs,
};
use crate::routing::RouteName;
use crate::store::{ClaimRequest, StoreError};
use crate::transition::Finish;

/// The most operations one group commit takes.
pub const MAX_BATCH: usize = 4096;

/// One write, with where its typed answer goes.
pub(super) enum Op {
    /// The event and its dedup identity, computed by the caller (a SHA-256 of the
    /// canonical JSON: on the writer's one thread it cost a tenth of a put).
    Put(Job<(NewEvent, String), PutOutcome>),
    Claim(Job<ClaimRequest, Vec<Claimed>>),
    Extend(Job<(ClaimToken, Duration), ()>),
    GiveBack(Job<ClaimToken, ()>),
    Finish(Job<(ClaimToken, Finish, Attempt), ()>),
    SetAside(Job<(EventId, String), ()>),
    Replay(Job<Replay, u64>),
    Purge(Job<(UnixMs, UnixMs), Purged>),
    Release(Job<(), u64>),
    Ping(Job<(), ()>),
    SetPause(Job<(RouteName, Option<Pause>), ()>),
}

impl Op {
    /// The answer of an operation the batch never reached (the commit failed).
    fn unanswered(self) -> Answer {
        match self {
            Op::Put(job) => job.unanswered(),
            Op::Claim(job) => job.unanswered(),
            Op::Extend(job) => job.unanswered(),
            Op::GiveBack(job) => job.unanswered(),
            Op::Finish(job) => job.unanswered(),
            Op::SetAside(job) => job.unanswered(),
            Op::Replay(job) => job.unanswered(),
            Op::Purge(job) => job.unanswered(),
            Op::Release(job) => job.unanswered(),
            Op::Ping(job) => job.unanswered(),
            Op::SetPause(job) => job.unanswered(),
        }
    }
}

/// Runs until every sender is gone: collects a batch, commits it, answers it.
pub(super) fn writer_loop(
    handle: &Handle,
    requests: &mpsc::Receiver<Op>,
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
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let count = batch.len();
        let db = match handle.get() {
            Ok(db) => db,
            Err(error) => {
                answer_all(batch.into_iter().map(Op::unanswered).collect(), Err(error));
                continue;
            }
        };
        let mut answers = Vec::with_capacity(count);
        let committed = match super::file::unpanicked(|| commit_batch(&db, batch, &mut answers)) {
            Ok(committed) => committed,
            Err(panic) => {
                // The batch's callers hear that their operations were not applied
                // (their replies were dropped with the batch); the next batch is tried
                // afresh, and what does not touch the bad page still works.
                tracing::error!(path = %handle.path.display(), %panic, "the inbox writer failed on the file (it may be corrupt); the batch was not applied");
                let error = StoreError::Storage {
                    message: format!(
                        "the operation was not applied: the inbox at {} failed on its file ({panic}); it may be corrupt",
                        handle.path.display()
                    ),
                    source: None,
                };
                answer_all(std::mem::take(&mut answers), Err(error));
                continue;
            }
        };
        match committed {
            Ok(Committed { open, makes_due }) => {
                backlog.store(open, Ordering::Relaxed);
                if makes_due {
                    work.notify_waiters();
                }
                answer_all(answers, Ok(()));
            }
            Err(error) => {
                let reopen = matches!(error, redb::Error::PreviousIo | redb::Error::Io(_));
                answer_all(answers, Err(StoreError::storage(error.to_string(), error)));
                if reopen {
                    handle.reopen();
                }
            }
        }
    }
}

/// What a committed batch left behind.
struct Committed {
    /// Pending plus in-flight events.
    open: u64,
    /// Whether an event may have become due (wakes the dispatcher).
    makes_due: bool,
}

/// Applies `batch` in one transaction and commits it; every operation's answer goes
/// to `answers`, whether the commit succeeds or not.
fn commit_batch(
    db: &Database,
    batch: Vec<Op>,
    answers: &mut Vec<Answer>,
) -> Result<Committed, redb::Error> {
    let mut ops = batch.into_iter();
    let committed = apply_all(db, &mut ops, answers);
    // What the batch never reached (it failed first) hears the commit's error too.
    answers.extend(ops.map(Op::unanswered));
    committed
}

/// Applies operations from `ops` until it is empty or one fails, then commits.
fn apply_all(
    db: &Database,
    ops: &mut impl Iterator<Item = Op>,
    answers: &mut Vec<Answer>,
) -> Result<Committed, redb::Error> {
    let txn = db.begin_write()?;
    let mut makes_due = false;
    let open = {
        let mut tables = Tables::open(&txn)?;
        for op in ops.by_ref() {
            match apply(&mut tables, op) {
                Ok((answer, due)) => {
                    answers.push(answer);
                    makes_due |= due;
                }
                Err((error, answer)) => {
                    answers.push(answer);
                    return Err(error);
                }
            }
        }
        let open = tables.open_count()?;
        tables.flush()?;
        open
    };
    txn.commit()?;
    Ok(Committed { open, makes_due })
}
