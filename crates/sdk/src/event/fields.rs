//! The flat field map of an event body, and how each field type reads and writes itself.
//!
//! Form bodies carry every value as a string and empty ones as `"null"`; JSON bodies
//! carry numbers or strings. Reading normalises both: `"null"`, `""` and JSON `null`
//! mean absent, and numeric strings become numbers where the field is a number.

use std::borrow::Cow;

use serde_json::{Map, Number, Value};
use uuid::Uuid;

use super::{EventDate, ParseError};
use crate::action::Action;

/// One received value, before it is read as a field's type. Strings borrow from the
/// body where they can (no escapes), so reading a known field copies it once at most.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum RawValue<'a> {
    /// A string (every form value; a JSON string).
    Text(Cow<'a, str>),
    /// A JSON number.
    Number(Number),
    /// A JSON `null`.
    Null,
    /// A JSON boolean, array or object: never a valid value of a known field.
    Other(Value),
    /// Already read by [`Fields::take`]; left in place so that the unknown fields
    /// keep their received order without shifting the map on every take.
    Taken,
}

impl RawValue<'_> {
    /// The value as kept for fields the SDK does not know: exactly as received.
    pub(crate) fn into_json(self) -> Value {
        match self {
            RawValue::Text(s) => Value::String(s.into_owned()),
            RawValue::Number(n) => Value::Number(n),
            RawValue::Null | RawValue::Taken => Value::Null,
            RawValue::Other(v) => v,
        }
    }

    /// Absent in the sense of Thulium's form bodies: `"null"`, `""` or JSON `null`.
    fn is_absent(&self) -> bool {
        match self {
            RawValue::Text(s) => s.is_empty() || s == "null",
            RawValue::Null => true,
            _ => false,
        }
    }

    /// A short rendering for error messages.
    fn shown(&self) -> String {
        let text = match self {
            RawValue::Text(s) => format!("{s:?}"),
            RawValue::Number(n) => n.to_string(),
            RawValue::Null | RawValue::Taken => "null".to_string(),
            RawValue::Other(v) => v.to_string(),
        };
        let mut chars = text.chars();
        let mut short: String = chars.by_ref().take(60).collect();
        if chars.next().is_some() {
            short.push('…');
        }
        short
    }
}

/// The fields of one body in received order, consumed field by field while an event
/// is built.
pub(crate) struct Fields<'a> {
    action: Action,
    values: super::parse::RawFields<'a>,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(action: Action, values: super::parse::RawFields<'a>) -> Self {
        Self { action, values }
    }

    /// Takes and reads field `name`.
    pub(crate) fn take<T: FieldType>(&mut self, name: &'static str) -> Result<T, ParseError> {
        let raw = self
            .values
            .get_mut(name)
            .map(|slot| std::mem::replace(slot, RawValue::Taken))
            .filter(|raw| !raw.is_absent() && !matches!(raw, RawValue::Taken));
        T::read(raw).map_err(|problem| match problem {
            FieldProblem::Missing => ParseError::MissingField {
                action: self.action.clone(),
                field: name,
            },
            FieldProblem::Invalid(problem) => ParseError::InvalidField {
                action: self.action.clone(),
                field: name,
                problem,
            },
        })
    }

    /// Every field not taken, exactly as received and in received order.
    pub(crate) fn rest(self) -> Map<String, Value> {
        self.values
            .into_iter()
            .filter(|(_, v)| !matches!(v, RawValue::Taken))
            .map(|(k, v)| (k.into_owned(), v.into_json()))
            .collect()
    }
}

/// Why a field could not be read.
pub(crate) enum FieldProblem {
    Missing,
    Invalid(String),
}

