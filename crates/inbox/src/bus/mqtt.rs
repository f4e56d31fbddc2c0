//! [`MqttPublisher`]: a route into an MQTT broker. Each event is published with
//! QoS 1 to the topic its [`Template`] gives, and the attempt succeeds only when
//! the broker's `PUBACK` for that packet came back. MQTT 3.1.1 has no message
//! properties: the body is the message, and the event's stable id, account and
//! action travel in the topic (if the template names them) or not at all; a
//! redelivery after a relay crash is a second message, for the consumer to drop
//! by its content.
//!
//! One task owns the client's event loop: it publishes what the handlers ask,
//! pairs each packet id the loop sends with the attempt that asked, and answers
//! each attempt when its `PUBACK` arrives. A lost connection fails every attempt
//! waiting (they are retried) and starts a fresh session, so that nothing the
//! dropped one held is sent twice by the client on its own.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use thulium::Password;
use tokio::sync::{mpsc, oneshot};

use super::{Message, Template};
use crate::dispatcher::{Delivery, Handler, HandlerError};
use crate::forward::{ForwardError, ForwardFormat};

/// One publish asked by an attempt, and where its outcome goes.
struct Publish {
    topic: String,
    payload: bytes::Bytes,
    done: oneshot::Sender<Result<(), String>>,
}

/// Publishes each event with QoS 1 and waits for the broker's `PUBACK`.
#[derive(Clone, Debug)]
pub struct MqttPublisher {
    requests: mpsc::Sender<Publish>,
    topic: Template,
    format: ForwardFormat,
    timeout: Duration,
    server: String,
}

impl MqttPublisher {
    /// A publisher to the broker at `url` (`mqtt://host:port`; a user and password
    /// only to loopback: this build has no TLS for MQTT) publishing to `topic`;
    /// each publish waits up to `timeout` for its `PUBACK`. It connects in the
    /// background: attempts while the broker is away fail and are retried.
    pub fn connect(
        url: &str,
        auth: Option<(String, Password)>,
        topic: Template,
        format: ForwardFormat,
        timeout: Duration,
    ) -> Result<Self, ForwardError> {
        let parsed = super::broker_url(url, &["mqtt"], &[], auth.is_some())?;
        let host = parsed.host_str().unwrap_or("127.0.0.1").to_string();
        let port = parsed.port().unwrap_or(1883);
        let server = format!("mqtt://{host}:{port}");
        let mut options =
            MqttOptions::new(format!("thulium-relay-{:x}", fastrand::u64(..)), host, port);
        options.set_keep_alive(Duration::from_secs(10));
        options.set_max_packet_size(1 << 20, 1 << 20);
        if let Some((user, password)) = auth {
            options.set_credentials(user, password.expose());
        }
        let (requests, waiting) = mpsc::channel(1024);
        tokio::spawn(run(options, waiting));
        Ok(Self {
            requests,
            topic,
            format,
            timeout,
            server,
        })
    }
}

/// The broker's client: sends the publishes asked on `waiting`, answers each when
/// its `PUBACK` comes, and starts a fresh session after a loss. Ends when every
/// publisher is dropped.
async fn run(options: MqttOptions, mut waiting: mpsc::Receiver<Publish>) {
    loop {
        let (client, mut events) = AsyncClient::new(options.clone(), 1024);
        // Asked and handed to the client, waiting for their packet ids (the loop
        // sends them in the order asked); then waiting for their PUBACK by id.
        let mut unsent: VecDeque<oneshot::Sender<Result<(), String>>> = VecDeque::new();
        let mut sent: HashMap<u16, oneshot::Sender<Result<(), String>>> = HashMap::new();
        let lost = loop {
            tokio::select! {
                request = waiting.recv() => {
                    let Some(publish) = request else { return };
                    match client.try_publish(publish.topic, QoS::AtLeastOnce, false, publish.payload.to_vec()) {
                        Ok(()) => unsent.push_back(publish.done),
                        Err(error) => {
                            let _ = publish.done.send(Err(format!("the client is busy: {error}")));
                        }
                    }
                }
                event = events.poll() => match event {
                    Ok(Event::Outgoing(Outgoing::Publish(packet))) => {
                        if let Some(done) = unsent.pop_front() {
                            sent.insert(packet, done);
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        if let Some(done) = sent.remove(&ack.pkid) {
                            let _ = done.send(Ok(()));
                        }
                    }
                    Ok(_) => {}
                    Err(error) => break error.to_string(),
                }
            }
        };
        for done in unsent.into_iter().chain(sent.into_values()) {
            let _ = done.send(Err(format!("the connection was lost: {lost}")));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

impl Handler for MqttPublisher {
    async fn handle(
        &self,
        event: thulium::event::Event,
        delivery: Delivery,
    ) -> Result<(), HandlerError> {
        let topic = self.topic.render(&event, &delivery);
        let message = Message::new(&event, &delivery, self.format, None);
        let (done, outcome) = oneshot::channel();
        let request = Publish {
            topic: topic.clone(),
            payload: message.body,
            done,
        };
        let failed = |why: String| -> HandlerError {
            format!(
                "MQTT {} did not take the message on {topic}: {why}",
                self.server
            )
            .into()
        };
        self.requests
            .send(request)
            .await
            .map_err(|_| failed("the client stopped".into()))?;
        match tokio::time::timeout(self.timeout, outcome).await {
            Ok(Ok(Ok(()))) => {
                crate::dispatcher::record_status("puback");
                Ok(())
            }
            Ok(Ok(Err(why))) => Err(failed(why)),
            Ok(Err(_)) => Err(failed("the client stopped".into())),
            Err(_) => Err(failed(format!("no PUBACK within {:?}", self.timeout))),
        }
    }
}
