//! [`Forwarder`]: a [`Handler`] that POSTs each event to the application's own HTTP
//! endpoint, as Thulium would have: the same body and content type (or re-encoded),
//! with optional Basic auth. A `2xx` answer is success; a final answer
//! ([`FINAL_STATUSES`]) dead-letters the event at once; anything else is retried by
//! the dispatcher, honouring `Retry-After`. This is `thulium listen --inbox ... --forward-to URL`: a durable
//! relay in front of an application in any language.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use thulium::event::{BodyFormat, Event};
use thulium::secret::Redactor;
use thulium::{Password, config};
use url::Url;

use crate::dispatcher::{Delivery, Handler, HandlerError, Permanent, RetryAfter};
use crate::signing::SigningSecrets;

/// Answers that say the event can never be taken: the forward dead-letters at once
/// (a replay brings it back once the application is fixed). `408`, `429` and `5xx`
/// are retried, at the time a `Retry-After` (in seconds) asks for.
pub const FINAL_STATUSES: [u16; 6] = [400, 401, 403, 404, 410, 422];

/// How forwarded events are encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardFormat {
    /// The body and content type exactly as Thulium sent them.
    #[default]
    AsReceived,
    /// Re-encoded: as Thulium's form body, or as a flat JSON object.
    Reencoded(BodyFormat),
}

/// Why a forwarder cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// The URL is not an http(s) URL.
    #[error("the forward URL `{0}` must be an http:// or https:// URL")]
    BadUrl(String),
    /// Credentials would travel in clear.
    #[error(
        "refusing to send credentials to `{0}` over plain HTTP; use https:// (plain HTTP is allowed only to loopback addresses)"
    )]
    PlainHttp(String),
    /// The HTTP client could not be set up.
    #[error("cannot set up HTTP: {0}")]
    Http(#[from] reqwest::Error),
    /// TLS could not be set up (the platform's trust store).
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    /// A broker destination could not be set up; what it said.
    #[error("{0}")]
    Broker(String),
}

/// POSTs events to one URL. Clones share their credentials: [`Forwarder::set_auth`]
/// on one changes them for all (a configuration reload while it runs).
#[derive(Clone, Debug)]
pub struct Forwarder {
    http: reqwest::Client,
    url: Url,
    credentials: Arc<RwLock<Credentials>>,
    format: ForwardFormat,
    signing: Option<SigningSecrets>,
    /// The answers that dead-letter at once ([`FINAL_STATUSES`] unless set).
    final_statuses: Arc<[u16]>,
}

/// The Basic auth sent, and what is cut from the answers quoted in errors.
#[derive(Debug)]
struct Credentials {
    auth: Option<(String, Password)>,
    redactor: Redactor,
}

impl Credentials {
    fn new(auth: Option<(String, Password)>) -> Self {
        let redactor = match &auth {
            Some((user, password)) => Redactor::new().basic_credentials(user, password.clone()),
            None => Redactor::new(),
        };
        Self { auth, redactor }
    }
}

impl Forwarder {
    /// A forwarder to `url`, with optional Basic auth, each attempt bounded by
    /// `timeout`.
    pub fn new(
        url: &str,
        auth: Option<(String, Password)>,
        format: ForwardFormat,
        timeout: Duration,
    ) -> Result<Self, ForwardError> {
        let parsed = Url::parse(url).map_err(|_| ForwardError::BadUrl(url.into()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(ForwardError::BadUrl(url.into()));
        }
        if auth.is_some() && !config::credentials_may_travel_to(&parsed) {
            return Err(ForwardError::PlainHttp(url.into()));
        }
        let http = thulium::tls::http_client_builder()
            .map_err(|e| ForwardError::Tls(e.to_string()))?
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("thulium-inbox/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            url: parsed,
            credentials: Arc::new(RwLock::new(Credentials::new(auth))),
            format,
            signing: None,
            final_statuses: Arc::from(FINAL_STATUSES.as_slice()),
        })
    }

    /// Signs every forward as Standard Webhooks defines it (`webhook-id`,
    /// `webhook-timestamp`, `webhook-signature`; see [`crate::signing`]).
    pub fn signing(mut self, secrets: SigningSecrets) -> Self {
        self.signing = Some(secrets);
        self
    }

