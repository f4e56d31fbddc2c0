//! [`Client`]: the two webhook operations, with validation, typed errors and tracing
//! around the generated client.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use progenitor_client::ResponseValue;
use tracing::Instrument as _;
use url::Url;

use crate::action::Action;
use crate::config::{ClientBuilder, Credentials};
use crate::error::{ApiMessage, Error, excerpt, root_cause};
use crate::generated;
use crate::generated::types::{ErrorBody, NewWebhook, Webhook};
use crate::hooks::{CALL_RECORD, CallRecord};
use crate::secret::{Password, Redactor};

/// What a generated call returns.
type GeneratedResult<T> = Result<ResponseValue<T>, progenitor_client::Error<ErrorBody>>;

/// A client for Thulium's webhooks API.
///
/// Cheap to clone (clones share one connection pool). Build it with
/// [`Client::builder`] or [`ClientBuilder::from_env`].
///
/// ```no_run
/// use thulium::{Action, Client, NewWebhook};
///
/// # async fn run() -> Result<(), thulium::Error> {
/// let client = Client::builder()
///     .account("acme")
///     .credentials("api_user", "api_pass")
///     .build()?;
/// let created = client
///     .create_webhook(&NewWebhook::new(
///         "https://example.pl/thulium",
///         [Action::ChatConversationCreated],
///     ))
///     .await?;
/// println!("subscription {} created", created.id);
/// for webhook in client.list_webhooks().await? {
///     println!("{} -> {}", webhook.id, webhook.subscription_url);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    generated: generated::Client,
    base_url: Url,
    credentials: Credentials,
    deadline: Option<Duration>,
    /// Removes the API credentials from anything the server sends back.
    redactor: Redactor,
    pub(crate) allow_plain_http_subscription_auth: bool,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.base_url.as_str())
            .field("credentials", &self.credentials)
            .field("timeout", &self.timeout())
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts configuring a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    pub(crate) fn from_parts(
        generated: generated::Client,
        base_url: Url,
        credentials: Credentials,
        deadline: Option<Duration>,
        allow_plain_http_subscription_auth: bool,
    ) -> Self {
        let redactor =
            Redactor::new().basic_credentials(credentials.user(), credentials.password().clone());
        Self {
            generated,
            base_url,
            credentials,
            deadline,
            redactor,
            allow_plain_http_subscription_auth,
        }
    }

    /// The base URL requests go to, such as `https://acme.thulium.com/`.
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// The per-attempt timeout; kept once, where the hooks set it on each request.
    fn timeout(&self) -> Duration {
        self.generated.inner.timeout
    }

    /// Every webhook subscription of the account (`GET /api/webhooks`).
    ///
    /// Retried on connection failures, timeouts and HTTP 429/502/503/504, as
    /// configured by the [`crate::RetryPolicy`]: listing twice changes nothing.
    pub async fn list_webhooks(&self) -> Result<Vec<Webhook>, Error> {
        self.call(
            "list_webhooks",
            None,
            Box::pin(self.generated.list_webhooks()),
        )
        .await
    }

    /// Subscribes a URL to events (`POST /api/webhooks`) and returns the stored subscription.
    ///
    /// The input is validated first ([`NewWebhook::validate`], relaxed only by
    /// [`ClientBuilder::allow_plain_http_subscription_auth`]); nothing is sent if it is
    /// invalid. A create is retried only when the connection could not be opened:
    /// repeating a request that may have reached Thulium could subscribe twice.
    pub async fn create_webhook(&self, webhook: &NewWebhook) -> Result<Webhook, Error> {
        webhook.check(self.allow_plain_http_subscription_auth)?;
        self.call(
            "create_webhook",
            Some(webhook),
            Box::pin(self.generated.create_webhook(webhook)),
        )
        .await
    }

    /// Runs one generated call inside a tracing span and a fresh [`CallRecord`], and
    /// turns its outcome into the SDK's [`Error`]. Besides the API credentials, the
    /// credentials of `subscription` must not appear in an error even if the server
    /// echoes them.
    ///
    /// The generated call comes boxed: its future is large, and inline it would make
    /// every SDK call's future as large, copied whole each time it moves (the copies
    /// showed up in profiles).
    async fn call<T>(
        &self,
        operation: &'static str,
        subscription: Option<&NewWebhook>,
        request: Pin<Box<impl Future<Output = GeneratedResult<T>>>>,
    ) -> Result<T, Error> {
        let span = tracing::info_span!(
            "thulium",
            operation,
            status = tracing::field::Empty,
            attempts = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
            request_id = tracing::field::Empty,
        );
        // The clock is read only when something uses it: a deadline, or a span that
        // records its duration (no subscriber, no span).
        let started = (self.deadline.is_some() || !span.is_disabled()).then(Instant::now);
        let deadline = self.deadline.zip(started).map(|(limit, at)| at + limit);
        let record = CallRecord {
            deadline,
            ..CallRecord::default()
        };
        let (outcome, record) = CALL_RECORD
            .scope(RefCell::new(record), async {
                let outcome = match deadline {
                    Some(at) => tokio::time::timeout_at(at.into(), request).await.ok(),
                    None => Some(request.await),
                };
                // Made small here: the outcome is moved out through every layer
                // above (scope, span, this call, the caller), and the generated
                // result carries a header map and the error type's largest variant.
                let outcome =
                    outcome.map(|result| result.map(ResponseValue::into_inner).map_err(Box::new));
                (outcome, CALL_RECORD.with(|r| r.borrow().clone()))
            })
            .instrument(span.clone())
            .await;

        let result = match outcome {
            None => Err(Error::Deadline {
                operation,
                deadline: self.deadline.unwrap_or_default(),
                attempts: record.attempts.max(1),
            }),
            Some(Ok(value)) => Ok(value),
            // Boxed: the error path's future would otherwise make every call's
            // future larger, and futures are copied as they are polled into place.
            Some(Err(error)) => {
                Err(Box::pin(self.failure(operation, *error, &record, subscription)).await)
            }
        };

        span.record("attempts", record.attempts);
        if let Some(started) = started {
            span.record("duration_ms", started.elapsed().as_millis() as u64);
        }
        let status = match &result {
            Ok(_) => record.last_status.map(|status| status.as_u16()),
            Err(error) => error.status(),
        };
        if let Some(status) = status {
            span.record("status", status);
        }
        if let Err(error) = &result {
            if let Some(id) = error.request_id() {
                span.record("request_id", id);
            }
            // Debug, not warn: the caller gets the error and decides whether it is news.
            span.in_scope(|| tracing::debug!(%error, "thulium call failed"));
        } else {
            span.in_scope(|| tracing::debug!("thulium call succeeded"));
        }
        result
    }

    /// The SDK's error for a failed call, with every secret it knows removed: the API
    /// credentials and, for a create, the subscription's own (built only now, as
    /// successful calls never need them).
    async fn failure(
        &self,
        operation: &'static str,
        error: progenitor_client::Error<ErrorBody>,
        record: &CallRecord,
        subscription: Option<&NewWebhook>,
    ) -> Error {
        let merged;
        let redactor = match subscription {
            Some(NewWebhook {
                http_auth_user: user,
                http_auth_password: Some(password),
                ..
            }) => {
                merged = self.redactor.clone().merge(
                    &Redactor::new()
                        .basic_credentials(user.as_deref().unwrap_or_default(), password.clone()),
                );
                &merged
            }
            _ => &self.redactor,
        };
        self.convert(operation, error, record, redactor)
            .await
            .redacted(redactor)
    }

    async fn convert(
        &self,
        operation: &'static str,
        error: progenitor_client::Error<ErrorBody>,
        record: &CallRecord,
        redactor: &Redactor,
    ) -> Error {
        use progenitor_client::Error as E;
        let attempts = record.attempts.max(1);
        match error {
            E::ErrorResponse(response) => {
                let status = response.status().as_u16();
                let body = response.into_inner();
                api_error(operation, status, body.request_id, body.errors)
            }
            E::InvalidResponsePayload(bytes, parse_error) => {
                let status = record.last_status.map(|s| s.as_u16());
                if let Some(status @ (401 | 403)) = status {
                    return api_error(operation, status, None, Vec::new());
                }
                Error::UnexpectedResponse {
                    operation,
                    status,
                    problem: format!("the body is not the documented JSON ({parse_error})"),
                    excerpt: excerpt(&bytes, redactor),
                    source: Some(Box::new(parse_error)),
                }
            }
            E::UnexpectedResponse(response) => {
                let status = response.status().as_u16();
                let body = response.bytes().await.unwrap_or_default();
                if status == 401 || status == 403 {
                    return api_error(operation, status, None, Vec::new());
                }
                Error::UnexpectedResponse {
                    operation,
                    status: Some(status),
                    problem: "the API does not document this status".to_string(),
                    excerpt: excerpt(&body, redactor),
                    source: None,
                }
            }
            E::ResponseBodyError(error) if is_length_limit(&error) => Error::UnexpectedResponse {
                operation,
                status: record.last_status.map(|s| s.as_u16()),
                problem: "the answer is larger than the client's max_response_bytes".into(),
                excerpt: String::new(),
                source: Some(Box::new(error)),
            },
            E::CommunicationError(error) | E::ResponseBodyError(error) => {
                self.transport_error(operation, error, attempts)
            }
            E::InvalidRequest(reason) => Error::InvalidInput {
                field: "request",
                reason,
            },
            E::InvalidUpgrade(error) => Error::Transport {
                operation,
                reason: root_cause(&error),
                source: Some(Box::new(error)),
            },
            E::Custom(reason) => Error::Transport {
                operation,
                reason,
                source: None,
            },
        }
    }

    fn transport_error(
        &self,
        operation: &'static str,
        error: reqwest::Error,
        attempts: u32,
    ) -> Error {
        if error.is_timeout() {
            Error::Timeout {
                operation,
                timeout: self.timeout(),
                attempts,
                source: Some(Box::new(error)),
            }
        } else if error.is_connect() {
            let host = match (
                self.base_url.host_str(),
                self.base_url.port_or_known_default(),
            ) {
                (Some(host), Some(port)) => format!("{host}:{port}"),
                (host, _) => host.unwrap_or_default().to_string(),
            };
            Error::Connect {
                operation,
                host,
                attempts,
                reason: root_cause(&error),
                source: Some(Box::new(error)),
            }
        } else {
            Error::Transport {
                operation,
                reason: root_cause(&error),
                source: Some(Box::new(error)),
            }
        }
    }
}

