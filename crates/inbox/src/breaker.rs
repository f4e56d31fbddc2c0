//! A route's circuit breaker and pause gate: what its dispatcher asks before it
//! claims.
//!
//! A route whose destination fails many times in a row (down, overloaded) is paused
//! by its own dispatcher, as a circuit breaker opens: its entries wait instead of
//! spending their attempts against a destination that cannot take them, and the
//! dispatcher stops hammering it. After a wait (doubling, up to a limit) one entry is
//! tried (half-open); if it is taken the route resumes, else it waits again. The
//! pause is stored ([`crate::Store::set_pause`]), so every host's dispatchers of the
//! route honour it, the console and the command line show it, and an operator's
//! resume ends it at once. An operator's own pause has no probe: only a resume ends
//! it.
//!
//! `Breaker` holds the rules (pure, tested below); `Gate` applies them around the
//! store for one dispatcher.

use std::time::{Duration, Instant};

use crate::model::{Pause, UnixMs, ms, now_ms};
use crate::routing::RouteName;
use crate::store::Store;

/// When a route's breaker opens and how long it waits before a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Failed attempts in a row that open it (an answer the destination declares
    /// final, such as a `410`, is about one event and counts neither way).
    pub failures: u32,
    /// The wait before the first probe; it doubles after each failed probe.
    pub first_wait: Duration,
    /// The longest wait between probes.
    pub longest_wait: Duration,
}

impl Default for BreakerConfig {
    /// Opens after 10 failures in a row; probes after 10 s, then 20 s, up to 5 min.
    fn default() -> Self {
        Self {
            failures: 10,
            first_wait: Duration::from_secs(10),
            longest_wait: Duration::from_secs(300),
        }
    }
}

impl BreakerConfig {
    /// Opens after `failures` in a row, probing after `first_wait`, doubling up to
    /// `longest_wait`.
    pub fn new(failures: u32, first_wait: Duration, longest_wait: Duration) -> Self {
        Self {
            failures: failures.max(1),
            first_wait,
            longest_wait: longest_wait.max(first_wait),
        }
    }
}

/// What an attempt's outcome asks of the route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing changes.
    Stay,
    /// Pause the route (the breaker opened, or a probe failed).
    Open(Pause),
    /// Resume the route (a probe was taken).
    Close,
}

/// The breaker's rules for one route's dispatcher.
#[derive(Debug)]
pub(crate) struct Breaker {
    /// `None`: it never opens by itself (it still probes a pause another opened).
    config: Option<BreakerConfig>,
    /// Failures since the last success.
    in_row: u32,
    /// Probes failed since it opened.
    reopened: u32,
    /// Whether it opened (this dispatcher paused the route) and is not closed yet.
    open: bool,
    /// Whether the one entry in flight is a probe.
    probing: bool,
}

impl Breaker {
    pub fn new(config: Option<BreakerConfig>) -> Self {
        Self {
            config,
            in_row: 0,
            reopened: 0,
            open: false,
            probing: false,
        }
    }

    /// A probe is starting.
    pub fn probe(&mut self) {
        self.probing = true;
    }

    /// The probe claimed nothing (another host took the entries, or none are due).
    pub fn probe_found_nothing(&mut self) {
        self.probing = false;
    }

    pub fn is_probing(&self) -> bool {
        self.probing
    }

    /// The route is not paused (any more): resumed by an operator or by another
    /// host's probe.
    pub fn resumed(&mut self) {
        if self.open {
            (self.open, self.in_row, self.reopened) = (false, 0, 0);
        }
    }

    /// An attempt was taken.
    pub fn succeeded(&mut self) -> Verdict {
        self.in_row = 0;
        if std::mem::take(&mut self.probing) {
            (self.open, self.reopened) = (false, 0);
            return Verdict::Close;
        }
        Verdict::Stay
    }