/// A type an event field can have. Implemented for the scalars Thulium sends and for
/// `Option` of each (absent becomes `None` instead of an error).
pub(crate) trait FieldType: Sized {
    /// Reads the field; `None` when it was absent, empty or `"null"`.
    fn read(raw: Option<RawValue<'_>>) -> Result<Self, FieldProblem>;
    /// The value as a form string; `None` when absent.
    fn text(&self) -> Option<String>;
    /// The value as JSON (`null` when absent).
    fn json(&self) -> Value;
}

/// A non-optional scalar field type.
pub(crate) trait Scalar: Sized {
    fn parse(raw: RawValue<'_>) -> Result<Self, String>;
    fn to_text(&self) -> String;
    fn to_json(&self) -> Value;
}

impl Scalar for i64 {
    fn parse(raw: RawValue<'_>) -> Result<Self, String> {
        let parsed = match &raw {
            RawValue::Text(s) => s.parse::<i64>().ok(),
            RawValue::Number(n) => n.as_i64(),
            _ => None,
        };
        parsed.ok_or_else(|| format!("must be an integer, got {}", raw.shown()))
    }
    fn to_text(&self) -> String {
        self.to_string()
    }
    fn to_json(&self) -> Value {
        Value::from(*self)
    }
}

impl Scalar for String {
    fn parse(raw: RawValue<'_>) -> Result<Self, String> {
        match raw {
            RawValue::Text(s) => Ok(s.into_owned()),
            // JSON senders may type numeric strings (phone numbers) as numbers.
            RawValue::Number(n) => Ok(n.to_string()),
            other => Err(format!("must be a string, got {}", other.shown())),
        }
    }
    fn to_text(&self) -> String {
        self.clone()
    }
    fn to_json(&self) -> Value {
        Value::String(self.clone())
    }
}

impl Scalar for Uuid {
    fn parse(raw: RawValue<'_>) -> Result<Self, String> {
        match &raw {
            RawValue::Text(s) => Uuid::try_parse(s).ok(),
            _ => None,
        }
        .ok_or_else(|| format!("must be a UUID, got {}", raw.shown()))
    }
    fn to_text(&self) -> String {
        self.hyphenated().to_string()
    }
    fn to_json(&self) -> Value {
        Value::String(self.to_text())
    }
}

impl Scalar for EventDate {
    fn parse(raw: RawValue<'_>) -> Result<Self, String> {
        match &raw {
            RawValue::Text(s) => s.parse::<EventDate>().ok(),
            _ => None,
        }
        .ok_or_else(|| format!("must be a date as YYYY-MM-DD HH:MM:SS, got {}", raw.shown()))
    }
    fn to_text(&self) -> String {
        self.to_string()
    }
    fn to_json(&self) -> Value {
        Value::String(self.to_string())
    }
}

macro_rules! field_types {
    ($($t:ty),*) => {$(
        impl FieldType for $t {
            fn read(raw: Option<RawValue<'_>>) -> Result<Self, FieldProblem> {
                let raw = raw.ok_or(FieldProblem::Missing)?;
                <$t as Scalar>::parse(raw).map_err(FieldProblem::Invalid)
            }
            fn text(&self) -> Option<String> {
                Some(Scalar::to_text(self))
            }
            fn json(&self) -> Value {
                Scalar::to_json(self)
            }
        }

        impl FieldType for Option<$t> {
            fn read(raw: Option<RawValue<'_>>) -> Result<Self, FieldProblem> {
                raw.map(<$t as Scalar>::parse).transpose().map_err(FieldProblem::Invalid)
            }
            fn text(&self) -> Option<String> {
                self.as_ref().map(Scalar::to_text)
            }
            fn json(&self) -> Value {
                self.as_ref().map_or(Value::Null, Scalar::to_json)
            }
        }
    )*};
}

field_types!(i64, String, Uuid, EventDate);

/// The `date` of an event, whether the field is required or optional.
pub(crate) trait DateField {
    fn date(&self) -> Option<EventDate>;
}

impl DateField for EventDate {
    fn date(&self) -> Option<EventDate> {
        Some(*self)
    }
}

impl DateField for Option<EventDate> {
    fn date(&self) -> Option<EventDate> {
        *self
    }
}

/// A value kept as received, written to a form body: strings as they are, anything
/// else as its JSON text (`null` for JSON null, as Thulium writes empty values).
pub(crate) fn json_to_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
