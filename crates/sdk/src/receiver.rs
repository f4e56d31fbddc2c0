//! An axum endpoint that receives Thulium's deliveries safely (feature `axum`).
//!
//! Per request, in this order: HTTP Basic credentials checked in constant time (`401`
//! with `WWW-Authenticate` for anything but the right pair), the body read up to a
//! limit (`413` past it), the body parsed into an [`Event`] (`400` with a short reason),
//! and the application's handler awaited: `200` only once it returned `Ok`, `500`
//! otherwise, so that Thulium delivers the event again. Unknown actions are accepted
//! and handed over as [`Event::Other`].
//!
//! Serve the router with [`crate::server::serve`], which bounds header and body read
//! times and the number of connections; `axum::serve` bounds none of them.
//!
//! ```no_run
//! use thulium::event::Event;
//! use thulium::receiver::Receiver;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let receiver = Receiver::with_basic_auth("thulium", "a-long-random-password")?;
//! let app = receiver.router("/thulium", |event: Event| async move {
//!     println!("{} {}", event.action(), event.dedup_key());
//!     Ok::<_, std::convert::Infallible>(())
//! });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! thulium::server::serve(listener, app, Default::default(), async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::FutureExt as _;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

use crate::auth::BasicAuth;
pub use crate::auth::ConfigError;

use crate::event::{Event, ParseError};
use crate::secret::Password;

/// The body limit unless configured otherwise: far above any event Thulium sends.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

const WWW_AUTHENTICATE: &str = r#"Basic realm="thulium-webhooks", charset="UTF-8""#;

fn not_taken() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "the event was not taken; deliver it again",
    )
        .into_response()
}

/// Checks and parses Thulium's deliveries; cheap to clone.
#[derive(Clone)]
pub struct Receiver {
    auth: Option<BasicAuth>,
    body_limit: usize,
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("basic_auth", &self.auth.is_some())
            .field("body_limit", &self.body_limit)
            .finish()
    }
}

impl Receiver {
    /// A receiver that requires HTTP Basic auth with this user and password (the
    /// subscription's `http_auth_user` and `http_auth_password`).
    pub fn with_basic_auth(
        user: impl AsRef<str>,
        password: impl Into<Password>,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            auth: Some(BasicAuth::new(user, password)?),
            body_limit: DEFAULT_BODY_LIMIT,
        })
    }

    /// A receiver that accepts deliveries from anyone: only for subscriptions made
    /// without auth, behind something else that authenticates.
    pub fn without_auth() -> Self {
        Self {
            auth: None,
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }

    /// The largest body accepted, in bytes (default [`DEFAULT_BODY_LIMIT`]).
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// A router that answers `POST path` with `handler`, which decides the answer:
    /// `Ok` gives `200`; `Err`, or a panic, gives `500` (and Thulium delivers again).
    pub fn router<H, Fut, E>(self, path: &str, handler: H) -> Router
    where
        H: Fn(Event) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let receiver = Arc::new(self);
        Router::new().route(
            path,
            post(move |request: Request| {
                let receiver = Arc::clone(&receiver);
                let handler = handler.clone();
                async move {
                    let event = match receiver.accept(request).await {
                        Ok(event) => event,
                        Err(rejection) => return rejection.into_response(),
                    };
                    let action = event.action();
                    // A panicking handler has not taken the event either: answer 500
                    // (so Thulium delivers again) instead of dropping the connection.
                    match AssertUnwindSafe(handler(event)).catch_unwind().await {
                        Ok(Ok(())) => (StatusCode::OK, "OK").into_response(),
                        Ok(Err(error)) => {
                            tracing::error!(%action, %error, "event handler failed; answering 500 so Thulium retries");
                            not_taken()
                        }
                        Err(_) => {
                            tracing::error!(%action, "event handler panicked; answering 500 so Thulium retries");
                            not_taken()
                        }
                    }
                }
            }),
        )
    }

    /// Checks the credentials, reads and parses one delivery: the building block of
    /// [`Self::router`] and of [`VerifiedEvent`], for applications with own handlers.
    pub async fn accept(&self, request: Request) -> Result<Event, Rejection> {
        self.accept_delivery(request).await.map(|d| d.event)
    }

    /// Like [`Self::accept`], keeping the body and content type as received, for
    /// those who store deliveries (such as a durable inbox).
    pub async fn accept_delivery(&self, request: Request) -> Result<AcceptedDelivery, Rejection> {
        let (parts, body) = request.into_parts();
        if !self.is_authorized(&parts.headers) {
            tracing::debug!("delivery refused: missing or wrong credentials");
            return Err(Rejection::Unauthorized);
        }
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.body_limit as u64) {
            return Err(Rejection::TooLarge {
                limit: self.body_limit,
            });
        }
        let bytes = match Limited::new(body, self.body_limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.is::<LengthLimitError>() => {
                return Err(Rejection::TooLarge {
                    limit: self.body_limit,
                });
            }
            Err(error) if crate::server::is_body_timeout(&*error) => {
                return Err(Rejection::BodyTimeout);
            }
            Err(error) => return Err(Rejection::UnreadableBody(error.to_string())),
        };
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let event = Event::parse(&bytes, content_type.as_deref()).map_err(Rejection::Invalid)?;
        tracing::debug!(action = %event.action(), key = %event.dedup_key(), "event received");
        Ok(AcceptedDelivery {
            event,
            body: bytes,
            content_type,
        })
    }

    /// Whether the request carries the expected credentials: the digest of what was
    /// sent is compared with the expected one in constant time, and a header of any
    /// other shape is compared as if it had sent nothing, so every refusal costs alike.
    pub fn is_authorized(&self, headers: &HeaderMap) -> bool {
        self.auth.as_ref().is_none_or(|auth| auth.verify(headers))
    }
}

