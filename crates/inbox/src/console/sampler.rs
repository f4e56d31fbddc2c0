//! The counters sampled every few seconds for the overview's throughput chart.

use std::collections::VecDeque;
use std::sync::{Mutex, Weak};
use std::time::Duration;

use crate::model::{UnixMs, now_ms};

/// How often the overview's throughput chart takes a sample, and how many it keeps
/// (one hour).
const SAMPLE_EVERY: Duration = Duration::from_secs(15);
pub(super) const SAMPLES: usize = 240;

/// The counters at one moment.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sample {
    pub(super) at: UnixMs,
    pub(super) received: u64,
    pub(super) finished: u64,
    pub(super) open: u64,
}
use crate::store::Store;

/// Takes a sample of the counters every [`SAMPLE_EVERY`] while the console lives.
pub(super) async fn sample_stats<S: Store>(store: S, samples: Weak<Mutex<VecDeque<Sample>>>) {
    loop {
        if let Ok(stats) = store.stats().await {
            let Some(samples) = samples.upgrade() else {
                return;
            };
            let mut samples = samples.lock().unwrap_or_else(|p| p.into_inner());
            if samples.len() == SAMPLES {
                samples.pop_front();
            }
            samples.push_back(Sample {
                at: now_ms(),
                received: stats.received,
                finished: stats.done + stats.dead,
                open: stats.open(),
            });
        } else if samples.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}
