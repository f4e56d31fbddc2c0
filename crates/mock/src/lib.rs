//! A fake Thulium for tests and demos: the webhooks API as Thulium documents it, and
//! event delivery to subscribers, on loopback.
//!
//! - `GET` and `POST /api/webhooks` with HTTP Basic auth, ids from 1 upwards, unset
//!   auth fields returned as `""`, unknown request fields ignored, and errors in
//!   Thulium's shape (several at once, English or Polish with `Accept-Language: pl`).
//!   Error statuses and codes are the fake's own: Thulium documents neither.
//! - [`MockThulium::emit`] (or `POST /_mock/events`, the fake's own control endpoint)
//!   delivers an event to every subscription of its action, in the background, with
//!   retries; [`MockThulium::deliveries`] shows every attempt.
//!
//! The fake builds its answers from the SDK's generated types, so it cannot drift
//! from the OpenAPI spec.
//!
//! # Testing your own handler
//!
//! The fake delivers to your receiver over loopback, as Thulium would, and its log
//! tells what your handler answered (the README shows the same test):
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use thulium::event::{Event, examples};
//! use thulium::receiver::Receiver;
//! use thulium::{Action, NewWebhook};
//! use thulium_mock::{DeliveryState, MockThulium};
//!
//! // Your receiver, as in production (here: one that accepts every event).
//! let app = Receiver::with_basic_auth("thulium", "s3cret")?
//!     .router("/hook", |_event: Event| async { Ok::<_, std::convert::Infallible>(()) });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let hook = format!("http://{}/hook", listener.local_addr()?);
//! tokio::spawn(thulium::server::serve(listener, app, Default::default(), std::future::pending()));
//!
//! // The fake Thulium, the subscription, and one event.
//! let thulium = MockThulium::start().await?;
//! thulium
//!     .client_builder()
//!     .build()?
//!     .create_webhook(&NewWebhook::new(hook, [Action::TicketCreated]).with_auth("thulium", "s3cret"))
//!     .await?;
//! let ids = thulium.emit(&examples::event_now("TICKET_CREATED", &[])?);
//! let delivery = thulium.wait_for_delivery(ids[0], Duration::from_secs(5)).await.unwrap();
//! assert_eq!(delivery.state, DeliveryState::Delivered);
//! # Ok(()) }
//! ```
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use thulium::{Action, NewWebhook};
//!
//! let mock = thulium_mock::MockThulium::start().await?;
//! let client = mock.client_builder().build()?;
//! let created = client
//!     .create_webhook(&NewWebhook::new("http://127.0.0.1:9/hook", [Action::TicketCreated]))
//!     .await?;
//! assert_eq!(created.id, 1);
//! assert_eq!(client.list_webhooks().await?, vec![created]);
//! # Ok(()) }
//! ```

mod api;
pub mod control;
mod delivery;
mod problem;
mod refusing;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thulium::auth::BasicAuth;
use thulium::event::Event;
use thulium::server::ServerLimits;
use thulium::{ClientBuilder, Password, Webhook};
use tokio::sync::oneshot;

pub use delivery::{
    Attempt, AttemptOutcome, DELIVERY_HEADER, Delivery, DeliveryPolicy, DeliveryState,
};
pub use problem::Problem;
pub use refusing::RefusingAddress;

/// How the fake is set up.
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// The API user's login (default `api_user`, as in Thulium's docs).
    pub api_user: String,
    /// The API user's password (default `api_pass`, as in Thulium's docs).
    pub api_password: Password,
    /// The largest API request body, in bytes (default 64 KiB).
    pub body_limit: usize,
    /// How events are delivered.
    pub delivery: DeliveryPolicy,
    /// Timeouts and the connection cap of the fake's HTTP server.
    pub server: ServerLimits,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            api_user: "api_user".into(),
            api_password: Password::new("api_pass"),
            body_limit: 64 * 1024,
            delivery: DeliveryPolicy::default(),
            server: ServerLimits::default(),
        }
    }
}

/// A running fake Thulium. Stops when dropped (or with [`MockThulium::shutdown`]).
pub struct MockThulium {
    addr: SocketAddr,
    config: MockConfig,
    shared: Arc<api::Shared>,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for MockThulium {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockThulium")
            .field("base_url", &self.base_url())
            .field("api_user", &self.config.api_user)
            .finish_non_exhaustive()
    }
}

