//! Parsed events passed from a receiver to the dispatchers of the same process.
//!
//! The store keeps an event as its canonical JSON, and a dispatcher hands its handler
//! the typed [`Event`]: read back from the store, that is a second parse of an event
//! the receiver parsed a moment before (about a tenth of the instructions of a
//! claimed, handed-over and acked event, callgrind: 8.7k of 89k). A [`Handover`] keeps the
//! receiver's parsed events for the dispatchers to take instead.
//!
//! It is only a cache: an event it no longer holds (evicted, taken by another
//! process's dispatcher, retried later, received before a restart) is parsed from
//! the store as before. What it hands over is the same value a parse would give:
//! an event is taken only for the stored entry whose canonical JSON it was written
//! as, and parsing that JSON gives back an equal event (tested over 60,000 random
//! bodies in the SDK).

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher as _;
use std::sync::{Arc, Mutex, PoisonError};

use thulium::event::Event;

use crate::model::{NewEvent, StoredEvent};

/// How many received events a [`Handover`] keeps by default: enough for the
/// dispatchers to keep up with bursts, bounded so a stalled route costs no more
/// than a few megabytes.
pub const DEFAULT_CAPACITY: usize = 4096;

/// Received events, parsed, waiting for their dispatchers. Cheap to clone (clones
/// share one cache); [`crate::relay::Relay`] gives one to its receivers and to every
/// route's dispatcher.
///
/// ```
/// use thulium::event::Event;
/// use thulium_inbox::handover::Handover;
/// use thulium_inbox::NewEvent;
///
/// let event = Event::parse(br#"{"action":"SOMETHING_NEW","n":"7"}"#, None).unwrap();
/// let new = NewEvent::from_event(&event, r#"{"action":"SOMETHING_NEW","n":"7"}"#, None);
/// let handover = Handover::default();
/// let kept = handover.keep(&new, event);
/// assert_eq!(handover.len(), 1);
/// // The put found a redelivery, or failed: nobody will take it.
/// handover.release(kept);
/// assert!(handover.is_empty());
/// ```
#[derive(Clone)]
pub struct Handover {
    inner: Arc<Mutex<Kept>>,
}

impl std::fmt::Debug for Handover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handover")
            .field("events", &self.len())
            .finish_non_exhaustive()
    }
}

