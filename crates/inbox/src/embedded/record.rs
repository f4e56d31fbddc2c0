//! How an event lies in the inbox file (schema 3): in parts, so that what changes
//! often is small. Each route's entry of an event is an event of its own here.
//!
//! - The **payload** (route name, dedup key, action, canonical JSON, the body's
//!   bytes, content type, conflict mark) is written once at put and never rewritten.
//! - The **life** record ([`Life`]: the [`Lifecycle`], when the event was received,
//!   how many attempts were ever recorded, and the route's number in the file) is
//!   46 bytes at fixed offsets: claims, heartbeats and finishes read and rewrite
//!   only it.
//! - Each recorded attempt is a row of its own, keyed `(id, sequence)`, and the last
//!   error a row of its own; a finish adds one row and rewrites none.
//!
//! The layouts are written out here rather than with a serialisation crate: they
//! are a handful of fixed fields and length-prefixed strings, read on every claim,
//! and a format crate would add a dependency and a wire format of its own that the
//! file would have to keep readable across its versions.

use bytes::Bytes;

use crate::model::{EventId, NewEvent, State, UnixMs};
use crate::routing::{AccountName, RouteName, stored_route};
use crate::transition::Lifecycle;

/// A route's number in the file (the `routes` table names them): the index keys
/// carry it, so each route's due entries are a range of their own.
pub(super) type RouteNo = u32;
/// [`RouteName::unrouted`]'s number, in every file.
pub(super) const UNROUTED_NO: RouteNo = 0;
/// [`RouteName::default_route`]'s number, in every file (every event of schema 2
/// and before is on it).
pub(super) const DEFAULT_NO: RouteNo = 1;

/// An event's changing part, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Life {
    /// What the rules change.
    pub lifecycle: Lifecycle,
    /// When the event was received (copied here so that scans by time read no payload).
    pub received_at: UnixMs,
    /// Attempts ever recorded: the sequence number the next one gets.
    pub recorded: u32,
    /// The route's number.
    pub route: RouteNo,
}

/// The size of an encoded [`Life`].
const LIFE_LEN: usize = 46;
/// The size of a life record of schema 2 (no route): read only to upgrade.
const LIFE_V2_LEN: usize = 42;
const HAS_FINISHED_AT: u8 = 1;
const HAS_CLAIM_TOKEN: u8 = 2;

impl Life {
    /// A new entry's life on route number `route`.
    pub fn received(at: UnixMs, route: RouteNo) -> Self {
        Self {
            lifecycle: Lifecycle::received(at, route != UNROUTED_NO),
            received_at: at,
            recorded: 0,
            route,
        }
    }

    /// `state u8 | flags u8 | attempts u32 | due_at u64 | finished_at u64 |
    /// claim_token u64 | received_at u64 | recorded u32 | route u32`, little-endian.
    pub fn encode(&self) -> [u8; LIFE_LEN] {
        let Lifecycle {
            state,
            attempts,
            due_at,
            finished_at,
            claim_token,
            routed: _,
        } = self.lifecycle;
        let mut out = [0u8; LIFE_LEN];
        out[0] = state.code();
        out[1] = (if finished_at.is_some() {
            HAS_FINISHED_AT
        } else {
            0
        }) | (if claim_token.is_some() {
            HAS_CLAIM_TOKEN
        } else {
            0
        });
        out[2..6].copy_from_slice(&attempts.to_le_bytes());
        out[6..14].copy_from_slice(&due_at.to_le_bytes());
        out[14..22].copy_from_slice(&finished_at.unwrap_or(0).to_le_bytes());
        out[22..30].copy_from_slice(&claim_token.unwrap_or(0).to_le_bytes());
        out[30..38].copy_from_slice(&self.received_at.to_le_bytes());
        out[38..42].copy_from_slice(&self.recorded.to_le_bytes());
        out[42..46].copy_from_slice(&self.route.to_le_bytes());
        out
    }

    /// Reads what [`Self::encode`] wrote; a record of another size or state is corrupt.
    pub fn decode(id: u64, bytes: &[u8]) -> Result<Self, redb::Error> {
        Self::decode_sized(id, bytes, LIFE_LEN)
    }

