//! [`Password`]: a string that never shows itself in `Debug`, `Display` or logs.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// What `Debug` and `Display` print instead of a password.
pub const REDACTED: &str = "[REDACTED]";

/// A password: the API user's, or the HTTP Basic password Thulium sends with events.
///
/// It is zeroed when dropped, compares in constant time, and prints as `[REDACTED]`.
/// It serializes as the plain string, because Thulium's API needs the value itself;
/// the OpenAPI spec marks such fields `format: password`, which the code generator
/// turns into this type. An unset password is the empty string, as Thulium returns it.
///
/// ```
/// use thulium::Password;
///
/// let password = Password::new("s3cret");
/// assert_eq!(format!("{password:?}"), "Password([REDACTED])");
/// assert_eq!(password.to_string(), "[REDACTED]");
/// assert_eq!(password.expose(), "s3cret");
/// ```
#[derive(Clone, Default)]
pub struct Password(SecretString);

impl Password {
    /// Wraps a password.
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    /// The password itself. Call it only where the value must leave the program.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Whether the password is unset (Thulium sends unset auth fields as `""`).
    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Password({REDACTED})")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl PartialEq for Password {
    fn eq(&self, other: &Self) -> bool {
        self.expose()
            .as_bytes()
            .ct_eq(other.expose().as_bytes())
            .into()
    }
}

impl Eq for Password {}

impl From<String> for Password {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for Password {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl serde::Serialize for Password {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.expose())
    }
}

impl<'de> serde::Deserialize<'de> for Password {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

impl schemars::JsonSchema for Password {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Password".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "format": "password", "writeOnly": true })
    }

    fn inline_schema() -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let p = Password::new("hunter2");
        assert!(!format!("{p:?} {p} {p:#?}").contains("hunter2"));
    }

    #[test]
    fn serializes_as_the_plain_string_and_back() {
        let p = Password::new("hunter2");
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"hunter2\"");
        let back: Password = serde_json::from_str("\"hunter2\"").unwrap();
        assert_eq!(back, p);
        let empty: Password = serde_json::from_str("\"\"").unwrap();
        assert!(empty.is_empty());
        assert_ne!(empty, p);
    }
}
