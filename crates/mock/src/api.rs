//! The HTTP side of the fake: Thulium's `GET`/`POST /api/webhooks`, and the fake's own
//! control endpoints under `/_mock/` (not Thulium's) for emitting events.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use http_body_util::BodyExt as _;
use serde_json::{Map, Value};
use thulium::auth::BasicAuth;
use thulium::event::Event;
use thulium::{Action, Password, Webhook};

use crate::delivery::Deliverer;
use crate::problem::{ErrorAnswer, Problem, json_response, language_of};

/// Everything the handlers share.
pub(crate) struct Shared {
    /// Where the fake listens: subscriptions pointing here are refused, since every
    /// event would be delivered back to the fake without end.
    pub(crate) own_addr: std::net::SocketAddr,
    /// Checks the API user's Basic credentials with the SDK's own check (the one
    /// its receiver uses): one constant-time digest comparison, whatever was sent.
    pub(crate) api_auth: BasicAuth,
    pub(crate) body_limit: usize,
    pub(crate) subscriptions: Mutex<Vec<Webhook>>,
    pub(crate) deliverer: Deliverer,
}

impl Shared {
    pub(crate) fn subscriptions(&self) -> Vec<Webhook> {
        self.subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/api/webhooks",
            with_405(get(list_webhooks).post(create_webhook)),
        )
        .route("/_mock/events", with_405(post(emit_event)))
        .route("/_mock/deliveries", with_405(get(list_deliveries)))
        .fallback(|headers: HeaderMap| async move {
            ErrorAnswer::one(Problem::NotFound, language_of(&headers))
        })
        .with_state(shared)
}

fn with_405(route: MethodRouter<Arc<Shared>>) -> MethodRouter<Arc<Shared>> {
    route.fallback(|headers: HeaderMap| async move {
        ErrorAnswer::one(Problem::MethodNotAllowed, language_of(&headers))
    })
}

/// Checks credentials and reads the body within the limit; the common start of
/// every authenticated handler.
async fn authenticated_body(
    shared: &Shared,
    request: Request,
) -> Result<(HeaderMap, thulium::Language, axum::body::Bytes), Response> {
    let (parts, body) = request.into_parts();
    let lang = language_of(&parts.headers);
    if !shared.api_auth.verify(&parts.headers) {
        return Err(ErrorAnswer::one(Problem::Unauthorized, lang).into_response());
    }
    let bytes = read_limited(body, shared.body_limit)
        .await
        .map_err(|problem| ErrorAnswer::one(problem, lang).into_response())?;
    Ok((parts.headers, lang, bytes))
}

async fn read_limited(body: Body, limit: usize) -> Result<axum::body::Bytes, Problem> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(Problem::TooLarge(limit))
        }
        Err(error) => Err(Problem::InvalidJson(format!(
            "the body could not be read: {error}"
        ))),
    }
}

async fn list_webhooks(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    if let Err(answer) = authenticated_body(&shared, request).await {
        return answer;
    }
    json_response(StatusCode::OK, &shared.subscriptions())
}

async fn create_webhook(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (headers, lang, body) = match authenticated_body(&shared, request).await {
        Ok(parts) => parts,
        Err(answer) => return answer,
    };
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return ErrorAnswer::one(Problem::UnsupportedMediaType, lang).into_response();
    }
    let object = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(object)) => object,
        Ok(_) => return ErrorAnswer::one(Problem::NotAnObject, lang).into_response(),
        Err(error) => {
            return ErrorAnswer::one(Problem::InvalidJson(error.to_string()), lang).into_response();
        }
    };
    let fields = match validate(&object, shared.own_addr) {
        Ok(fields) => fields,
        Err(problems) => return ErrorAnswer::new(problems, lang).into_response(),
    };

    let stored = {
        let mut subscriptions = shared
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let webhook = Webhook {
            id: subscriptions.last().map_or(1, |last| last.id + 1),
            actions: fields.actions,
            subscription_url: fields.subscription_url,
            // Thulium returns unset auth fields as empty strings.
            http_auth_user: fields.http_auth_user.unwrap_or_default(),
            http_auth_password: Password::new(fields.http_auth_password.unwrap_or_default()),
        };
        subscriptions.push(webhook.clone());
        webhook
    };
    tracing::debug!(id = stored.id, url = %stored.subscription_url, "subscription created");
    json_response(StatusCode::OK, &stored)
}

