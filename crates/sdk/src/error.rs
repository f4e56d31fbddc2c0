//! [`Error`]: everything that can go wrong between a call and Thulium's answer.

use std::fmt;
use std::time::Duration;

use crate::secret::Redactor;

/// One `(code, message)` pair of Thulium's error body.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiMessage {
    /// Thulium's numeric error code, when it sent one.
    pub code: Option<i64>,
    /// The message, in English or (with `Language::Polish`) Polish.
    pub message: String,
}

impl fmt::Display for ApiMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => write!(f, "{} (code {code})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// A boxed cause, as kept in [`Error`]'s `source` fields.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error of every fallible SDK call. Match on it to react; print it to explain.
///
/// `Display` is one line that says what happened and what to do; it never contains a
/// password or an `Authorization` header. Where a lower layer failed, its error is kept
/// as [`std::error::Error::source`] (a [`reqwest::Error`] for transport failures, the
/// JSON parser's error for a body that does not decode), so it can be downcast.
/// [`Error::is_retryable`] says whether trying again may help.
///
/// ```
/// use thulium::{Error, NewWebhook};
///
/// let err = NewWebhook::new("not a url", [thulium::Action::TicketCreated]).validate().unwrap_err();
/// assert!(matches!(err, Error::InvalidInput { field: "subscription_url", .. }));
/// assert_eq!(
///     err.to_string(),
///     "invalid subscription_url: `not a url` is not an absolute URL (relative URL without a base); \
///      use an absolute http:// or https:// URL"
/// );
/// assert!(!err.is_retryable());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A request was refused before anything was sent, because an input is invalid.
    #[error("invalid {field}: {reason}")]
    #[non_exhaustive]
    InvalidInput {
        /// The offending field, as named in Thulium's API (`subscription_url`, `actions`, ...).
        field: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },

    /// The client could not be built from its configuration.
    #[error("invalid client configuration: {reason}")]
    #[non_exhaustive]
    Config {
        /// What is wrong and how to fix it.
        reason: String,
        /// The lower-level error, when there was one (such as the TLS set-up's).
        #[source]
        source: Option<BoxError>,
    },

    /// Thulium refused the API credentials (HTTP 401 or 403).
    #[error(
        "{operation}: Thulium refused the API credentials (HTTP {status}{}); check the API user's name and password, and that it may call this method{}",
        messages_suffix(errors),
        request_id_suffix(request_id)
    )]
    #[non_exhaustive]
    Unauthorized {
        /// The operation, as named in the OpenAPI spec (`create_webhook`, ...).
        operation: &'static str,
        /// The HTTP status.
        status: u16,
        /// Thulium's `request_id`, when the answer had one.
        request_id: Option<String>,
        /// Thulium's messages, when the answer had them.
        errors: Vec<ApiMessage>,
    },

    /// Thulium answered with its error body (any status but 200, 401 and 403).
    #[error(
        "{operation}: Thulium answered HTTP {status}{}{}",
        messages_suffix(errors),
        request_id_suffix(request_id)
    )]
    #[non_exhaustive]
    Api {
        /// The operation, as named in the OpenAPI spec.
        operation: &'static str,
        /// The HTTP status.
        status: u16,
        /// Thulium's `request_id`; quote it to Thulium's support.
        request_id: Option<String>,
        /// Every `(code, message)` Thulium sent, in its order.
        errors: Vec<ApiMessage>,
    },

    /// No complete answer arrived within the per-attempt timeout, on any attempt.
    #[error(
        "{operation}: no answer within {timeout:?}, after {}; Thulium is slow or unreachable: try again later or raise the timeout",
        attempts_text(*attempts)
    )]
    #[non_exhaustive]
    Timeout {
        /// The operation, as named in the OpenAPI spec.
        operation: &'static str,
        /// The per-attempt timeout in force.
        timeout: Duration,
        /// How many attempts were made.
        attempts: u32,
        /// The HTTP client's error.
        #[source]
        source: Option<BoxError>,
    },

    /// The call's overall deadline ([`crate::ClientBuilder::deadline`]) passed before
    /// it had a result, counting every attempt and every pause between them.
    #[error(
        "{operation}: no result within the call's deadline of {deadline:?}, after {}; try again later or allow a longer deadline",
        attempts_text(*attempts)
    )]
    #[non_exhaustive]
    Deadline {
        /// The operation, as named in the OpenAPI spec.
        operation: &'static str,
        /// The deadline in force.
        deadline: Duration,
        /// How many attempts had started.
        attempts: u32,
    },

    /// No connection could be opened, so the request never reached the server.
    #[error(
        "{operation}: cannot connect to {host}, after {}: {reason}; check the account name or base URL and the network",
        attempts_text(*attempts)
    )]
    #[non_exhaustive]
    Connect {
        /// The operation, as named in the OpenAPI spec.
        operation: &'static str,
        /// The host (and port) the client tried.
        host: String,
        /// How many attempts were made.
        attempts: u32,
        /// The innermost cause, such as `Connection refused (os error 111)`.
        reason: String,
        /// The HTTP client's error.
        #[source]
        source: Option<BoxError>,
    },

    /// The connection broke after the request may have reached the server.
    #[error(
        "{operation}: the connection failed during the request: {reason}; the request may or may not have been applied"
    )]
    #[non_exhaustive]
    Transport {
        /// The operation, as named in the OpenAPI spec.
        operation: &'static str,
        /// The innermost cause.
        reason: String,
        /// The HTTP client's error.
        #[source]
        source: Option<BoxError>,
    },

    /// The server answered something that is neither the documented result nor
    /// Thulium's error body (an HTML error page, truncated JSON, ...).
    #[error(
        "{operation}: unexpected answer from the server ({}): {problem}; body starts: {excerpt:?}",
        status_text(*status)
    )]
    #[non_exhaustive]
    UnexpectedResponse {
        /// The HTTP status, or `None` when the answer broke off before the client could
        /// record one.
        status: Option<u16>,
        /// The operation, as named in the OpenAPI spec.
        operation: &'static str,
        /// Why the body was not understood.
        problem: String,
        /// The first characters of the body, with any known secret removed.
        excerpt: String,
        /// The parser's or the HTTP client's error; left out when its text held a
        /// secret, since a cause cannot be redacted.
        #[source]
        source: Option<BoxError>,
    },
}

