//! [`RedisStreams`]: a route into Redis Streams. Each event is appended (`XADD`) to
//! the stream its [`Template`] names, as the fields `id` (the event's stable id),
//! `body` and one per header, optionally trimmed (`MAXLEN ~ N`); the attempt
//! succeeds once Redis answered the entry's id. Redis has no duplicate window: a
//! redelivery (after a relay crash between the append and its record) is a second
//! entry with the same `id` field, for the consumer to drop.
//!
//! Durability is Redis's own: an entry is on disk only as the server's persistence
//! settings say (`appendonly yes` with `appendfsync always` to lose nothing; a server
//! without persistence, as this project's development machines run, keeps it in
//! memory only and loses it on a restart).

use std::time::Duration;

use thulium::Password;
use thulium::event::Event;

use super::{Message, Template};
use crate::dispatcher::{Delivery, Handler, HandlerError};
use crate::forward::{ForwardError, ForwardFormat};
use crate::signing::SigningSecrets;

/// Appends each event to a Redis stream and waits for the entry's id.
#[derive(Clone)]
pub struct RedisStreams {
    client: redis::Client,
    config: redis::aio::ConnectionManagerConfig,
    /// Made at the first attempt (a relay starts while Redis is down, and stores
    /// what it receives), then re-made by itself after a loss.
    connection: std::sync::Arc<tokio::sync::Mutex<Option<redis::aio::ConnectionManager>>>,
    stream: Template,
    max_len: Option<u64>,
    format: ForwardFormat,
    signing: Option<SigningSecrets>,
    server: String,
}

impl std::fmt::Debug for RedisStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreams")
            .field("server", &self.server)
            .field("stream", &self.stream)
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

impl RedisStreams {
    /// Connects to `url` (`redis://host:port/db`; `rediss://` is refused: this
    /// build has no TLS for Redis, so a password goes only to loopback), with an ACL
    /// user and password if given, appending to `stream`, trimmed to about
    /// `max_len` entries if given; each command waits up to `timeout`. Nothing is
    /// sent yet: the first attempt connects (an attempt while Redis is away fails
    /// and is retried), and the connection is re-made by itself after a loss.
    pub async fn connect(
        url: &str,
        auth: Option<(String, Password)>,
        stream: Template,
        max_len: Option<u64>,
        format: ForwardFormat,
        timeout: Duration,
    ) -> Result<Self, ForwardError> {
        super::broker_url(url, &["redis"], &[], auth.is_some())?;
        let mut info = redis::IntoConnectionInfo::into_connection_info(url)
            .map_err(|e| ForwardError::Broker(format!("{}: {e}", super::shown(url))))?;
        if let Some((user, password)) = auth {
            info.redis.username = Some(user);
            info.redis.password = Some(password.expose().to_string());
        }
        let server = super::shown(url);
        let client = redis::Client::open(info)
            .map_err(|e| ForwardError::Broker(format!("{server}: {e}")))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout);
        Ok(Self {
            client,
            config,
            connection: std::sync::Arc::default(),
            stream,
            max_len,
            format,
            signing: None,
            server,
        })
    }

    /// Signs each entry as Standard Webhooks defines it, in its fields.
    pub fn signing(mut self, secrets: SigningSecrets) -> Self {
        self.signing = Some(secrets);
        self
    }
}

impl Handler for RedisStreams {
    async fn handle(&self, event: Event, delivery: Delivery) -> Result<(), HandlerError> {
        let key = self.stream.render(&event, &delivery);
        let message = Message::new(&event, &delivery, self.format, self.signing.as_ref());
        let mut command = redis::cmd("XADD");
        command.arg(&key);
        if let Some(max_len) = self.max_len {
            command.arg("MAXLEN").arg("~").arg(max_len);
        }
        command
            .arg("*")
            .arg("id")
            .arg(&message.id)
            .arg("body")
            .arg(&message.body[..]);
        for (name, value) in &message.headers {
            command.arg(*name).arg(value);
        }
        let mut connection = {
            let mut made = self.connection.lock().await;
            match made.as_ref() {
                Some(connection) => connection.clone(),
                None => {
                    let connection = self
                        .client
                        .get_connection_manager_with_config(self.config.clone())
                        .await
                        .map_err(|e| format!("cannot connect to Redis {}: {e}", self.server))?;
                    made.insert(connection).clone()
                }
            }
        };
        match command.query_async::<String>(&mut connection).await {
            Ok(entry) => {
                crate::dispatcher::record_status(&entry);
                Ok(())
            }
            Err(error) => {
                Err(format!("Redis {} did not append to {key}: {error}", self.server).into())
            }
        }
    }
}
