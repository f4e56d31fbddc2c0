//! From body bytes to an action and its field map: content-type dispatch, form and
//! JSON decoding, and the errors a sender can be told about.

use std::borrow::Cow;
use std::fmt;

use indexmap::IndexMap;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::fields::{Fields, RawValue};
use crate::action::Action;

/// The encoding of an event body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyFormat {
    /// `application/x-www-form-urlencoded`, as Thulium sends events.
    Form,
    /// `application/json`.
    Json,
}

impl BodyFormat {
    /// `event` encoded this way: [`super::Event::to_form`] or [`super::Event::to_json`].
    pub fn encode(self, event: &super::Event) -> String {
        match self {
            BodyFormat::Form => event.to_form(),
            BodyFormat::Json => event.to_json(),
        }
    }

    /// The name used on command lines and in configuration: `form` or `json`.
    pub fn name(self) -> &'static str {
        match self {
            BodyFormat::Form => "form",
            BodyFormat::Json => "json",
        }
    }

    /// How [`super::Event::parse`] reads `body` sent with `content_type`: the form
    /// or JSON content types by name; with none or another one, JSON if the body
    /// looks like a JSON object, else form data.
    ///
    /// ```
    /// use thulium::event::BodyFormat;
    /// assert_eq!(BodyFormat::detect(br#" {"action":"X"}"#, None), BodyFormat::Json);
    /// assert_eq!(BodyFormat::detect(b"action=X", None), BodyFormat::Form);
    /// assert_eq!(BodyFormat::detect(b"{}", Some("application/x-www-form-urlencoded")), BodyFormat::Form);
    /// ```
    pub fn detect(body: &[u8], content_type: Option<&str>) -> Self {
        let essence = content_type
            .and_then(|ct| ct.split(';').next())
            .map(str::trim);
        match essence {
            Some(ct) if ct.eq_ignore_ascii_case("application/x-www-form-urlencoded") => {
                BodyFormat::Form
            }
            Some(ct)
                if ct.eq_ignore_ascii_case("application/json")
                    || ct.eq_ignore_ascii_case("text/json")
                    || ct.to_ascii_lowercase().ends_with("+json") =>
            {
                BodyFormat::Json
            }
            _ if body.trim_ascii_start().starts_with(b"{") => BodyFormat::Json,
            _ => BodyFormat::Form,
        }
    }

    /// The `Content-Type` of a body in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            BodyFormat::Form => "application/x-www-form-urlencoded",
            BodyFormat::Json => "application/json",
        }
    }
}

impl std::str::FromStr for BodyFormat {
    type Err = String;

    /// `form` or `json` (any case).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "form" => Ok(BodyFormat::Form),
            "json" => Ok(BodyFormat::Json),
            _ => Err(format!("`{text}` is not a body format; use form or json")),
        }
    }
}

impl serde::Serialize for BodyFormat {
    /// As its [`BodyFormat::name`].
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl fmt::Display for BodyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BodyFormat::Form => "form data",
            BodyFormat::Json => "JSON",
        })
    }
}

/// Why a body is not an event. `Display` is one line fit for a `400` answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The body is not valid in its encoding.
    #[error("the body is not valid {format}: {reason}")]
    Malformed {
        /// The encoding it was read as.
        format: BodyFormat,
        /// What is wrong, with a position where the decoder gives one.
        reason: String,
    },
    /// The body has no usable `action` field.
    #[error("the body has no `action` field naming the event{0}")]
    MissingAction(String),
    /// A known action lacks a required field (or it is empty or `"null"`).
    #[error("{action}: required field `{field}` is missing or empty")]
    MissingField {
        /// The event's action.
        action: Action,
        /// The missing field.
        field: &'static str,
    },
    /// A known action has a field whose value cannot be read.
    #[error("{action}: field `{field}` {problem}")]
    InvalidField {
        /// The event's action.
        action: Action,
        /// The field.
        field: &'static str,
        /// What is wrong with the value, with the value (shortened).
        problem: String,
    },
}

fn malformed(format: BodyFormat, reason: impl Into<String>) -> ParseError {
    ParseError::Malformed {
        format,
        reason: reason.into(),
    }
}

/// Decides the encoding and decodes the body into its action and fields.
pub(super) fn fields<'a>(
    body: &'a [u8],
    content_type: Option<&str>,
) -> Result<(Action, Fields<'a>), ParseError> {
    let values = match BodyFormat::detect(body, content_type) {
        BodyFormat::Form => decode_form(body)?,
        BodyFormat::Json => decode_json(body)?,
    };
    split_action(values)
}