impl Error {
    /// The HTTP status of the answer that caused this error, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Unauthorized { status, .. } | Error::Api { status, .. } => Some(*status),
            Error::UnexpectedResponse { status, .. } => *status,
            _ => None,
        }
    }

    /// Thulium's `request_id`, if its answer carried one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Error::Unauthorized { request_id, .. } | Error::Api { request_id, .. } => {
                request_id.as_deref()
            }
            _ => None,
        }
    }

    /// Thulium's `(code, message)` pairs, empty when the answer had none.
    pub fn api_messages(&self) -> &[ApiMessage] {
        match self {
            Error::Unauthorized { errors, .. } | Error::Api { errors, .. } => errors,
            _ => &[],
        }
    }

    /// The operation that failed, as named in the OpenAPI spec, if a request was made.
    pub fn operation(&self) -> Option<&'static str> {
        match self {
            Error::Unauthorized { operation, .. }
            | Error::Api { operation, .. }
            | Error::Timeout { operation, .. }
            | Error::Deadline { operation, .. }
            | Error::Connect { operation, .. }
            | Error::Transport { operation, .. }
            | Error::UnexpectedResponse { operation, .. } => Some(operation),
            Error::InvalidInput { .. } | Error::Config { .. } => None,
        }
    }

    /// Whether the same call may succeed if tried again later, and repeating it is
    /// safe: the rule the client's [`crate::RetryPolicy`] applies between attempts.
    ///
    /// A connection that could not be opened never reached Thulium, so any call may be
    /// repeated. After that, only calls that just read (`list_webhooks`) are repeated,
    /// after a timeout, a broken connection, a passed deadline or HTTP 429, 502, 503 or
    /// 504: repeating `create_webhook` after its request may have arrived could
    /// subscribe twice.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Connect { .. } => true,
            Error::Timeout { operation, .. }
            | Error::Deadline { operation, .. }
            | Error::Transport { operation, .. } => crate::retry::is_idempotent(operation),
            Error::Api {
                operation, status, ..
            } => {
                crate::retry::is_idempotent(operation) && crate::retry::is_retryable_status(*status)
            }
            Error::UnexpectedResponse {
                operation,
                status: Some(status),
                ..
            } => {
                crate::retry::is_idempotent(operation) && crate::retry::is_retryable_status(*status)
            }
            _ => false,
        }
    }

    /// The same error with every secret `redactor` knows removed from the text the
    /// server sent (messages, `request_id`, excerpts, causes). A cause whose text held
    /// a secret is dropped: it cannot be rewritten.
    pub(crate) fn redacted(mut self, redactor: &Redactor) -> Self {
        let clean = |text: &mut String| {
            *text = redactor.redact_string(std::mem::take(text));
        };
        let clean_source = |source: &mut Option<BoxError>| {
            let leaks = source.as_deref().is_some_and(|cause| {
                let mut current: Option<&(dyn std::error::Error + 'static)> = Some(cause);
                while let Some(error) = current {
                    let text = error.to_string();
                    if redactor.redact_string(text.clone()) != text {
                        return true;
                    }
                    current = error.source();
                }
                false
            });
            if leaks {
                *source = None;
            }
        };
        match &mut self {
            Error::Unauthorized {
                request_id, errors, ..
            }
            | Error::Api {
                request_id, errors, ..
            } => {
                if let Some(id) = request_id {
                    clean(id);
                }
                for message in errors {
                    clean(&mut message.message);
                }
            }
            Error::UnexpectedResponse {
                problem,
                excerpt,
                source,
                ..
            } => {
                clean(problem);
                clean(excerpt);
                clean_source(source);
            }
            Error::Transport { reason, source, .. } | Error::Connect { reason, source, .. } => {
                clean(reason);
                clean_source(source);
            }
            Error::Timeout { source, .. } | Error::Config { source, .. } => clean_source(source),
            Error::InvalidInput { .. } | Error::Deadline { .. } => {}
        }
        self
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn config(reason: impl Into<String>) -> Self {
        Error::Config {
            reason: reason.into(),
            source: None,
        }
    }
}

fn messages_suffix(errors: &[ApiMessage]) -> String {
    if errors.is_empty() {
        return String::new();
    }
    let joined: Vec<String> = errors.iter().map(ToString::to_string).collect();
    format!(": {}", joined.join("; "))
}

fn attempts_text(attempts: u32) -> String {
    match attempts {
        1 => "1 attempt".to_string(),
        n => format!("{n} attempts"),
    }
}

fn status_text(status: Option<u16>) -> String {
    match status {
        Some(status) => format!("HTTP {status}"),
        None => "before its status was read".to_string(),
    }
}

fn request_id_suffix(request_id: &Option<String>) -> String {
    match request_id {
        Some(id) => format!(" [request_id {id}]"),
        None => String::new(),
    }
}

/// The innermost message of an error chain: `Connection refused (os error 111)`
/// says more than reqwest's outer `error sending request`.
///
/// ```
/// let io = std::io::Error::other("Connection refused");
/// let outer = std::io::Error::new(std::io::ErrorKind::Other, io);
/// assert_eq!(thulium::error::root_cause(&outer), "Connection refused");
/// ```
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// At most this many characters of an unexpected body go into an error.
const EXCERPT_CHARS: usize = 120;

/// A short, single-line excerpt of `body` with every secret replaced.
pub(crate) fn excerpt(body: &[u8], redactor: &Redactor) -> String {
    let text: String = String::from_utf8_lossy(body)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    // Redact before truncating, so a secret cut in half cannot survive as a prefix.
    let text = redactor.redact_string(text);
    crate::text::shorten(&text, EXCERPT_CHARS).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_error_lists_every_message_and_the_request_id() {
        let err = Error::Api {
            operation: "create_webhook",
            status: 400,
            request_id: Some("53678450401cf".into()),
            errors: vec![
                ApiMessage {
                    code: Some(1001),
                    message: "Field actions is required".into(),
                },
                ApiMessage {
                    code: None,
                    message: "Invalid URL".into(),
                },
            ],
        };
        assert_eq!(
            err.to_string(),
            "create_webhook: Thulium answered HTTP 400: Field actions is required (code 1001); \
             Invalid URL [request_id 53678450401cf]"
        );
        assert_eq!(err.request_id(), Some("53678450401cf"));
        assert_eq!(err.status(), Some(400));
        assert_eq!(err.api_messages().len(), 2);
    }

    #[test]
    fn excerpt_is_short_single_line_and_secret_free() {
        let body = format!(
            "<html>\n  <body>pass=hunter2 {}</body></html>",
            "x".repeat(500)
        );
        let e = excerpt(body.as_bytes(), &Redactor::new().secret("hunter2"));
        assert!(!e.contains("hunter2"));
        assert!(e.starts_with("<html> <body>pass=[REDACTED] xxx"));
        assert!(!e.contains('\n'));
        assert_eq!(e.chars().count(), EXCERPT_CHARS);
        assert!(e.ends_with('…'));
    }
}