impl Default for Handover {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

/// What one [`Handover::keep`] added, to [`Handover::release`] it.
#[derive(Debug)]
pub struct KeptEvent {
    key: u64,
    takers: usize,
}

struct Kept {
    capacity: usize,
    hasher: foldhash::fast::RandomState,
    /// By the hash of the canonical JSON.
    events: HashMap<u64, Parsed>,
    /// Oldest first, for eviction; a key may be listed after its entry went.
    order: VecDeque<u64>,
}

struct Parsed {
    canonical: String,
    event: Event,
    /// Stored entries (one per route) that may still take it.
    takers: usize,
}

impl Handover {
    /// A handover that keeps at most `capacity` events (the oldest go first).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Kept {
                capacity: capacity.max(1),
                hasher: foldhash::fast::RandomState::default(),
                events: HashMap::new(),
                order: VecDeque::new(),
            })),
        }
    }

    /// Keeps `event`, the parse of `stored`, for the dispatchers of its routes.
    /// Called before the put, so that no dispatcher can claim the new entries
    /// before their event is here; if the put stores nothing new (a redelivery)
    /// or fails, [`Self::release`] the returned token. An unrouted event is never
    /// dispatched, so it is not kept.
    #[must_use = "release it if the put stores no new entries"]
    pub fn keep(&self, stored: &NewEvent, event: Event) -> KeptEvent {
        let takers = stored.routes.len();
        if takers == 0 {
            return KeptEvent { key: 0, takers };
        }
        let mut kept = self.lock();
        let key = kept.hasher.hash_one(stored.canonical.as_str());
        if let Some(parsed) = kept.events.get_mut(&key)
            && parsed.canonical == stored.canonical
        {
            // The same content again (another account's, or a conflict that came
            // back to it): more entries may take it.
            parsed.takers += takers;
            return KeptEvent { key, takers };
        }
        while kept.events.len() >= kept.capacity {
            let Some(oldest) = kept.order.pop_front() else {
                break;
            };
            kept.events.remove(&oldest);
        }
        kept.events.insert(
            key,
            Parsed {
                canonical: stored.canonical.clone(),
                event,
                takers,
            },
        );
        kept.order.push_back(key);
        // Keys of entries taken by every route stay listed until their turn; when
        // they outnumber the kept events, drop them in one pass.
        if kept.order.len() > 2 * kept.capacity {
            let Kept { events, order, .. } = &mut *kept;
            order.retain(|key| events.contains_key(key));
        }
        KeptEvent { key, takers }
    }

    /// Takes back what [`Self::keep`] added, for a put that stored no new entries.
    pub fn release(&self, kept: KeptEvent) {
        if kept.takers == 0 {
            return;
        }
        let mut guard = self.lock();
        if let Some(parsed) = guard.events.get_mut(&kept.key) {
            parsed.takers = parsed.takers.saturating_sub(kept.takers);
            if parsed.takers == 0 {
                guard.events.remove(&kept.key);
            }
        }
    }

    /// The parsed event of `stored`, if this handover still has it: the same value
    /// [`StoredEvent::event`] would parse.
    pub fn take(&self, stored: &StoredEvent) -> Option<Event> {
        let mut kept = self.lock();
        let key = kept.hasher.hash_one(stored.canonical.as_str());
        let parsed = kept.events.get_mut(&key)?;
        if parsed.canonical != stored.canonical {
            return None;
        }
        if parsed.takers > 1 {
            parsed.takers -= 1;
            return Some(parsed.event.clone());
        }
        kept.events.remove(&key).map(|parsed| parsed.event)
    }

    /// How many events it holds.
    pub fn len(&self) -> usize {
        self.lock().events.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        // A panic while holding the lock leaves a consistent map (every change is
        // one insert or remove): keep using it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EventId;
    use crate::routing::RouteName;

    fn event_numbered(id: u32) -> (NewEvent, Event) {
        let body = format!(r#"{{"action":"SOMETHING_NEW","n":"{id}"}}"#);
        let event = Event::parse(body.as_bytes(), None).unwrap();
        let new =
            NewEvent::from_event(&event, body, None).for_routes(vec![RouteName::default_route()]);
        (new, event)
    }

    fn stored(new: &NewEvent) -> StoredEvent {
        StoredEvent::new(EventId(1), RouteName::default_route(), new.clone(), false)
    }

    #[test]
    fn each_route_takes_the_event_once() {
        let handover = Handover::default();
        let (mut new, event) = event_numbered(1);
        new.routes.push(RouteName::new("crm").unwrap());
        let _ = handover.keep(&new, event.clone());
        let entry = stored(&new);
        assert_eq!(handover.take(&entry), Some(event.clone()));
        assert_eq!(handover.take(&entry), Some(event));
        assert_eq!(handover.take(&entry), None);
        assert!(handover.is_empty());
    }

    #[test]
    fn only_the_entry_of_the_same_canonical_json_takes_it() {
        let handover = Handover::default();
        let (new, event) = event_numbered(1);
        let _ = handover.keep(&new, event.clone());
        let (other, _) = event_numbered(2);
        assert_eq!(handover.take(&stored(&other)), None);
        let mut altered = stored(&new);
        altered.canonical.push(' ');
        assert_eq!(handover.take(&altered), None);
        assert_eq!(handover.take(&stored(&new)), Some(event));
    }

    #[test]
    fn a_released_keep_is_taken_back_and_no_other() {
        let handover = Handover::default();
        let (new, event) = event_numbered(1);
        let first = handover.keep(&new, event.clone());
        // A redelivery of the same content while the first waits for its route.
        let again = handover.keep(&new, event.clone());
        handover.release(again);
        assert_eq!(handover.take(&stored(&new)), Some(event));
        assert!(handover.is_empty());
        // Released after its taker took it: nothing left to change.
        handover.release(first);
        assert!(handover.is_empty());
    }

    #[test]
    fn unrouted_events_are_not_kept() {
        let handover = Handover::default();
        let (mut new, event) = event_numbered(1);
        new.routes.clear();
        let kept = handover.keep(&new, event);
        assert!(handover.is_empty());
        handover.release(kept);
        assert!(handover.is_empty());
    }

    #[test]
    fn the_oldest_go_first_past_the_capacity() {
        let handover = Handover::with_capacity(3);
        let events: Vec<_> = (0..5).map(event_numbered).collect();
        for (new, event) in &events {
            let _ = handover.keep(new, event.clone());
        }
        assert_eq!(handover.len(), 3);
        assert_eq!(handover.take(&stored(&events[0].0)), None);
        assert_eq!(handover.take(&stored(&events[1].0)), None);
        for (new, event) in &events[2..] {
            assert_eq!(handover.take(&stored(new)).as_ref(), Some(event));
        }
        // Taken keys are forgotten in passes; the listing stays bounded.
        for round in 0..100 {
            let (new, event) = event_numbered(1000 + round);
            let _ = handover.keep(&new, event.clone());
            assert_eq!(handover.take(&stored(&new)), Some(event));
        }
        assert!(handover.lock().order.len() <= 6);
    }
}