/// A delivery that passed the checks: the event, and the body as it arrived.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AcceptedDelivery {
    /// The parsed event.
    pub event: Event,
    /// The body exactly as received.
    pub body: bytes::Bytes,
    /// The `Content-Type` header, if one was sent.
    pub content_type: Option<String>,
}

/// Why a delivery was refused, and the answer it gets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// Missing or wrong credentials, whatever their shape: `401`.
    #[error("missing or wrong credentials")]
    Unauthorized,
    /// The body exceeds the limit: `413`.
    #[error("the body exceeds {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The client did not send the whole body in time (see
    /// [`crate::server::ServerLimits::body_read_timeout`]): `408`.
    #[error("the body did not arrive in time")]
    BodyTimeout,
    /// The body could not be read (for example, the connection closed early): `400`.
    #[error("the body could not be read: {0}")]
    UnreadableBody(String),
    /// The body is not an event: `400`.
    #[error("{0}")]
    Invalid(ParseError),
}

impl Rejection {
    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::Unauthorized => StatusCode::UNAUTHORIZED,
            Rejection::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Rejection::UnreadableBody(_) | Rejection::Invalid(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let mut response = (self.status(), self.to_string()).into_response();
        if matches!(self, Rejection::Unauthorized) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(WWW_AUTHENTICATE),
            );
        }
        response
    }
}

/// An extractor for applications with their own axum handlers: a delivery that
/// passed the [`Receiver`]'s checks. The router's state must provide the receiver.
///
/// ```no_run
/// use axum::{Router, extract::FromRef, routing::post};
/// use thulium::receiver::{Receiver, VerifiedEvent};
///
/// #[derive(Clone)]
/// struct AppState { receiver: Receiver }
///
/// impl FromRef<AppState> for Receiver {
///     fn from_ref(state: &AppState) -> Receiver { state.receiver.clone() }
/// }
///
/// async fn on_event(VerifiedEvent(event): VerifiedEvent) -> &'static str {
///     println!("{}", event.action());
///     "OK"
/// }
///
/// let state = AppState { receiver: Receiver::with_basic_auth("u", "p").unwrap() };
/// let app: Router = Router::new().route("/thulium", post(on_event)).with_state(state);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedEvent(pub Event);

impl<S> FromRequest<S> for VerifiedEvent
where
    S: Send + Sync,
    Receiver: FromRef<S>,
{
    type Rejection = Rejection;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        Receiver::from_ref(state)
            .accept(request)
            .await
            .map(VerifiedEvent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_auth_lets_anyone_in_and_with_auth_checks() {
        assert!(Receiver::without_auth().is_authorized(&HeaderMap::new()));
        let receiver = Receiver::with_basic_auth("thulium", "s3cret").unwrap();
        assert!(!receiver.is_authorized(&HeaderMap::new()));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            crate::auth::basic_authorization("thulium", &"s3cret".into()),
        );
        assert!(receiver.is_authorized(&headers));
    }

    #[test]
    fn unusable_credentials_are_refused_at_startup_and_never_shown() {
        // Which credentials are unusable is `auth`'s rule, tested there.
        assert_eq!(
            Receiver::with_basic_auth("u", "").unwrap_err(),
            ConfigError::EmptyPassword
        );
        let receiver = Receiver::with_basic_auth("u", "hunter2").unwrap();
        assert!(!format!("{receiver:?}").contains("hunter2"));
    }
}
