//! HTTP Basic auth, the only scheme Thulium uses in either direction: the API user
//! towards Thulium, the subscription's `http_auth_user` towards the subscriber.
//!
//! Framework-independent (it works on [`http`] types), so the client, the axum
//! receiver, the fake Thulium and the inbox console all encode and check credentials
//! here and nowhere else.
//!
//! ```
//! use thulium::auth::{BasicAuth, basic_authorization};
//!
//! let expected = BasicAuth::new("thulium", "s3cret").unwrap();
//! let mut headers = thulium::http::HeaderMap::new();
//! assert!(!expected.verify(&headers));
//! headers.insert(thulium::http::header::AUTHORIZATION, basic_authorization("thulium", &"s3cret".into()));
//! assert!(expected.verify(&headers));
//! ```

use std::fmt;

use base64::Engine as _;
use http::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use subtle::ConstantTimeEq as _;

use crate::secret::Password;

/// The `Authorization: Basic base64(user:password)` value, marked sensitive so that
/// `http`'s and reqwest's `Debug` output hide it.
pub fn basic_authorization(user: &str, password: &Password) -> HeaderValue {
    let token =
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", password.expose()));
    let mut value = HeaderValue::from_str(&format!("Basic {token}"))
        .expect("base64 is always a valid header value");
    value.set_sensitive(true);
    value
}

/// Credentials that cannot be used safely with HTTP Basic auth.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The user is empty.
    #[error("the HTTP Basic user is empty")]
    EmptyUser,
    /// The user contains `:` or a control character, which HTTP Basic auth cannot carry.
    #[error(
        "the HTTP Basic user contains ':' or a control character, which HTTP Basic auth cannot carry"
    )]
    InvalidUser,
    /// The password is empty.
    #[error("the HTTP Basic password is empty, so anyone could pass")]
    EmptyPassword,
}

/// Checks that a user and password can be sent as HTTP Basic auth (RFC 7617): a
/// user with `:` could not be told apart from the password.
pub fn check_credentials(user: &str, password: &Password) -> Result<(), ConfigError> {
    if user.is_empty() {
        return Err(ConfigError::EmptyUser);
    }
    if user.contains(':') || user.chars().any(char::is_control) {
        return Err(ConfigError::InvalidUser);
    }
    if password.is_empty() {
        return Err(ConfigError::EmptyPassword);
    }
    Ok(())
}

/// The credentials a server expects, kept only as the SHA-256 digest of
/// `user:password`, so that checking takes the same time whatever was sent.
///
/// One digest covers both parts: the user cannot contain `:`, so the received
/// `user:password` equals the expected one exactly when the user and the password both
/// do. `Debug` shows neither.
#[derive(Clone)]
pub struct BasicAuth {
    digest: [u8; 32],
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BasicAuth(..)")
    }
}

impl BasicAuth {
    /// Expects exactly this user and password; refuses credentials that would be
    /// unsafe or unusable ([`check_credentials`]).
    pub fn new(user: impl AsRef<str>, password: impl Into<Password>) -> Result<Self, ConfigError> {
        let (user, password) = (user.as_ref(), password.into());
        check_credentials(user, &password)?;
        Ok(Self {
            digest: sha256(format!("{user}:{}", password.expose()).as_bytes()),
        })
    }

    /// Whether `headers` carry the expected credentials. The digest of what was sent
    /// is compared in constant time, and a header of any other shape is compared as if
    /// it had sent nothing, so every refusal costs alike.
    pub fn verify(&self, headers: &HeaderMap) -> bool {
        let received = basic_token(headers).unwrap_or_default();
        bool::from(sha256(&received).ct_eq(&self.digest))
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// The decoded token of `Authorization: Basic base64(user:password)`.
fn basic_token(headers: &HeaderMap) -> Option<Vec<u8>> {
    let value = headers.get(AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at(value.iter().position(|&b| b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(token.trim_ascii())
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes(authorization).unwrap(),
        );
        headers
    }

    fn basic(credentials: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
        .into_bytes()
    }

    #[test]
    fn only_the_exact_pair_is_accepted() {
        let auth = BasicAuth::new("thulium", "s3cret").unwrap();
        assert!(auth.verify(&headers(&basic("thulium:s3cret"))));
        assert!(auth.verify(&headers(b"basic dGh1bGl1bTpzM2NyZXQ=")));
        for refused in [
            basic("thulium:s3cre"),
            basic("thulium:s3cret "),
            basic("thuliu:s3cret"),
            basic("thulium"),
            basic(""),
            b"Bearer dGh1bGl1bTpzM2NyZXQ=".to_vec(),
            b"Basic not base64!".to_vec(),
            b"Basic".to_vec(),
        ] {
            assert!(
                !auth.verify(&headers(&refused)),
                "{}",
                String::from_utf8_lossy(&refused)
            );
        }
        assert!(!auth.verify(&HeaderMap::new()));
        assert_eq!(format!("{auth:?}"), "BasicAuth(..)");
    }

    #[test]
    fn encoding_round_trips_and_is_sensitive() {
        let value = basic_authorization("thulium", &"s3cret".into());
        assert!(value.is_sensitive());
        let auth = BasicAuth::new("thulium", "s3cret").unwrap();
        let mut map = HeaderMap::new();
        map.insert(AUTHORIZATION, value);
        assert!(auth.verify(&map));
    }

    #[test]
    fn unusable_credentials_are_refused() {
        assert_eq!(
            BasicAuth::new("", "pw").unwrap_err(),
            ConfigError::EmptyUser
        );
        assert_eq!(
            BasicAuth::new("a:b", "pw").unwrap_err(),
            ConfigError::InvalidUser
        );
        assert_eq!(
            BasicAuth::new("a\n", "pw").unwrap_err(),
            ConfigError::InvalidUser
        );
        assert_eq!(
            BasicAuth::new("a", "").unwrap_err(),
            ConfigError::EmptyPassword
        );
    }
}
