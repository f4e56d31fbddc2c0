//! [`RabbitPublisher`]: a route into RabbitMQ (AMQP 0-9-1). Each event is published
//! to the route's exchange with the routing key its [`Template`] gives, persistent
//! (delivery mode 2), `mandatory`, with `message_id` set to the event's stable id
//! and the headers of [`Message`] in the AMQP headers table, on a channel in
//! publisher-confirm mode. The attempt succeeds only on the broker's `basic.ack`
//! for a message it routed: a `basic.nack`, a returned (unroutable) message, a lost
//! connection or no confirm within the route's timeout is a failed attempt.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use thulium::Password;
use thulium::event::Event;

use super::{Message, Template};
use crate::dispatcher::{Delivery, Handler, HandlerError};
use crate::forward::{ForwardError, ForwardFormat};
use crate::signing::SigningSecrets;

/// Publishes each event to a RabbitMQ exchange and waits for its confirm.
#[derive(Clone)]
pub struct RabbitPublisher {
    /// The URI with the credentials in it: never shown.
    uri: Arc<str>,
    server: String,
    exchange: String,
    routing_key: Template,
    format: ForwardFormat,
    signing: Option<SigningSecrets>,
    timeout: Duration,
    /// Opened at the first attempt, opened again after a loss.
    channel: Arc<tokio::sync::Mutex<Option<(Connection, Channel)>>>,
}

impl std::fmt::Debug for RabbitPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitPublisher")
            .field("server", &self.server)
            .field("exchange", &self.exchange)
            .field("routing_key", &self.routing_key)
            .finish_non_exhaustive()
    }
}

impl RabbitPublisher {
    /// A publisher to the broker at `url` (`amqp://host:port/vhost`; a user and
    /// password only to loopback: this build has no TLS for AMQP) into `exchange`
    /// (`""`: the default exchange, where the routing key is a queue's name) with
    /// `routing_key`; each publish waits up to `timeout` for its confirm. Nothing is
    /// sent yet: the first attempt connects.
    pub fn connect(
        url: &str,
        auth: Option<(String, Password)>,
        exchange: &str,
        routing_key: Template,
        format: ForwardFormat,
        timeout: Duration,
    ) -> Result<Self, ForwardError> {
        let mut parsed = super::broker_url(url, &["amqp"], &[], auth.is_some())?;
        let server = super::shown(url);
        if let Some((user, password)) = &auth {
            let _ = parsed.set_username(user);
            let _ = parsed.set_password(Some(password.expose()));
        }
        Ok(Self {
            uri: Arc::from(parsed.as_str()),
            server,
            exchange: exchange.to_string(),
            routing_key,
            format,
            signing: None,
            timeout,
            channel: Arc::default(),
        })
    }

    /// Signs each message as Standard Webhooks defines it, in its headers.
    pub fn signing(mut self, secrets: SigningSecrets) -> Self {
        self.signing = Some(secrets);
        self
    }

    /// The open channel, opened (in confirm mode) if there is none or it was lost.
    async fn channel(&self) -> Result<Channel, String> {
        let mut open = self.channel.lock().await;
        if let Some((connection, channel)) = open.as_ref()
            && connection.status().connected()
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        *open = None;
        let connection = Connection::connect(&self.uri, ConnectionProperties::default())
            .await
            .map_err(|e| format!("cannot connect: {}", scrubbed(&e.to_string(), &self.uri)))?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| format!("cannot open a channel: {e}"))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| format!("cannot turn publisher confirms on: {e}"))?;
        *open = Some((connection, channel.clone()));
        Ok(channel)
    }

    async fn publish(&self, key: &str, message: Message) -> Result<(), String> {
        let channel = self.channel().await?;
        let mut headers = FieldTable::default();
        let mut content_type = None;
        for (name, value) in message.headers {
            if name == "content-type" {
                content_type = Some(value);
                continue;
            }
            headers.insert(
                ShortString::from(name),
                AMQPValue::LongString(LongString::from(value)),
            );
        }
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(ShortString::from(message.id))
            .with_headers(headers);
        if let Some(content_type) = content_type {
            properties = properties.with_content_type(ShortString::from(content_type));
        }
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let confirm = channel
            .basic_publish(
                ShortString::from(self.exchange.as_str()),
                ShortString::from(key),
                options,
                &message.body,
                properties,
            )
            .await
            .map_err(|e| format!("the publish failed: {e}"))?;
        let confirmation = match tokio::time::timeout(self.timeout, confirm).await {
            Ok(Ok(confirmation)) => confirmation,
            Ok(Err(error)) => return Err(format!("no confirm: {error}")),
            Err(_) => return Err(format!("no confirm within {:?}", self.timeout)),
        };
        if !confirmation.is_ack() {
            return Err("the broker refused it (basic.nack)".into());
        }
        if let Some(returned) = confirmation.take_message() {
            return Err(format!(
                "the broker returned it unroutable ({} {}): no queue is bound for it",
                returned.reply_code, returned.reply_text
            ));
        }
        Ok(())
    }
}

/// `text` without the URI's credentials, should an error quote it.
fn scrubbed(text: &str, uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(parsed) => match parsed.password() {
            Some(password) if !password.is_empty() => text.replace(password, "***"),
            _ => text.to_string(),
        },
        Err(_) => text.to_string(),
    }
}

impl Handler for RabbitPublisher {
    async fn handle(&self, event: Event, delivery: Delivery) -> Result<(), HandlerError> {
        let key = self.routing_key.render(&event, &delivery);
        let message = Message::new(&event, &delivery, self.format, self.signing.as_ref());
        match self.publish(&key, message).await {
            Ok(()) => {
                crate::dispatcher::record_status("confirmed");
                Ok(())
            }
            Err(why) => {
                // Whatever went wrong, the next attempt opens a fresh channel.
                *self.channel.lock().await = None;
                Err(format!(
                    "RabbitMQ {} did not take the message on {}/{key}: {why}",
                    self.server, self.exchange
                )
                .into())
            }
        }
    }
}
