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

mod assets;
mod html;

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::json;
use subtle::ConstantTimeEq as _;

use crate::model::{EventId, Filter, Outcome, Replay, State, Stats, StoredEvent, UnixMs, now_ms};
use crate::store::{Store, StoreError};
use html::{Page, esc, time};

/// How often the overview's throughput chart takes a sample, and how many it keeps
/// (one hour).
const SAMPLE_EVERY: Duration = Duration::from_secs(15);
const SAMPLES: usize = 240;
/// A text search reads at most this many events per page, newest first, and offers to
/// search the next older ones: text has no index, and a page must answer fast even
/// when nothing matches in a million events.
const SEARCH_WINDOW: u64 = 50_000;

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
struct Console<S> {
    store: S,
    auth: Option<ConsoleAuth>,
    csrf: String,
    samples: Arc<Mutex<VecDeque<Sample>>>,
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    at: UnixMs,
    received: u64,
    finished: u64,
    open: u64,
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

/// Credentials, then security headers on every answer.
async fn guard<S: Store + Clone>(
    AxumState(console): AxumState<Arc<Console<S>>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(auth) = &console.auth
        && !auth.checker.verify(request.headers())
    {
        let mut response = Page::error(StatusCode::UNAUTHORIZED, "Sign in to see the inbox.");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Basic realm="thulium inbox console", charset="UTF-8""#),
        );
        return secure(response);
    }
    secure(next.run(request).await)
}

fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not no-referrer: under it browsers send `Origin: null` on the console's own form
    // posts, and the origin check could not tell them from a forged one.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// Takes a sample of the counters every [`SAMPLE_EVERY`] while the console lives.