    /// An attempt failed (not for good) at `now`.
    pub fn failed(&mut self, now: UnixMs) -> Verdict {
        self.in_row = self.in_row.saturating_add(1);
        let config = self.config.unwrap_or_default();
        if std::mem::take(&mut self.probing) {
            self.reopened = self.reopened.saturating_add(1);
            return Verdict::Open(self.pause(config, now, "the probe failed too"));
        }
        match self.config {
            // Attempts that were running when it opened fail too: once is enough.
            Some(config) if !self.open && self.in_row >= config.failures => {
                (self.open, self.reopened) = (true, 0);
                Verdict::Open(self.pause(config, now, "failed"))
            }
            _ => Verdict::Stay,
        }
    }

    fn pause(&self, config: BreakerConfig, now: UnixMs, what: &str) -> Pause {
        let wait = config
            .first_wait
            .saturating_mul(1 << self.reopened.min(16))
            .min(config.longest_wait);
        Pause {
            since: now,
            reason: format!(
                "circuit breaker: {} attempts in a row {what}; one is tried again in {} s",
                self.in_row,
                wait.as_secs()
            ),
            probe_at: Some(now + ms(wait)),
        }
    }
}

/// What the dispatcher may claim now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Allowed {
    /// As many as it wants.
    Any,
    /// One entry, as a probe.
    Probe,
    /// Nothing: the route is paused.
    Nothing,
}

/// One dispatcher's view of its route's pause, read from the store at most every
/// `recheck`, and its breaker.
#[derive(Debug)]
pub(crate) struct Gate {
    route: RouteName,
    pub breaker: std::sync::Mutex<Breaker>,
    pause: std::sync::Mutex<(Option<Pause>, Option<Instant>)>,
    recheck: Duration,
}

