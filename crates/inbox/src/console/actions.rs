//! What an operator does from the console: replay an event, set it aside, replay
//! every dead one, pause or resume a route; each a `POST` that passed the guard's checks, answered with a
//! redirect to a page that shows what was done once (a notice cookie), so a reload
//! neither repeats the action nor the notice.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Extension, Path, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::guard::same_origin;
use super::html::Page;
use super::session::{Browser, Notice};
use super::{Console, store_failure};
use crate::model::{EventId, Pause, Replay};
use crate::routing::RouteName;
use crate::store::Store;

/// A redirect to `to` that leaves `notice` for the page there.
fn done(to: &str, notice: Notice) -> Response {
    let mut response = Redirect::to(to).into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, notice.cookie());
    response
}

pub(super) async fn replay_one<S: Store>(
    AxumState(console): AxumState<Arc<Console<S>>>,
    Extension(browser): Extension<Browser>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = same_origin(&headers, &body, &console.keys, &browser) {
        return refused;
    }
    let Ok(id) = id.parse::<u64>() else {
        return Page::error(StatusCode::BAD_REQUEST, "Not an event id.");
    };
    match console.store.replay(Replay::Id(EventId(id))).await {
        Ok(_) => done(&format!("/events/{id}"), Notice::Replayed),
        Err(error) => store_failure(&error),
    }
}

pub(super) async fn set_aside<S: Store>(
    AxumState(console): AxumState<Arc<Console<S>>>,
    Extension(browser): Extension<Browser>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = same_origin(&headers, &body, &console.keys, &browser) {
        return refused;
    }
    let Ok(id) = id.parse::<u64>() else {
        return Page::error(StatusCode::BAD_REQUEST, "Not an event id.");
    };
    match console
        .store
        .set_aside(EventId(id), "set aside in the console".into())
        .await
    {
        Ok(()) => done(&format!("/events/{id}"), Notice::SetAside),
        Err(error) => store_failure(&error),
    }
}

/// Pauses (`pause` true) or resumes the route named in the path.
async fn pause_or_resume<S: Store>(
    console: &Console<S>,
    browser: &Browser,
    name: String,
    headers: &HeaderMap,
    body: &Bytes,
    pause: bool,
) -> Response {
    if let Err(refused) = same_origin(headers, body, &console.keys, browser) {
        return refused;
    }
    let Ok(route) = RouteName::new(&name) else {
        return Page::error(StatusCode::BAD_REQUEST, "Not a route name.");
    };
    let (change, notice) = if pause {
        (
            Some(Pause::by_hand("paused in the console")),
            Notice::Paused,
        )
    } else {
        (None, Notice::Resumed)
    };
    match console.store.set_pause(route, change).await {
        Ok(()) => done("/", notice),
        Err(error) => store_failure(&error),
    }
}

pub(super) async fn pause_route<S: Store>(
    AxumState(console): AxumState<Arc<Console<S>>>,
    Extension(browser): Extension<Browser>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    pause_or_resume(&console, &browser, name, &headers, &body, true).await
}

pub(super) async fn resume_route<S: Store>(
    AxumState(console): AxumState<Arc<Console<S>>>,
    Extension(browser): Extension<Browser>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    pause_or_resume(&console, &browser, name, &headers, &body, false).await
}

pub(super) async fn confirm_replay_dead<S: Store>(
    AxumState(console): AxumState<Arc<Console<S>>>,
    Extension(browser): Extension<Browser>,
) -> Response {
    let dead = match console.store.stats().await {
        Ok(stats) => stats.dead,
        Err(error) => return store_failure(&error),
    };
    let body = if dead == 0 {
        r#"<p class="empty">No event is dead.</p>"#.to_string()
    } else {
        format!(
            r#"<p>Replay <strong>{dead}</strong> dead event(s)? Each becomes pending and is handed over again now, from its first attempt.</p>
<form method="post" action="/replay-dead"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="confirm" value="yes"><button type="submit">Yes, replay {dead}</button> <a href="/events?state=dead">No, back to the dead letters</a></form>"#,
            csrf = console.keys.token(&browser.id)
        )
    };
    Page::new("Replay every dead event", body).render()
}

pub(super) async fn replay_dead<S: Store>(
    AxumState(console): AxumState<Arc<Console<S>>>,
    Extension(browser): Extension<Browser>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = same_origin(&headers, &body, &console.keys, &browser) {
        return refused;
    }
    if !form_urlencoded::parse(&body).any(|(k, v)| k == "confirm" && v == "yes") {
        return Redirect::to("/replay-dead").into_response();
    }
    match console.store.replay(Replay::AllDead).await {
        Ok(count) => done("/events?state=pending", Notice::ReplayedAll(count)),
        Err(error) => store_failure(&error),
    }
}
