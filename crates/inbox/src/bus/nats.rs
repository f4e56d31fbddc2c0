//! [`NatsPublisher`]: a route into NATS JetStream. Each event is published to the
//! subject its [`Template`] gives, with `Nats-Msg-Id` set to the event's stable id
//! (so that JetStream's duplicate window drops a redelivery: at most once within
//! it), and succeeds only when the stream acknowledged it. No stream for the
//! subject, a full stream, a lost connection or a timeout is a failed attempt with
//! the server's words, retried on the route's schedule.

use std::time::Duration;

use async_nats::jetstream;
use thulium::Password;
use thulium::event::Event;
use url::Url;

use super::{Message, Template};
use crate::dispatcher::{Delivery, Handler, HandlerError};
use crate::forward::{ForwardError, ForwardFormat};
use crate::signing::SigningSecrets;

/// Publishes each event to a JetStream subject and waits for the stream's ack.
#[derive(Clone, Debug)]
pub struct NatsPublisher {
    jetstream: jetstream::Context,
    subject: Template,
    format: ForwardFormat,
    signing: Option<SigningSecrets>,
    server: String,
}

impl NatsPublisher {
    /// Connects to the server at `url` (`nats://host:port`; `tls://` for TLS), with
    /// user and password if given (only over TLS or to loopback), and publishes to
    /// `subject`; each publish waits up to `timeout` for the stream's ack. The
    /// client reconnects by itself; a publish while it is away fails and is retried.
    pub async fn connect(
        url: &str,
        auth: Option<(String, Password)>,
        subject: Template,
        format: ForwardFormat,
        timeout: Duration,
    ) -> Result<Self, ForwardError> {
        let parsed = super::broker_url(url, &["nats", "tls"], &["tls"], auth.is_some())?;
        let host_only = |u: &Url| format!("{}://{}", u.scheme(), u.host_str().unwrap_or(""));
        let server = match parsed.port() {
            Some(port) => format!("{}:{port}", host_only(&parsed)),
            None => host_only(&parsed),
        };
        let mut options = async_nats::ConnectOptions::new()
            .name(concat!("thulium-inbox/", env!("CARGO_PKG_VERSION")))
            .retry_on_initial_connect()
            .connection_timeout(timeout);
        if let Some((user, password)) = auth {
            options = options.user_and_password(user, password.expose().to_string());
        }
        let client = options
            .connect(server.as_str())
            .await
            .map_err(|e| ForwardError::Broker(format!("cannot connect to {server}: {e}")))?;
        let mut jetstream = jetstream::new(client);
        jetstream.set_timeout(timeout);
        Ok(Self {
            jetstream,
            subject,
            format,
            signing: None,
            server,
        })
    }

    /// Signs each message as Standard Webhooks defines it, in its headers.
    pub fn signing(mut self, secrets: SigningSecrets) -> Self {
        self.signing = Some(secrets);
        self
    }
}

impl Handler for NatsPublisher {
    async fn handle(&self, event: Event, delivery: Delivery) -> Result<(), HandlerError> {
        let subject = self.subject.render(&event, &delivery);
        let message = Message::new(&event, &delivery, self.format, self.signing.as_ref());
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, message.id.as_str());
        for (name, value) in &message.headers {
            headers.insert(*name, value.as_str());
        }
        let acked = async {
            self.jetstream
                .publish_with_headers(subject.clone(), headers, message.body)
                .await?
                .await
        }
        .await;
        match acked {
            Ok(ack) => {
                crate::dispatcher::record_status(if ack.duplicate { "duplicate" } else { "acked" });
                Ok(())
            }
            Err(error) => Err(format!(
                "NATS {} did not store the message on {subject}: {error}",
                self.server
            )
            .into()),
        }
    }
}
