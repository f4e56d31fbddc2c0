//! Routes into message buses: a route whose destination is a broker instead of an
//! HTTP endpoint. The relay already stores every event before it answers Thulium;
//! a broker route hands it over only once the broker confirmed it (a JetStream
//! publish ack), so the relay is a bridge that loses nothing. Each is a [`Handler`]
//! like [`crate::forward::Forwarder`], with the same formats and, where the
//! protocol has headers, the same headers and Standard Webhooks signature.
//!
//! - [`Template`]: the subject (or key, topic) of each message, from the event's
//!   account, action and route.
//! - [`Message`]: what every broker sends: the body, its content type, a stable id
//!   and the headers.
//! - `nats` (feature `nats`): NATS JetStream.
//! - `redis` (feature `redis`): Redis Streams.
//! - `mqtt` (feature `mqtt`): MQTT, QoS 1.
//! - `rabbitmq` (feature `rabbitmq`): RabbitMQ, publisher confirms.
//!
//! [`Destination`] is any of them, so one relay runs HTTP and broker routes
//! together.

use std::fmt;

use thulium::event::Event;

use crate::dispatcher::{Delivery, Handler, HandlerError};
use crate::forward::{ForwardError, ForwardFormat, Forwarder, body_of};
use crate::signing::SigningSecrets;

#[cfg(feature = "mqtt")]
#[cfg_attr(docsrs, doc(cfg(feature = "mqtt")))]
pub mod mqtt;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub mod nats;
#[cfg(feature = "rabbitmq")]
#[cfg_attr(docsrs, doc(cfg(feature = "rabbitmq")))]
pub mod rabbitmq;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;

/// `url` as errors may show it: without the user and password it may carry.
///
/// ```
/// assert_eq!(thulium_inbox::bus::shown("nats://u:secret@h:4222"), "nats://h:4222");
/// ```
pub fn shown(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        // Not a URL: whatever stands before an `@` may be credentials.
        Err(_) => url.rsplit('@').next().unwrap_or_default().to_string(),
    }
}

/// A broker's `url`, checked as every broker route checks it: a URL of one of
/// `schemes` with a host, no credentials in it (they come from the environment),
/// and credentials (`with_credentials`) sent only over TLS (`tls_schemes`) or to a
/// loopback address, as for HTTP.
pub(crate) fn broker_url(
    url: &str,
    schemes: &[&str],
    tls_schemes: &[&str],
    with_credentials: bool,
) -> Result<url::Url, ForwardError> {
    let parsed = url::Url::parse(url).map_err(|_| ForwardError::BadUrl(shown(url)))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ForwardError::Broker(format!(
            "{}: credentials never go in the URL; give the user and password-env",
            shown(url)
        )));
    }
    if !schemes.contains(&parsed.scheme()) || parsed.host().is_none() {
        return Err(ForwardError::BadUrl(shown(url)));
    }
    if with_credentials
        && !tls_schemes.contains(&parsed.scheme())
        && !thulium::config::is_loopback(&parsed)
    {
        return Err(ForwardError::PlainHttp(shown(url)));
    }
    Ok(parsed)
}

/// A subject, key or topic with placeholders: `{account}` (the event's account, or
/// `default` when the relay receives for one), `{action}` and `{route}`.
///
/// ```
/// use thulium_inbox::bus::Template;
/// let subject = Template::parse("thulium.{account}.{action}").unwrap();
/// assert!(Template::parse("thulium.{who}").is_err());
/// # let _ = subject;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template(String);

/// What a template may name.
const PLACEHOLDERS: [&str; 3] = ["{account}", "{action}", "{route}"];

impl Template {
    /// `text`, if every `{...}` in it is a known placeholder.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let known = PLACEHOLDERS.iter().find(|p| rest[open..].starts_with(*p));
            match known {
                Some(placeholder) => rest = &rest[open + placeholder.len()..],
                None => {
                    return Err(format!(
                        "`{text}`: a template names {{account}}, {{action}} and {{route}} only"
                    ));
                }
            }
        }
        if text.trim().is_empty() {
            return Err("a template cannot be empty".into());
        }
        Ok(Self(text.to_string()))
    }

    /// The text for one delivery of `event`.
    pub fn render(&self, event: &Event, delivery: &Delivery) -> String {
        self.0
            .replace(
                "{account}",
                delivery.account.as_ref().map_or("default", |a| a.as_str()),
            )
            .replace("{action}", event.action().as_str())
            .replace("{route}", delivery.route.as_str())
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One event as a broker message: the body in the route's format, its content
/// type, the event's stable id ([`crate::signing::delivery_id`]: the same for every
/// attempt and redelivery), and the headers that say what it is.
#[derive(Clone, Debug)]
pub struct Message {
    /// The body.
    pub body: bytes::Bytes,
    /// The stable id.
    pub id: String,
    /// `Content-Type`, the thulium headers and, when signed, the Standard Webhooks
    /// ones.
    pub headers: Vec<(&'static str, String)>,
}

impl Message {
    /// The message for `event`'s `delivery` in `format`, signed with `signing`.
    pub fn new(
        event: &Event,
        delivery: &Delivery,
        format: ForwardFormat,
        signing: Option<&SigningSecrets>,
    ) -> Self {
        let (body, content_type) = body_of(format, event, delivery);
        let id = crate::signing::delivery_id(event, delivery);
        let mut headers = vec![
            ("content-type", content_type),
            ("x-thulium-inbox-id", delivery.id.to_string()),
            ("x-thulium-inbox-attempt", delivery.attempt.to_string()),
            ("x-thulium-action", event.action().as_str().to_string()),
            ("x-thulium-route", delivery.route.to_string()),
        ];
        if let Some(account) = &delivery.account {
            headers.push(("x-thulium-account", account.to_string()));
        }
        if let Some(secrets) = signing {
            let timestamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs());
            headers.push(("webhook-id", id.clone()));
            headers.push(("webhook-timestamp", timestamp.to_string()));
            headers.push((
                "webhook-signature",
                secrets.signature(&id, timestamp, &body),
            ));
        }
        Self { body, id, headers }
    }
}

/// Where a route hands its events: an HTTP endpoint or a broker.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Destination {
    /// An HTTP endpoint.
    Http(Forwarder),
    /// A NATS JetStream subject.
    #[cfg(feature = "nats")]
    #[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
    Nats(nats::NatsPublisher),
    /// An MQTT topic.
    #[cfg(feature = "mqtt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mqtt")))]
    Mqtt(mqtt::MqttPublisher),
    /// A RabbitMQ exchange.
    #[cfg(feature = "rabbitmq")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rabbitmq")))]
    Rabbit(rabbitmq::RabbitPublisher),
    /// A Redis stream.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    Redis(redis::RedisStreams),
}

