//! From body bytes to an action and its field map: content-type dispatch, form and
//! JSON decoding, and the errors a sender can be told about.

use std::fmt;

use indexmap::IndexMap;

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
pub(super) fn fields(
    body: &[u8],
    content_type: Option<&str>,
) -> Result<(Action, Fields), ParseError> {
    let essence = content_type
        .and_then(|ct| ct.split(';').next())
        .map(|ct| ct.trim().to_ascii_lowercase());
    let format = match essence.as_deref() {
        Some("application/x-www-form-urlencoded") => BodyFormat::Form,
        Some(ct) if ct == "application/json" || ct == "text/json" || ct.ends_with("+json") => {
            BodyFormat::Json
        }
        // No or an unexpected content type: JSON if it looks like a JSON object.
        _ if body.trim_ascii_start().starts_with(b"{") => BodyFormat::Json,
        _ => BodyFormat::Form,
    };
    let mut values = match format {
        BodyFormat::Form => decode_form(body)?,
        BodyFormat::Json => decode_json(body)?,
    };
    let action = match values.shift_remove("action") {
        Some(RawValue::Text(name)) if !name.trim().is_empty() && name != "null" => {
            Action::from(name)
        }
        Some(other) => {
            return Err(ParseError::MissingAction(format!(
                " (got {})",
                match other {
                    RawValue::Text(s) => format!("{s:?}"),
                    other => other.into_json().to_string(),
                }
            )));
        }
        None => return Err(ParseError::MissingAction(String::new())),
    };
    Ok((action.clone(), Fields::new(action, values)))
}

fn decode_form(body: &[u8]) -> Result<IndexMap<String, RawValue>, ParseError> {
    let mut values = IndexMap::new();
    for pair in body.split(|&b| b == b'&').filter(|pair| !pair.is_empty()) {
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &[][..]),
        };
        let name = decode_component(name)?;
        let value = decode_component(value)?;
        if values.contains_key(&name) {
            return Err(malformed(
                BodyFormat::Form,
                format!("field `{}` appears twice", shorten(&name)),
            ));
        }
        values.insert(name, RawValue::Text(value));
    }
    Ok(values)
}

/// `+` is a space; `%XX` a byte; the bytes must be UTF-8. Unlike `form_urlencoded`,
/// invalid UTF-8 is an error rather than silently replaced.
fn decode_component(raw: &[u8]) -> Result<String, ParseError> {
    let plus_as_space: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    let bytes: Vec<u8> = percent_encoding::percent_decode(&plus_as_space).collect();
    String::from_utf8(bytes)
        .map_err(|e| malformed(BodyFormat::Form, format!("a value is not UTF-8 ({e})")))
}

fn decode_json(body: &[u8]) -> Result<IndexMap<String, RawValue>, ParseError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| malformed(BodyFormat::Json, e.to_string()))?;
    match value {
        serde_json::Value::Object(object) => Ok(object
            .into_iter()
            .map(|(k, v)| (k, RawValue::from_json(v)))
            .collect()),
        other => Err(malformed(
            BodyFormat::Json,
            format!("expected an object, got {}", json_kind(&other)),
        )),
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn shorten(text: &str) -> String {
    let mut chars = text.chars();
    let mut short: String = chars.by_ref().take(40).collect();
    if chars.next().is_some() {
        short.push('…');
    }
    short
}
