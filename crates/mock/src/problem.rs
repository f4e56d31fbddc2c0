//! Errors the fake answers, in Thulium's error shape and in English or Polish.
//!
//! Thulium documents the shape (`request_id`, `errors[]` of `message` and `code`) and
//! the `Accept-Language: pl` switch, but neither its status codes nor its error codes.
//! The statuses and codes below are this fake's own choices, not Thulium's.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use thulium::Language;
use thulium::types::{ErrorBody, ErrorItem};

/// The language of error messages a request asks for with `Accept-Language`.
pub(crate) fn language_of(headers: &HeaderMap) -> Language {
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .map_or(Language::English, Language::from_accept_language)
}

/// One thing wrong with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// No or wrong API credentials.
    Unauthorized,
    /// No such path.
    NotFound,
    /// The path exists, the method does not.
    MethodNotAllowed,
    /// The body is not declared as JSON.
    UnsupportedMediaType,
    /// The body exceeds the limit, in bytes.
    TooLarge(usize),
    /// The body is not JSON; the parser's message.
    InvalidJson(String),
    /// The JSON is not an object.
    NotAnObject,
    /// `actions` is absent.
    ActionsRequired,
    /// `actions` is not a non-empty list of non-empty strings.
    ActionsInvalid,
    /// `subscription_url` is absent.
    UrlRequired,
    /// `subscription_url` is not an absolute http(s) URL.
    UrlInvalid,
    /// `subscription_url` points at the fake itself, so deliveries would loop.
    UrlLoop,
    /// An event reached the control endpoint from the fake's own delivery.
    DeliveryLoop,
    /// An auth field is not a string; the field's name.
    NotAString(&'static str),
    /// An event given to the control endpoint could not be parsed.
    InvalidEvent(String),
}

impl Problem {
    /// The fake's error code for this problem.
    pub fn code(&self) -> i64 {
        match self {
            Problem::Unauthorized => 1001,
            Problem::NotFound => 1002,
            Problem::MethodNotAllowed => 1003,
            Problem::UnsupportedMediaType => 1004,
            Problem::TooLarge(_) => 1005,
            Problem::InvalidJson(_) => 1006,
            Problem::NotAnObject => 1007,
            Problem::ActionsRequired => 2001,
            Problem::ActionsInvalid => 2002,
            Problem::UrlRequired => 2003,
            Problem::UrlInvalid => 2004,
            Problem::NotAString(_) => 2005,
            Problem::UrlLoop => 2006,
            Problem::DeliveryLoop => 3002,
            Problem::InvalidEvent(_) => 3001,
        }
    }

    /// The message in `lang`.
    pub fn message(&self, lang: Language) -> String {
        // `true`: Polish; every other language gets English, Thulium's default.
        match (self, lang == Language::Polish) {
            (Problem::Unauthorized, false) => "Unauthorized: wrong API user or password".into(),
            (Problem::Unauthorized, true) => {
                "Brak autoryzacji: nieprawidłowy użytkownik API lub hasło".into()
            }
            (Problem::NotFound, false) => "Resource not found".into(),
            (Problem::NotFound, true) => "Nie znaleziono zasobu".into(),
            (Problem::MethodNotAllowed, false) => "Method not allowed".into(),
            (Problem::MethodNotAllowed, true) => "Niedozwolona metoda".into(),
            (Problem::UnsupportedMediaType, false) => {
                "Content-Type must be application/json".into()
            }
            (Problem::UnsupportedMediaType, true) => {
                "Nagłówek Content-Type musi mieć wartość application/json".into()
            }
            (Problem::TooLarge(limit), false) => {
                format!("Request body is larger than {limit} bytes")
            }
            (Problem::TooLarge(limit), true) => {
                format!("Treść żądania przekracza {limit} bajtów")
            }
            (Problem::InvalidJson(detail), false) => {
                format!("Request body is not valid JSON: {detail}")
            }
            (Problem::InvalidJson(detail), true) => {
                format!("Treść żądania nie jest poprawnym JSON-em: {detail}")
            }
            (Problem::NotAnObject, false) => "Request body must be a JSON object".into(),
            (Problem::NotAnObject, true) => "Treść żądania musi być obiektem JSON".into(),
            (Problem::ActionsRequired, false) => "Field actions is required".into(),
            (Problem::ActionsRequired, true) => "Pole actions jest wymagane".into(),
            (Problem::ActionsInvalid, false) => {
                "Field actions must be a non-empty list of action names".into()
            }
            (Problem::ActionsInvalid, true) => {
                "Pole actions musi być niepustą listą nazw akcji".into()
            }
            (Problem::UrlRequired, false) => "Field subscription_url is required".into(),
            (Problem::UrlRequired, true) => "Pole subscription_url jest wymagane".into(),
            (Problem::UrlInvalid, false) => {
                "Field subscription_url must be an absolute http or https URL".into()
            }
            (Problem::UrlInvalid, true) => {
                "Pole subscription_url musi być bezwzględnym adresem URL http lub https".into()
            }
            (Problem::UrlLoop, false) => {
                "Field subscription_url points at this server itself; deliveries would loop".into()
            }
            (Problem::UrlLoop, true) => {
                "Pole subscription_url wskazuje na ten serwer; dostarczanie zapętliłoby się".into()
            }
            (Problem::DeliveryLoop, false) => {
                "This event came from the fake's own delivery; emitting it again would loop".into()
            }
            (Problem::DeliveryLoop, true) => {
                "To zdarzenie pochodzi z własnego dostarczania; ponowna emisja zapętliłaby się"
                    .into()
            }
            (Problem::NotAString(field), false) => format!("Field {field} must be a string"),
            (Problem::NotAString(field), true) => format!("Pole {field} musi być tekstem"),
            (Problem::InvalidEvent(detail), false) => format!("Invalid event: {detail}"),
            (Problem::InvalidEvent(detail), true) => {
                format!("Nieprawidłowe zdarzenie: {detail}")
            }
        }
    }

    /// The HTTP status the fake answers for this problem.
    pub fn status(&self) -> StatusCode {
        match self {
            Problem::Unauthorized => StatusCode::UNAUTHORIZED,
            Problem::NotFound => StatusCode::NOT_FOUND,
            Problem::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Problem::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Problem::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// A complete error answer: one or more problems, one request id.
#[derive(Debug)]
pub struct ErrorAnswer {
    problems: Vec<Problem>,
    lang: Language,
}

impl ErrorAnswer {
    /// An answer listing `problems` (at least one) in `lang`.
    pub fn new(problems: Vec<Problem>, lang: Language) -> Self {
        debug_assert!(!problems.is_empty());
        Self { problems, lang }
    }

    /// An answer with a single problem.
    pub fn one(problem: Problem, lang: Language) -> Self {
        Self::new(vec![problem], lang)
    }
}

/// A request id in the style of Thulium's (`53678450401cf`: 13 hex digits).
pub fn request_id() -> String {
    format!("{:013x}", fastrand::u64(..) & 0x000f_ffff_ffff_ffff)
}

impl IntoResponse for ErrorAnswer {
    fn into_response(self) -> Response {
        let status = self.problems[0].status();
        let body = ErrorBody {
            request_id: Some(request_id()),
            errors: self
                .problems
                .iter()
                .map(|p| ErrorItem {
                    code: Some(p.code()),
                    message: p.message(self.lang),
                })
                .collect(),
        };
        let mut response = json_response(status, &body);
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="Thulium API""#),
            );
        }
        response
    }
}

/// `value` as a JSON answer with `status`.
pub fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            bytes,
        )
            .into_response(),
        // Our own types always serialize; answer plainly rather than panic if not.
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}
