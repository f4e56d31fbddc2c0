//! [`Control`]: a client for the fake's own control endpoints (`POST /_mock/events`,
//! `GET /_mock/deliveries`), for a fake served in another process (`thulium mock`).
//!
//! These endpoints are the fake's, not Thulium's; a real account answers them with an
//! error. In the same process, call [`crate::MockThulium::emit`] instead.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use thulium_mock::control::Control;
//!
//! let mock = thulium_mock::MockThulium::start().await?;
//! let control = Control::new(&mock.base_url(), mock.api_user(), mock.api_password().clone())?;
//! let event = thulium::event::examples::event_now("TICKET_CREATED", &[])?;
//! let ids = control.emit(&event).await?;
//! assert!(ids.is_empty(), "nobody subscribed yet");
//! assert!(control.wait_for(&ids, Duration::from_secs(1)).await?.is_empty());
//! # Ok(()) }
//! ```

use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use serde::Deserialize;
use thulium::Password;
use thulium::event::Event;
use thulium::secret::Redactor;
use url::Url;

use crate::delivery::{Delivery, DeliveryState};

/// Why a control call failed. `Display` never shows the API password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The base URL or the credentials cannot be used.
    #[error("{0}")]
    Config(String),
    /// The fake could not be reached.
    #[error("cannot reach the fake Thulium at {url}: {reason}; is `thulium mock` running there?")]
    Network {
        /// The URL called.
        url: String,
        /// The innermost cause.
        reason: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error (wrong credentials, or not the fake).
    #[error(
        "{url} answered HTTP {status}: {body}; is the base URL the fake's (thulium mock), with its API user?"
    )]
    Refused {
        /// The URL called.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the answer, with the credentials removed.
        body: String,
    },
    /// The answer is not what the fake answers.
    #[error("{url} answered something the fake does not: {problem}")]
    Garbled {
        /// The URL called.
        url: String,
        /// What was wrong with it.
        problem: String,
    },
}

/// A client for one fake's control endpoints; cheap to clone.
#[derive(Clone, Debug)]
pub struct Control {
    http: reqwest::Client,
    base_url: Url,
    user: String,
    password: Password,
    redactor: Redactor,
}

#[derive(Deserialize)]
struct Emitted {
    deliveries: Vec<u64>,
}

impl Control {
    /// A client for the fake at `base_url`, logging in as its API user. The password
    /// goes only over HTTPS or to loopback, as the SDK's does.
    pub fn new(
        base_url: &str,
        user: impl Into<String>,
        password: impl Into<Password>,
    ) -> Result<Self, ControlError> {
        let base_url = Url::parse(base_url).map_err(|e| {
            ControlError::Config(format!("the base URL `{base_url}` is not a URL ({e})"))
        })?;
        if !thulium::config::credentials_may_travel_to(&base_url) {
            return Err(ControlError::Config(
                "refusing to send the API credentials over plain HTTP to a non-loopback host; use https://".into(),
            ));
        }
        let (user, password) = (user.into(), password.into());
        let http = thulium::tls::http_client_builder()
            .map_err(|e| ControlError::Config(format!("cannot set up TLS: {e}")))?
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ControlError::Config(format!("cannot set up HTTP: {e}")))?;
        let redactor = Redactor::new().basic_credentials(&user, password.clone());
        Ok(Self {
            http,
            base_url,
            user,
            password,
            redactor,
        })
    }

    /// Has the fake deliver `event` to every subscription of its action; returns the
    /// ids of the deliveries started (none if nobody subscribed).
    pub async fn emit(&self, event: &Event) -> Result<Vec<u64>, ControlError> {
        let url = self.url("_mock/events");
        let request = self
            .http
            .post(url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(event.to_json());
        let emitted: Emitted = self.call(url, request).await?;
        Ok(emitted.deliveries)
    }

    /// Every delivery the fake still logs, with every attempt.
    pub async fn deliveries(&self) -> Result<Vec<Delivery>, ControlError> {
        let url = self.url("_mock/deliveries");
        self.call(url.clone(), self.http.get(url)).await
    }

    /// Waits until each of `ids` is delivered or given up, at most `timeout`, asking
    /// every 100 ms; returns them as they then stand (some may still be pending).
    pub async fn wait_for(
        &self,
        ids: &[u64],
        timeout: Duration,
    ) -> Result<Vec<Delivery>, ControlError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mine: Vec<Delivery> = self
                .deliveries()
                .await?
                .into_iter()
                .filter(|d| ids.contains(&d.id))
                .collect();
            let settled = mine.iter().all(|d| d.state != DeliveryState::Pending);
            if settled || tokio::time::Instant::now() >= deadline {
                return Ok(mine);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.base_url.clone();
        let base_path = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base_path}/{path}"));
        url
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        url: Url,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ControlError> {
        let response = request
            .basic_auth(&self.user, Some(self.password.expose()))
            .send()
            .await
            .map_err(|source| ControlError::Network {
                url: url.to_string(),
                reason: self
                    .redactor
                    .redact_string(thulium::error::root_cause(&source)),
                source,
            })?;
        let status = response.status();
        let text = self
            .redactor
            .redact_string(response.text().await.unwrap_or_default());
        if !status.is_success() {
            return Err(ControlError::Refused {
                url: url.to_string(),
                status: status.as_u16(),
                body: thulium::text::shorten(&text, 300).into_owned(),
            });
        }
        serde_json::from_str(&text).map_err(|e| ControlError::Garbled {
            url: url.to_string(),
            problem: e.to_string(),
        })
    }
}
