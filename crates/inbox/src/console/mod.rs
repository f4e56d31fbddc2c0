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

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::store::{Store, StoreError};
use html::Page;

use self::actions::{confirm_replay_dead, replay_dead, replay_one, set_aside};
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

/// Shared by every request.
pub(super) struct Console<S> {
    store: S,
    auth: Option<ConsoleAuth>,
    csrf: String,
    samples: Arc<Mutex<VecDeque<Sample>>>,
}

/// The console over `store`, with `auth` required when given. Call it within a Tokio
/// runtime: it starts the task that samples the counters for the overview's chart
/// (which ends when the router is dropped).
pub fn router<S: Store + Clone>(store: S, auth: Option<ConsoleAuth>) -> Router {
    let mut csrf = String::with_capacity(32);
    for _ in 0..2 {
        let _ = write!(csrf, "{:016x}", fastrand::u64(..));
    }
    let samples = Arc::new(Mutex::new(VecDeque::with_capacity(SAMPLES)));
    tokio::spawn(sample_stats(store.clone(), Arc::downgrade(&samples)));
    let console = Arc::new(Console {
        store,
        auth,
        csrf,
        samples,
    });
    Router::new()
        .route("/", get(overview::<S>))
        .route("/events", get(list::<S>))
        .route("/events/{id}", get(event::<S>))
        .route("/events/{id}/replay", post(replay_one::<S>))
        .route("/events/{id}/set-aside", post(set_aside::<S>))
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