    /// The answers that say the destination will never take the event: they
    /// dead-letter it at once instead of [`FINAL_STATUSES`] (`2xx` are always
    /// success; an empty list retries every other answer).
    pub fn final_statuses(mut self, statuses: &[u16]) -> Self {
        self.final_statuses = Arc::from(statuses);
        self
    }

    /// Sends `auth` from the next attempt on (every clone of this forwarder); the
    /// same rule as at creation: credentials only over HTTPS or to loopback.
    pub fn set_auth(&self, auth: Option<(String, Password)>) -> Result<(), ForwardError> {
        if auth.is_some() && !config::credentials_may_travel_to(&self.url) {
            return Err(ForwardError::PlainHttp(self.url.to_string()));
        }
        let credentials = Credentials::new(auth);
        *self
            .credentials
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = credentials;
        Ok(())
    }

    fn credentials(&self) -> std::sync::RwLockReadGuard<'_, Credentials> {
        self.credentials
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The body a route sends for `event` in `format`, and its content type: the
/// bytes as received (labelled as what the parser read them as when they came
/// without a content type), or re-encoded. HTTP forwards and message buses alike.
pub(crate) fn body_of(
    format: ForwardFormat,
    event: &Event,
    delivery: &Delivery,
) -> (bytes::Bytes, String) {
    match format {
        ForwardFormat::AsReceived => {
            let content_type = delivery.content_type.clone().unwrap_or_else(|| {
                BodyFormat::detect(&delivery.body, None)
                    .content_type()
                    .to_string()
            });
            (delivery.body.clone(), content_type)
        }
        ForwardFormat::Reencoded(format) => {
            (format.encode(event).into(), format.content_type().into())
        }
    }
}

impl Handler for Forwarder {
    async fn handle(&self, event: Event, delivery: Delivery) -> Result<(), HandlerError> {
        let (body, content_type) = body_of(self.format, &event, &delivery);
        let mut request = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header("x-thulium-inbox-id", delivery.id.to_string())
            .header("x-thulium-inbox-attempt", delivery.attempt.to_string());
        if let Some(account) = &delivery.account {
            request = request.header("x-thulium-account", account.as_str());
        }
        if let Some(secrets) = &self.signing {
            // The same id for every attempt of the event (within its account); the
            // time of this attempt.
            let id = crate::signing::delivery_id(&event, &delivery);
            let timestamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs());
            request = request
                .header(
                    "webhook-signature",
                    secrets.signature(&id, timestamp, &body),
                )
                .header("webhook-id", id)
                .header("webhook-timestamp", timestamp.to_string());
        }
        let mut request = request.body(body);
        #[cfg(feature = "otel")]
        for (name, value) in trace_context() {
            request = request.header(name, value);
        }
        if let Some((user, password)) = &self.credentials().auth {
            request = request.basic_auth(user, Some(password.expose()));
        }
        let response = request.send().await.map_err(|e| {
            format!(
                "cannot reach {}: {}",
                self.url,
                thulium::error::root_cause(&e)
            )
        })?;
        let status = response.status();
        crate::dispatcher::record_status(status.as_u16());
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.text().await.unwrap_or_default();
        let text = self.credentials().redactor.redact(&text);
        let excerpt = thulium::text::shorten(text.trim(), 200);
        let reason = if excerpt.is_empty() {
            format!("{} answered HTTP {status}", self.url)
        } else {
            format!("{} answered HTTP {status}: {excerpt}", self.url)
        };
        if self.final_statuses.contains(&status.as_u16()) {
            return Err(Permanent::new(format!("{reason} (a final answer: not retried)")).into());
        }
        match retry_after {
            Some(after) => Err(RetryAfter::new(reason, after).into()),
            None => Err(reason.into()),
        }
    }
}