struct NewFields {
    actions: Vec<Action>,
    subscription_url: String,
    http_auth_user: Option<String>,
    http_auth_password: Option<String>,
}

/// Checks every field and reports every problem at once, as Thulium does.
/// Fields it does not know are ignored.
fn validate(
    object: &Map<String, Value>,
    own_addr: std::net::SocketAddr,
) -> Result<NewFields, Vec<Problem>> {
    let mut problems = Vec::new();

    let actions = match object.get("actions") {
        None | Some(Value::Null) => {
            problems.push(Problem::ActionsRequired);
            Vec::new()
        }
        Some(Value::Array(items)) if !items.is_empty() => {
            let names: Option<Vec<Action>> = items
                .iter()
                .map(|item| match item {
                    Value::String(name) if Action::from(name.as_str()).is_valid_name() => {
                        Some(Action::from(name.as_str()))
                    }
                    _ => None,
                })
                .collect();
            names.unwrap_or_else(|| {
                problems.push(Problem::ActionsInvalid);
                Vec::new()
            })
        }
        Some(_) => {
            problems.push(Problem::ActionsInvalid);
            Vec::new()
        }
    };

    let subscription_url = match object.get("subscription_url") {
        None | Some(Value::Null) => {
            problems.push(Problem::UrlRequired);
            String::new()
        }
        Some(Value::String(text)) if thulium::is_subscription_url(text) => {
            if points_at(text, own_addr) {
                problems.push(Problem::UrlLoop);
            }
            text.clone()
        }
        Some(_) => {
            problems.push(Problem::UrlInvalid);
            String::new()
        }
    };

    // The spec says these are strings when present; null is not one.
    let mut optional_string = |field: &'static str| match object.get(field) {
        None => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => {
            problems.push(Problem::NotAString(field));
            None
        }
    };
    let http_auth_user = optional_string("http_auth_user");
    let http_auth_password = optional_string("http_auth_password");

    if problems.is_empty() {
        Ok(NewFields {
            actions,
            subscription_url,
            http_auth_user,
            http_auth_password,
        })
    } else {
        Err(problems)
    }
}

/// Whether `url` would reach the fake itself: its own port on a loopback or
/// unspecified address, or on the address it is bound to.
fn points_at(url: &str, own: std::net::SocketAddr) -> bool {
    let Ok(url) = url::Url::parse(url) else {
        return false;
    };
    if url.port_or_known_default() != Some(own.port()) {
        return false;
    }
    let same_ip = |ip: std::net::IpAddr| ip == own.ip() || ip.is_loopback() || ip.is_unspecified();
    match url.host() {
        Some(url::Host::Ipv4(ip)) => same_ip(ip.into()),
        Some(url::Host::Ipv6(ip)) => same_ip(ip.into()),
        Some(url::Host::Domain(_)) => thulium::config::is_loopback(&url),
        None => false,
    }
}

/// `POST /_mock/events`: the body is an event, form or JSON, as Thulium would send
/// it; the fake delivers it to every subscriber of its action. Answers the ids of
/// the deliveries started.
async fn emit_event(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (headers, lang, body) = match authenticated_body(&shared, request).await {
        Ok(parts) => parts,
        Err(answer) => return answer,
    };
    // A delivery of the fake's own reaching this endpoint (through a name or address
    // the subscription check could not recognise) would loop: refuse it.
    if headers.contains_key(crate::delivery::DELIVERY_HEADER) {
        return ErrorAnswer::one(Problem::DeliveryLoop, lang).into_response();
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let event = match Event::parse(&body, content_type) {
        Ok(event) => event,
        Err(error) => {
            return ErrorAnswer::one(Problem::InvalidEvent(error.to_string()), lang)
                .into_response();
        }
    };
    let ids = shared.deliverer.emit(&event, &shared.subscriptions());
    json_response(
        StatusCode::OK,
        &serde_json::json!({ "action": event.action(), "deliveries": ids }),
    )
}

/// `GET /_mock/deliveries`: every delivery with every attempt.
async fn list_deliveries(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    if let Err(answer) = authenticated_body(&shared, request).await {
        return answer;
    }
    json_response(StatusCode::OK, &shared.deliverer.log.all())
}
