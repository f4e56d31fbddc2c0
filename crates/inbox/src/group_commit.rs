//! Group commit, the part both backends share: an operation waits with where its
//! typed answer goes ([`Job`]); a batch of them is applied in one transaction; each
//! caller hears its own outcome once the commit succeeded, or the commit's error if it
//! did not (then nothing of the batch was applied, so no caller may be told it was).
//!
//! How a batch is collected is the backend's: the embedded store's writer is a thread
//! (redb's commit blocks on an fsync), PostgreSQL's writers are tasks, one per kind of
//! operation so that each kind is one multi-row statement.

use tokio::sync::oneshot;

use crate::store::StoreError;

/// Where one operation's answer goes.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// An operation waiting for a group commit, and where its answer goes.
pub(crate) struct Job<I, O> {
    /// What to do.
    pub input: I,
    reply: Reply<O>,
}

impl<I, O: Send + 'static> Job<I, O> {
    /// A job, and the receiver its caller awaits.
    pub fn new(input: I) -> (Self, oneshot::Receiver<Result<O, StoreError>>) {
        let (reply, answer) = oneshot::channel();
        (Self { input, reply }, answer)
    }

    /// This job's outcome, to be sent once the batch is committed.
    pub fn answer(self, outcome: Result<O, StoreError>) -> Answer {
        Answer::new(self.reply, outcome)
    }

    /// No outcome: the batch is not committed (the answer is the commit's error).
    pub fn unanswered(self) -> Answer {
        Answer::new(self.reply, Err(StoreError::Closed))
    }
}

/// Sends a held-back outcome, given the commit's error if it failed.
type Deliver = Box<dyn FnOnce(Option<&StoreError>) + Send>;

/// An outcome decided within a batch, held back until the batch's commit ended.
pub(crate) struct Answer(Deliver);

impl Answer {
    fn new<O: Send + 'static>(reply: Reply<O>, outcome: Result<O, StoreError>) -> Self {
        Self(Box::new(move |commit_error: Option<&StoreError>| {
            let sent = match commit_error {
                None => outcome,
                Some(error) => Err(StoreError::Storage {
                    message: error.to_string(),
                    source: None,
                }),
            };
            // The caller may have gone (a cancelled request): nothing to tell.
            let _ = reply.send(sent);
        }))
    }
}

/// Tells each caller of a batch how it ended: its own outcome if `committed` is
/// `Ok`, the commit's error otherwise (logged once for the batch).
pub(crate) fn answer_all(answers: Vec<Answer>, committed: Result<(), StoreError>) {
    let error = committed.err();
    if let Some(error) = &error {
        tracing::error!(%error, operations = answers.len(), "inbox commit failed; nothing of it was applied");
    }
    for Answer(send) in answers {
        send(error.as_ref());
    }
}