impl MockThulium {
    /// Starts a fake with the default configuration on `127.0.0.1` and a free port.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(MockConfig::default()).await
    }

    /// Starts a fake with `config` on `127.0.0.1` and a free port.
    pub async fn start_with(config: MockConfig) -> std::io::Result<Self> {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    /// Starts a fake on `addr` (for serving people, as `thulium mock` does). An empty
    /// API user or password, or a user containing `:`, is an `InvalidInput` error.
    pub async fn bind(addr: SocketAddr, config: MockConfig) -> std::io::Result<Self> {
        let api_auth = BasicAuth::new(&config.api_user, config.api_password.clone())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(api::Shared {
            own_addr: addr,
            api_auth,
            body_limit: config.body_limit,
            subscriptions: Mutex::new(Vec::new()),
            deliverer: delivery::Deliverer::new(config.delivery.clone())?,
        });
        let app = api::router(Arc::clone(&shared));
        let (stop, stopped) = oneshot::channel::<()>();
        let limits = config.server.clone();
        let server = tokio::spawn(async move {
            let serve = thulium::server::serve(listener, app, limits, async {
                let _ = stopped.await;
            });
            if let Err(error) = serve.await {
                tracing::error!(%error, "the fake Thulium stopped");
            }
        });
        tracing::info!(%addr, "fake Thulium listening");
        Ok(Self {
            addr,
            config,
            shared,
            stop: Mutex::new(Some(stop)),
            server: Mutex::new(Some(server)),
        })
    }

    /// The base URL, such as `http://127.0.0.1:38211`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the fake listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API user's login.
    pub fn api_user(&self) -> &str {
        &self.config.api_user
    }

    /// The API user's password.
    pub fn api_password(&self) -> &Password {
        &self.config.api_password
    }

    /// An SDK client builder pointed at this fake, with its credentials.
    pub fn client_builder(&self) -> ClientBuilder {
        ClientBuilder::new().base_url(self.base_url()).credentials(
            self.config.api_user.clone(),
            self.config.api_password.clone(),
        )
    }

    /// Every subscription, in creation order.
    pub fn subscriptions(&self) -> Vec<Webhook> {
        self.shared.subscriptions()
    }

    /// Delivers `event` to every subscription of its action, in the background, and
    /// returns the ids of the deliveries started (none if nobody subscribed).
    pub fn emit(&self, event: &Event) -> Vec<u64> {
        self.shared
            .deliverer
            .emit(event, &self.shared.subscriptions())
    }

    /// Each delivery as it stands after each of its attempts, from now on: what
    /// `thulium mock` prints. A watcher more than 1,024 attempts behind is told how
    /// many it missed ([`tokio::sync::broadcast::error::RecvError::Lagged`]).
    pub fn watch_attempts(&self) -> tokio::sync::broadcast::Receiver<Delivery> {
        self.shared.deliverer.log.watch()
    }

    /// Every delivery so far, with every attempt.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.deliverer.log.all()
    }

    /// One delivery, if it exists.
    pub fn delivery(&self, id: u64) -> Option<Delivery> {
        self.shared.deliverer.log.get(id)
    }

    /// Waits until delivery `id` is delivered or given up, at most `timeout`;
    /// returns it as it then stands (still `Pending` if the time ran out).
    pub async fn wait_for_delivery(&self, id: u64, timeout: Duration) -> Option<Delivery> {
        self.shared
            .deliverer
            .log
            .wait_until(timeout, |all| {
                all.get(&id)
                    .is_none_or(|d| d.state != DeliveryState::Pending)
            })
            .await;
        self.delivery(id)
    }

    /// Waits until no delivery is pending, at most `timeout`; whether that happened.
    pub async fn wait_until_settled(&self, timeout: Duration) -> bool {
        self.shared
            .deliverer
            .log
            .wait_until(timeout, |all| {
                all.values().all(|d| d.state != DeliveryState::Pending)
            })
            .await
    }

    /// Stops serving and waits for the server task to end.
    pub async fn shutdown(self) {
        self.stop_server();
        let server = self.server.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(server) = server {
            let _ = server.await;
        }
    }

    fn stop_server(&self) {
        if let Some(stop) = self.stop.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for MockThulium {
    fn drop(&mut self) {
        self.stop_server();
    }
}