async fn sample_stats<S: Store>(store: S, samples: Weak<Mutex<VecDeque<Sample>>>) {
    loop {
        if let Ok(stats) = store.stats().await {
            let Some(samples) = samples.upgrade() else {
                return;
            };
            let mut samples = samples.lock().unwrap_or_else(|p| p.into_inner());
            if samples.len() == SAMPLES {
                samples.pop_front();
            }
            samples.push_back(Sample {
                at: now_ms(),
                received: stats.received,
                finished: stats.done + stats.dead,
                open: stats.open(),
            });
        } else if samples.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

fn store_failure(error: &StoreError) -> Response {
    let status = match error {
        StoreError::NotFound(_) => StatusCode::NOT_FOUND,
        StoreError::WrongState { .. } | StoreError::StaleClaim(_) => StatusCode::CONFLICT,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    Page::error(status, &error.to_string())
}

async fn overview<S: Store>(AxumState(console): AxumState<Arc<Console<S>>>) -> Response {
    let stats = match console.store.stats().await {
        Ok(stats) => stats,
        Err(error) => return store_failure(&error),
    };
    let samples: Vec<Sample> = console
        .samples
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .copied()
        .collect();
    let age = stats
        .oldest_open_age(now_ms())
        .map_or_else(|| "none waiting".to_string(), html::duration);
    let mut body = String::new();
    let _ = write!(
        body,
        r#"<section class="cards">
{}{}{}{}
<div class="card"><span class="label">queue depth</span><span class="value" data-stat="open">{}</span></div>
<div class="card"><span class="label">oldest waiting</span><span class="value" data-stat="oldest">{}</span></div>
</section>"#,
        card("pending", stats.pending, "/events?state=pending"),
        card("in flight", stats.in_flight, "/events?state=in_flight"),
        card("done", stats.done, "/events?state=done"),
        card("dead", stats.dead, "/events?state=dead"),
        stats.open(),
        esc(&age),
    );
    if stats.dead > 0 {
        let _ = write!(
            body,
            r#"<p class="attention"><strong data-stat="dead-banner">{} dead event(s)</strong> need attention: <a href="/events?state=dead">see them</a> or <a href="/replay-dead">replay them all</a>.</p>"#,
            stats.dead
        );
    }
    let _ = write!(
        body,
        r#"<h2>Last hour</h2>{}<p class="totals">received {} (duplicates {}, conflicts {}) since the inbox was created</p>"#,
        html::chart(&samples),
        stats.received,
        stats.duplicates,
        stats.conflicts
    );
    Page::new("Overview", body).live("overview").render()
}

fn card(label: &str, count: u64, link: &str) -> String {
    format!(
        r#"<a class="card" href="{link}"><span class="label">{label}</span><span class="value" data-stat="{key}">{count}</span></a>"#,
        key = label.replace(' ', "_"),
    )
}

/// The list's query, as typed into the form.
#[derive(Debug, Default, serde::Deserialize)]
struct ListQuery {
    state: Option<String>,
    action: Option<String>,
    from: Option<String>,
    to: Option<String>,
    q: Option<String>,
    before: Option<String>,
    limit: Option<String>,
}

impl ListQuery {
    /// The store's filter, or what is wrong with the query.
    fn filter(&self) -> Result<Filter, String> {
        let present = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let state = present(&self.state)
            .map(|s| s.parse::<State>())
            .transpose()?;
        let action = present(&self.action);
        if action.as_ref().is_some_and(|a| a.len() > 200) {
            return Err("the action is longer than 200 characters".into());
        }
        let text = present(&self.q);
        if text.as_ref().is_some_and(|t| t.len() > 200) {
            return Err("the search text is longer than 200 characters".into());
        }
        let from = present(&self.from)
            .map(|t| html::parse_time(&t))
            .transpose()?;
        let to = present(&self.to)
            .map(|t| html::parse_time(&t))
            .transpose()?;
        if let (Some(from), Some(to)) = (from, to)
            && from >= to
        {
            return Err("the start of the time range is not before its end".into());
        }
        let before = present(&self.before)
            .map(|b| {
                b.parse::<u64>()
                    .map_err(|_| format!("`{b}` is not an event id"))
            })
            .transpose()?;
        let limit = present(&self.limit)
            .map(|l| match l.parse::<usize>() {
                Ok(n) if (1..=200).contains(&n) => Ok(n),
                _ => Err(format!("`{l}` is not a page size from 1 to 200")),
            })
            .transpose()?;
        Ok(Filter {
            state,
            action,
            received_from: from,
            received_to: to,
            text,
            before: before.map(EventId),
            after: None,
            limit: Some(limit.unwrap_or(50)),
        })
    }
}

async fn list<S: Store>(
    AxumState(console): AxumState<Arc<Console<S>>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let query = match query {
        Ok(Query(query)) => query,
        Err(rejection) => {
            return Page::error(
                StatusCode::BAD_REQUEST,
                &format!("The query is not understood: {}", rejection.body_text()),
            );
        }
    };
    let form = html::filter_form(
        &query.state,
        &query.action,
        &query.from,
        &query.to,
        &query.q,
    );
    let filter = match query.filter() {
        Ok(filter) => filter,
        Err(problem) => {
            let body = format!(
                r#"{form}<p class="error" role="alert">{}</p>"#,
                esc(&problem)
            );
            return Page::new("Events", body)
                .status(StatusCode::BAD_REQUEST)
                .render();
        }
    };
    let mut filter = filter;
    let mut window = None;
    if filter.text.is_some() {
        let upper = match filter.before {
            Some(before) => before.0,
            None => match console
                .store
                .list(Filter {
                    limit: Some(1),
                    ..Filter::default()
                })
                .await
            {
                Ok(newest) => newest.first().map_or(0, |e| e.id.0 + 1),
                Err(error) => return store_failure(&error),
            },
        };
        let lower = upper.saturating_sub(SEARCH_WINDOW).max(1);
        filter.before = Some(EventId(upper));
        filter.after = Some(EventId(lower - 1));
        window = Some((lower, upper));
    }
    let page_size = filter.page_size();
    let events = match console.store.list(filter.clone()).await {
        Ok(events) => events,
        Err(error) => return store_failure(&error),
    };
    let mut body = form;
    if events.is_empty() {
        body.push_str(r#"<p class="empty">No event matches.</p>"#);
    } else {
        let newest = events.first().map_or(0, |e| e.id.0);
        if filter.before.is_none() {
            let _ = write!(
                body,
                r#"<p class="live-news" hidden data-newest="{newest}"></p>"#
            );
        }
        body.push_str(r#"<div class="scroll"><table class="events"><thead><tr><th>id</th><th>state</th><th>action</th><th>received</th><th>attempts</th><th>last error</th></tr></thead><tbody>"#);
        for event in &events {
            let _ = write!(
                body,
                r#"<tr data-id="{id}"><td><a href="/events/{id}">{id}</a></td><td><span class="state {state}" data-state>{state}</span>{conflict}</td><td>{action}</td><td>{received}</td><td data-attempts>{attempts}</td><td class="error-text">{error}</td></tr>"#,
                id = event.id,
                state = event.state,
                conflict = if event.conflict {
                    r#" <span class="tag">conflict</span>"#
                } else {
                    ""
                },
                action = esc(&event.action),
                received = time(event.received_at),
                attempts = event.attempts,
                error = esc(&thulium::text::shorten(
                    event.last_error.as_deref().unwrap_or(""),
                    120
                )),
            );
        }
        body.push_str("</tbody></table></div>");
        if events.len() == page_size
            && let Some(last) = events.last()
        {
            let mut next = html::query_string(&query, Some(last.id.0));
            next.insert(0, '?');
            let _ = write!(
                body,
                r#"<p class="pager"><a href="/events{}" rel="next">Older events →</a></p>"#,
                esc(&next)
            );
        }
    }
    if let Some((lower, upper)) = window
        && events.len() < page_size
        && lower > 1
    {
        let mut older = html::query_string(&query, Some(lower));
        older.insert(0, '?');
        let _ = write!(
            body,
            r#"<p class="pager">Searched events {lower} to {last}; text search reads {SEARCH_WINDOW} events at a time. <a href="/events{link}" rel="next">Search older events →</a></p>"#,
            last = upper.saturating_sub(1),
            link = esc(&older)
        );
    }
    Page::new("Events", body).live("list").render()
}

async fn event<S: Store>(
    AxumState(console): AxumState<Arc<Console<S>>>,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return Page::error(
            StatusCode::BAD_REQUEST,
            &format!("`{}` is not an event id.", thulium::text::shorten(&id, 40)),
        );
    };
    let event = match console.store.get(EventId(id)).await {
        Ok(Some(event)) => event,
        Ok(None) => {
            return Page::error(
                StatusCode::NOT_FOUND,
                &format!("There is no event {id} (it may have been purged)."),
            );
        }
        Err(error) => return store_failure(&error),
    };
    Page::new(&format!("Event {id}"), event_body(&event, &console.csrf))
        .live("event")
        .render()
}

fn event_body(event: &StoredEvent, csrf: &str) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        r#"<p class="notice" data-notice hidden></p><dl class="facts" data-event="{id}">
<dt>state</dt><dd><span class="state {state}" data-state>{state}</span>{conflict}</dd>
<dt>action</dt><dd>{action}</dd>
<dt>received</dt><dd>{received}</dd>
<dt>attempts</dt><dd data-attempts>{attempts}</dd>
<dt>due</dt><dd>{due}</dd>
<dt>dedup key</dt><dd><code>{key}</code></dd>
</dl>"#,
        id = event.id,
        state = event.state,
        conflict = if event.conflict {
            r#" <span class="tag">conflict: another event came first with this dedup key</span>"#
        } else {
            ""
        },
        action = esc(&event.action),
        received = time(event.received_at),
        attempts = event.attempts,
        due = if matches!(event.state, State::Pending | State::InFlight) {
            time(event.due_at)
        } else {
            "-".into()
        },
        key = esc(&event.dedup_key),
    );
    body.push_str(r#"<div class="actions">"#);
    if event.state != State::InFlight {
        let _ = write!(
            body,
            r#"<form method="post" action="/events/{id}/replay"><input type="hidden" name="csrf" value="{csrf}"><button type="submit" name="do" value="replay">Replay</button></form>"#,
            id = event.id
        );
    }
    if event.state == State::Pending {
        let _ = write!(
            body,
            r#"<form method="post" action="/events/{id}/set-aside"><input type="hidden" name="csrf" value="{csrf}"><button type="submit" name="do" value="set-aside" class="danger">Dead-letter by hand</button></form>"#,
            id = event.id
        );
    }
    body.push_str("</div><h2>Fields</h2>");
    match serde_json::from_str::<serde_json::Value>(&event.canonical) {
        Ok(serde_json::Value::Object(fields)) => {
            body.push_str(r#"<div class="scroll"><table class="fields"><tbody>"#);
            for (name, value) in fields {
                let text = match value {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                let _ = write!(
                    body,
                    "<tr><th>{}</th><td>{}</td></tr>",
                    esc(&name),
                    esc(&text)
                );
            }
            body.push_str("</tbody></table></div>");
        }
        _ => body.push_str("<p>The event's fields cannot be read.</p>"),
    }
    let _ = write!(
        body,
        r#"<h2>Payload as received</h2><p class="meta">{}</p><pre class="payload">{}</pre><h2>Attempts</h2>"#,
        esc(event.content_type.as_deref().unwrap_or("no content type")),
        esc(&String::from_utf8_lossy(&event.body))
    );
    body.push_str(&attempts_table(event));
    body
}

fn attempts_table(event: &StoredEvent) -> String {
    if event.history.is_empty() {
        return r#"<div data-history><p class="empty">No attempt yet.</p></div>"#.into();
    }
    let mut table = String::from(
        r#"<div class="scroll" data-history><table class="attempts"><thead><tr><th>#</th><th>started</th><th>took</th><th>outcome</th><th>error</th></tr></thead><tbody>"#,
    );
    for attempt in event.history.iter().rev() {
        let (outcome, error) = match &attempt.outcome {
            Outcome::Delivered => ("delivered", ""),
            Outcome::Failed(e) => ("failed", e.as_str()),
            Outcome::SetAside(e) => ("set aside", e.as_str()),
        };
        let _ = write!(
            table,
            r#"<tr><td>{}</td><td>{}</td><td>{} ms</td><td><span class="outcome {}">{outcome}</span></td><td class="error-text">{}</td></tr>"#,
            attempt.number,
            time(attempt.started_at),
            attempt.duration_ms,
            outcome.replace(' ', "-"),
            esc(error)
        );
    }
    table.push_str("</tbody></table></div>");
    table
}

/// Whether a state-changing request may proceed: the CSRF token matches, and a
/// browser that says where the request comes from says it comes from here.
#[allow(clippy::result_large_err)] // a page to answer with at once
fn same_origin(headers: &HeaderMap, body: &Bytes, csrf: &str) -> Result<(), Response> {
    check_origin(headers, body, csrf).map_err(|why| Page::error(StatusCode::FORBIDDEN, why))
}

fn check_origin(headers: &HeaderMap, body: &Bytes, csrf: &str) -> Result<(), &'static str> {
    let forbidden = |why: &'static str| why;
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| site != "same-origin" && site != "none")
    {
        return Err(forbidden(
            "This request came from another site; it was refused.",
        ));
    }
    let fetch_site_same = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| site == "same-origin");
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        // `null` is an opaque origin: accepted only when the browser also says the
        // request is same-origin.
        let same = if origin == "null" {
            fetch_site_same
        } else {
            origin_host == host
        };
        if !same {
            return Err(forbidden(
                "This request came from another site; it was refused.",
            ));
        }
    }
    let token = form_urlencoded::parse(body)
        .find(|(key, _)| key == "csrf")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    if !bool::from(token.as_bytes().ct_eq(csrf.as_bytes())) {
        return Err(forbidden(
            "The form is stale or forged (no valid CSRF token); reload the page and try again.",
        ));
    }
    Ok(())
}

async fn replay_one<S: Store>(
    AxumState(console): AxumState<Arc<Console<S>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = same_origin(&headers, &body, &console.csrf) {
        return refused;
    }
    let Ok(id) = id.parse::<u64>() else {
        return Page::error(StatusCode::BAD_REQUEST, "Not an event id.");
    };
    match console.store.replay(Replay::Id(EventId(id))).await {
        Ok(_) => Redirect::to(&format!("/events/{id}?done=replayed")).into_response(),
        Err(error) => store_failure(&error),
    }
}

async fn set_aside<S: Store>(
    AxumState(console): AxumState<Arc<Console<S>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = same_origin(&headers, &body, &console.csrf) {
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
        Ok(()) => Redirect::to(&format!("/events/{id}?done=set-aside")).into_response(),
        Err(error) => store_failure(&error),
    }
}

async fn confirm_replay_dead<S: Store>(AxumState(console): AxumState<Arc<Console<S>>>) -> Response {
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
            csrf = console.csrf
        )
    };
    Page::new("Replay every dead event", body).render()
}