fn is_length_limit(error: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = cause.source();
    }
    false
}

fn api_error(
    operation: &'static str,
    status: u16,
    request_id: Option<String>,
    errors: Vec<generated::types::ErrorItem>,
) -> Error {
    let errors = errors
        .into_iter()
        .map(|item| ApiMessage {
            code: item.code,
            message: item.message,
        })
        .collect();
    if status == 401 || status == 403 {
        Error::Unauthorized {
            operation,
            status,
            request_id,
            errors,
        }
    } else {
        Error::Api {
            operation,
            status,
            request_id,
            errors,
        }
    }
}

impl NewWebhook {
    /// A subscription of `subscription_url` to `actions`, without HTTP Basic auth.
    ///
    /// ```
    /// use thulium::{Action, NewWebhook};
    ///
    /// let webhook = NewWebhook::new("https://example.pl", [Action::ChatConversationCreated]);
    /// assert_eq!(
    ///     serde_json::to_string(&webhook).unwrap(),
    ///     r#"{"actions":["CHAT_CONVERSATION_CREATED"],"subscription_url":"https://example.pl"}"#
    /// );
    /// ```
    pub fn new(
        subscription_url: impl Into<String>,
        actions: impl IntoIterator<Item = impl Into<Action>>,
    ) -> Self {
        Self {
            actions: actions.into_iter().map(Into::into).collect(),
            subscription_url: subscription_url.into(),
            http_auth_user: None,
            http_auth_password: None,
        }
    }

