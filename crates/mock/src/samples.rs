//! Realistic example events: the values from Thulium's docs and integrators' tests,
//! used by the quickstart and by `thulium events send`.

use serde_json::{Map, Value};
use thulium::Action;
use thulium::event::{Event, ParseError};

/// The example fields of a known action (empty for actions the SDK does not know).
pub fn sample_fields(action: &Action) -> &'static [(&'static str, &'static str)] {
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

/// An event of `action` with the example values, each overridden by `fields` of the
/// same name; other `fields` are added. Checked as a receiver would check it.
///
/// ```
/// let event = thulium_mock::samples::event("TICKET_CREATED", &[("ticket_id".into(), "99".into())]).unwrap();
/// assert!(event.to_form().starts_with("action=TICKET_CREATED&ticket_id=99&agent_login=jkowalski"));
/// ```
pub fn event(action: &str, fields: &[(String, String)]) -> Result<Event, ParseError> {
    let mut body = Map::new();
    body.insert("action".into(), Value::String(action.to_string()));
    for (name, value) in sample_fields(&Action::from(action)) {
        body.insert((*name).to_string(), Value::String((*value).to_string()));
    }
    for (name, value) in fields {
        body.insert(name.clone(), Value::String(value.clone()));
    }
    Event::from_json(Value::Object(body).to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_known_action_has_a_valid_sample() {
        for action in thulium::Action::KNOWN {
            let event = super::event(action.as_str(), &[]).unwrap();
            assert_eq!(&event.action(), action);
            assert!(
                event.extra().is_empty(),
                "{action}: sample fields are all known"
            );
        }
    }
}