/// Separates the `action` from the other fields.
pub(super) fn split_action(mut values: RawFields<'_>) -> Result<(Action, Fields<'_>), ParseError> {
    let action = match values.shift_remove("action") {
        Some(RawValue::Text(name)) if !name.trim().is_empty() && name != "null" => {
            Action::from(name.as_ref())
        }
        Some(RawValue::Text(name)) => {
            return Err(ParseError::MissingAction(format!(" (got {name:?})")));
        }
        Some(other) => {
            return Err(ParseError::MissingAction(format!(
                " (got {})",
                other.into_json()
            )));
        }
        None => return Err(ParseError::MissingAction(String::new())),
    };
    Ok((action.clone(), Fields::new(action, values)))
}

/// A body's fields in received order. foldhash rather than SipHash: hashing the
/// handful of short names dominated parsing, and the seed is still random per
/// process; the body limit bounds what colliding names could cost.
pub(super) type RawFields<'a> = IndexMap<Cow<'a, str>, RawValue<'a>, foldhash::fast::RandomState>;

fn decode_form(body: &[u8]) -> Result<RawFields<'_>, ParseError> {
    let mut values = RawFields::with_capacity_and_hasher(8, Default::default());
    for pair in body.split(|&b| b == b'&').filter(|pair| !pair.is_empty()) {
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &[][..]),
        };
        let value = RawValue::Text(decode_component(value)?);
        match values.entry(decode_component(name)?) {
            indexmap::map::Entry::Occupied(entry) => {
                return Err(malformed(
                    BodyFormat::Form,
                    format!("field `{}` appears twice", shorten(entry.key())),
                ));
            }
            indexmap::map::Entry::Vacant(entry) => {
                entry.insert(value);
            }
        }
    }
    Ok(values)
}

/// `+` is a space; `%XX` a byte; the bytes must be UTF-8. Unlike `form_urlencoded`,
/// invalid UTF-8 is an error rather than silently replaced. Borrows from the body
/// when nothing needs decoding.
fn decode_component(raw: &[u8]) -> Result<Cow<'_, str>, ParseError> {
    let not_utf8 =
        |e: std::str::Utf8Error| malformed(BodyFormat::Form, format!("a value is not UTF-8 ({e})"));
    // Most names and values need no decoding: borrow them (`contains` is a memchr).
    if !raw.contains(&b'%') && !raw.contains(&b'+') {
        return std::str::from_utf8(raw)
            .map(Cow::Borrowed)
            .map_err(not_utf8);
    }
    if raw.contains(&b'+') {
        let spaced: Vec<u8> = raw
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        let decoded = match percent_encoding::percent_decode(&spaced).decode_utf8() {
            // Nothing was percent-encoded: reuse the spaced copy.
            Ok(Cow::Borrowed(_)) => String::from_utf8(spaced).map_err(|e| e.utf8_error()),
            Ok(Cow::Owned(text)) => Ok(text),
            Err(error) => Err(error),
        };
        return decoded.map(Cow::Owned).map_err(not_utf8);
    }
    percent_encoding::percent_decode(raw)
        .decode_utf8()
        .map_err(not_utf8)
}

fn decode_json(body: &[u8]) -> Result<RawFields<'_>, ParseError> {
    serde_json::from_slice::<JsonObject<'_>>(body)
        .map(|object| object.0)
        .map_err(|e| malformed(BodyFormat::Json, e.to_string()))
}

/// A flat JSON object read straight into raw fields, borrowing unescaped strings.
/// Works with any serde format, which is how `Event` implements `Deserialize`.
pub(super) struct JsonObject<'a>(pub(super) RawFields<'a>);

impl<'de> Deserialize<'de> for JsonObject<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = JsonObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut values = RawFields::with_capacity_and_hasher(
                    map.size_hint().unwrap_or(8).min(64),
                    Default::default(),
                );
                while let Some(JsonStr(name)) = map.next_key()? {
                    match values.entry(name) {
                        indexmap::map::Entry::Occupied(entry) => {
                            return Err(de::Error::custom(format!(
                                "field `{}` appears twice",
                                shorten(entry.key())
                            )));
                        }
                        indexmap::map::Entry::Vacant(entry) => {
                            entry.insert(map.next_value()?);
                        }
                    }
                }
                Ok(JsonObject(values))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// A JSON string, borrowed from the body unless it had escapes.
struct JsonStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for JsonStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = JsonStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}

impl<'de> Deserialize<'de> for RawValue<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = RawValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(RawValue::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawValue::Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(RawValue::Text(Cow::Owned(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(RawValue::Number(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(RawValue::Number(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                // JSON has no NaN or infinity, so this always holds a number.
                Ok(serde_json::Number::from_f64(v).map_or(RawValue::Null, RawValue::Number))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(RawValue::Other(Value::Bool(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(RawValue::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(RawValue::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                RawValue::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Value::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(RawValue::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Value::deserialize(de::value::MapAccessDeserializer::new(map)).map(RawValue::Other)
            }
        }
        deserializer.deserialize_any(ValueVisitor)
    }
}

/// A field name or value as an error quotes it: at most 41 characters.
fn shorten(text: &str) -> std::borrow::Cow<'_, str> {
    crate::text::shorten(text, 41)
}