    /// Reads a life record of schema 2: the same fields without the route, which
    /// was the default route.
    pub fn decode_v2(id: u64, bytes: &[u8]) -> Result<Self, redb::Error> {
        Self::decode_sized(id, bytes, LIFE_V2_LEN)
    }

    fn decode_sized(id: u64, bytes: &[u8], len: usize) -> Result<Self, redb::Error> {
        let corrupt =
            |what: &str| redb::Error::Corrupted(format!("event {id}: its life record {what}"));
        if bytes.len() != len {
            return Err(corrupt(&format!("has {} bytes, not {len}", bytes.len())));
        }
        let state = State::from_code(bytes[0])
            .ok_or_else(|| corrupt(&format!("has state code {}", bytes[0])))?;
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or([0; 4]));
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        let flags = bytes[1];
        let route = if len == LIFE_LEN {
            u32_at(42)
        } else {
            DEFAULT_NO
        };
        Ok(Self {
            lifecycle: Lifecycle {
                state,
                attempts: u32_at(2),
                due_at: u64_at(6),
                finished_at: (flags & HAS_FINISHED_AT != 0).then(|| u64_at(14)),
                claim_token: (flags & HAS_CLAIM_TOKEN != 0).then(|| u64_at(22)),
                routed: route != UNROUTED_NO,
            },
            received_at: u64_at(30),
            recorded: u32_at(38),
            route,
        })
    }
}

/// An event's unchanging part, as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Payload {
    pub route: RouteName,
    pub account: Option<AccountName>,
    pub dedup_key: String,
    pub action: String,
    pub canonical: String,
    pub body: Bytes,
    pub content_type: Option<String>,
    pub conflict: bool,
}

/// The payload layout's version, its first byte: 1 had no route (schema 2 and
/// before: the default route), 2 begins with the route's name.
const PAYLOAD_V1: u8 = 1;
const PAYLOAD_V2: u8 = 2;
const CONFLICT: u8 = 1;
const HAS_CONTENT_TYPE: u8 = 2;
const HAS_ACCOUNT: u8 = 4;

/// `version u8 | flags u8 | route | [account] | dedup_key | action | canonical |
/// [content_type] | body`, each field a little-endian `u32` length and its bytes.
pub(super) fn encode_payload(event: &NewEvent, route: &RouteName, conflict: bool) -> Vec<u8> {
    let fields = [
        Some(route.as_str().as_bytes()),
        event.account.as_ref().map(|a| a.as_str().as_bytes()),
        Some(event.dedup_key.as_bytes()),
        Some(event.action.as_bytes()),
        Some(event.canonical.as_bytes()),
        event.content_type.as_deref().map(str::as_bytes),
        Some(&event.body[..]),
    ];
    let size = 2 + fields.iter().flatten().map(|f| 4 + f.len()).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.push(PAYLOAD_V2);
    out.push(
        (if conflict { CONFLICT } else { 0 })
            | (if event.content_type.is_some() {
                HAS_CONTENT_TYPE
            } else {
                0
            })
            | (if event.account.is_some() {
                HAS_ACCOUNT
            } else {
                0
            }),
    );
    for field in fields.into_iter().flatten() {
        // A body over 4 GiB never gets here: the receiver's body limit is far below.
        out.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(field);
    }
    out
}

