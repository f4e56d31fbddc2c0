//! The inbox console: see, search and replay events in a browser.
//!
//! [`router`] is an axum router an application can mount in its own server;
//! `thulium listen --inbox ... --console ADDR` and `thulium inbox console` serve it.
//!
//! - Pages are rendered on the server, so reading works with JavaScript off; a small
//!   script (built into the binary, like the style sheet: nothing is fetched from
//!   elsewhere) polls JSON endpoints to update counts and states in place.
//! - State-changing requests are `POST`s that must carry the console's CSRF token and,
//!   when the browser says where they come from, come from the console itself.
//! - Every value from an event is HTML-escaped; no password appears on any page.
//! - A bad query parameter gets a page that says what is wrong (`400`), never a `500`.

mod actions;
mod api;
mod assets;
mod guard;
mod html;
mod pages;
mod query;
mod sampler;
mod search;
mod session;
mod throttle;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::store::{Store, StoreError};
use html::Page;

use self::actions::{
    confirm_replay_dead, pause_route, replay_dead, replay_one, resume_route, set_aside,
};
use self::api::{api_event, api_latest, api_stats};
use self::guard::guard;
use self::pages::{event, list, overview};
use self::sampler::{SAMPLES, Sample, sample_stats};

/// A text search reads at most this many events per page, newest first, and offers to
/// search the next older ones: text has no index, and a page must answer fast even
/// when nothing matches in a million events.
pub(super) const SEARCH_WINDOW: u64 = 50_000;

/// Who may use the console. Bound to anything but loopback, it must have credentials.
#[derive(Clone, Debug)]
pub struct ConsoleAuth {
    checker: thulium::auth::BasicAuth,
}

impl ConsoleAuth {
    /// HTTP Basic auth with this user and password.
    pub fn basic(
        user: &str,
        password: thulium::Password,
    ) -> Result<Self, thulium::auth::ConfigError> {
        Ok(Self {
            checker: thulium::auth::BasicAuth::new(user, password)?,
        })
    }
}

/// How the console is guarded.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ConsoleOptions {
    /// Credentials required of every request (with failed sign-ins throttled: 10
    /// per address and 300 in all per minute, then `429`).
    pub auth: Option<ConsoleAuth>,
    /// Host names (`console.example.com`, or with a port) the console answers to
    /// besides the address a connection reached (and `localhost` on loopback);
    /// any other `Host` gets `421`, so a rebound DNS name cannot read the console.
    pub hosts: Vec<String>,
}

impl ConsoleOptions {
    /// Requires `auth`.
    pub fn auth(mut self, auth: ConsoleAuth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Answers to `name` too (what users type, or what a proxy passes on).
    pub fn host(mut self, name: impl Into<String>) -> Self {
        self.hosts.push(name.into());
        self
    }
}

/// Shared by every request.
pub(super) struct Console<S> {
    store: S,
    auth: Option<ConsoleAuth>,
    hosts: Vec<String>,
    throttle: throttle::Throttle,
    keys: session::Keys,
    searches: Arc<tokio::sync::Semaphore>,
    samples: Arc<Mutex<VecDeque<Sample>>>,
}

/// The console over `store`, with `auth` required when given: [`router_with`] and
/// the default [`ConsoleOptions`] otherwise.
pub fn router<S: Store + Clone>(store: S, auth: Option<ConsoleAuth>) -> Router {
    router_with(
        store,
        ConsoleOptions {
            auth,
            ..ConsoleOptions::default()
        },
    )
}

/// The console over `store`, guarded as `options` say. Call it within a Tokio
/// runtime: it starts the task that samples the counters for the overview's chart
/// (which ends when the router is dropped).
///
/// Served by [`thulium::server::serve`], it answers only to the address a
/// connection reached and to `options.hosts`; served otherwise, only to
/// `options.hosts` when any are given.
pub fn router_with<S: Store + Clone>(store: S, options: ConsoleOptions) -> Router {
    let ConsoleOptions { auth, hosts } = options;
    let samples = Arc::new(Mutex::new(VecDeque::with_capacity(SAMPLES)));
    tokio::spawn(sample_stats(store.clone(), Arc::downgrade(&samples)));
    let console = Arc::new(Console {
        store,
        auth,
        hosts,
        throttle: throttle::Throttle::new(),
        keys: session::Keys::new(),
        searches: search::turns(),
        samples,
    });
    Router::new()
        .route("/", get(overview::<S>))
        .route("/events", get(list::<S>))
        .route("/events/{id}", get(event::<S>))
        .route("/events/{id}/replay", post(replay_one::<S>))
        .route("/events/{id}/set-aside", post(set_aside::<S>))
        .route("/routes/{name}/pause", post(pause_route::<S>))
        .route("/routes/{name}/resume", post(resume_route::<S>))
        .route(
            "/replay-dead",
            get(confirm_replay_dead::<S>).post(replay_dead::<S>),
        )
        .route("/api/stats", get(api_stats::<S>))
        .route("/api/events/{id}", get(api_event::<S>))
        .route("/api/latest", get(api_latest::<S>))
        .route(
            "/assets/console.css",
            get(|| async { asset("text/css", assets::CSS) }),
        )
        .route(
            "/assets/console.js",
            get(|| async { asset("text/javascript", assets::JS) }),
        )
        .route(
            "/assets/favicon.svg",
            get(|| async { asset("image/svg+xml", assets::FAVICON) }),
        )
        .fallback(|| async { Page::error(StatusCode::NOT_FOUND, "No such page.") })
        .layer(middleware::from_fn_with_state(
            Arc::clone(&console),
            guard::<S>,
        ))
        .with_state(console)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        body,
    )
        .into_response()
}

pub(super) fn store_failure(error: &StoreError) -> Response {
    let status = match error {
        StoreError::NotFound(_) => StatusCode::NOT_FOUND,
        StoreError::WrongState { .. } | StoreError::StaleClaim(_) => StatusCode::CONFLICT,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    Page::error(status, &error.to_string())
}
