//! [`Password`]: a string that never shows itself in `Debug`, `Display` or logs, and
//! [`Redactor`]: removes known secrets from text that came from a server.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

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

/// Removes known secrets from text that a server sent back, in every form the secret
/// could come back in: plain, percent-encoded (upper- or lower-case hex, or as a form
/// value), JSON-escaped, and the base64 of `user:password` from a Basic
/// `Authorization` header, whole or cut anywhere after the point where its characters
/// start to encode the password.
///
/// Every path that turns a server's answer into text (errors, CLI output, logs) runs
/// it through one of these. Apply it before truncating, so that a cut cannot leave a
/// recognisable piece behind.
///
/// ```
/// use thulium::secret::Redactor;
///
/// let redactor = Redactor::new().basic_credentials("api_user", "s3cret/pass");
/// // The server echoed the password, its percent-encoding and a cut Authorization header.
/// let echoed = "bad password s3cret/pass (s3cret%2Fpass), got Basic YXBpX3VzZXI6czNjcmV0";
/// assert_eq!(
///     redactor.redact(echoed),
///     "bad password [REDACTED] ([REDACTED]), got Basic [REDACTED]"
/// );
/// ```
#[derive(Clone, Default)]
pub struct Redactor {
    /// Exact texts to replace, longest first so a longer form wins over its part.
    needles: Vec<String>,
    /// `(base64 of user:password, length of its shortest prefix that encodes a bit
    /// of the password)`: any run of the encoding at least that long is replaced.
    encoded_pairs: Vec<(String, usize)>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &(self.needles.len() + self.encoded_pairs.len()))
            .finish()
    }
}

impl Redactor {
    /// A redactor that knows no secret yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also removes `secret` (ignored when empty), in each of its encodings.
    pub fn secret(mut self, secret: impl AsRef<str>) -> Self {
        self.add_secret(secret.as_ref());
        self
    }

    /// Also removes `password` and the Basic encoding of `user:password`.
    pub fn basic_credentials(mut self, user: &str, password: impl Into<Password>) -> Self {
        let password = password.into();
        self.add_basic(user, password.expose());
        self
    }

    /// Adds everything another redactor removes.
    pub fn merge(mut self, other: &Redactor) -> Self {
        for needle in &other.needles {
            self.push_needle(needle.clone());
        }
        self.encoded_pairs
            .extend(other.encoded_pairs.iter().cloned());
        self
    }

    /// Whether the redactor knows no secret (so [`Self::redact`] changes nothing).
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty() && self.encoded_pairs.is_empty()
    }

    pub(crate) fn add_secret(&mut self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        let percent = utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string();
        let form: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        let json = serde_json::to_string(secret).unwrap_or_default();
        let json = json.trim_matches('"').to_string();
        // PHP's json_encode, as in Thulium's own examples, also escapes `/`.
        let php_json = json.replace('/', "\\/");
        for form in [
            secret.to_string(),
            percent.to_ascii_lowercase(),
            percent,
            form,
            json,
            php_json,
        ] {
            self.push_needle(form);
        }
    }

    pub(crate) fn add_basic(&mut self, user: &str, password: &str) {
        self.add_secret(password);
        if password.is_empty() {
            return;
        }
        let pair = format!("{user}:{password}");
        // Base64 character i carries bits 6i..6i+6; the password starts at bit
        // 8 * (user.len() + 1), so the first character that reveals any of it is
        // number floor(8 * (user.len() + 1) / 6).
        let revealing = (8 * (user.len() + 1)) / 6 + 1;
        for engine in [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::URL_SAFE,
        ] {
            let encoded = engine.encode(&pair);
            if !self.encoded_pairs.iter().any(|(e, _)| *e == encoded) {
                self.encoded_pairs
                    .push((encoded, revealing.min(pair.len().div_ceil(3) * 4)));
            }
        }
    }

    fn push_needle(&mut self, needle: String) {
        if needle.is_empty() || self.needles.contains(&needle) {
            return;
        }
        let at = self
            .needles
            .iter()
            .position(|n| n.len() < needle.len())
            .unwrap_or(self.needles.len());
        self.needles.insert(at, needle);
    }

    /// `text` with every known secret replaced by [`REDACTED`].
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut text = Cow::Borrowed(text);
        for (encoded, revealing) in &self.encoded_pairs {
            if let Some(replaced) = redact_encoded(&text, encoded, *revealing) {
                text = Cow::Owned(replaced);
            }
        }
        for needle in &self.needles {
            if text.contains(needle.as_str()) {
                text = Cow::Owned(text.replace(needle.as_str(), REDACTED));
            }
        }
        text
    }

    /// [`Self::redact`] into an owned string.
    pub fn redact_string(&self, text: String) -> String {
        match self.redact(&text) {
            Cow::Borrowed(_) => text,
            Cow::Owned(changed) => changed,
        }
    }
}

/// Replaces each run of `text` that equals a prefix of `encoded` of at least
/// `revealing` characters (extended as far as it keeps matching).
fn redact_encoded(text: &str, encoded: &str, revealing: usize) -> Option<String> {
    let start = encoded.get(..revealing)?;
    if !text.contains(start) {
        return None;
    }
    let (text_bytes, encoded_bytes) = (text.as_bytes(), encoded.as_bytes());
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    while let Some(found) = text[rest..].find(start) {
        let at = rest + found;
        let mut end = at + revealing;
        while end < text_bytes.len()
            && end - at < encoded_bytes.len()
            && text_bytes[end] == encoded_bytes[end - at]
        {
            end += 1;
        }
        out.push_str(&text[rest..at]);
        out.push_str(REDACTED);
        rest = end;
    }
    out.push_str(&text[rest..]);
    Some(out)
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
    fn redacts_every_form_of_a_secret() {
        let redactor = Redactor::new()
            .basic_credentials("api_user", "p@ss w/rd\"x")
            .secret("hook-secret");
        let engine = base64::engine::general_purpose::STANDARD;
        let basic = engine.encode("api_user:p@ss w/rd\"x");
        let forms = [
            "p@ss w/rd\"x".to_string(),
            "p%40ss%20w%2Frd%22x".into(),
            "p%40ss%20w%2frd%22x".into(),
            "p%40ss+w%2Frd%22x".into(),
            "p@ss w/rd\\\"x".into(),
            "p@ss w\\/rd\\\"x".into(),
            basic.clone(),
            "hook-secret".into(),
        ];
        for form in &forms {
            let text = format!("echo <{form}> end");
            assert_eq!(redactor.redact(&text), "echo <[REDACTED]> end", "{form}");
        }
        // A cut Authorization header: every prefix that encodes a bit of the password.
        let user_only = engine.encode("api_user:");
        let revealing = (8 * "api_user:".len()) / 6 + 1;
        for cut in revealing..=basic.len() {
            let text = format!("Basic {}", &basic[..cut]);
            assert_eq!(redactor.redact(&text), "Basic [REDACTED]", "cut at {cut}");
        }
        // The user alone is no secret and stays readable.
        let user_part = &user_only[..revealing - 1];
        assert_eq!(redactor.redact(user_part), user_part);
        assert_eq!(redactor.redact("nothing here"), "nothing here");
        assert!(!format!("{redactor:?}").contains("hook"));
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