/// Reads what [`encode_payload`] wrote.
pub(super) fn decode_payload(id: EventId, bytes: &[u8]) -> Result<Payload, redb::Error> {
    let corrupt = |what: &str| redb::Error::Corrupted(format!("event {id}: its payload {what}"));
    let (head, mut rest) = bytes
        .split_first_chunk::<2>()
        .ok_or_else(|| corrupt("is cut short"))?;
    let [version, flags] = *head;
    if version != PAYLOAD_V1 && version != PAYLOAD_V2 {
        return Err(corrupt(&format!("has layout version {version}")));
    }
    let mut field = |name: &str| -> Result<&[u8], redb::Error> {
        let (len, after) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt(&format!("is cut short before its {name}")))?;
        let len = u32::from_le_bytes(*len) as usize;
        let (value, after) = after
            .split_at_checked(len)
            .ok_or_else(|| corrupt(&format!("is cut short in its {name}")))?;
        rest = after;
        Ok(value)
    };
    let text = |bytes: &[u8], name: &str| {
        String::from_utf8(bytes.to_vec())
            .map_err(|_| corrupt(&format!("has a {name} that is not UTF-8")))
    };
    let route = if version == PAYLOAD_V1 {
        RouteName::default_route()
    } else {
        stored_route(&text(field("route")?, "route")?)
    };
    let account = if flags & HAS_ACCOUNT != 0 {
        let name = text(field("account")?, "account")?;
        Some(
            AccountName::new(&name)
                .map_err(|_| corrupt("has an account name no version writes"))?,
        )
    } else {
        None
    };
    let dedup_key = text(field("dedup key")?, "dedup key")?;
    let action = text(field("action")?, "action")?;
    let canonical = text(field("canonical JSON")?, "canonical JSON")?;
    let content_type = if flags & HAS_CONTENT_TYPE != 0 {
        Some(text(field("content type")?, "content type")?)
    } else {
        None
    };
    let body = Bytes::copy_from_slice(field("body")?);
    Ok(Payload {
        route,
        account,
        dedup_key,
        action,
        canonical,
        body,
        content_type,
        conflict: flags & CONFLICT != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_life_reads_back_as_written() {
        let life = Life {
            lifecycle: Lifecycle {
                state: State::InFlight,
                attempts: 7,
                due_at: 1_700_000_000_123,
                finished_at: None,
                claim_token: Some((1 << 62) + 5),
                routed: true,
            },
            received_at: 1_699_999_999_000,
            recorded: 61,
            route: 7,
        };
        assert_eq!(Life::decode(1, &life.encode()).unwrap(), life);
        let done = Life {
            lifecycle: Lifecycle {
                state: State::Done,
                finished_at: Some(0),
                claim_token: None,
                ..life.lifecycle
            },
            ..life
        };
        assert_eq!(Life::decode(1, &done.encode()).unwrap(), done);
        assert!(Life::decode(1, &done.encode()[..45]).is_err());
        // A schema-2 record is the same fields, on the default route.
        let v2 = Life::decode_v2(1, &done.encode()[..42]).unwrap();
        assert_eq!(
            v2,
            Life {
                route: DEFAULT_NO,
                ..done
            }
        );
        let unrouted = Life::received(5, UNROUTED_NO);
        assert!(
            !Life::decode(1, &unrouted.encode())
                .unwrap()
                .lifecycle
                .routed
        );
        let mut bad_state = done.encode();
        bad_state[0] = 9;
        assert!(Life::decode(1, &bad_state).is_err());
    }

    #[test]
    fn a_payload_keeps_every_byte_of_the_body() {
        let mut event = crate::conformance::ticket(1, 0);
        event.body = Bytes::from_static(b"action=X&note=a\x00b\xff\xfe");
        event.account = Some(AccountName::new("acme").unwrap());
        for (content_type, conflict) in [(None, false), (Some("application/json".into()), true)] {
            event.content_type = content_type;
            let route = RouteName::new("crm").unwrap();
            let encoded = encode_payload(&event, &route, conflict);
            let payload = decode_payload(EventId(1), &encoded).unwrap();
            assert_eq!(payload.route, route);
            assert_eq!(payload.account, event.account);
            assert_eq!(payload.body, event.body);
            assert_eq!(payload.content_type, event.content_type);
            assert_eq!(payload.conflict, conflict);
            assert_eq!(
                (payload.dedup_key, payload.action, payload.canonical),
                (
                    event.dedup_key.clone(),
                    event.action.clone(),
                    event.canonical.clone()
                )
            );
        }
        let whole = encode_payload(&event, &RouteName::unrouted(), false);
        for cut in 0..whole.len() {
            assert!(
                decode_payload(EventId(1), &whole[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }
}