impl Handler for Destination {
    async fn handle(&self, event: Event, delivery: Delivery) -> Result<(), HandlerError> {
        match self {
            Destination::Http(forwarder) => forwarder.handle(event, delivery).await,
            #[cfg(feature = "nats")]
            Destination::Nats(publisher) => publisher.handle(event, delivery).await,
            #[cfg(feature = "redis")]
            Destination::Redis(streams) => streams.handle(event, delivery).await,
            #[cfg(feature = "mqtt")]
            Destination::Mqtt(publisher) => publisher.handle(event, delivery).await,
            #[cfg(feature = "rabbitmq")]
            Destination::Rabbit(publisher) => publisher.handle(event, delivery).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EventId;
    use crate::routing::{AccountName, RouteName};

    fn delivery(account: Option<&str>) -> Delivery {
        Delivery {
            id: EventId(7),
            attempt: 2,
            first_received_at: 0,
            dedup_key: "k".into(),
            body: bytes::Bytes::from_static(b"action=TICKET_CREATED&ticket_id=1"),
            content_type: None,
            route: RouteName::new("bus").unwrap(),
            account: account.map(|a| AccountName::new(a).unwrap()),
        }
    }

    #[test]
    fn broker_urls_keep_credentials_out_and_off_plain_networks() {
        let check = |url, credentials| broker_url(url, &["nats", "tls"], &["tls"], credentials);
        assert!(check("nats://127.0.0.1:4222", true).is_ok());
        assert!(check("nats://localhost:4222", true).is_ok());
        assert!(check("tls://nats.example.com:4222", true).is_ok());
        assert!(check("nats://nats.example.com:4222", false).is_ok());
        assert!(matches!(
            check("nats://nats.example.com:4222", true),
            Err(ForwardError::PlainHttp(_))
        ));
        let refused = check("nats://user:hunter2@127.0.0.1:4222", false).unwrap_err();
        assert!(!refused.to_string().contains("hunter2"), "{refused}");
        assert!(matches!(
            check("redis://127.0.0.1", false),
            Err(ForwardError::BadUrl(_))
        ));
    }

    #[test]
    fn templates_name_the_account_action_and_route() {
        let event =
            Event::parse(br#"{"action":"CALL_ANSWERED","connection_id":"1.2"}"#, None).unwrap();
        let template = Template::parse("thulium.{account}.{action}.{route}").unwrap();
        assert_eq!(
            template.render(&event, &delivery(Some("acme"))),
            "thulium.acme.CALL_ANSWERED.bus"
        );
        assert_eq!(
            template.render(&event, &delivery(None)),
            "thulium.default.CALL_ANSWERED.bus"
        );
        for bad in ["", "a.{who}", "a.{action"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_message_keeps_the_body_and_says_what_it_is() {
        let sample = crate::conformance::ticket(1, 0);
        let event = Event::parse(&sample.body, sample.content_type.as_deref()).unwrap();
        let mut delivery = delivery(Some("acme"));
        delivery.body = sample.body.clone();
        let secrets = SigningSecrets::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let message = Message::new(&event, &delivery, ForwardFormat::AsReceived, Some(&secrets));
        assert_eq!(message.body, delivery.body);
        let header = |name: &str| {
            message
                .headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("x-thulium-account"), Some("acme"));
        assert_eq!(header("x-thulium-action"), Some("TICKET_CREATED"));
        assert_eq!(header("webhook-id"), Some(message.id.as_str()));
        assert!(header("webhook-signature").is_some_and(|s| s.starts_with("v1,")));
        // The same event again: the same id (what a broker's duplicate window uses).
        let again = Message::new(&event, &delivery, ForwardFormat::AsReceived, None);
        assert_eq!(again.id, message.id);
    }
}
