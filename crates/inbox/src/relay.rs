//! [`Relay`]: the whole inbox in one call. It readies the store for dispatching,
//! serves the receiver with `/healthz`, `/readyz` and `/metrics`, runs the
//! dispatcher and the purge, and shuts all of it down in order on a signal or on
//! [`RelayHandle::shutdown`]. `thulium listen --inbox` is built on it, so an
//! application that embeds the inbox runs the same path the command line does.
//!
//! ```no_run
//! use thulium::event::Event;
//! use thulium::receiver::Receiver;
//! use thulium_inbox::dispatcher::{Delivery, Permanent};
//! use thulium_inbox::relay::Relay;
//! use thulium_inbox::EmbeddedStore;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = EmbeddedStore::open("events.redb")?;
//! let receiver = Receiver::with_basic_auth("thulium", "a-long-random-password")?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! Relay::new(store, receiver)
//!     .path("/thulium")
//!     // Until Ctrl-C or SIGTERM; then running handlers get their grace period.
//!     .run(listener, |event: Event, delivery: Delivery| async move {
//!         if let thulium::Action::Other(name) = event.action() {
//!             // Never retried: dead at once, with this reason, until replayed.
//!             return Err(Permanent::new(format!("no handler for {name}")).into());
//!         }
//!         println!("{} (attempt {})", event.action(), delivery.attempt);
//!         Ok::<_, thulium_inbox::dispatcher::HandlerError>(()) // another Err is retried
//!     })
//!     .await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use thulium::receiver::Receiver;
use thulium::server::ServerLimits;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::dispatcher::{DispatchConfig, Dispatcher, Handler};
use crate::handover::Handover;
use crate::model::now_ms;
use crate::ops::PrometheusHandle;
use crate::receiver::{DEFAULT_MAX_BACKLOG, DurableReceiver};
use crate::routing::{AccountName, ActionPattern, RouteName, Routing, RoutingError};
use crate::store::{Store, StoreError};

/// How long handed-over events and dedup keys are kept unless configured: the
/// window within which a redelivery from Thulium is recognised.
pub const DEFAULT_KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

