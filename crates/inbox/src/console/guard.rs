//! Who may use the console and from where: credentials, security headers on every
//! answer, and the same-origin and CSRF checks of every state-changing request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use thulium::server::LocalAddr;

use super::html::Page;
use super::session::{Browser, Keys};
use super::{Console, throttle};
use crate::store::Store;

/// The `Host` the browser asked for, then credentials (with failed sign-ins
/// throttled), then security headers on every answer.
pub(super) async fn guard<S: Store + Clone>(
    AxumState(console): AxumState<Arc<Console<S>>>,
    request: Request,
    next: Next,
) -> Response {
    if let Err(refused) = check_host(&console.hosts, &request) {
        return secure(refused);
    }
    if let Some(auth) = &console.auth {
        let client = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip());
        let now = Instant::now();
        if let Some(wait) = console.throttle.blocked(client, now) {
            metrics::counter!("thulium_console_sign_in_throttled_total").increment(1);
            let mut response = Page::error(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many failed sign-ins; wait a minute and try again.",
            );
            if let Ok(value) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return secure(response);
        }
        if !auth.checker.verify(request.headers()) {
            // A browser asks without credentials first: only wrong ones count.
            if request.headers().contains_key(header::AUTHORIZATION) {
                metrics::counter!("thulium_console_sign_in_failures_total").increment(1);
                let failed = console.throttle.failed(client, now);
                let client = client.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
                if failed.now_blocked {
                    tracing::warn!(%client, per_minute = throttle::PER_CLIENT, "console: too many failed sign-ins; this address waits until its minute ends");
                } else if failed.first {
                    tracing::warn!(%client, "console: failed sign-in");
                }
            }
            let mut response = Page::error(StatusCode::UNAUTHORIZED, "Sign in to see the inbox.");
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="thulium inbox console", charset="UTF-8""#),
            );
            return secure(response);
        }
    }
    let mut request = request;
    let browser = Browser::of(request.headers());
    request.extensions_mut().insert(browser.clone());
    let mut response = next.run(request).await;
    browser.set_cookies(response.headers_mut());
    secure(response)
}

/// Refuses a request for a host the console does not answer to: a page on another
/// name that a DNS rebinding pointed at this address would otherwise read it (and
/// its CSRF token) as its own. Allowed: the names configured, and the address the
/// connection reached (with `localhost` for a loopback one), port included. A
/// request served where the address is not known, with no names configured, passes.
#[allow(clippy::result_large_err)] // a page to answer with at once
fn check_host(allowed: &[String], request: &Request) -> Result<(), Response> {
    let local = request.extensions().get::<LocalAddr>().map(|l| l.0);
    if allowed.is_empty() && local.is_none() {
        return Ok(());
    }
    let Some(host) = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
    else {
        return Err(Page::error(
            StatusCode::BAD_REQUEST,
            "The request names no host (no Host header).",
        ));
    };
    let (name, port) = split_host(&host);
    let named = allowed.iter().any(|entry| {
        let (allowed_name, allowed_port) = split_host(entry);
        allowed_name.eq_ignore_ascii_case(name) && (allowed_port.is_none() || allowed_port == port)
    });
    let reached = local.is_some_and(|local| {
        let local_port = local.port().to_string();
        port == Some(local_port.as_str())
            && match name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
            {
                Ok(ip) => ip == local.ip(),
                Err(_) => name == "localhost" && local.ip().is_loopback(),
            }
    });
    if named || reached {
        return Ok(());
    }
    Err(Page::error(
        StatusCode::MISDIRECTED_REQUEST,
        "This console does not answer to that host name. If you reach it through a name \
         of your own (a proxy), start it with --console-host NAME.",
    ))
}

/// `name` and `port` of a `Host` value (`[::1]:8081`, `example.com`).
fn split_host(host: &str) -> (&str, Option<&str>) {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((ip, tail)) => (ip, tail.strip_prefix(':')),
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, Some(port)),
        _ => (host, None),
    }
}

pub(super) fn secure(mut response: Response) -> Response {
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
    // Pages and JSON carry customer data: no cache keeps them. The built-in style
    // sheet and script say their own (they hold none).
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Whether a state-changing request may proceed: the form carries the browser's
/// own CSRF token, and a browser that says where the request comes from says it
/// comes from here.
#[allow(clippy::result_large_err)] // a page to answer with at once
pub(super) fn same_origin(
    headers: &HeaderMap,
    body: &Bytes,
    keys: &Keys,
    browser: &Browser,
) -> Result<(), Response> {
    check_origin(headers, body, keys, browser)
        .map_err(|why| Page::error(StatusCode::FORBIDDEN, why))
}

pub(super) fn check_origin(
    headers: &HeaderMap,
    body: &Bytes,
    keys: &Keys,
    browser: &Browser,
) -> Result<(), &'static str> {
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
        // `null` is an opaque origin: accepted only when the browser also says the
        // request is same-origin. Otherwise the console's own origin: a web scheme
        // (https behind a proxy that terminates TLS) and this very host.
        let same = if origin == "null" {
            fetch_site_same
        } else {
            origin
                .split_once("://")
                .is_some_and(|(scheme, origin_host)| {
                    matches!(scheme, "http" | "https") && origin_host == host
                })
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
    // A browser that sent no id cookie cannot hold a token made for one.
    if browser.new || !keys.check(&browser.id, &token) {
        return Err(forbidden(
            "The form is stale or forged (no valid CSRF token); reload the page and try again.",
        ));
    }
    Ok(())
}
