//! Event delivery: POST an event to each matching subscription in the background,
//! retry failures with backoff, and record every attempt for inspection.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use thulium::Webhook;
use thulium::event::{BodyFormat, Event};
use tokio::sync::{Notify, broadcast};

/// The header the fake puts on its own deliveries, so that one reaching the fake's
/// control endpoint is recognised and refused instead of looping.
pub const DELIVERY_HEADER: &str = "x-thulium-mock-delivery";

/// How patiently the fake delivers.
#[derive(Clone, Debug)]
pub struct DeliveryPolicy {
    /// The body encoding (form, as integrators report Thulium sends, by default).
    pub format: BodyFormat,
    /// Attempts per delivery, the first included (at least 1).
    pub max_attempts: u32,
    /// Wait before the second attempt; it doubles after each failure.
    pub initial_backoff: Duration,
    /// The longest one attempt may take.
    pub timeout: Duration,
    /// How many deliveries the log keeps; past it the oldest finished ones go
    /// (default 10,000), so a long-running fake does not grow without bound.
    pub log_capacity: usize,
}

impl Default for DeliveryPolicy {
    /// Form bodies, 4 attempts, 200 ms backoff doubling, 5 s per attempt, the last
    /// 10,000 deliveries logged.
    fn default() -> Self {
        Self {
            format: BodyFormat::Form,
            max_attempts: 4,
            initial_backoff: Duration::from_millis(200),
            timeout: Duration::from_secs(5),
            log_capacity: 10_000,
        }
    }
}

/// What one attempt got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AttemptOutcome {
    /// The receiver answered with this status.
    Status(u16),
    /// No answer: a connection error or a timeout.
    Error(String),
}

impl AttemptOutcome {
    /// Whether the receiver took the event (any 2xx).
    pub fn is_success(&self) -> bool {
        matches!(self, AttemptOutcome::Status(s) if (200..300).contains(s))
    }
}

/// One attempt to deliver one event to one subscription.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Attempt {
    /// 1 for the first attempt.
    pub attempt: u32,
    /// What happened.
    pub outcome: AttemptOutcome,
    /// When the attempt ended, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeliveryState {
    /// Attempts are still being made.
    Pending,
    /// An attempt got a 2xx answer.
    Delivered,
    /// Every attempt failed.
    GaveUp,
}

/// One event on its way to one subscription, with every attempt so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Delivery {
    /// The delivery's id, from 1 upwards.
    pub id: u64,
    /// The subscription.
    pub subscription_id: i64,
    /// Where the event goes.
    pub url: String,
    /// The event's action.
    pub action: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Every attempt, in order.
    pub attempts: Vec<Attempt>,
}

/// Every delivery, and a signal for those who wait on one.
pub(crate) struct DeliveryLog {
    deliveries: Mutex<BTreeMap<u64, Delivery>>,
    changed: Notify,
    /// Each delivery as it stands after each attempt, for those who watch.
    attempts: broadcast::Sender<Delivery>,
}

impl Default for DeliveryLog {
    fn default() -> Self {
        Self {
            deliveries: Mutex::default(),
            changed: Notify::new(),
            // A watcher that falls this far behind is told how many it missed.
            attempts: broadcast::channel(1024).0,
        }
    }
}

impl DeliveryLog {
    pub(crate) fn watch(&self) -> broadcast::Receiver<Delivery> {
        self.attempts.subscribe()
    }

    pub(crate) fn all(&self) -> Vec<Delivery> {
        self.lock().values().cloned().collect()
    }

    pub(crate) fn get(&self, id: u64) -> Option<Delivery> {
        self.lock().get(&id).cloned()
    }

