//! Failed sign-ins are limited per client address and in all: past the limit a
//! client gets `429` with `Retry-After` until its window ends, without its
//! credentials being checked, so guessing a password costs minutes per handful of
//! tries instead of thousands of tries per second.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long failures are counted before the count starts again.
pub(super) const WINDOW: Duration = Duration::from_secs(60);
/// Failed sign-ins one address may make per window.
pub(super) const PER_CLIENT: u32 = 10;
/// Failed sign-ins all addresses together may make per window (many addresses, one
/// attacker); past it every failing client waits, a signed-in one does not.
pub(super) const IN_ALL: u32 = 300;
/// Addresses remembered at most; past it the oldest windows are forgotten first.
const MAX_CLIENTS: usize = 10_000;

#[derive(Clone, Copy, Debug)]
struct Window {
    started: Instant,
    failures: u32,
}

impl Window {
    fn new(now: Instant) -> Self {
        Self {
            started: now,
            failures: 0,
        }
    }

    /// The window as of `now`: a fresh one once it ended.
    fn current(self, now: Instant) -> Self {
        if now.duration_since(self.started) >= WINDOW {
            Self::new(now)
        } else {
            self
        }
    }

    fn remaining(self, now: Instant) -> Duration {
        WINDOW.saturating_sub(now.duration_since(self.started))
    }
}

/// What a failed sign-in changed.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Failed {
    /// The address's first failure in its window (worth a log line).
    pub first: bool,
    /// This failure used up the address's (or everyone's) allowance.
    pub now_blocked: bool,
}

/// The failure counts.
#[derive(Debug)]
pub(super) struct Throttle {
    clients: Mutex<HashMap<IpAddr, Window>>,
    everyone: Mutex<Window>,
}

impl Throttle {
    pub(super) fn new() -> Self {
        Self {
            clients: Mutex::new(HashMap::new()),
            everyone: Mutex::new(Window::new(Instant::now())),
        }
    }

    /// How long `client` must wait before its credentials are checked again, if it
    /// must.
    pub(super) fn blocked(&self, client: Option<IpAddr>, now: Instant) -> Option<Duration> {
        let everyone = self.everyone.lock().unwrap_or_else(|p| p.into_inner());
        let everyone = everyone.current(now);
        if everyone.failures >= IN_ALL {
            return Some(everyone.remaining(now));
        }
        let clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let window = clients.get(&client?)?.current(now);
        (window.failures >= PER_CLIENT).then(|| window.remaining(now))
    }

    /// Counts a failed sign-in of `client`.
    pub(super) fn failed(&self, client: Option<IpAddr>, now: Instant) -> Failed {
        let mut everyone = self.everyone.lock().unwrap_or_else(|p| p.into_inner());
        *everyone = everyone.current(now);
        everyone.failures = everyone.failures.saturating_add(1);
        let everyone_blocked = everyone.failures == IN_ALL;
        drop(everyone);
        let Some(client) = client else {
            return Failed {
                first: false,
                now_blocked: everyone_blocked,
            };
        };
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&client) {
            clients.retain(|_, window| now.duration_since(window.started) < WINDOW);
            if clients.len() >= MAX_CLIENTS {
                // Still full of live windows: forget the oldest half.
                let mut starts: Vec<Instant> = clients.values().map(|w| w.started).collect();
                starts.sort_unstable();
                let cut = starts[starts.len() / 2];
                clients.retain(|_, window| window.started > cut);
            }
        }
        let window = clients.entry(client).or_insert_with(|| Window::new(now));
        *window = window.current(now);
        window.failures = window.failures.saturating_add(1);
        Failed {
            first: window.failures == 1,
            now_blocked: everyone_blocked || window.failures == PER_CLIENT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_waits_after_its_allowance_and_not_after_its_window() {
        let throttle = Throttle::new();
        let (a, b) = (
            Some("10.0.0.1".parse().unwrap()),
            Some("10.0.0.2".parse().unwrap()),
        );
        let start = Instant::now();
        for n in 1..=PER_CLIENT {
            assert_eq!(throttle.blocked(a, start), None);
            let failed = throttle.failed(a, start);
            assert_eq!(failed.first, n == 1);
            assert_eq!(failed.now_blocked, n == PER_CLIENT);
        }
        assert_eq!(throttle.blocked(a, start), Some(WINDOW));
        assert_eq!(
            throttle.blocked(b, start),
            None,
            "another address is not held up"
        );
        let later = start + WINDOW;
        assert_eq!(throttle.blocked(a, later), None, "a new window");
        assert!(throttle.failed(a, later).first);
    }

    #[test]
    fn many_addresses_together_are_limited_too() {
        let throttle = Throttle::new();
        let now = Instant::now();
        for n in 0..IN_ALL {
            let client = IpAddr::from([10, 1, (n / 256) as u8, (n % 256) as u8]);
            throttle.failed(Some(client), now);
        }
        let fresh = Some(IpAddr::from([192, 168, 0, 1]));
        assert!(throttle.blocked(fresh, now).is_some());
        assert!(throttle.blocked(fresh, now + WINDOW).is_none());
    }
}
