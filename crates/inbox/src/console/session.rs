//! A browser's own CSRF token and its one-time notices, both bound to cookies.
//!
//! Each browser gets a random id in a cookie (`HttpOnly`, `SameSite=Strict`) the
//! first time it asks; its CSRF token is an HMAC of that id under a key drawn at
//! start, so tokens differ per browser, change when the console restarts, and a
//! token seen by one browser is worth nothing to another. An action's notice
//! ("Replayed") travels in a short-lived cookie to the page the action redirects
//! to, which shows it once: a reload does not repeat it, and it needs no script.

use std::fmt::Write as _;

use axum::http::{HeaderMap, HeaderValue, header};
use ring::hmac;
use ring::rand::{SecureRandom as _, SystemRandom};

/// The cookie with the browser's id.
const BROWSER_COOKIE: &str = "thulium_console";
/// The cookie with the notice the next page shows.
const NOTICE_COOKIE: &str = "thulium_console_notice";

/// The key tokens are derived with, drawn at start.
pub(super) struct Keys {
    key: hmac::Key,
}

impl Keys {
    pub(super) fn new() -> Self {
        let mut secret = [0u8; 32];
        // The system's generator fails only on a broken system; a token then still
        // differs per process.
        if SystemRandom::new().fill(&mut secret).is_err() {
            for (i, byte) in secret.iter_mut().enumerate() {
                *byte = (fastrand::u8(..)).wrapping_add(i as u8);
            }
        }
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
        }
    }

    /// The CSRF token of the browser with `id`.
    pub(super) fn token(&self, id: &str) -> String {
        hex(&hmac::sign(&self.key, id.as_bytes()).as_ref()[..16])
    }

    /// Whether `token` is the browser's, compared in constant time.
    pub(super) fn check(&self, id: &str, token: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        bool::from(self.token(id).as_bytes().ct_eq(token.as_bytes()))
    }
}

/// What a request's cookies say about its browser.
#[derive(Clone, Debug)]
pub(super) struct Browser {
    /// Its id (new if it sent none).
    pub id: String,
    /// Whether the id is new: the answer sets the cookie.
    pub new: bool,
    /// The notice an action left for this page.
    pub notice: Option<Notice>,
}

impl Browser {
    /// The browser of a request with these headers.
    pub(super) fn of(headers: &HeaderMap) -> Self {
        let cookie = |name: &str| {
            headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        };
        let known = cookie(BROWSER_COOKIE)
            .filter(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()));
        Self {
            new: known.is_none(),
            id: known.unwrap_or_else(new_id),
            notice: cookie(NOTICE_COOKIE).and_then(|v| Notice::parse(&v)),
        }
    }

    /// The cookies the answer sets: the id if new, the notice cleared once shown.
    pub(super) fn set_cookies(&self, headers: &mut HeaderMap) {
        if self.new {
            let value = format!(
                "{BROWSER_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
                self.id
            );
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.append(header::SET_COOKIE, value);
            }
        }
        if self.notice.is_some() && !headers.contains_key(header::LOCATION) {
            headers.append(
                header::SET_COOKIE,
                HeaderValue::from_static(
                    "thulium_console_notice=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict",
                ),
            );
        }
    }
}

/// What an action tells the page it leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Notice {
    Replayed,
    SetAside,
    ReplayedAll(u64),
    Paused,
    Resumed,
}

impl Notice {
    fn parse(value: &str) -> Option<Self> {
        match value {
            "replayed" => Some(Notice::Replayed),
            "set-aside" => Some(Notice::SetAside),
            "paused" => Some(Notice::Paused),
            "resumed" => Some(Notice::Resumed),
            _ => value
                .strip_prefix("replayed-all-")
                .and_then(|n| n.parse().ok())
                .map(Notice::ReplayedAll),
        }
    }

    /// The sentence the page shows.
    pub(super) fn text(self) -> String {
        match self {
            Notice::Replayed => "Replayed: the event is pending again.".into(),
            Notice::SetAside => "Set aside: the event is dead until replayed.".into(),
            Notice::ReplayedAll(count) => {
                format!("Replayed {count} dead event(s): they are pending again.")
            }
            Notice::Paused => {
                "Paused: the route's events wait until it is resumed (within a second on every relay).".into()
            }
            Notice::Resumed => "Resumed: the route's waiting events are handed over now.".into(),
        }
    }

    /// The `Set-Cookie` that carries the notice to the next page (a minute at most).
    pub(super) fn cookie(self) -> HeaderValue {
        let value = match self {
            Notice::Replayed => "replayed".to_string(),
            Notice::SetAside => "set-aside".to_string(),
            Notice::ReplayedAll(count) => format!("replayed-all-{count}"),
            Notice::Paused => "paused".to_string(),
            Notice::Resumed => "resumed".to_string(),
        };
        HeaderValue::from_str(&format!(
            "{NOTICE_COOKIE}={value}; Path=/; Max-Age=60; HttpOnly; SameSite=Strict"
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("thulium_console_notice=; Max-Age=0"))
    }
}

fn new_id() -> String {
    let mut bytes = [0u8; 16];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        bytes = fastrand::u128(..).to_le_bytes();
    }
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_per_browser_and_per_key() {
        let (keys, other) = (Keys::new(), Keys::new());
        let (a, b) = (new_id(), new_id());
        assert_ne!(a, b);
        assert!(keys.check(&a, &keys.token(&a)));
        assert!(!keys.check(&b, &keys.token(&a)));
        assert!(
            !other.check(&a, &keys.token(&a)),
            "a restart rotates every token"
        );
    }

    #[test]
    fn a_browser_is_read_from_its_cookies() {
        let mut headers = HeaderMap::new();
        let id = new_id();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!(
                "x=1; thulium_console={id}; thulium_console_notice=replayed-all-3"
            ))
            .unwrap(),
        );
        let browser = Browser::of(&headers);
        assert_eq!((browser.id.as_str(), browser.new), (id.as_str(), false));
        assert_eq!(browser.notice, Some(Notice::ReplayedAll(3)));
        let forged = HeaderMap::from_iter([(
            header::COOKIE,
            HeaderValue::from_static("thulium_console=<script>; thulium_console_notice=bogus"),
        )]);
        let browser = Browser::of(&forged);
        assert!(browser.new && browser.notice.is_none());
    }
}