async fn replay_dead<S: Store>(
    AxumState(console): AxumState<Arc<Console<S>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = same_origin(&headers, &body, &console.csrf) {
        return refused;
    }
    if !form_urlencoded::parse(&body).any(|(k, v)| k == "confirm" && v == "yes") {
        return Redirect::to("/replay-dead").into_response();
    }
    match console.store.replay(Replay::AllDead).await {
        Ok(count) => Page::new(
            "Replayed",
            format!(r#"<p class="notice">{count} event(s) are pending again. <a href="/events">See the events</a>.</p>"#),
        )
        .render(),
        Err(error) => store_failure(&error),
    }
}

/// [`Stats::to_json`], with the oldest open event's age as the page shows it.
fn stats_json(stats: &Stats) -> serde_json::Value {
    let now = now_ms();
    let mut json = stats.to_json(now);
    json["oldest"] = stats
        .oldest_open_age(now)
        .map_or_else(|| "none waiting".to_string(), html::duration)
        .into();
    json
}

async fn api_stats<S: Store>(AxumState(console): AxumState<Arc<Console<S>>>) -> Response {
    match console.store.stats().await {
        Ok(stats) => axum::Json(stats_json(&stats)).into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    }
}

async fn api_event<S: Store>(
    AxumState(console): AxumState<Arc<Console<S>>>,
    Path(id): Path<u64>,
) -> Response {
    match console.store.get(EventId(id)).await {
        Ok(Some(event)) => axum::Json(json!({
            "state": event.state,
            "attempts": event.attempts,
            "history": attempts_table(&event),
        }))
        .into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    }
}

#[derive(serde::Deserialize)]
struct Latest {
    after: u64,
    ids: Option<String>,
}

/// How many events arrived after `after`, and the states of the listed `ids`.
async fn api_latest<S: Store>(
    AxumState(console): AxumState<Arc<Console<S>>>,
    query: Result<Query<Latest>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(latest)) = query else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let newer = match console
        .store
        .list(Filter {
            limit: Some(101),
            ..Filter::default()
        })
        .await
    {
        Ok(page) => page.iter().filter(|e| e.id.0 > latest.after).count(),
        Err(error) => return (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    };
    let mut states = serde_json::Map::new();
    for id in latest
        .ids
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter_map(|i| i.parse::<u64>().ok())
        .take(200)
    {
        if let Ok(Some(event)) = console.store.get(EventId(id)).await {
            states.insert(
                id.to_string(),
                json!({"state": event.state, "attempts": event.attempts}),
            );
        }
    }
    axum::Json(json!({ "newer": newer, "states": states })).into_response()
}
