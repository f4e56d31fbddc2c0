//! Who may use the console and from where: credentials, security headers on every
//! answer, and the same-origin and CSRF checks of every state-changing request.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq as _;

use super::Console;
use super::html::Page;
use crate::store::Store;

/// Credentials, then security headers on every answer.
pub(super) async fn guard<S: Store + Clone>(
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

/// Whether a state-changing request may proceed: the CSRF token matches, and a
/// browser that says where the request comes from says it comes from here.
#[allow(clippy::result_large_err)] // a page to answer with at once
pub(super) fn same_origin(headers: &HeaderMap, body: &Bytes, csrf: &str) -> Result<(), Response> {
    check_origin(headers, body, csrf).map_err(|why| Page::error(StatusCode::FORBIDDEN, why))
}

pub(super) fn check_origin(
    headers: &HeaderMap,
    body: &Bytes,
    csrf: &str,
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
    if !bool::from(token.as_bytes().ct_eq(csrf.as_bytes())) {
        return Err(forbidden(
            "The form is stale or forged (no valid CSRF token); reload the page and try again.",
        ));
    }
    Ok(())
}
