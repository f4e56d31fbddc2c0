//! Typed Thulium events: parse what Thulium POSTs to a subscription URL, and write it.
//!
//! Thulium's payload is flat: an `action` naming the event, plus its fields. Bodies come
//! form-encoded (every value a string, empty ones as `"null"`) or as JSON; [`Event::parse`]
//! takes either, with or without a content type. Actions this SDK does not know are
//! kept whole in [`Event::Other`]; fields it does not know are kept in each event's
//! `extra`. Nothing is dropped.
//!
//! ```
//! use thulium::event::Event;
//!
//! let body = b"action=CUSTOMER_UPDATED&customer_id=682&company_id=null&date=2026-09-04+12%3A19%3A43";
//! let event = Event::parse(body, Some("application/x-www-form-urlencoded")).unwrap();
//! let Event::CustomerUpdated(update) = &event else { panic!("{event:?}") };
//! assert_eq!(update.customer_id, 682);
//! assert_eq!(update.company_id, None);
//! assert_eq!(event.occurred_at().unwrap().to_string(), "2026-09-04 12:19:43");
//! assert_eq!(event.dedup_key(), "CUSTOMER_UPDATED|customer_id=682|date=2026-09-04 12:19:43");
//! ```

pub mod examples;
mod fields;
mod parse;

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};
use time::PrimitiveDateTime;
use uuid::Uuid;

use crate::action::Action;
use fields::{DateField, FieldType, Fields, json_to_text};
pub use parse::{BodyFormat, ParseError};

/// When an event happened, as Thulium writes it: `YYYY-MM-DD HH:MM:SS`.
///
/// Thulium states no time zone (it is the account's local time), so this is a civil
/// date-time; attach the account's offset with [`EventDate::assume_offset`].
///
/// ```
/// use thulium::event::EventDate;
///
/// let date: EventDate = "2016-04-20 09:46:24".parse().unwrap();
/// assert_eq!(date.to_string(), "2016-04-20 09:46:24");
/// assert!("2016-02-30 09:46:24".parse::<EventDate>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventDate(PrimitiveDateTime);

impl EventDate {
    /// Wraps a civil date-time (sub-second precision is dropped, as Thulium has none).
    pub fn new(value: PrimitiveDateTime) -> Self {
        Self(
            value
                .replace_nanosecond(0)
                .expect("0 is a valid nanosecond"),
        )
    }

    /// The civil date-time.
    pub fn as_primitive(&self) -> PrimitiveDateTime {
        self.0
    }

    /// The instant, given the account's UTC offset.
    pub fn assume_offset(&self, offset: time::UtcOffset) -> time::OffsetDateTime {
        self.0.assume_offset(offset)
    }
}

impl fmt::Display for EventDate {
    /// `YYYY-MM-DD HH:MM:SS`. (A year outside 0 to 9999, possible only through
    /// [`EventDate::new`], prints with more or fewer digits and does not parse back.)
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (date, time) = (self.0.date(), self.0.time());
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            date.year(),
            u8::from(date.month()),
            date.day(),
            time.hour(),
            time.minute(),
            time.second()
        )
    }
}

/// The text is not a valid `YYYY-MM-DD HH:MM:SS` date.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a date as YYYY-MM-DD HH:MM:SS: {0}")]
pub struct InvalidDate(String);

impl FromStr for EventDate {
    type Err = InvalidDate;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        // Fixed width, so the digits are read by position; `time` then checks that
        // the calendar date and the time of day exist.
        let bytes = text.as_bytes();
        let shape_ok = bytes.len() == 19
            && bytes.iter().enumerate().all(|(i, &b)| match i {
                4 | 7 => b == b'-',
                10 => b == b' ',
                13 | 16 => b == b':',
                _ => b.is_ascii_digit(),
            });
        if !shape_ok {
            return Err(InvalidDate("expected YYYY-MM-DD HH:MM:SS".into()));
        }
        let number = |range: std::ops::Range<usize>| {
            bytes[range]
                .iter()
                .fold(0u16, |n, &b| n * 10 + u16::from(b - b'0'))
        };
        // Each value fits: at most four digits for the year, two for the rest.
        let small = |range| number(range) as u8;
        let month = time::Month::try_from(small(5..7)).map_err(|e| InvalidDate(e.to_string()))?;
        let date = time::Date::from_calendar_date(i32::from(number(0..4)), month, small(8..10))
            .map_err(|e| InvalidDate(e.to_string()))?;
        let time = time::Time::from_hms(small(11..13), small(14..16), small(17..19))
            .map_err(|e| InvalidDate(e.to_string()))?;
        Ok(EventDate(PrimitiveDateTime::new(date, time)))
    }
}

