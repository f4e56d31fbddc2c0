//! How an event is laid out in rows: the state codes, the columns, and reading a
//! row back into a [`StoredEvent`] or a [`Lifecycle`].

use crate::model::{EventId, State, StoredEvent};
use crate::routing::stored_route;
use crate::transition::Lifecycle;

/// The `state` column: the states' storage codes ([`State::code`]) as `SMALLINT`.
pub(super) struct StateCode;

impl StateCode {
    pub fn of(state: State) -> i16 {
        i16::from(state.code())
    }

    /// The state a stored code stands for; a code no version wrote reads as dead,
    /// so that an operator sees it rather than a handler.
    pub fn state(code: i16) -> State {
        u8::try_from(code)
            .ok()
            .and_then(State::from_code)
            .unwrap_or(State::Dead)
    }

    /// `(0, 1)`: a list for `state IN ...`, as literals so that the planner matches
    /// the partial indexes (a bound parameter would hide them from a generic plan).
    pub fn list(states: &[State]) -> String {
        let codes: Vec<String> = states.iter().map(|s| Self::of(*s).to_string()).collect();
        format!("({})", codes.join(", "))
    }
}

/// Every column of an event, in the order [`event_of`] reads them.
pub(super) const COLUMNS: &str = "id, dedup_key, action, canonical, body, content_type, received_at, state, attempts, due_at, finished_at, last_error, conflict, history::text, claim_token, route, account";

/// The columns of a [`Lifecycle`], with the id first, as [`lifecycle_of`] reads them.
pub(super) const LIFECYCLE_COLUMNS: &str =
    "id, state, attempts, due_at, finished_at, claim_token, route";

pub(super) fn event_of(row: &tokio_postgres::Row) -> StoredEvent {
    let history: String = row.get(13);
    StoredEvent {
        id: EventId(row.get::<_, i64>(0) as u64),
        route: stored_route(row.get(15)),
        account: row
            .get::<_, Option<&str>>(16)
            .and_then(|a| crate::routing::AccountName::new(a).ok()),
        dedup_key: row.get(1),
        action: row.get(2),
        canonical: row.get(3),
        body: bytes::Bytes::from(row.get::<_, Vec<u8>>(4)),
        content_type: row.get(5),
        received_at: row.get::<_, i64>(6) as u64,
        state: StateCode::state(row.get(7)),
        attempts: row.get::<_, i32>(8) as u32,
        due_at: row.get::<_, i64>(9) as u64,
        finished_at: row.get::<_, Option<i64>>(10).map(|v| v as u64),
        last_error: row.get(11),
        conflict: row.get(12),
        history: serde_json::from_str(&history).unwrap_or_default(),
        claim_token: row.get::<_, Option<i64>>(14).map(|v| v as u64),
    }
}

pub(super) fn lifecycle_of(row: &tokio_postgres::Row) -> (EventId, Lifecycle) {
    (
        EventId(row.get::<_, i64>(0) as u64),
        Lifecycle {
            state: StateCode::state(row.get(1)),
            attempts: row.get::<_, i32>(2) as u32,
            due_at: row.get::<_, i64>(3) as u64,
            finished_at: row.get::<_, Option<i64>>(4).map(|v| v as u64),
            claim_token: row.get::<_, Option<i64>>(5).map(|v| v as u64),
            routed: !stored_route(row.get(6)).is_unrouted(),
        },
    )
}

/// A pause from `since, reason, probe_at` (the first three columns).
pub(super) fn pause_of(row: &tokio_postgres::Row) -> crate::model::Pause {
    crate::model::Pause {
        since: row.get::<_, i64>(0) as u64,
        reason: row.get(1),
        probe_at: row.get::<_, Option<i64>>(2).map(|v| v as u64),
    }
}

/// A `u64` as PostgreSQL's `BIGINT`, saturating.
pub(super) fn i(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
