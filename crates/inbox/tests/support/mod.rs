//! A redb storage backend over a real file that counts, delays or fails its syncs and
//! writes: how the tests see that a put waits for the fsync, that concurrent puts
//! share one, and what a full disk does; and the random operations of the model test
//! that every backend runs.

#![allow(dead_code)]

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use redb::StorageBackend;
use redb::backends::FileBackend;
use thulium_inbox::conformance::ModelOp;

/// What the tests control and observe.
#[derive(Debug, Default)]
pub struct Faults {
    /// Completed syncs.
    pub syncs: AtomicU64,
    /// Fail every sync with an I/O error.
    pub fail_sync: AtomicBool,
    /// Fail every write with "no space left on device".
    pub disk_full: AtomicBool,
    /// Sleep this many milliseconds in every sync.
    pub sync_delay_ms: AtomicU64,
    /// When the last sync finished, as nanoseconds since `epoch`.
    pub last_sync_done_ns: AtomicU64,
    /// The reference point of `last_sync_done_ns`.
    pub epoch: std::sync::OnceLock<Instant>,
}

impl Faults {
    /// Nanoseconds since the epoch, now.
    pub fn now_ns(&self) -> u64 {
        self.epoch.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

#[derive(Debug)]
pub struct FaultyBackend {
    inner: FileBackend,
    faults: Arc<Faults>,
}

impl FaultyBackend {
    pub fn open(path: &Path, faults: Arc<Faults>) -> Self {
        faults.epoch.get_or_init(Instant::now);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap();
        Self {
            inner: FileBackend::new(file).unwrap(),
            faults,
        }
    }
}

fn io(kind: std::io::ErrorKind, message: &str) -> std::io::Error {
    std::io::Error::new(kind, message.to_string())
}

impl StorageBackend for FaultyBackend {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        if self.faults.disk_full.load(Ordering::SeqCst) && len > self.inner.len()? {
            return Err(io(
                std::io::ErrorKind::StorageFull,
                "No space left on device",
            ));
        }
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        let delay = self.faults.sync_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        if self.faults.fail_sync.load(Ordering::SeqCst) {
            return Err(io(std::io::ErrorKind::Other, "injected fsync failure"));
        }
        self.inner.sync_data()?;
        self.faults.syncs.fetch_add(1, Ordering::SeqCst);
        self.faults
            .last_sync_done_ns
            .store(self.faults.now_ns(), Ordering::SeqCst);
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        if self.faults.disk_full.load(Ordering::SeqCst) {
            return Err(io(
                std::io::ErrorKind::StorageFull,
                "No space left on device",
            ));
        }
        self.inner.write(offset, data)
    }
    fn close(&self) -> Result<(), std::io::Error> {
        self.inner.close()
    }
    fn try_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_range(start, end)
    }
    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }
    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.inner.lock_range(start, end)
    }
    fn lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.inner.lock_shared_range(start, end)
    }
    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.inner.unlock_range(start, end)
    }
    fn query_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

/// One random step of the model test (`conformance::check_against_model`).
pub fn model_op() -> impl Strategy<Value = ModelOp> {
    prop_oneof![
        4 => (0u64..12, 0u32..2).prop_map(|(id, variant)| ModelOp::Put { id, variant }),
        3 => (1usize..5).prop_map(ModelOp::Claim),
        2 => any::<usize>().prop_map(ModelOp::Ack),
        1 => any::<usize>().prop_map(ModelOp::Retry),
        1 => any::<usize>().prop_map(ModelOp::Dead),
        1 => Just(ModelOp::ReplayDead),
        1 => Just(ModelOp::Release),
    ]
}
