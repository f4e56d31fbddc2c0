//! The SDK's `ClientHooks` for the generated client: retries, per-attempt tracing and
//! a record of what the server answered.
//!
//! progenitor is configured with `HooksMode::Expected`, so the generated client does
//! not compile without this impl: no call can bypass the retry rules.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use progenitor_client::{ClientHooks, ClientInfo, OperationInfo};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT_LANGUAGE, AUTHORIZATION, HeaderValue, USER_AGENT};

use crate::generated::Client as GeneratedClient;
use crate::retry::{RetryPolicy, is_idempotent, is_retryable_status};

/// What every generated call can see: the parts of the configuration the hooks need.
#[derive(Clone, Debug)]
pub struct ClientState {
    pub(crate) retry: RetryPolicy,
    pub(crate) max_response_bytes: usize,
    /// Set on each request rather than as the HTTP client's defaults, so that a
    /// client the user passed in gets them too.
    pub(crate) authorization: HeaderValue,
    pub(crate) user_agent: HeaderValue,
    pub(crate) accept_language: Option<HeaderValue>,
    pub(crate) timeout: std::time::Duration,
    /// Whether the hooks set [`Self::timeout`] on each request: only for a client the
    /// user passed in (the SDK's own client has it built in).
    pub(crate) timeout_per_request: bool,
}

/// Caps how much of an answer is read, so a broken or hostile server cannot make the
/// client buffer without end; reading past the cap fails with `LengthLimitError`.
fn limit_body(response: reqwest::Response, limit: usize) -> reqwest::Response {
    // hyper never reads past a declared Content-Length, so a body that declares one
    // within the limit needs no wrapper (wrapping costs a few µs a call).
    if response
        .content_length()
        .is_some_and(|length| length <= limit as u64)
    {
        return response;
    }
    let response: http::Response<reqwest::Body> = response.into();
    reqwest::Response::from(
        response.map(|body| reqwest::Body::wrap(http_body_util::Limited::new(body, limit))),
    )
}

/// What the server did during one SDK call, across its attempts. The generated code
/// turns an undecodable body into an error that has lost the HTTP status; the status
/// recorded here gives it back.
#[derive(Clone, Debug, Default)]
pub(crate) struct CallRecord {
    pub(crate) attempts: u32,
    pub(crate) last_status: Option<StatusCode>,
    /// When the call's overall deadline passes: no retry starts a wait past it.
    pub(crate) deadline: Option<Instant>,
}

tokio::task_local! {
    pub(crate) static CALL_RECORD: RefCell<CallRecord>;
}

fn record(update: impl FnOnce(&mut CallRecord)) {
    // Outside an SDK call (nobody scoped a record) there is nothing to keep.
    let _ = CALL_RECORD.try_with(|cell| update(&mut cell.borrow_mut()));
}

impl ClientHooks<ClientState> for GeneratedClient {
    async fn pre<E>(
        &self,
        request: &mut reqwest::Request,
        _info: &OperationInfo,
    ) -> Result<(), progenitor_client::Error<E>> {
        let state = self.inner();
        let headers = request.headers_mut();
        headers.insert(AUTHORIZATION, state.authorization.clone());
        headers.insert(USER_AGENT, state.user_agent.clone());
        if let Some(language) = &state.accept_language {
            headers.insert(ACCEPT_LANGUAGE, language.clone());
        }
        if state.timeout_per_request {
            *request.timeout_mut() = Some(state.timeout);
        }
        Ok(())
    }

