//! Signed forwards, as the Standard Webhooks specification defines them
//! (<https://www.standardwebhooks.com>): each forward carries `webhook-id`,
//! `webhook-timestamp` and `webhook-signature`, the last one
//! `v1,<base64 of HMAC-SHA256 of "id.timestamp.body">` under each secret (several
//! during a key rotation), so that any Standard Webhooks library verifies it.
//!
//! Thulium signs nothing (its only authentication is Basic auth); these signatures
//! are the relay's, for the application behind it.
//!
//! ```
//! use thulium_inbox::signing::SigningSecrets;
//!
//! let secret = SigningSecrets::generate();
//! assert!(secret.starts_with("whsec_"));
//! let secrets = SigningSecrets::parse(&secret).unwrap();
//! let signature = secrets.signature("msg_1", 1_700_000_000, b"{}");
//! assert!(signature.starts_with("v1,"));
//! ```

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;
use ring::rand::{SecureRandom as _, SystemRandom};

/// The prefix of a Standard Webhooks secret.
const PREFIX: &str = "whsec_";

/// Why secrets cannot be used. Never quotes a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SigningError {
    /// No secret was given.
    #[error("no signing secret: give one or more `whsec_...` secrets, separated by spaces")]
    Empty,
    /// A secret is not `whsec_` and base64.
    #[error(
        "signing secret number {0} is not a Standard Webhooks secret (`whsec_` and base64 of at least 24 bytes); `thulium secret new` makes one"
    )]
    Malformed(usize),
}

/// The keys forwards are signed with: every one signs, so that an application can
/// verify with the old or the new while a key is rotated.
#[derive(Clone)]
pub struct SigningSecrets {
    keys: Vec<hmac::Key>,
}

impl fmt::Debug for SigningSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningSecrets({} key(s), redacted)", self.keys.len())
    }
}

impl SigningSecrets {
    /// Secrets as `whsec_<base64>`, separated by spaces (or newlines).
    pub fn parse(text: &str) -> Result<Self, SigningError> {
        let keys = text
            .split_whitespace()
            .enumerate()
            .map(|(number, secret)| {
                let encoded = secret
                    .strip_prefix(PREFIX)
                    .ok_or(SigningError::Malformed(number + 1))?;
                let bytes = STANDARD
                    .decode(encoded)
                    .map_err(|_| SigningError::Malformed(number + 1))?;
                if bytes.len() < 24 {
                    return Err(SigningError::Malformed(number + 1));
                }
                Ok(hmac::Key::new(hmac::HMAC_SHA256, &bytes))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(SigningError::Empty);
        }
        Ok(Self { keys })
    }

    /// A new random secret (32 bytes from the system's generator), `whsec_...`.
    pub fn generate() -> String {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the system's random generator works");
        format!("{PREFIX}{}", STANDARD.encode(bytes))
    }

    /// The `webhook-signature` value for a message: one `v1,<base64>` per key,
    /// separated by spaces.
    pub fn signature(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let mut signed = Vec::with_capacity(id.len() + body.len() + 24);
        signed.extend_from_slice(id.as_bytes());
        signed.push(b'.');
        signed.extend_from_slice(timestamp.to_string().as_bytes());
        signed.push(b'.');
        signed.extend_from_slice(body);
        self.keys
            .iter()
            .map(|key| format!("v1,{}", STANDARD.encode(hmac::sign(key, &signed))))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// [`message_id`] of a delivery: its event's dedup key within its account and its
/// content. What HTTP forwards send as `webhook-id` and buses as their message id
/// (`Nats-Msg-Id`, AMQP's `message_id`).
pub fn delivery_id(
    event: &thulium::event::Event,
    delivery: &crate::dispatcher::Delivery,
) -> String {
    let scope = crate::model::dedup_scope(delivery.account.as_ref(), &delivery.dedup_key);
    message_id(&scope, &event.to_json())
}

/// The `webhook-id` of an event: the same for every attempt and every redelivery of
/// the same event (its dedup key and content), so that an application can use it to
/// drop what it has already taken.
pub fn message_id(dedup_key: &str, canonical: &str) -> String {
    let mut identity = Vec::with_capacity(dedup_key.len() + canonical.len() + 1);
    identity.extend_from_slice(dedup_key.as_bytes());
    identity.push(0x1f);
    identity.extend_from_slice(canonical.as_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA256, &identity);
    let mut id = String::from("msg_");
    for byte in &digest.as_ref()[..16] {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's own example.
    #[test]
    fn the_specifications_example_signs_as_published() {
        let secrets = SigningSecrets::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secrets.signature("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn rotation_signs_with_every_key_and_bad_secrets_are_refused() {
        let (a, b) = (SigningSecrets::generate(), SigningSecrets::generate());
        let both = SigningSecrets::parse(&format!("{a} {b}")).unwrap();
        let signature = both.signature("msg_1", 1, b"x");
        assert_eq!(signature.split(' ').count(), 2);
        assert!(matches!(
            SigningSecrets::parse("whsec_short"),
            Err(SigningError::Malformed(1))
        ));
        assert!(matches!(
            SigningSecrets::parse(&format!("{a} secret")),
            Err(SigningError::Malformed(2))
        ));
        assert!(matches!(
            SigningSecrets::parse(" "),
            Err(SigningError::Empty)
        ));
        assert!(!format!("{both:?}").contains(&a[6..]));
    }

    #[test]
    fn the_message_id_is_the_events_identity() {
        assert_eq!(message_id("k", "{}"), message_id("k", "{}"));
        assert_ne!(message_id("k", "{}"), message_id("k", "{\"a\":1}"));
        assert_eq!(message_id("k", "{}").len(), 4 + 32);
    }
}
