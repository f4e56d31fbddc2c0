//! The example events of Thulium's docs and of integrators' tests, kept here once:
//! the fake Thulium, the quickstart, `thulium events send|emit` and the tests build
//! their events from them.
//!
//! ```
//! use thulium::event::examples;
//!
//! let vendor = examples::event("TICKET_CREATED", &[("ticket_id".into(), "99".into())]).unwrap();
//! assert!(vendor.to_form().starts_with("action=TICKET_CREATED&ticket_id=99&agent_login=jkowalski"));
//! assert_eq!(vendor.occurred_at().unwrap().to_string(), "2014-11-17 12:59:32");
//!
//! // The same event happening now: two of them made a second apart are two events.
//! let now = examples::event_now("TICKET_CREATED", &[]).unwrap();
//! assert_ne!(now.occurred_at(), vendor.occurred_at());
//! ```

use serde_json::{Map, Value};

use super::{Event, EventDate, ParseError};
use crate::action::Action;

/// The example fields of a known action, as the docs give them (empty for actions the
/// SDK does not know).
pub fn fields(action: &Action) -> &'static [(&'static str, &'static str)] {
    const CONVERSATION: &str = "83a3f676-e831-47d0-bba7-beda6c0bde88";
    match action {
        Action::ChatAgentAssigned => &[
            ("conversation_id", CONVERSATION),
            ("agent_login", "jkowalski"),
            ("date", "2016-04-20 09:46:24"),
            ("chat_queue_id", "1"),
        ],
        Action::ChatConversationClosed => &[
            ("conversation_id", CONVERSATION),
            ("date", "2016-04-20 09:46:24"),
            ("chat_queue_id", "1"),
        ],
        Action::ChatConversationCreated => &[
            ("conversation_id", CONVERSATION),
            ("client_name", "John Smith"),
            ("client_email", "john.smith@foo.bar"),
            ("date", "2016-04-20 09:46:24"),
            ("chat_queue_id", "1"),
        ],
        Action::CustomerCreated | Action::CustomerUpdated => &[
            ("customer_id", "682"),
            ("company_id", "null"),
            ("date", "2026-09-04 12:19:43"),
        ],
        Action::AgentRinging => &[
            ("connection_id", "1416225570.341"),
            ("queue_id", "155"),
            ("agent_login", "jkowalski"),
            ("source_number", "523993855"),
            ("destination_number", "162"),
            ("date", "2014-11-17 12:59:32"),
        ],
        Action::RecordingReady => &[
            ("connection_id", "1416225570.341"),
            (
                "filename",
                "SOME-QUEUE/2014-11-17/2014-11-17_125932_1416225570.341.wav",
            ),
            ("date", "2014-11-17 12:59:32"),
        ],
        Action::TicketCreated => &[
            ("ticket_id", "12"),
            ("agent_login", "jkowalski"),
            ("direction", "in_behalf_of"),
            ("date", "2014-11-17 12:59:32"),
            ("customer_id", "154"),
        ],
        Action::TicketMessageReceived => &[("ticket_id", "12")],
        _ => &[],
    }
}

/// An event of `action` with the example values (dates included), each overridden by
/// `overrides` of the same name; other `overrides` are added. Checked as a receiver
/// would check it, so a bad override is a [`ParseError`].
pub fn event(action: &str, overrides: &[(String, String)]) -> Result<Event, ParseError> {
    build(action, None, overrides)
}

/// Like [`event`], with `date` set to the current time (UTC, to the second) unless
/// `overrides` give one: events made at different times get different dedup keys, as
/// real ones do. For actions the SDK does not know, `date` is added the same way.
pub fn event_now(action: &str, overrides: &[(String, String)]) -> Result<Event, ParseError> {
    let now = time::OffsetDateTime::now_utc();
    let date = EventDate::new(time::PrimitiveDateTime::new(now.date(), now.time()));
    build(action, Some(date), overrides)
}

fn build(
    action: &str,
    date: Option<EventDate>,
    overrides: &[(String, String)],
) -> Result<Event, ParseError> {
    let mut body = Map::new();
    body.insert("action".into(), Value::String(action.to_string()));
    for (name, value) in fields(&Action::from(action)) {
        body.insert((*name).to_string(), Value::String((*value).to_string()));
    }
    if let Some(date) = date {
        body.insert("date".into(), Value::String(date.to_string()));
    }
    for (name, value) in overrides {
        body.insert(name.clone(), Value::String(value.clone()));
    }
    Event::from_json(Value::Object(body).to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_date_given_wins_over_now() {
        let event = super::event_now(
            "TICKET_CREATED",
            &[("date".into(), "2020-01-02 03:04:05".into())],
        )
        .unwrap();
        assert_eq!(
            event.occurred_at().unwrap().to_string(),
            "2020-01-02 03:04:05"
        );
        let unknown = super::event_now("CALL_QUEUE_ENTERED", &[]).unwrap();
        assert!(unknown.occurred_at().is_some());
    }

    #[test]
    fn every_known_action_has_a_valid_sample() {
        for action in crate::Action::KNOWN {
            let event = super::event(action.as_str(), &[]).unwrap();
            assert_eq!(&event.action(), action);
            assert!(
                event.extra().is_empty(),
                "{action}: sample fields are all known"
            );
        }
    }
}