impl serde::Serialize for EventDate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for EventDate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for EventDate {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EventDate".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$",
        })
    }
}

macro_rules! events {
    ($(
        $(#[$doc:meta])*
        $name:ident {
            $( $(#[$field_doc:meta])* $field:ident : $ty:ty, )*
        }
        key($($key:ident),*)
    )*) => {
        $(
            $(#[$doc])*
            ///
            /// Not exhaustive, so that a field Thulium adds can be added here without
            /// breaking code that reads events: build one with `new` (tests) or by
            /// parsing, then set optional fields directly.
            #[derive(Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
            #[non_exhaustive]
            pub struct $name {
                $( $(#[$field_doc])* pub $field: $ty, )*
                /// Fields this SDK does not know, exactly as received.
                #[schemars(skip)]
                pub extra: Map<String, Value>,
            }

            impl $name {
                /// The action of this event.
                pub const ACTION: Action = Action::$name;

                /// The event with every field Thulium documents, in its order, and no
                /// unknown fields. A field added later will be optional, and start
                /// `None` here, so this signature stays.
                #[allow(clippy::too_many_arguments)]
                pub fn new($( $field: $ty ),*) -> Self {
                    Self {
                        $( $field, )*
                        extra: Map::new(),
                    }
                }

                fn read(fields: &mut Fields<'_>) -> Result<Self, ParseError> {
                    Ok(Self {
                        $( $field: fields.take(stringify!($field))?, )*
                        extra: Map::new(),
                    })
                }

                fn write(&self, out: &mut Vec<(&'static str, Option<String>, Value)>) {
                    $( out.push((
                        stringify!($field),
                        FieldType::text(&self.$field),
                        FieldType::json(&self.$field),
                    )); )*
                }

                fn key(&self) -> Vec<(&'static str, Option<String>)> {
                    vec![$( (stringify!($key), FieldType::text(&self.$key)), )*]
                }
            }
        )*

        /// One event Thulium delivered. Each known action has a variant with typed
        /// fields; any other action is kept, with every field, in [`Event::Other`].
        #[derive(Clone, Debug, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum Event {
            $(
                $(#[$doc])*
                $name($name),
            )*
            /// An action this SDK does not know, with every field as received.
            Other(OtherEvent),
        }

        impl Event {
            /// The action of the event.
            pub fn action(&self) -> Action {
                match self {
                    $( Event::$name(_) => Action::$name, )*
                    Event::Other(other) => other.action.clone(),
                }
            }

            /// When the event happened, if the event says.
            pub fn occurred_at(&self) -> Option<EventDate> {
                match self {
                    $( Event::$name(event) => DateField::date(&event.date), )*
                    Event::Other(other) => other
                        .fields
                        .get("date")
                        .and_then(Value::as_str)
                        .and_then(|d| d.parse().ok()),
                }
            }

            /// Fields the SDK does not know, exactly as received.
            pub fn extra(&self) -> &Map<String, Value> {
                match self {
                    $( Event::$name(event) => &event.extra, )*
                    Event::Other(other) => &other.fields,
                }
            }

            fn read(action: Action, mut fields: Fields<'_>) -> Result<Self, ParseError> {
                let event = match action {
                    $( Action::$name => {
                        let mut event = $name::read(&mut fields)?;
                        event.extra = fields.rest();
                        Event::$name(event)
                    } )*
                    other => Event::Other(OtherEvent {
                        action: other,
                        fields: fields.rest(),
                    }),
                };
                Ok(event)
            }

            /// The typed fields in the order Thulium documents them, as
            /// `(name, form text, JSON value)`.
            fn known_fields(&self) -> Vec<(&'static str, Option<String>, Value)> {
                let mut out = Vec::new();
                match self {
                    $( Event::$name(event) => event.write(&mut out), )*
                    Event::Other(_) => {}
                }
                out
            }

            fn key_fields(&self) -> Vec<(&'static str, Option<String>)> {
                match self {
                    $( Event::$name(event) => event.key(), )*
                    Event::Other(_) => Vec::new(),
                }
            }
        }

        $(
            impl From<$name> for Event {
                fn from(event: $name) -> Self {
                    Event::$name(event)
                }
            }
        )*
    };
}

events! {
    /// `CHAT_AGENT_ASSIGNED`: an agent was assigned to a chat conversation.
    ChatAgentAssigned {
        /// The conversation.
        conversation_id: Uuid,
        /// The assigned agent's login.
        agent_login: String,
        /// When it happened.
        date: EventDate,
        /// The chat queue.
        chat_queue_id: i64,
    }
    key(conversation_id, agent_login, date)

    /// `CHAT_CONVERSATION_CLOSED`: a chat conversation was closed.
    ChatConversationClosed {
        /// The conversation.
        conversation_id: Uuid,
        /// When it happened.
        date: EventDate,
        /// The chat queue.
        chat_queue_id: i64,
    }
    key(conversation_id, date)

    /// `CHAT_CONVERSATION_CREATED`: a client started a chat conversation.
    ChatConversationCreated {
        /// The conversation.
        conversation_id: Uuid,
        /// The client's name, if given.
        client_name: Option<String>,
        /// The client's e-mail address, if given.
        client_email: Option<String>,
        /// When it happened.
        date: EventDate,
        /// The chat queue.
        chat_queue_id: i64,
    }
    key(conversation_id, date)

    /// `CUSTOMER_CREATED`: a customer record was created.
    CustomerCreated {
        /// The customer.
        customer_id: i64,
        /// The customer's company, if any.
        company_id: Option<i64>,
        /// When it happened.
        date: EventDate,
    }
    key(customer_id, date)

    /// `CUSTOMER_UPDATED`: a customer record was updated.
    CustomerUpdated {
        /// The customer.
        customer_id: i64,
        /// The customer's company, if any.
        company_id: Option<i64>,
        /// When it happened.
        date: EventDate,
    }
    key(customer_id, date)

    /// `AGENT_RINGING`: an agent's phone is ringing.
    AgentRinging {
        /// The call, such as `1416225570.341`.
        connection_id: String,
        /// The call queue.
        queue_id: i64,
        /// The agent's login.
        agent_login: String,
        /// The caller's number, unless withheld.
        source_number: Option<String>,
        /// The number called.
        destination_number: String,
        /// When it happened.
        date: EventDate,
    }
    key(connection_id, agent_login, date)

    /// `RECORDING_READY`: a call recording is ready.
    RecordingReady {
        /// The call, such as `1416225570.341`.
        connection_id: String,
        /// The recording's path, such as `SOME-QUEUE/2014-11-17/2014-11-17_125932_1416225570.341.wav`.
        filename: String,
        /// When it happened.
        date: EventDate,
    }
    key(connection_id, filename, date)

    /// `TICKET_CREATED`: a ticket was created.
    TicketCreated {
        /// The ticket.
        ticket_id: i64,
        /// The agent's login, if an agent created it.
        agent_login: Option<String>,
        /// How the ticket came in, such as `in_behalf_of`.
        direction: String,
        /// When it happened.
        date: EventDate,
        /// The customer.
        customer_id: i64,
    }
    key(ticket_id, date)

    /// `TICKET_MESSAGE_RECEIVED`: a message was received on a ticket.
    TicketMessageReceived {
        /// The ticket.
        ticket_id: i64,
        /// When it happened, if Thulium says.
        date: Option<EventDate>,
    }
    key(ticket_id, date)
}

/// An event whose action this SDK does not know.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OtherEvent {
    /// The action, exactly as received (an [`Action::Other`] holding its name).
    pub action: Action,
    /// Every other field, exactly as received (form values are strings).
    pub fields: Map<String, Value>,
}

impl OtherEvent {
    /// An event of `action` with these fields (for tests and forwarders). A known
    /// action built this way stays an `OtherEvent`; [`Event::parse`] would type it.
    pub fn new(action: impl Into<Action>, fields: Map<String, Value>) -> Self {
        Self {
            action: action.into(),
            fields,
        }
    }
}

impl Event {
    /// Parses a body given its `Content-Type` (`None` if the request had none).
    ///
    /// `application/x-www-form-urlencoded` is read as a form, `application/json` (or
    /// any `+json`) as JSON; anything else is read as JSON if it starts with `{`, and
    /// as a form otherwise. Never panics, whatever the input.
    pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<Event, ParseError> {
        let (action, fields) = parse::fields(body, content_type)?;
        Event::read(action, fields)
    }

    /// Parses a form-encoded body.
    pub fn from_form(body: &[u8]) -> Result<Event, ParseError> {
        Event::parse(body, Some("application/x-www-form-urlencoded"))
    }

    /// Parses a JSON body.
    pub fn from_json(body: &[u8]) -> Result<Event, ParseError> {
        Event::parse(body, Some("application/json"))
    }

    /// The body as Thulium sends it form-encoded: `action` first, then the fields in
    /// documented order (absent ones as `null`), then unknown fields. Every value
    /// becomes a string, so non-string values of unknown fields come back as text.
    pub fn to_form(&self) -> String {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("action", self.action().as_str());
        for (name, text, _) in self.known_fields() {
            form.append_pair(name, text.as_deref().unwrap_or("null"));
        }
        for (name, value) in self.extra() {
            form.append_pair(name, &json_to_text(value));
        }
        form.finish()
    }

    /// The body as a flat JSON object, in the order of [`Self::fields`] after
    /// `action`: typed fields as numbers or strings, absent ones as `null`, unknown
    /// fields as received.
    pub fn to_json_value(&self) -> Value {
        let mut object = Map::new();
        object.insert("action".into(), Value::String(self.action().to_string()));
        object.extend(self.fields());
        Value::Object(object)
    }

    /// Every field but `action`: the typed ones in Thulium's documented order (absent
    /// ones as `null`), then the unknown ones in received order.
    pub fn fields(&self) -> Vec<(String, Value)> {
        self.known_fields()
            .into_iter()
            .map(|(name, _, json)| (name.to_string(), json))
            .chain(self.extra().iter().map(|(k, v)| (k.clone(), v.clone())))
            .collect()
    }

    /// [`Self::to_json_value`] as a string, written straight from the fields (the
    /// inbox makes one per event received).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A key that is the same for every delivery of one event, to drop redeliveries.
    ///
    /// Thulium sends no event id, so the key is the action, the event's natural ids
    /// and its date (for unknown actions: every field). Two distinct events with the
    /// same ids in the same second get the same key; for `CUSTOMER_UPDATED` and
    /// `TICKET_MESSAGE_RECEIVED` that can happen, so deduplicate those only if losing
    /// such a twin is acceptable.
    pub fn dedup_key(&self) -> String {
        let mut key = self.action().as_str().to_string();
        if let Event::Other(other) = self {
            // Sorted, so that the order a sender chose does not change the key.
            let mut fields: Vec<_> = other.fields.iter().collect();
            fields.sort_by(|a, b| a.0.cmp(b.0));
            for (name, value) in fields {
                // As text, so `1` from JSON and `"1"` from a form give the same key.
                key.push_str(&format!("|{name}={}", json_to_text(value)));
            }
            return key;
        }
        for (name, text) in self.key_fields() {
            key.push('|');
            key.push_str(name);
            key.push('=');
            key.push_str(text.as_deref().unwrap_or(""));
        }
        key
    }
}

impl serde::Serialize for Event {
    /// Serializes as [`Event::to_json_value`], without building it.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let known = self.known_fields();
        let extra = self.extra();
        let mut map = serializer.serialize_map(Some(1 + known.len() + extra.len()))?;
        map.serialize_entry("action", self.action().as_str())?;
        for (name, _, json) in &known {
            map.serialize_entry(name, json)?;
        }
        for (name, value) in extra {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl<'de> serde::Deserialize<'de> for Event {
    /// Reads the flat object [`Event::to_json_value`] writes (or Thulium's JSON body),
    /// with the same rules and errors as [`Event::parse`]; for events kept in a store.
    ///
    /// ```
    /// use thulium::event::Event;
    ///
    /// let event = Event::from_form(b"action=TICKET_MESSAGE_RECEIVED&ticket_id=12").unwrap();
    /// let stored = serde_json::to_value(&event).unwrap();
    /// assert_eq!(serde_json::from_value::<Event>(stored).unwrap(), event);
    /// ```
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let parse::JsonObject(values) = serde::Deserialize::deserialize(deserializer)?;
        let (action, fields) = parse::split_action(values).map_err(D::Error::custom)?;
        Event::read(action, fields).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests;