/// The W3C trace context (`traceparent`, `tracestate`) of the current span (the
/// dispatcher's `attempt`), as the process's propagator writes it: nothing unless
/// the application installed one and an OpenTelemetry layer records the span.
#[cfg(feature = "otel")]
fn trace_context() -> std::collections::HashMap<String, String> {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let context = tracing::Span::current().context();
    let mut headers = std::collections::HashMap::new();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut headers);
    });
    headers
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::model::EventId;

    /// What the application was handed: content type and body of each forward.
    type Seen = Arc<Mutex<Vec<(Option<String>, bytes::Bytes)>>>;

    async fn application(seen: Seen) -> String {
        let app = axum::Router::new().route(
            "/app",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: bytes::Bytes| async move {
                    let content_type = headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    seen.lock().unwrap().push((content_type, body));
                    (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "")
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/app")
    }

    fn delivery(body: &'static [u8], content_type: Option<&str>) -> Delivery {
        Delivery {
            id: EventId(1),
            attempt: 1,
            first_received_at: 0,
            dedup_key: "k".into(),
            body: bytes::Bytes::from_static(body),
            content_type: content_type.map(str::to_owned),
            route: crate::routing::RouteName::default_route(),
            account: None,
        }
    }

    /// As received means the bytes as received; a body that came without a content
    /// type goes on labelled as what the parser read it as (JSON was labelled a form).
    #[tokio::test]
    async fn as_received_keeps_the_bytes_and_labels_what_was_detected() {
        thulium::tls::install_default_provider();
        let seen = Seen::default();
        let url = application(Arc::clone(&seen)).await;
        let forwarder = Forwarder::new(
            &url,
            None,
            ForwardFormat::AsReceived,
            Duration::from_secs(5),
        )
        .unwrap();
        let json = br#"{"action":"CALL_ANSWERED","connection_id":"1.2"}"#;
        let form = b"action=CALL_ANSWERED&connection_id=1.2&note=a\x00b";
        let event = Event::parse(json, None).unwrap();
        for (body, content_type) in [
            (&json[..], None),
            (&form[..], None),
            (&json[..], Some("text/plain")),
        ] {
            let error = forwarder
                .handle(event.clone(), delivery(body, content_type))
                .await
                .unwrap_err()
                .to_string();
            // An empty answer leaves no dangling ": " in the error.
            assert!(
                error.ends_with("answered HTTP 500 Internal Server Error"),
                "{error}"
            );
        }
        let seen = seen.lock().unwrap().clone();
        let labels: Vec<_> = seen.iter().map(|(ct, _)| ct.as_deref()).collect();
        assert_eq!(
            labels,
            [
                Some("application/json"),
                Some("application/x-www-form-urlencoded"),
                Some("text/plain")
            ]
        );
        assert_eq!(&seen[1].1[..], &form[..], "every byte as received");
    }

    /// A final answer (410) is a permanent failure; a 429 with `Retry-After` is
    /// retried when it says; a 503 without one is retried on the schedule.
    #[tokio::test]
    async fn final_answers_are_permanent_and_retry_after_is_honoured() {
        thulium::tls::install_default_provider();
        let app = axum::Router::new()
            .route(
                "/gone",
                axum::routing::post(|| async { (axum::http::StatusCode::GONE, "gone") }),
            )
            .route(
                "/busy",
                axum::routing::post(|| async {
                    (
                        axum::http::StatusCode::TOO_MANY_REQUESTS,
                        [("retry-after", "120")],
                        "slow down",
                    )
                }),
            )
            .route(
                "/down",
                axum::routing::post(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "") }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let forward = |path: &str| {
            Forwarder::new(
                &format!("http://{addr}{path}"),
                None,
                ForwardFormat::AsReceived,
                Duration::from_secs(5),
            )
            .unwrap()
        };
        let body = br#"{"action":"CALL_ANSWERED","connection_id":"1.2"}"#;
        let event = Event::parse(body, None).unwrap();
        let gone = forward("/gone")
            .handle(event.clone(), delivery(body, None))
            .await
            .unwrap_err();
        assert!(gone.downcast_ref::<Permanent>().is_some(), "{gone}");
        let busy = forward("/busy")
            .handle(event.clone(), delivery(body, None))
            .await
            .unwrap_err();
        let later = busy.downcast_ref::<RetryAfter>().expect("a RetryAfter");
        assert_eq!(later.after(), Duration::from_secs(120));
        let down = forward("/down")
            .handle(event.clone(), delivery(body, None))
            .await
            .unwrap_err();
        assert!(
            down.downcast_ref::<Permanent>().is_none()
                && down.downcast_ref::<RetryAfter>().is_none()
        );
        // A route that declares its own final answers: 503 is final, 410 is not.
        let own = |path: &str| forward(path).final_statuses(&[503]);
        let down = own("/down")
            .handle(event.clone(), delivery(body, None))
            .await
            .unwrap_err();
        assert!(down.downcast_ref::<Permanent>().is_some(), "{down}");
        let gone = own("/gone")
            .handle(event, delivery(body, None))
            .await
            .unwrap_err();
        assert!(gone.downcast_ref::<Permanent>().is_none(), "{gone}");
    }
}