impl Gate {
    pub fn new(route: RouteName, config: Option<BreakerConfig>, recheck: Duration) -> Self {
        Self {
            route,
            breaker: std::sync::Mutex::new(Breaker::new(config)),
            pause: std::sync::Mutex::new((None, None)),
            recheck,
        }
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What may be claimed now; reads the pause again once `recheck` has passed.
    pub async fn allowed(&self, store: &impl Store) -> Allowed {
        let stale = {
            let cached = self.pause.lock().unwrap_or_else(|p| p.into_inner());
            cached.1.is_none_or(|at| at.elapsed() >= self.recheck)
        };
        if stale {
            match store.pause_of(self.route.clone()).await {
                Ok(pause) => {
                    *self.pause.lock().unwrap_or_else(|p| p.into_inner()) =
                        (pause, Some(Instant::now()))
                }
                // The store is down: claims would fail too; keep what was known.
                Err(error) => tracing::debug!(%error, "cannot read the route's pause"),
            }
        }
        let pause = self
            .pause
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone();
        let mut breaker = self.breaker();
        match pause {
            None => {
                breaker.resumed();
                Allowed::Any
            }
            Some(_) if breaker.is_probing() => Allowed::Nothing,
            Some(Pause {
                probe_at: Some(at), ..
            }) if at <= now_ms() => {
                breaker.probe();
                Allowed::Probe
            }
            Some(_) => Allowed::Nothing,
        }
    }

    /// The probe claimed nothing.
    pub fn probe_found_nothing(&self) {
        self.breaker().probe_found_nothing();
    }

    /// Records an attempt's outcome (`None`: a final answer, which counts neither
    /// way), and pauses or resumes the route as the breaker says.
    pub async fn record(&self, store: &impl Store, taken: Option<bool>) {
        let verdict = match taken {
            Some(true) => self.breaker().succeeded(),
            Some(false) => self.breaker().failed(now_ms()),
            None => return,
        };
        let route = self.route.to_string();
        let change = match &verdict {
            Verdict::Stay => return,
            Verdict::Open(pause) => {
                tracing::error!(route, reason = %pause.reason, "route paused by its circuit breaker");
                metrics::counter!("thulium_inbox_breaker_opened_total", "route" => route)
                    .increment(1);
                Some(pause.clone())
            }
            Verdict::Close => {
                tracing::warn!(route, "the probe was taken: route resumed");
                None
            }
        };
        let since = Instant::now();
        match store.set_pause(self.route.clone(), change.clone()).await {
            Ok(()) => *self.pause.lock().unwrap_or_else(|p| p.into_inner()) = (change, Some(since)),
            Err(error) => {
                tracing::error!(%error, "cannot store the route's pause; trying with the next outcome")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_opens_after_failures_in_a_row_and_a_success_resets_the_count() {
        let config = BreakerConfig::new(3, Duration::from_secs(10), Duration::from_secs(60));
        let mut breaker = Breaker::new(Some(config));
        assert_eq!(breaker.failed(0), Verdict::Stay);
        assert_eq!(breaker.failed(0), Verdict::Stay);
        assert_eq!(breaker.succeeded(), Verdict::Stay);
        assert_eq!(breaker.failed(0), Verdict::Stay);
        assert_eq!(breaker.failed(0), Verdict::Stay);
        let Verdict::Open(pause) = breaker.failed(1_000) else {
            panic!("the third failure in a row opens it")
        };
        assert_eq!(pause.probe_at, Some(11_000));
        assert!(
            pause.reason.contains("3 attempts in a row"),
            "{}",
            pause.reason
        );
        // The attempts still running fail too: it is open already.
        assert_eq!(breaker.failed(1_001), Verdict::Stay);
        // An operator resumes it; it opens again after as many failures.
        breaker.resumed();
        assert_eq!(breaker.failed(2_000), Verdict::Stay);
        assert_eq!(breaker.failed(2_000), Verdict::Stay);
        assert!(matches!(breaker.failed(2_000), Verdict::Open(_)));
    }

    #[test]
    fn failed_probes_wait_longer_up_to_the_limit_and_a_taken_probe_closes_it() {
        let config = BreakerConfig::new(1, Duration::from_secs(10), Duration::from_secs(35));
        let mut breaker = Breaker::new(Some(config));
        assert!(matches!(breaker.failed(0), Verdict::Open(_)));
        let mut waits = Vec::new();
        for _ in 0..4 {
            breaker.probe();
            let Verdict::Open(pause) = breaker.failed(0) else {
                panic!("a failed probe opens it again")
            };
            waits.push(pause.probe_at.unwrap() / 1000);
        }
        assert_eq!(waits, [20, 35, 35, 35]);
        breaker.probe();
        assert_eq!(breaker.succeeded(), Verdict::Close);
        // Closed: the count starts again, and the first wait too.
        breaker.probe_found_nothing();
        let Verdict::Open(pause) = breaker.failed(0) else {
            panic!("opens again at the threshold")
        };
        assert_eq!(pause.probe_at, Some(10_000));
    }

    #[test]
    fn without_a_config_it_never_opens_but_still_probes() {
        let mut breaker = Breaker::new(None);
        for _ in 0..1000 {
            assert_eq!(breaker.failed(0), Verdict::Stay);
        }
        breaker.probe();
        assert!(matches!(breaker.failed(0), Verdict::Open(_)));
        breaker.probe();
        assert_eq!(breaker.succeeded(), Verdict::Close);
    }

    #[test]
    fn a_pause_reads_back_as_stored() {
        let pause = Pause {
            since: 5,
            reason: "maintenance \u{1b}[31m".into(),
            probe_at: Some(7),
        };
        assert_eq!(Pause::decode(&pause.encode()), Some(pause.clone()));
        let by_hand = Pause::by_hand("night \u{1b}[31m");
        assert!(!by_hand.reason.contains('\u{1b}'));
        assert_eq!(Pause::decode(&by_hand.encode()), Some(by_hand));
        assert_eq!(Pause::decode(&[1, 2, 3]), None);
    }
}
