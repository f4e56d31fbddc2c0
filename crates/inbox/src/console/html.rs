//! The console's HTML: the page frame, escaping, times, the chart and the filter form.

use std::fmt::Write as _;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use thulium::text::shorten;

use super::query::ListQuery;
use super::sampler::Sample;
use crate::model::UnixMs;

/// `text` with `&`, `<`, `>`, `"` and `'` escaped, for element text and attributes.
/// A value that came from outside (an event, an application's answer), HTML-escaped
/// with its control and bidirectional characters shown as `\u{...}`: what the page
/// shows is what was received, and a right-to-left override cannot make one action
/// read as another.
pub fn shown(text: &str) -> String {
    esc(&thulium::text::visible(text))
}

pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A time as `2026-11-28 17:23:05 UTC`.
pub fn time(at: UnixMs) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp((at / 1000) as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// `2 h 5 min`, `40 s`.
pub fn duration(age: Duration) -> String {
    let seconds = age.as_secs();
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min {} s", seconds / 60, seconds % 60),
        _ => format!("{} h {} min", seconds / 3600, (seconds % 3600) / 60),
    }
}

/// A time typed into the filter form: RFC 3339, or the browser's `datetime-local`
/// (`2026-11-28T17:23`, read as UTC), or a date alone.
pub fn parse_time(text: &str) -> Result<UnixMs, String> {
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    let text = text.trim();
    let parsed = time::OffsetDateTime::parse(text, &Rfc3339)
        .or_else(|_| {
            time::PrimitiveDateTime::parse(
                text,
                format_description!("[year]-[month]-[day]T[hour]:[minute]"),
            )
            .or_else(|_| {
                time::PrimitiveDateTime::parse(
                    text,
                    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
                )
            })
            .or_else(|_| {
                time::Date::parse(text, format_description!("[year]-[month]-[day]"))
                    .map(|d| d.midnight())
            })
            .map(time::PrimitiveDateTime::assume_utc)
        })
        .map_err(|_| {
            format!(
                "`{}` is not a time; use 2026-11-28T17:23 (UTC) or 2026-11-28",
                shorten(text, 40)
            )
        })?;
    u64::try_from(parsed.unix_timestamp())
        .map(|seconds| seconds * 1000)
        .map_err(|_| "times before 1970 hold no events".to_string())
}

/// The list's query string with `before` set to `before` (for the next page).
pub fn query_string(query: &ListQuery, before: Option<u64>) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (key, value) in [
        ("state", &query.state),
        ("route", &query.route),
        ("account", &query.account),
        ("action", &query.action),
        ("from", &query.from),
        ("to", &query.to),
        ("q", &query.q),
        ("limit", &query.limit),
    ] {
        if let Some(value) = value.as_deref().filter(|v| !v.trim().is_empty()) {
            out.append_pair(key, value);
        }
    }
    if let Some(before) = before {
        out.append_pair("before", &before.to_string());
    }
    out.finish()
}