    /// Asks Thulium to send HTTP Basic auth with each event.
    pub fn with_auth(mut self, user: impl Into<String>, password: impl Into<Password>) -> Self {
        self.http_auth_user = Some(user.into());
        self.http_auth_password = Some(password.into());
        self
    }

    /// Checks what Thulium would refuse, or what would make deliveries fail or leak,
    /// before anything is sent. Each error names the field.
    ///
    /// A subscription with HTTP Basic auth must use `https://`, or plain `http://` to a
    /// loopback host: Thulium would send the password in clear with every event.
    ///
    /// ```
    /// use thulium::{Action, NewWebhook};
    ///
    /// let clear = NewWebhook::new("http://example.pl/hook", [Action::TicketCreated])
    ///     .with_auth("thulium", "s3cret");
    /// assert!(clear.validate().unwrap_err().to_string().contains("in clear"));
    /// ```
    pub fn validate(&self) -> Result<(), Error> {
        self.check(false)
    }

    pub(crate) fn check(&self, allow_plain_http_auth: bool) -> Result<(), Error> {
        // The strict check needs no allocation; only a URL it refuses is parsed, to
        // say what is wrong with it.
        if !is_subscription_url(&self.subscription_url) {
            return Err(self.url_problem());
        }
        self.check_actions()?;

        let user = self.http_auth_user.as_deref().filter(|u| !u.is_empty());
        let password = self.http_auth_password.as_ref().filter(|p| !p.is_empty());
        match (user, password) {
            (Some(_), None) => Err(Error::invalid(
                "http_auth_password",
                "http_auth_user is set without a password; set both or neither",
            )),
            (None, Some(_)) => Err(Error::invalid(
                "http_auth_user",
                "http_auth_password is set without a user; set both or neither",
            )),
            (Some(user), Some(_)) if user.contains(':') => Err(Error::invalid(
                "http_auth_user",
                "contains ':', which HTTP Basic auth cannot carry",
            )),
            (Some(_), Some(_)) if !allow_plain_http_auth && !self.credentials_may_travel()? => {
                Err(Error::invalid(
                    "subscription_url",
                    format!(
                        "`{}` is plain http:// to another machine, so Thulium would send the subscription's password in clear with every event; use https:// (or allow it explicitly)",
                        self.subscription_url
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Whether Thulium may send the subscription's credentials to its URL (HTTPS, or
    /// loopback).
    fn credentials_may_travel(&self) -> Result<bool, Error> {
        let url = Url::parse(&self.subscription_url).map_err(|_| self.url_problem())?;
        Ok(crate::config::credentials_may_travel_to(&url))
    }

    fn check_actions(&self) -> Result<(), Error> {
        if self.actions.is_empty() {
            return Err(Error::invalid(
                "actions",
                "the list is empty; subscribe to at least one action",
            ));
        }
        // A short list (Thulium has a few dozen actions) is checked without a set.
        let duplicate = if self.actions.len() <= 64 {
            (1..self.actions.len())
                .find(|&i| self.actions[..i].contains(&self.actions[i]))
                .map(|i| &self.actions[i])
        } else {
            let mut seen = HashSet::new();
            self.actions.iter().find(|a| !seen.insert(*a))
        };
        if let Some(duplicate) = duplicate {
            return Err(Error::invalid(
                "actions",
                format!("{duplicate} is listed twice"),
            ));
        }
        if let Some(blank) = self.actions.iter().find(|a| !a.is_valid_name()) {
            return Err(Error::invalid(
                "actions",
                format!(
                    "{:?} is not an action name (it needs at least one letter or digit)",
                    blank.as_str()
                ),
            ));
        }
        Ok(())
    }

    /// What is wrong with a subscription URL [`is_subscription_url`] refused, most
    /// basic problem first.
    fn url_problem(&self) -> Error {
        let url = match Url::parse(&self.subscription_url) {
            Ok(url) => url,
            Err(e) => {
                return Error::invalid(
                    "subscription_url",
                    format!(
                        "`{}` is not an absolute URL ({e}); use an absolute http:// or https:// URL",
                        self.subscription_url
                    ),
                );
            }
        };
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Error::invalid(
                "subscription_url",
                format!(
                    "`{}` must use http:// or https:// and name a host",
                    self.subscription_url
                ),
            );
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Error::invalid(
                "subscription_url",
                "the URL contains credentials; use http_auth_user and http_auth_password instead",
            );
        }
        Error::invalid(
            "subscription_url",
            format!(
                "`{}` is not a subscription URL: use http:// or https://, a host name or IPv4 address, an optional port, path and query, without spaces, user info or fragment",
                self.subscription_url
            ),
        )
    }
}

/// Whether `text` is a subscription URL this SDK sends: `http://` or `https://`, a DNS
/// name (whose last label starts with a letter) or a dotted IPv4 address, an optional
/// port (0 to 65535), an optional path and query of URL characters, and nothing else
/// (no user info, fragment, white space or IPv6 literal).
///
/// It is exactly the `pattern` of `subscription_url` in the OpenAPI spec, so the spec,
/// the SDK and the fake Thulium agree on what a valid URL is; `tests/spec.rs` checks
/// them against each other.
///
/// ```
/// assert!(thulium::is_subscription_url("https://hooks.example.pl:8443/thulium?x=1"));
/// assert!(thulium::is_subscription_url("http://127.0.0.1:8080/hook"));
/// assert!(!thulium::is_subscription_url("ftp://example.pl"));
/// assert!(!thulium::is_subscription_url("https://example.pl/a b"));
/// ```
pub fn is_subscription_url(text: &str) -> bool {
    let Some(rest) = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
    else {
        return false;
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    if !(is_ipv4(host) || is_dns_name(host)) || !port.is_none_or(is_port) {
        return false;
    }
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (tail, None),
    };
    // Bytes, not chars: every allowed character is ASCII, so any byte of a longer
    // UTF-8 sequence is refused as its character would be.
    let url_byte = |b: u8| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'.' | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'%'
                    | b'/'
                    | b'-'
            )
    };
    path.bytes().all(url_byte) && query.is_none_or(|q| q.bytes().all(|b| url_byte(b) || b == b'?'))
}

// Both split bytes: a `char` pattern costs a searcher per label.
fn is_ipv4(host: &str) -> bool {
    let octets = || host.as_bytes().split(|b| *b == b'.');
    octets().count() == 4
        && octets().all(|o| {
            (1..=3).contains(&o.len())
                && o.iter().all(u8::is_ascii_digit)
                && (o.len() == 1 || o[0] != b'0')
                && o.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0')) <= 255
        })
}

fn is_dns_name(host: &str) -> bool {
    // Labels of letters and digits joined by single hyphens (so no `xn--` label that
    // would have to be valid punycode), the last one starting with a letter (so the
    // name cannot be read as a number or an IPv4 address).
    // One pass: a dot or hyphen may only follow a letter or digit.
    let mut previous = b'.';
    let mut last_label_starts_with = b'.';
    for &byte in host.as_bytes() {
        match byte {
            b'.' | b'-' if !previous.is_ascii_alphanumeric() => return false,
            b'.' | b'-' => {}
            _ if !byte.is_ascii_alphanumeric() => return false,
            _ if previous == b'.' => last_label_starts_with = byte,
            _ => {}
        }
        previous = byte;
    }
    previous.is_ascii_alphanumeric() && last_label_starts_with.is_ascii_alphabetic()
}

fn is_port(port: &str) -> bool {
    !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && (port.len() == 1 || !port.starts_with('0'))
        && port.parse::<u32>().is_ok_and(|p| p <= 65535)
}

impl Webhook {
    /// Whether Thulium sends HTTP Basic auth with this subscription's events.
    pub fn has_auth(&self) -> bool {
        !self.http_auth_user.is_empty() || !self.http_auth_password.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(webhook: &NewWebhook) -> &'static str {
        match webhook.validate() {
            Err(Error::InvalidInput { field, .. }) => field,
            other => panic!("expected invalid input, got {other:?}"),
        }
    }

    #[test]
    fn validation_names_the_field() {
        let ok = NewWebhook::new("https://example.pl", [Action::TicketCreated]);
        assert!(ok.validate().is_ok());
        assert!(
            NewWebhook::new("http://10.1.2.3:8080/hook", ["CALL_ANSWERED"])
                .validate()
                .is_ok()
        );

        for url in [
            "",
            "example.pl",
            "/relative",
            "ftp://example.pl",
            "mailto:a@b.pl",
            "https://u:p@example.pl",
        ] {
            let w = NewWebhook::new(url, [Action::TicketCreated]);
            assert_eq!(field_of(&w), "subscription_url", "{url}");
        }
        let none: [Action; 0] = [];
        assert_eq!(field_of(&NewWebhook::new("https://e.pl", none)), "actions");
        assert_eq!(
            field_of(&NewWebhook::new(
                "https://e.pl",
                [Action::TicketCreated, Action::from("TICKET_CREATED")]
            )),
            "actions"
        );
        assert_eq!(field_of(&NewWebhook::new("https://e.pl", [" "])), "actions");

        let mut w = ok.clone().with_auth("user", "");
        assert_eq!(field_of(&w), "http_auth_password");
        w = ok.clone().with_auth("", "pw");
        assert_eq!(field_of(&w), "http_auth_user");
        w = ok.clone().with_auth("a:b", "pw");
        assert_eq!(field_of(&w), "http_auth_user");
        assert!(ok.clone().with_auth("user", "pw").validate().is_ok());
        let clear = NewWebhook::new("http://10.1.2.3/hook", [Action::TicketCreated])
            .with_auth("user", "pw");
        assert_eq!(field_of(&clear), "subscription_url");
        assert!(clear.check(true).is_ok());
        let local = NewWebhook::new("http://127.0.0.1:8080/hook", [Action::TicketCreated]);
        assert!(local.with_auth("user", "pw").validate().is_ok());
    }
}