/// How often the purge runs unless configured.
pub const DEFAULT_PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Why a relay stopped or could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The store could not be readied for dispatching (another process holds the
    /// file's dispatch lock, the store is unreachable).
    #[error("cannot start dispatching: {0}")]
    Store(#[from] StoreError),
    /// The HTTP server failed (the listener's address, accepting connections).
    #[error("the relay's HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
    /// A task of the relay panicked; what it had stored stays stored.
    #[error("a task of the relay ended abnormally: {0}")]
    Task(String),
    /// The routes given cannot work together (none, or two with one name).
    #[error("the relay's routes: {0}")]
    Routes(#[from] RoutingError),
    /// The accounts given cannot work together.
    #[error("the relay's accounts: {0}")]
    Accounts(String),
}

/// A Thulium account a relay receives for ([`Relay::accounts`]): its deliveries on
/// its own path, checked with its own credentials, stored as its events.
#[derive(Debug)]
pub struct Account {
    /// The account (stored with each event, forwarded as `X-Thulium-Account`).
    pub name: AccountName,
    /// The path its deliveries are POSTed to (`/thulium/{account}` by default).
    pub path: String,
    /// Its credentials: another account's are refused here (`401`).
    pub receiver: Receiver,
}

impl Account {
    /// Account `name` on `/thulium/{name}`, checked with `receiver`.
    pub fn new(name: AccountName, receiver: Receiver) -> Self {
        Self {
            path: format!("/thulium/{name}"),
            name,
            receiver,
        }
    }

    /// On `path` instead.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }
}

/// One destination of a relay ([`Relay::start_routes`]): the actions it takes, how
/// its entries are handed over, and the handler that takes them. Each route has its
/// own delivery state: its failures never delay or repeat another's.
#[derive(Debug)]
pub struct Route<H> {
    /// The route's name (in the store, the console, metrics labels).
    pub name: RouteName,
    /// The actions it takes (exact names or globs); empty: every action.
    pub actions: Vec<ActionPattern>,
    /// How its entries are handed over (its `route` is set to `name`).
    pub dispatch: DispatchConfig,
    /// What takes its entries.
    pub handler: H,
    /// The accounts whose events it takes; empty: every account's.
    pub accounts: Vec<AccountName>,
}

impl<H> Route<H> {
    /// Route `name`, taking every action, handed over with the default settings.
    pub fn new(name: RouteName, handler: H) -> Self {
        Self {
            name,
            actions: Vec::new(),
            dispatch: DispatchConfig::default(),
            handler,
            accounts: Vec::new(),
        }
    }

    /// Takes only the events of `accounts` (empty: every account's).
    pub fn accounts(mut self, accounts: Vec<AccountName>) -> Self {
        self.accounts = accounts;
        self
    }

    /// Takes only the actions `patterns` match.
    pub fn actions(mut self, patterns: Vec<ActionPattern>) -> Self {
        self.actions = patterns;
        self
    }

    /// Hands its entries over with `config`.
    pub fn dispatch(mut self, config: DispatchConfig) -> Self {
        self.dispatch = config;
        self
    }
}

/// A relay to configure, then [`Relay::start`] or [`Relay::run`].
#[derive(Debug)]
pub struct Relay<S> {
    store: S,
    receiver: Receiver,
    path: String,
    max_backlog: u64,
    dispatch: DispatchConfig,
    keep: Duration,
    purge_every: Duration,
    metrics: Option<PrometheusHandle>,
    limits: ServerLimits,
    routes: Router,
    accounts: Vec<Account>,
}

impl<S: Store + Clone> Relay<S> {
    /// A relay that checks deliveries with `receiver` and keeps them in `store`,
    /// with every other setting at its default: deliveries on `POST /thulium`, the
    /// default [`DispatchConfig`], events kept [`DEFAULT_KEEP`], no `/metrics`.
    pub fn new(store: S, receiver: Receiver) -> Self {
        Self {
            store,
            receiver,
            path: "/thulium".into(),
            max_backlog: DEFAULT_MAX_BACKLOG,
            dispatch: DispatchConfig::default(),
            keep: DEFAULT_KEEP,
            purge_every: DEFAULT_PURGE_EVERY,
            metrics: None,
            limits: ServerLimits::default(),
            routes: Router::new(),
            accounts: Vec::new(),
        }
    }

    /// Receives for these accounts, each on its own path with its own credentials,
    /// instead of the one receiver and path given so far.
    pub fn accounts(mut self, accounts: Vec<Account>) -> Self {
        self.accounts = accounts;
        self
    }

    /// Deliveries are received on `POST path`.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Deliveries get `503` while more than `events` wait to be handed over.
    pub fn max_backlog(mut self, events: u64) -> Self {
        self.max_backlog = events;
        self
    }

    /// How events are handed over.
    pub fn dispatch(mut self, config: DispatchConfig) -> Self {
        self.dispatch = config;
        self
    }

    /// Handed-over events are purged once finished this long ago, and dedup keys
    /// once received this long ago (a redelivery after that is a new event).
    pub fn keep(mut self, keep: Duration) -> Self {
        self.keep = keep;
        self
    }

    /// How often the purge runs (it also runs at start).
    pub fn purge_every(mut self, every: Duration) -> Self {
        self.purge_every = every.max(Duration::from_millis(10));
        self
    }

    /// Serves `/metrics` from this handle ([`crate::ops::install_prometheus`]).
    pub fn metrics(mut self, handle: PrometheusHandle) -> Self {
        self.metrics = Some(handle);
        self
    }

    /// The HTTP server's limits.
    pub fn limits(mut self, limits: ServerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Serves `routes` beside the receiver and the operators' routes.
    pub fn merge(mut self, routes: Router) -> Self {
        self.routes = self.routes.merge(routes);
        self
    }

    /// Readies the store ([`Store::begin_dispatch`]), then serves on `listener` and
    /// hands each event to `handler` (on the default route, with [`Self::dispatch`]'s
    /// settings) until [`RelayHandle::shutdown`].
    pub async fn start<H: Handler>(
        self,
        listener: TcpListener,
        handler: H,
    ) -> Result<RelayHandle<S>, RelayError> {
        let route = Route::new(RouteName::default_route(), handler).dispatch(self.dispatch.clone());
        self.start_routes(listener, vec![route]).await
    }

    /// [`Self::start`] with several routes: each event is stored once per route
    /// that takes its action (or once, as unrouted, if none does) and each route's
    /// entries are handed to its own handler by its own dispatcher.
    pub async fn start_routes<H: Handler>(
        self,
        listener: TcpListener,
        routes: Vec<Route<H>>,
    ) -> Result<RelayHandle<S>, RelayError> {
        let mut routing = Routing::new(
            routes
                .iter()
                .map(|r| (r.name.clone(), r.actions.clone()))
                .collect(),
        )?;
        for route in &routes {
            routing = routing.only_accounts(&route.name, route.accounts.clone());
        }
        for (position, account) in self.accounts.iter().enumerate() {
            let earlier = &self.accounts[..position];
            if earlier.iter().any(|a| a.name == account.name) {
                return Err(RelayError::Accounts(format!(
                    "`{}` is given twice",
                    account.name
                )));
            }
            if earlier.iter().any(|a| a.path == account.path) || !account.path.starts_with('/') {
                return Err(RelayError::Accounts(format!(
                    "account {}'s path `{}` must start with / and differ from every other account's",
                    account.name, account.path
                )));
            }
        }
        let (guard, released) = self.store.begin_dispatch().await?;
        if released > 0 {
            tracing::warn!(
                released,
                "released the events a previous process was handing over"
            );
        }
        let addr = listener.local_addr().map_err(RelayError::Serve)?;
        let until = Stopping {
            stop: std::sync::Arc::new(watch::Sender::new(false)),
        };
        let stop = std::sync::Arc::clone(&until.stop);
        // The events the receivers parsed, for the dispatchers below.
        let handover = Handover::default();
        let receiving = DurableReceiver::new(self.receiver, self.store.clone())
            .routing(routing)
            .max_backlog(self.max_backlog)
            .handover(handover.clone());
        let paths: Vec<String> = if self.accounts.is_empty() {
            vec![self.path.clone()]
        } else {
            self.accounts.iter().map(|a| a.path.clone()).collect()
        };
        let receivers = if self.accounts.is_empty() {
            receiving.router(&self.path)
        } else {
            // One backlog count for all: each account's receiver is a clone.
            let mut router = Router::new();
            for account in self.accounts {
                router = router.merge(
                    receiving
                        .with_receiver(account.receiver)
                        .account(account.name)
                        .router(&account.path),
                );
            }
            router
        };
        let app = receivers
            .merge(crate::ops::router(self.store.clone(), self.metrics))
            .merge(self.routes);
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            %addr,
            paths = %paths.join(","),
            routes = routes.len(),
            keep_s = self.keep.as_secs(),
            "relay started"
        );
        let mut dispatchers = tokio::task::JoinSet::new();
        for route in routes {
            let config = route
                .dispatch
                .route(route.name.clone())
                .handover(handover.clone());
            tracing::info!(
                route = %route.name,
                actions = %route.actions.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
                concurrency = config.concurrency,
                handler_timeout_ms = crate::model::ms(config.handler_timeout),
                max_attempts = config.schedule.max_attempts,
                "route dispatching"
            );
            dispatchers.spawn(
                Dispatcher::new(self.store.clone(), config).run(route.handler, until.wait()),
            );
        }
        let dispatching = async move {
            let mut ended = Ok(());
            while let Some(result) = dispatchers.join_next().await {
                if let Err(error) = result {
                    ended = Err(error);
                }
            }
            ended
        };
        let purging = tokio::spawn(purge_now_and_then(
            self.store.clone(),
            self.keep,
            self.purge_every,
            until.wait(),
        ));
        let serving = tokio::spawn(thulium::server::serve(
            listener,
            app,
            self.limits,
            until.wait(),
        ));
        let tasks = tokio::spawn(async move {
            let served = serving.await;
            // Whatever ended the server (a shutdown, or an error) ends the rest.
            stop.send_replace(true);
            let dispatched = dispatching.await;
            let _ = purging.await;
            drop(guard);
            tracing::info!("relay stopped");
            match (served, dispatched) {
                (Ok(Ok(())), Ok(())) => Ok(()),
                (Ok(Err(error)), _) => Err(RelayError::Serve(error)),
                (Err(error), _) | (_, Err(error)) => Err(RelayError::Task(error.to_string())),
            }
        });
        Ok(RelayHandle {
            addr,
            store: self.store,
            stopping: until,
            tasks,
        })
    }

    /// [`Self::start`], then runs until Ctrl-C or SIGTERM ([`shutdown_signal`]) and
    /// shuts down in order.
    pub async fn run<H: Handler>(
        self,
        listener: TcpListener,
        handler: H,
    ) -> Result<(), RelayError> {
        let relay = self.start(listener, handler).await?;
        relay.shutdown_on(shutdown_signal()).await
    }
}

/// A running relay.
#[derive(Debug)]
pub struct RelayHandle<S> {
    addr: SocketAddr,
    store: S,
    stopping: Stopping,
    tasks: JoinHandle<Result<(), RelayError>>,
}

impl<S: Store> RelayHandle<S> {
    /// The address the relay serves on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The relay's store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Completes once every event stored so far is done or dead (none pending, none
    /// in flight): for tests, and for a planned stop that should leave nothing
    /// behind. An event waiting for a retry is not handed over yet; with a handler
    /// that keeps failing this waits until the schedule ends.
    pub async fn drained(&self) -> Result<(), StoreError> {
        loop {
            if self.store.stats().await?.open() == 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Completes when the relay begins to stop (a shutdown, or its server failed):
    /// a shutdown future for what runs beside it.
    pub fn stopping(&self) -> impl Future<Output = ()> + Send + 'static {
        self.stopping.wait()
    }

    /// Stops receiving (requests in flight are answered), stops claiming, gives
    /// back events claimed and not started, lets running handlers finish within
    /// their grace period, then returns.
    pub async fn shutdown(self) -> Result<(), RelayError> {
        self.shutdown_on(std::future::ready(())).await
    }

    /// Runs until `signal` completes (or the server fails), then shuts down.
    pub async fn shutdown_on(
        self,
        signal: impl Future<Output = ()> + Send,
    ) -> Result<(), RelayError> {
        let mut tasks = self.tasks;
        tokio::select! {
            ended = &mut tasks => return flatten(ended),
            () = signal => {}
        }
        tracing::info!("shutting down: no new deliveries; running handlers may finish");
        self.stopping.stop.send_replace(true);
        flatten(tasks.await)
    }
}

fn flatten(
    ended: Result<Result<(), RelayError>, tokio::task::JoinError>,
) -> Result<(), RelayError> {
    ended.map_err(|e| RelayError::Task(e.to_string()))?
}

/// The stop flag every part of the relay watches.
#[derive(Clone, Debug)]
struct Stopping {
    stop: std::sync::Arc<watch::Sender<bool>>,
}

impl Stopping {
    fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stopped = self.stop.subscribe();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    }
}

/// Ctrl-C, or SIGTERM (what service managers send).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut terminate) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Purges at start and every `every`: done events finished more than `keep` ago,
/// dedup keys of events received more than `keep` ago.
async fn purge_now_and_then<S: Store>(
    store: S,
    keep: Duration,
    every: Duration,
    stopped: impl Future<Output = ()>,
) {
    let mut stopped = std::pin::pin!(stopped);
    loop {
        let cut = now_ms().saturating_sub(crate::model::ms(keep));
        match store.purge(cut, cut).await {
            Ok(purged) if purged.events + purged.keys > 0 => {
                tracing::info!(events = purged.events, keys = purged.keys, "purged");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "purge failed; trying again later"),
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = &mut stopped => return,
        }
    }
}
