//! Text searches on a thread of their own at the lowest CPU priority: a search
//! reads every event of its window (text has no index in the file), and on a
//! small machine a read that long, at the same priority as the threads that store
//! deliveries, shows in the deliveries' latency. At `nice 19` the scheduler gives
//! the searcher only the time nobody else wants.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use redb::Database;

use super::file::{storage, unpanicked};
use super::read;
use crate::model::{Filter, StoredEvent};
use crate::store::StoreError;

type Search = Box<dyn FnOnce() + Send>;

/// The search thread, started at the first search, ended with the store.
#[derive(Default)]
pub(super) struct Searcher {
    sender: OnceLock<Mutex<mpsc::Sender<Search>>>,
}

impl Searcher {
    /// Lists `filter` (which has text) on the search thread.
    pub(super) async fn list(
        &self,
        db: Arc<Database>,
        filter: Filter,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let search: Search = Box::new(move || {
            let found = unpanicked(|| in_chunks(&db, &filter)).unwrap_or_else(|panic| {
                Err(StoreError::Storage {
                    message: format!("a search failed on the file; it may be corrupt ({panic})"),
                    source: None,
                })
            });
            let _ = answer.send(found);
        });
        self.sender()?
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(search)
            .map_err(|_| StoreError::Closed)?;
        answered.await.map_err(|_| StoreError::Closed)?
    }

    fn sender(&self) -> Result<&Mutex<mpsc::Sender<Search>>, StoreError> {
        if let Some(sender) = self.sender.get() {
            return Ok(sender);
        }
        let (sender, searches) = mpsc::channel::<Search>();
        std::thread::Builder::new()
            .name("inbox-search".into())
            .spawn(move || {
                lowest_priority();
                while let Ok(search) = searches.recv() {
                    search();
                }
            })
            .map_err(|e| storage(redb::StorageError::Io(e)))?;
        // Two first searches at once: the loser's thread ends with its channel.
        Ok(self.sender.get_or_init(|| Mutex::new(sender)))
    }
}

/// Ids read per read transaction: short transactions, with a pause between them,
/// leave the file to the writer most of the time.
const CHUNK: u64 = 500;

/// [`read::read_list`] over `filter`'s window, newest first, [`CHUNK`] ids at a
/// time.
fn in_chunks(db: &Database, filter: &Filter) -> Result<Vec<StoredEvent>, StoreError> {
    use redb::{ReadableDatabase as _, ReadableTable as _};
    let limit = filter.page_size();
    let lower = filter.after.map_or(0, |a| a.0.saturating_add(1));
    let mut upper = match filter.before {
        Some(before) => before.0,
        None => {
            let txn = db.begin_read().map_err(storage)?;
            let lives = txn.open_table(super::tables::LIVES).map_err(storage)?;
            match lives.last().map_err(storage)? {
                Some((id, _)) => id.value() + 1,
                None => return Ok(Vec::new()),
            }
        }
    };
    let mut page = Vec::new();
    while upper > lower && page.len() < limit {
        let from = upper.saturating_sub(CHUNK).max(lower);
        let chunk = Filter {
            before: Some(crate::model::EventId(upper)),
            after: from.checked_sub(1).map(crate::model::EventId),
            limit: Some(limit - page.len()),
            ..filter.clone()
        };
        page.extend(read::read_list(db, &chunk)?);
        upper = from;
        std::thread::yield_now();
    }
    Ok(page)
}

/// This thread at `nice 19`, where the system lets it (Linux: per thread).
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    {
        let thread = rustix::thread::gettid();
        if let Err(error) = rustix::process::setpriority_process(Some(thread), 19) {
            tracing::debug!(%error, "the search thread keeps its priority");
        }
    }
}
