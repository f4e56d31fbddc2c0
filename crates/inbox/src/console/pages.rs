//! The pages: the overview, the event list and one event, rendered on the server.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Extension, Path, Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::Response;

use super::html::{self, Page, esc, shown, time};
use super::query::ListQuery;
use super::sampler::Sample;
use super::session::{Browser, Notice};
use super::{Console, SEARCH_WINDOW, store_failure};
use crate::model::{EventId, Filter, Outcome, State, StoredEvent, now_ms};
use crate::store::Store;

pub(super) async fn overview<S: Store>(
    AxumState(console): AxumState<Arc<Console<S>>>,
    Extension(browser): Extension<Browser>,
) -> Response {
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
    if stats
        .routes
        .iter()
        .any(|r| r.route != crate::routing::RouteName::default_route() || r.paused.is_some())
    {
        body.push_str(r#"<h2>Routes</h2><div class="scroll"><table class="routes"><thead><tr><th>route</th><th>pending</th><th>in flight</th><th>done</th><th>dead</th><th>oldest waiting</th><th>handing over</th></tr></thead><tbody>"#);
        let now = now_ms();
        let csrf = console.keys.token(&browser.id);
        for route in &stats.routes {
            let link = |state: &str| format!("/events?route={}&amp;state={state}", route.route);
            // The unrouted route hands nothing over: nothing to pause.
            let handing = match &route.paused {
                _ if route.route.is_unrouted() => "-".to_string(),
                Some(pause) => format!(
                    r#"<span class="state dead" data-paused>paused</span> {reason} <form method="post" action="/routes/{name}/resume" class="inline"><input type="hidden" name="csrf" value="{csrf}"><button type="submit">Resume</button></form>"#,
                    reason = esc(&pause.reason),
                    name = route.route,
                ),
                None => format!(
                    r#"<span class="state done">running</span> <form method="post" action="/routes/{name}/pause" class="inline"><input type="hidden" name="csrf" value="{csrf}"><button type="submit" class="danger">Pause</button></form>"#,
                    name = route.route,
                ),
            };
            let _ = write!(
                body,
                r#"<tr data-route="{name}"><td><a href="/events?route={name}">{name}</a></td><td><a href="{p}">{pending}</a></td><td><a href="{f}">{in_flight}</a></td><td><a href="{d}">{done}</a></td><td><a href="{x}">{dead}</a></td><td>{age}</td><td>{handing}</td></tr>"#,
                name = route.route,
                p = link("pending"),
                f = link("in_flight"),
                d = link("done"),
                x = link("dead"),
                pending = route.pending,
                in_flight = route.in_flight,
                done = route.done,
                dead = route.dead,
                age = route.oldest_open_received_at.map_or_else(
                    || "none waiting".to_string(),
                    |at| html::duration(std::time::Duration::from_millis(now.saturating_sub(at)))
                ),
            );
        }
        body.push_str("</tbody></table></div>");
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

pub(super) fn card(label: &str, count: u64, link: &str) -> String {
    format!(
        r#"<a class="card" href="{link}"><span class="label">{label}</span><span class="value" data-stat="{key}">{count}</span></a>"#,
        key = label.replace(' ', "_"),
    )
}

pub(super) async fn list<S: Store>(
    AxumState(console): AxumState<Arc<Console<S>>>,
    Extension(browser): Extension<Browser>,
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
        &query.route,
        &query.account,
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
    let listed = if filter.text.is_some() {
        super::search::run(&console, filter.clone()).await
    } else {
        console
            .store
            .list(filter.clone())
            .await
            .map_err(|e| store_failure(&e))
    };
    let events = match listed {
        Ok(events) => events,
        Err(refused) => return refused,
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
        body.push_str(r#"<div class="scroll"><table class="events"><thead><tr><th>id</th><th>route</th><th>state</th><th>action</th><th>received</th><th>attempts</th><th>last error</th></tr></thead><tbody>"#);
        for event in &events {
            let _ = write!(
                body,
                r#"<tr data-id="{id}"><td><a href="/events/{id}">{id}</a></td><td>{route}{account}</td><td><span class="state {state}" data-state>{state}</span>{conflict}</td><td>{action}</td><td>{received}</td><td data-attempts>{attempts}</td><td class="error-text">{error}</td></tr>"#,
                id = event.id,
                route = event.route,
                // Shown with the route, when the relay receives for several accounts.
                account = event
                    .account
                    .as_ref()
                    .map_or_else(String::new, |a| format!(r#" <span class="tag">{a}</span>"#)),
                state = event.state,
                conflict = if event.conflict {
                    r#" <span class="tag">conflict</span>"#
                } else {
                    ""
                },
                // Cut in the list (whole on the event's page), so that one long
                // value cannot push the other columns off the screen.
                action = shown(&thulium::text::shorten(&event.action, 60)),
                received = time(event.received_at),
                attempts = event.attempts,
                error = shown(&thulium::text::shorten(
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
    Page::new("Events", body)
        .notice(browser.notice.map(Notice::text))
        .live("list")
        .render()
}

pub(super) async fn event<S: Store>(
    AxumState(console): AxumState<Arc<Console<S>>>,
    Extension(browser): Extension<Browser>,
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
    Page::new(
        &format!("Event {id}"),
        event_body(&event, &console.keys.token(&browser.id)),
    )
    .notice(browser.notice.map(Notice::text))
    .live("event")
    .render()
}

pub(super) fn event_body(event: &StoredEvent, csrf: &str) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        r#"<dl class="facts" data-event="{id}">
<dt>state</dt><dd><span class="state {state}" data-state>{state}</span>{conflict}</dd>
<dt>route</dt><dd>{route}</dd>
<dt>account</dt><dd>{account}</dd>
<dt>action</dt><dd>{action}</dd>
<dt>received</dt><dd>{received}</dd>
<dt>attempts</dt><dd data-attempts>{attempts}</dd>
<dt>due</dt><dd>{due}</dd>
<dt>dedup key</dt><dd><code>{key}</code></dd>
</dl>"#,
        id = event.id,
        route = event.route,
        account = event.account.as_ref().map_or("-", |a| a.as_str()),
        state = event.state,
        conflict = if event.conflict {
            r#" <span class="tag">conflict: another event came first with this dedup key</span>"#
        } else {
            ""
        },
        action = shown(&event.action),
        received = time(event.received_at),
        attempts = event.attempts,
        due = if matches!(event.state, State::Pending | State::InFlight) {
            time(event.due_at)
        } else {
            "-".into()
        },
        key = shown(&event.dedup_key),
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
                    shown(&name),
                    shown(&text)
                );
            }
            body.push_str("</tbody></table></div>");
        }
        _ => body.push_str("<p>The event's fields cannot be read.</p>"),
    }
    let _ = write!(
        body,
        r#"<h2>Payload as received</h2><p class="meta">{}</p><pre class="payload">{}</pre><h2>Attempts</h2>"#,
        shown(event.content_type.as_deref().unwrap_or("no content type")),
        shown(&String::from_utf8_lossy(&event.body))
    );
    body.push_str(&attempts_table(event));
    body
}

/// What identifies the attempts table's content: the script redraws the table only
/// when it changes, so a reader's text selection survives the polls.
pub(super) fn history_version(event: &StoredEvent) -> String {
    let last = event.history.last().map_or(0, |attempt| attempt.started_at);
    format!("{}-{last}", event.history.len())
}

pub(super) fn attempts_table(event: &StoredEvent) -> String {
    let version = history_version(event);
    if event.history.is_empty() {
        return format!(
            r#"<div data-history="{version}"><p class="empty">No attempt yet.</p></div>"#
        );
    }
    let mut table = format!(
        r#"<div class="scroll" data-history="{version}"><table class="attempts"><thead><tr><th>#</th><th>started</th><th>took</th><th>outcome</th><th>error</th></tr></thead><tbody>"#,
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
            shown(error)
        );
    }
    table.push_str("</tbody></table></div>");
    table
}