/// The filter form of the event list, filled with what was asked.
pub fn filter_form(
    state: &Option<String>,
    route: &Option<String>,
    account: &Option<String>,
    action: &Option<String>,
    from: &Option<String>,
    to: &Option<String>,
    text: &Option<String>,
) -> String {
    let value = |v: &Option<String>| esc(v.as_deref().unwrap_or(""));
    let mut states = String::from(r#"<option value="">any state</option>"#);
    for option in crate::model::State::ALL {
        let selected = state.as_deref() == Some(option.as_str());
        let _ = write!(
            states,
            r#"<option value="{s}"{sel}>{s}</option>"#,
            s = option.as_str(),
            sel = if selected { " selected" } else { "" }
        );
    }
    format!(
        r#"<form class="filters" method="get" action="/events">
<label>state <select name="state">{states}</select></label>
<label>route <input name="route" value="{route}" placeholder="any route" size="12"></label>
<label>account <input name="account" value="{account}" placeholder="any account" size="12"></label>
<label>action <input name="action" value="{action}" placeholder="TICKET_CREATED"></label>
<label>received from (UTC) <input name="from" type="datetime-local" value="{from}"></label>
<label>until (UTC) <input name="to" type="datetime-local" value="{to}"></label>
<label>payload contains <input name="q" type="search" value="{text}"></label>
<button type="submit">Filter</button> <a href="/events">clear</a>
</form>"#,
        route = value(route),
        account = value(account),
        action = value(action),
        from = value(from),
        to = value(to),
        text = value(text),
    )
}

/// The last hour as an SVG chart: events received and handed over (done or dead) per
/// minute, and the queue's depth, from the console's samples.
pub fn chart(samples: &[Sample]) -> String {
    if samples.len() < 2 {
        return r#"<p class="empty">The chart fills in as the console runs (a point every 15 s).</p>"#.into();
    }
    let (width, height) = (600.0_f64, 160.0_f64);
    let first = samples[0].at as f64;
    let span = (samples[samples.len() - 1].at as f64 - first).max(1.0);
    let rates: Vec<(f64, f64, f64, f64)> = samples
        .windows(2)
        .map(|pair| {
            let minutes = ((pair[1].at - pair[0].at) as f64 / 60_000.0).max(1e-6);
            (
                pair[1].at as f64,
                pair[1].received.saturating_sub(pair[0].received) as f64 / minutes,
                pair[1].finished.saturating_sub(pair[0].finished) as f64 / minutes,
                pair[1].open as f64,
            )
        })
        .collect();
    let top = rates
        .iter()
        .map(|r| r.1.max(r.2).max(r.3))
        .fold(1.0_f64, f64::max);
    let line = |pick: fn(&(f64, f64, f64, f64)) -> f64| {
        rates
            .iter()
            .map(|r| {
                format!(
                    "{:.1},{:.1}",
                    (r.0 - first) / span * width,
                    height - pick(r) / top * height
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        r#"<figure class="chart"><svg viewBox="0 0 {width} {height}" role="img" aria-label="events per minute over the last hour">
<polyline class="received" points="{received}"/><polyline class="finished" points="{finished}"/><polyline class="depth" points="{depth}"/></svg>
<figcaption><span class="key received">received/min</span> <span class="key finished">handed over/min</span> <span class="key depth">queue depth</span> (top of the chart: {top:.0})</figcaption></figure>"#,
        received = line(|r| r.1),
        finished = line(|r| r.2),
        depth = line(|r| r.3),
    )
}

/// A console page.
pub struct Page {
    title: String,
    body: String,
    status: StatusCode,
    live: Option<&'static str>,
    notice: Option<String>,
}

impl Page {
    /// A page titled `title` with `body` (already HTML).
    pub fn new(title: &str, body: String) -> Self {
        Self {
            title: title.to_string(),
            body,
            status: StatusCode::OK,
            live: None,
            notice: None,
        }
    }

    /// Shows `notice` (what the action that led here did) above the page.
    pub fn notice(mut self, notice: Option<String>) -> Self {
        self.notice = notice;
        self
    }

    /// A page that only says what went wrong.
    pub fn error(status: StatusCode, message: &str) -> Response {
        Page::new(
            status.canonical_reason().unwrap_or("Error"),
            format!(r#"<p class="error" role="alert">{}</p><p><a href="/">Back to the overview</a></p>"#, esc(message)),
        )
        .status(status)
        .render()
    }

    /// Answers with `status`.
    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Marks the page for the script's live updates (`overview`, `list`, `event`).
    pub fn live(mut self, kind: &'static str) -> Self {
        self.live = Some(kind);
        self
    }

    /// The whole document.
    pub fn render(self) -> Response {
        let document = format!(
            r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark"><title>{title} · thulium inbox</title>
<link rel="icon" href="/assets/favicon.svg" type="image/svg+xml"><link rel="stylesheet" href="/assets/console.css"><script src="/assets/console.js" defer></script></head>
<body data-live="{live}"><header><a class="brand" href="/">thulium inbox</a><nav><a href="/">Overview</a><a href="/events">Events</a><a href="/events?state=dead">Dead letters</a></nav></header>
<main><h1>{title}</h1>
{notice}{body}
</main></body></html>"#,
            title = esc(&self.title),
            live = self.live.unwrap_or(""),
            notice = self.notice.map_or_else(String::new, |notice| format!(
                r#"<p class="notice" role="status" data-notice>{}</p>"#,
                esc(&notice)
            )),
            body = self.body,
        );
        let mut response = (self.status, document).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        response
    }
}