    /// Waits until `done` holds for the log, or `timeout` passes.
    pub(crate) async fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&BTreeMap<u64, Delivery>) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register interest before checking, so a change between the check and
            // the wait is not missed.
            let notified = self.changed.notified();
            if done(&self.lock()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return done(&self.lock());
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Delivery>> {
        // A poisoned lock only means another thread panicked mid-update of a log entry;
        // the log is still the best record there is.
        self.deliveries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a delivery, dropping the oldest finished ones (or, if none is finished,
    /// the oldest) while the log holds more than `capacity`.
    fn insert(&self, delivery: Delivery, capacity: usize) {
        let mut log = self.lock();
        log.insert(delivery.id, delivery);
        while log.len() > capacity.max(1) {
            let oldest = log
                .iter()
                .find(|(_, d)| d.state != DeliveryState::Pending)
                .or_else(|| log.iter().next())
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => log.remove(&id),
                None => break,
            };
        }
    }

    fn update(&self, id: u64, change: impl FnOnce(&mut Delivery)) {
        // The copy for watchers is made only when somebody watches.
        let watched = self.attempts.receiver_count() > 0;
        let updated = self.lock().get_mut(&id).and_then(|delivery| {
            change(delivery);
            watched.then(|| delivery.clone())
        });
        self.changed.notify_waiters();
        if let Some(delivery) = updated {
            // A watcher that left meanwhile is fine.
            let _ = self.attempts.send(delivery);
        }
    }
}

/// Sends events to subscribers.
pub(crate) struct Deliverer {
    pub(crate) log: Arc<DeliveryLog>,
    http: reqwest::Client,
    policy: DeliveryPolicy,
    next_id: Mutex<u64>,
}

impl Deliverer {
    /// Fails only if the platform's TLS set-up does (no usable certificate store).
    pub(crate) fn new(policy: DeliveryPolicy) -> std::io::Result<Self> {
        let cannot = |e: &dyn std::fmt::Display| {
            std::io::Error::other(format!(
                "the fake cannot build its HTTP client for deliveries: {e}"
            ))
        };
        let http = thulium::tls::http_client_builder()
            .map_err(|e| cannot(&e))?
            .timeout(policy.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("thulium-mock")
            .build()
            .map_err(|e| cannot(&e))?;
        Ok(Self {
            log: Arc::default(),
            http,
            policy,
            next_id: Mutex::new(0),
        })
    }

    /// Starts delivering `event` to every subscription whose actions include it;
    /// returns the new deliveries' ids at once.
    pub(crate) fn emit(&self, event: &Event, subscriptions: &[Webhook]) -> Vec<u64> {
        let action = event.action();
        let body = (
            self.policy.format.encode(event),
            self.policy.format.content_type(),
        );
        let mut ids = Vec::new();
        for subscription in subscriptions.iter().filter(|s| s.actions.contains(&action)) {
            let id = {
                let mut next = self.next_id.lock().unwrap_or_else(|p| p.into_inner());
                *next += 1;
                *next
            };
            self.log.insert(
                Delivery {
                    id,
                    subscription_id: subscription.id,
                    url: subscription.subscription_url.clone(),
                    action: action.to_string(),
                    state: DeliveryState::Pending,
                    attempts: Vec::new(),
                },
                self.policy.log_capacity,
            );
            ids.push(id);
            tokio::spawn(deliver(
                id,
                self.http.clone(),
                self.policy.clone(),
                subscription.clone(),
                body.clone(),
                Arc::clone(&self.log),
            ));
        }
        ids
    }
}

async fn deliver(
    id: u64,
    http: reqwest::Client,
    policy: DeliveryPolicy,
    subscription: Webhook,
    (body, content_type): (String, &'static str),
    log: Arc<DeliveryLog>,
) {
    let attempts = policy.max_attempts.max(1);
    // Doubling without a ceiling (the attempts are few) and without jitter: a test
    // that waits for the fake's retries can count on their timing.
    let backoff = thulium::retry::Backoff::new(policy.initial_backoff, Duration::MAX);
    for attempt in 1..=attempts {
        let mut request = http
            .post(&subscription.subscription_url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header(DELIVERY_HEADER, id.to_string())
            .body(body.clone());
        if subscription.has_auth() {
            request = request.basic_auth(
                &subscription.http_auth_user,
                Some(subscription.http_auth_password.expose()),
            );
        }
        let outcome = match request.send().await {
            Ok(response) => AttemptOutcome::Status(response.status().as_u16()),
            Err(error) if error.is_timeout() => {
                AttemptOutcome::Error(format!("no answer within {:?}", policy.timeout))
            }
            Err(error) => AttemptOutcome::Error(thulium::error::root_cause(&error)),
        };
        let delivered = outcome.is_success();
        tracing::debug!(delivery = id, attempt, ?outcome, url = %subscription.subscription_url, "delivery attempt");
        let last = attempt == attempts;
        log.update(id, |delivery| {
            delivery.attempts.push(Attempt {
                attempt,
                outcome,
                at_unix_ms: unix_ms(),
            });
            if delivered {
                delivery.state = DeliveryState::Delivered;
            } else if last {
                delivery.state = DeliveryState::GaveUp;
            }
        });
        if delivered || last {
            return;
        }
        tokio::time::sleep(backoff.delay(attempt)).await;
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