    async fn exec(
        &self,
        request: reqwest::Request,
        info: &OperationInfo,
    ) -> reqwest::Result<reqwest::Response> {
        let policy = &self.inner().retry;
        let idempotent = is_idempotent(info.operation_id);
        let deadline = CALL_RECORD.try_with(|r| r.borrow().deadline).ok().flatten();
        let mut attempt = 1;
        let mut pending = Some(request);
        loop {
            // Keep a copy for the next attempt; bodies here are buffered JSON, so the
            // clone always succeeds, and without one the attempt is simply the last.
            let this_attempt = pending.take().expect("a request for every attempt");
            if attempt < policy.attempts() {
                pending = copy_request(&this_attempt);
            }
            // Timed only for the debug lines that show it.
            let started = tracing::enabled!(tracing::Level::DEBUG).then(Instant::now);
            let result = self.client().execute(this_attempt).await;
            let elapsed_ms = started.map_or(0, |at| at.elapsed().as_millis() as u64);
            record(|r| {
                r.attempts = attempt;
                r.last_status = result.as_ref().ok().map(reqwest::Response::status);
            });

            let wait = match &result {
                Ok(response) => {
                    tracing::debug!(
                        operation = info.operation_id,
                        attempt,
                        status = response.status().as_u16(),
                        elapsed_ms,
                        "thulium attempt answered"
                    );
                    retry_wait_after_response(policy, idempotent, response, attempt)
                }
                Err(error) => {
                    tracing::debug!(
                        operation = info.operation_id,
                        attempt,
                        elapsed_ms,
                        connect = error.is_connect(),
                        timeout = error.is_timeout(),
                        "thulium attempt failed"
                    );
                    // A refused connection never reached the server, so even a create
                    // is safe to repeat; anything later may have been applied.
                    (error.is_connect() || idempotent).then(|| policy.backoff(attempt + 1))
                }
            };

            let result = result.map(|mut response| {
                // Nothing after the hooks reads the answer's headers (the retry rules
                // above did), and the generated code would copy them into every value.
                *response.headers_mut() = reqwest::header::HeaderMap::new();
                limit_body(response, self.inner().max_response_bytes)
            });
            // A wait that would end past the deadline only delays the same outcome.
            let wait = wait.filter(|wait| deadline.is_none_or(|at| Instant::now() + *wait < at));
            match (wait, pending.is_some()) {
                (Some(wait), true) => {
                    tracing::debug!(
                        operation = info.operation_id,
                        next_attempt = attempt + 1,
                        wait_ms = wait.as_millis() as u64,
                        "retrying"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                _ => return result,
            }
        }
    }
}

/// A copy of a generated request for the next attempt: what `reqwest::Request::
/// try_clone` copies, except that it sets a timeout only when the request has one.
/// reqwest's clone always sets one (`None` or not), which allocates the request's
/// extension map: about a third of the copy's cost (callgrind). The generated requests
/// carry nothing else in their extensions. `None` when the body is a stream.
fn copy_request(request: &reqwest::Request) -> Option<reqwest::Request> {
    let body = match request.body() {
        Some(body) => Some(reqwest::Body::from(bytes::Bytes::copy_from_slice(
            body.as_bytes()?,
        ))),
        None => None,
    };
    let mut copy = reqwest::Request::new(request.method().clone(), request.url().clone());
    *copy.headers_mut() = request.headers().clone();
    *copy.version_mut() = request.version();
    *copy.body_mut() = body;
    if let Some(timeout) = request.timeout() {
        *copy.timeout_mut() = Some(*timeout);
    }
    Some(copy)
}

fn retry_wait_after_response(
    policy: &RetryPolicy,
    idempotent: bool,
    response: &reqwest::Response,
    attempt: u32,
) -> Option<Duration> {
    if !idempotent || !is_retryable_status(response.status().as_u16()) {
        return None;
    }
    match policy.retry_after(response.headers()) {
        Ok(Some(wait)) => Some(wait),
        Ok(None) => Some(policy.backoff(attempt + 1)),
        // The server asked for a longer pause than the policy allows: report now
        // rather than hold the caller.
        Err(()) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copied_request_is_the_same_request() {
        let url: url::Url = "https://acme.thulium.com/api/webhooks".parse().unwrap();
        let mut original = reqwest::Request::new(reqwest::Method::POST, url.clone());
        original
            .headers_mut()
            .insert(AUTHORIZATION, HeaderValue::from_static("Basic YTpi"));
        *original.body_mut() = Some(r#"{"actions":["TICKET_CREATED"]}"#.into());
        let copy = copy_request(&original).unwrap();
        assert_eq!(copy.method(), original.method());
        assert_eq!(copy.url(), original.url());
        assert_eq!(copy.headers(), original.headers());
        assert_eq!(copy.version(), original.version());
        assert_eq!(
            copy.body().and_then(reqwest::Body::as_bytes),
            original.body().and_then(reqwest::Body::as_bytes)
        );
        assert_eq!(copy.timeout(), None);

        *original.timeout_mut() = Some(Duration::from_secs(7));
        let copy = copy_request(&original).unwrap();
        assert_eq!(copy.timeout(), Some(&Duration::from_secs(7)));

        let get = reqwest::Request::new(reqwest::Method::GET, url);
        assert!(copy_request(&get).unwrap().body().is_none());
    }
}
