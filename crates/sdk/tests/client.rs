//! The SDK against a local HTTP server (wiremock): wire format, decoding, error paths,
//! timeouts and retries, as a user would meet them.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use thulium::{Action, Client, ClientBuilder, Error, Language, NewWebhook, RetryPolicy};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const VENDOR_REQUEST: &str =
    r#"{"actions":["CHAT_CONVERSATION_CREATED"],"subscription_url":"https:\/\/example.pl"}"#;
const VENDOR_RESPONSE: &str = r#"{
        "id": 5,
        "actions": ["CHAT_CONVERSATION_CREATED"],
        "subscription_url": "https://example.pl",
        "http_auth_user": "",
        "http_auth_password": ""
}"#;
const VENDOR_LIST: &str = r#"[{"id":1,"actions":["CHAT_AGENT_ASSIGNED"],"subscription_url":"https://example.com/","http_auth_user":"","http_auth_password":""},
    {"id":2,"actions":["CHAT_CONVERSATION_CREATED"],"subscription_url":"https://example.com/","http_auth_user":"","http_auth_password":""}]"#;
// base64("api_user:api_pass")
const BASIC_AUTH: &str = "Basic YXBpX3VzZXI6YXBpX3Bhc3M=";

fn fast_retries() -> RetryPolicy {
    RetryPolicy::default()
        .max_attempts(3)
        .initial_backoff(Duration::from_millis(20))
        .max_backoff(Duration::from_millis(40))
}

/// A builder pointed at `server` with the test credentials.
fn builder_for(server: &MockServer) -> ClientBuilder {
    Client::builder()
        .base_url(server.uri())
        .credentials("api_user", "api_pass")
}

fn client_for(server: &MockServer) -> Client {
    builder_for(server)
        .timeout(Duration::from_secs(5))
        .retry_policy(fast_retries())
        .build()
        .unwrap()
}

fn vendor_webhook() -> NewWebhook {
    NewWebhook::new("https://example.pl", [Action::ChatConversationCreated])
}

#[tokio::test]
async fn create_sends_the_vendors_request_byte_for_byte() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/webhooks"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(VENDOR_RESPONSE, "application/json"))
        .expect(1)
        .mount(&server)
        .await;

    let created = client_for(&server)
        .create_webhook(&vendor_webhook())
        .await
        .unwrap();
    assert_eq!(created.id, 5);
    assert_eq!(created.actions, vec![Action::ChatConversationCreated]);
    assert_eq!(created.subscription_url, "https://example.pl");
    assert_eq!(created.http_auth_user, "");
    assert!(created.http_auth_password.is_empty());
    assert!(!created.has_auth());

    let requests = server.received_requests().await.unwrap();
    let request = &requests[0];
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), "/api/webhooks");
    assert_eq!(request.url.query(), None);
    assert_eq!(request.headers["authorization"], BASIC_AUTH);
    assert_eq!(request.headers["content-type"], "application/json");
    assert_eq!(request.headers["accept"], "application/json");
    assert!(
        request.headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("thulium-rs/")
    );
    assert!(!request.headers.contains_key("api-version"));
    assert!(!request.headers.contains_key("accept-language"));
    // The same JSON the vendor sends, with `/` unescaped (both are the same string).
    assert_eq!(
        std::str::from_utf8(&request.body).unwrap(),
        VENDOR_REQUEST.replace(r"\/", "/")
    );
    let vendor: serde_json::Value = serde_json::from_str(VENDOR_REQUEST).unwrap();
    let sent: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(sent, vendor);
}

#[test]
fn the_vendors_escaped_request_parses_as_a_new_webhook() {
    let parsed: NewWebhook = serde_json::from_str(VENDOR_REQUEST).unwrap();
    assert_eq!(parsed, vendor_webhook());
    assert_eq!(parsed.subscription_url, "https://example.pl");
}

#[tokio::test]
async fn create_with_auth_sends_both_fields_and_unknown_actions_unchanged() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"{"id":7,"actions":["CALL_QUEUE_ENTERED"],"subscription_url":"https://h.example/x","http_auth_user":"hook","http_auth_password":"pw1"}"#,
            "application/json",
        ))
        .mount(&server)
        .await;
    let request =
        NewWebhook::new("https://h.example/x", ["CALL_QUEUE_ENTERED"]).with_auth("hook", "pw1");
    let created = client_for(&server).create_webhook(&request).await.unwrap();
    assert_eq!(
        created.actions,
        vec![Action::Other("CALL_QUEUE_ENTERED".into())]
    );
    assert!(created.has_auth());
    assert_eq!(created.http_auth_password.expose(), "pw1");
    assert!(!format!("{created:?}").contains("pw1"));

    let body = &server.received_requests().await.unwrap()[0].body;
    assert_eq!(
        std::str::from_utf8(body).unwrap(),
        r#"{"actions":["CALL_QUEUE_ENTERED"],"http_auth_password":"pw1","http_auth_user":"hook","subscription_url":"https://h.example/x"}"#
    );
}

#[tokio::test]
async fn list_decodes_the_vendors_bare_array() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/webhooks"))
        .and(header("authorization", BASIC_AUTH))
        .respond_with(ResponseTemplate::new(200).set_body_raw(VENDOR_LIST, "application/json"))
        .expect(1)
        .mount(&server)
        .await;
    let list = client_for(&server).list_webhooks().await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(
        (list[0].id, &list[0].actions[..]),
        (1, &[Action::ChatAgentAssigned][..])
    );
    assert_eq!(
        (list[1].id, &list[1].actions[..]),
        (2, &[Action::ChatConversationCreated][..])
    );
    assert_eq!(list[1].subscription_url, "https://example.com/");
    let request = &server.received_requests().await.unwrap()[0];
    assert!(request.body.is_empty());
    assert!(!request.headers.contains_key("content-type"));
}

#[tokio::test]
async fn polish_is_asked_for_with_accept_language() {
    let server = MockServer::start().await;
    Mock::given(header("accept-language", "pl"))
        .respond_with(ResponseTemplate::new(200).set_body_raw("[]", "application/json"))
        .expect(1)
        .mount(&server)
        .await;
    let client = builder_for(&server)
        .language(Language::Polish)
        .build()
        .unwrap();
    assert!(client.list_webhooks().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_thulium_error_body_keeps_every_message_and_the_request_id() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_raw(
            r#"{"request_id":"53678450401cf","errors":[{"message":"Field actions is required","code":1001},{"message":"Field subscription_url is not a valid URL","code":1002}]}"#,
            "application/json",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let err = client_for(&server)
        .create_webhook(&vendor_webhook())
        .await
        .unwrap_err();
    match &err {
        Error::Api {
            operation,
            status,
            request_id,
            errors,
            ..
        } => {
            assert_eq!(*operation, "create_webhook");
            assert_eq!(*status, 400);
            assert_eq!(request_id.as_deref(), Some("53678450401cf"));
            let pairs: Vec<_> = errors
                .iter()
                .map(|e| (e.code, e.message.as_str()))
                .collect();
            assert_eq!(
                pairs,
                [
                    (Some(1001), "Field actions is required"),
                    (Some(1002), "Field subscription_url is not a valid URL")
                ]
            );
        }
        other => panic!("expected Error::Api, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "create_webhook: Thulium answered HTTP 400: Field actions is required (code 1001); \
         Field subscription_url is not a valid URL (code 1002) [request_id 53678450401cf]"
    );
}

#[tokio::test]
async fn wrong_credentials_are_an_unauthorized_error_with_or_without_a_body() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401).set_body_raw(
            r#"{"request_id":"abc","errors":[{"message":"Unauthorized","code":401}]}"#,
            "application/json",
        ))
        .expect(1) // 401 is not worth repeating
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(403).set_body_string("Forbidden"))
        .expect(1)
        .mount(&server)
        .await;
    let client = client_for(&server);

    let err = client.list_webhooks().await.unwrap_err();
    assert!(
        matches!(&err, Error::Unauthorized { status: 401, request_id: Some(id), errors, .. } if id == "abc" && errors.len() == 1),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("check the API user's name and password"),
        "{err}"
    );

    let err = client.create_webhook(&vendor_webhook()).await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Unauthorized {
                status: 403,
                request_id: None,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_html_500_is_an_unexpected_response_with_a_short_excerpt() {
    let server = MockServer::start().await;
    let page = format!(
        "<html><body><h1>500 Internal Server Error</h1>{}</body></html>",
        "x".repeat(4000)
    );
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_raw(page, "text/html"))
        .expect(1) // a create is never repeated after the server saw it
        .mount(&server)
        .await;
    let err = client_for(&server)
        .create_webhook(&vendor_webhook())
        .await
        .unwrap_err();
    match &err {
        Error::UnexpectedResponse {
            status, excerpt, ..
        } => {
            assert_eq!(*status, Some(500));
            assert!(
                excerpt.starts_with("<html><body><h1>500 Internal Server Error</h1>"),
                "{excerpt}"
            );
            assert!(excerpt.chars().count() < 200);
        }
        other => panic!("expected UnexpectedResponse, got {other:?}"),
    }
    assert!(err.to_string().contains("(HTTP 500)"), "{err}");
}

#[tokio::test]
async fn invalid_json_on_success_is_an_unexpected_response_that_hides_echoed_secrets() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"{"id": "five", "http_auth_password": "hook-secret", "note": "api_pass"#,
            "application/json",
        ))
        .mount(&server)
        .await;
    let request = vendor_webhook().with_auth("hook", "hook-secret");
    let err = client_for(&server)
        .create_webhook(&request)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnexpectedResponse {
                status: Some(200),
                ..
            }
        ),
        "{err:?}"
    );
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains("hook-secret"), "{text}");
        assert!(!text.contains("api_pass"), "{text}");
        assert!(text.contains("[REDACTED]"), "{text}");
    }
}

#[tokio::test]
async fn an_endless_answer_is_cut_at_the_limit() {
    let server = MockServer::start().await;
    let huge = format!("[{}]", vec![VENDOR_RESPONSE; 20_000].join(","));
    assert!(huge.len() > 2 * 1024 * 1024);
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(huge.clone(), "application/json"))
        .mount(&server)
        .await;
    let limited = builder_for(&server)
        .max_response_bytes(1024 * 1024)
        .build()
        .unwrap();
    let err = limited.list_webhooks().await.unwrap_err();
    assert!(
        matches!(&err, Error::UnexpectedResponse { status: Some(200), problem, .. } if problem.contains("max_response_bytes")),
        "{err:?}"
    );
    // The default limit (16 MiB) takes the same answer whole.
    assert_eq!(
        client_for(&server).list_webhooks().await.unwrap().len(),
        20_000
    );
}

#[tokio::test]
async fn a_redirect_is_reported_not_followed() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(302).insert_header("location", "http://evil.example/steal"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let err = client_for(&server).list_webhooks().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnexpectedResponse {
                status: Some(302),
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_hung_server_times_out_and_a_list_is_tried_again() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .expect(2)
        .mount(&server)
        .await;
    let client = builder_for(&server)
        .timeout(Duration::from_millis(200))
        .retry_policy(fast_retries().max_attempts(2))
        .build()
        .unwrap();
    let err = client.list_webhooks().await.unwrap_err();
    assert!(
        matches!(err, Error::Timeout { operation: "list_webhooks", attempts: 2, timeout, .. } if timeout == Duration::from_millis(200)),
        "{err:?}"
    );
    assert!(err.is_retryable(), "a list may be tried again");
    assert!(err.to_string().contains("after 2 attempts"), "{err}");
    let cause = std::error::Error::source(&err).expect("a cause");
    assert!(cause.downcast_ref::<reqwest::Error>().unwrap().is_timeout());
}

#[tokio::test]
async fn the_deadline_bounds_the_whole_call_across_retries() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&server)
        .await;
    // Without a deadline this call would take 3 x 2 s plus backoffs.
    let client = builder_for(&server)
        .timeout(Duration::from_secs(2))
        .deadline(Duration::from_millis(300))
        .retry_policy(fast_retries())
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client.list_webhooks().await.unwrap_err();
    assert!(
        matches!(err, Error::Deadline { operation: "list_webhooks", attempts: 1, deadline, .. } if deadline == Duration::from_millis(300)),
        "{err:?}"
    );
    assert!(err.to_string().contains("deadline of 300ms"), "{err}");
    // Generous: what matters is that it did not wait for the 2 s attempt.
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn no_retry_waits_past_the_deadline() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "20"))
        .expect(1)
        .mount(&server)
        .await;
    let client = builder_for(&server)
        .deadline(Duration::from_secs(5))
        .retry_policy(fast_retries().max_retry_after(Duration::from_secs(60)))
        .build()
        .unwrap();
    // The server asks for a 20 s pause, past the 5 s deadline: the 503 is the answer.
    let err = client.list_webhooks().await.unwrap_err();
    assert_eq!(err.status(), Some(503), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_users_own_http_client_carries_the_sdks_headers_and_its_own() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/webhooks"))
        .and(header("authorization", BASIC_AUTH))
        .and(header("accept-language", "pl"))
        .and(header("x-proxy-tag", "mine"))
        .respond_with(ResponseTemplate::new(200).set_body_raw("[]", "application/json"))
        .expect(1)
        .mount(&server)
        .await;
    let mut defaults = reqwest::header::HeaderMap::new();
    defaults.insert("x-proxy-tag", "mine".parse().unwrap());
    let http = thulium::tls::http_client_builder()
        .unwrap()
        .default_headers(defaults)
        .build()
        .unwrap();
    let client = builder_for(&server)
        .language(Language::Polish)
        .http_client(http)
        .build()
        .unwrap();
    assert!(client.list_webhooks().await.unwrap().is_empty());
}

#[tokio::test]
async fn building_and_calling_installs_no_process_wide_tls_provider() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_raw("[]", "application/json"))
        .mount(&server)
        .await;
    client_for(&server).list_webhooks().await.unwrap();
    let https = Client::builder()
        .account("acme")
        .credentials("api_user", "api_pass")
        .build()
        .unwrap();
    drop(https);
    assert!(
        rustls::crypto::CryptoProvider::get_default().is_none(),
        "the SDK installed a process-wide rustls provider"
    );
}

#[tokio::test]
async fn a_hung_server_is_not_asked_twice_to_create() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .expect(1)
        .mount(&server)
        .await;
    let client = builder_for(&server)
        .timeout(Duration::from_millis(200))
        .retry_policy(fast_retries())
        .build()
        .unwrap();
    let err = client.create_webhook(&vendor_webhook()).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { attempts: 1, .. }), "{err:?}");
    assert!(!err.is_retryable(), "the create may have been applied");
    assert!(err.to_string().contains("after 1 attempt;"), "{err}");
}

/// Answers with the statuses in order, then 200 with an empty list.
struct Sequence(Mutex<Vec<ResponseTemplate>>);

impl Respond for Sequence {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut queue = self.0.lock().unwrap();
        if queue.is_empty() {
            ResponseTemplate::new(200).set_body_raw("[]", "application/json")
        } else {
            queue.remove(0)
        }
    }
}

#[tokio::test]
async fn list_is_retried_on_retryable_statuses_and_create_is_not() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(Sequence(Mutex::new(vec![
            ResponseTemplate::new(503),
            ResponseTemplate::new(502),
        ])))
        .expect(3)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .expect(1)
        .mount(&server)
        .await;
    let client = client_for(&server);
    assert!(client.list_webhooks().await.unwrap().is_empty());
    let err = client.create_webhook(&vendor_webhook()).await.unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert!(!err.is_retryable(), "a create may have been applied");
}

#[tokio::test]
async fn retries_stop_after_the_last_attempt() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(504).set_body_raw(
            r#"{"request_id":"r1","errors":[{"message":"Gateway timeout"}]}"#,
            "application/json",
        ))
        .expect(3)
        .mount(&server)
        .await;
    let err = client_for(&server).list_webhooks().await.unwrap_err();
    assert!(matches!(&err, Error::Api { status: 504, .. }), "{err:?}");
    assert_eq!(err.request_id(), Some("r1"));
}

#[tokio::test]
async fn retry_after_is_honoured_and_an_excessive_one_is_not_waited_for() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(Sequence(Mutex::new(vec![
            ResponseTemplate::new(429).insert_header("retry-after", "1"),
        ])))
        .expect(2)
        .mount(&server)
        .await;
    let client = client_for(&server);
    let started = Instant::now();
    client.list_webhooks().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    server.verify().await;

    let impatient = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "3600"))
        .expect(1)
        .mount(&impatient)
        .await;
    let err = client_for(&impatient).list_webhooks().await.unwrap_err();
    assert_eq!(err.status(), Some(429));
}

/// A loopback socket that is bound but not listening: connections to its port are
/// refused for as long as it lives, no other test's server can take the port
/// meanwhile (a port merely freed can be), and it can start listening later.
fn refusing_socket() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

#[tokio::test]
async fn connection_refused_is_a_connect_error_after_every_attempt() {
    let (_refusing, port) = refusing_socket();
    let client = Client::builder()
        .base_url(format!("http://127.0.0.1:{port}"))
        .credentials("api_user", "api_pass")
        .retry_policy(fast_retries())
        .build()
        .unwrap();
    let err = client.create_webhook(&vendor_webhook()).await.unwrap_err();
    match &err {
        Error::Connect {
            operation,
            host,
            attempts,
            reason,
            ..
        } => {
            assert_eq!(*operation, "create_webhook");
            assert_eq!(host, &format!("127.0.0.1:{port}"));
            assert_eq!(*attempts, 3);
            assert!(reason.to_lowercase().contains("refused"), "{reason}");
        }
        other => panic!("expected Connect, got {other:?}"),
    }
    assert!(!err.to_string().contains("api_pass"));
    assert!(err.to_string().contains("after 3 attempts"), "{err}");
    // The cause chain is kept: the HTTP client's error, down to the refused socket.
    let cause = std::error::Error::source(&err).expect("a cause");
    let reqwest_error = cause
        .downcast_ref::<reqwest::Error>()
        .expect("the cause is reqwest's error");
    assert!(reqwest_error.is_connect());
    assert!(err.is_retryable(), "nothing reached the server");
}

#[tokio::test]
async fn a_create_that_never_connected_is_retried_once_the_server_is_up() {
    let (socket, port) = refusing_socket();
    let server_up = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let listener = socket.listen(128).unwrap().into_std().unwrap();
        let server = MockServer::builder().listener(listener).start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200).set_body_raw(VENDOR_RESPONSE, "application/json"),
            )
            .expect(1)
            .mount(&server)
            .await;
        server
    });
    let client = Client::builder()
        .base_url(format!("http://127.0.0.1:{port}"))
        .credentials("api_user", "api_pass")
        .retry_policy(
            RetryPolicy::default()
                .max_attempts(10)
                .initial_backoff(Duration::from_millis(100))
                .max_backoff(Duration::from_millis(200)),
        )
        .build()
        .unwrap();
    let created = client.create_webhook(&vendor_webhook()).await.unwrap();
    assert_eq!(created.id, 5);
    let server = server_up.await.unwrap();
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn invalid_input_sends_nothing() {
    let server = MockServer::start().await;
    let client = client_for(&server);
    let none: [Action; 0] = [];
    for (webhook, field) in [
        (
            NewWebhook::new("not-a-url", [Action::TicketCreated]),
            "subscription_url",
        ),
        (NewWebhook::new("https://e.pl", none), "actions"),
        (vendor_webhook().with_auth("user", ""), "http_auth_password"),
    ] {
        let err = client.create_webhook(&webhook).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidInput { field: f, .. } if f == field),
            "{err:?}"
        );
    }
    assert!(server.received_requests().await.unwrap().is_empty());
}

/// Every form in which a server could echo the credentials it was sent: the API
/// password, the subscription password, their percent-encodings, and the base64 of
/// `user:password` from the Authorization header, whole or cut.
fn echoes() -> Vec<String> {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let api_basic = engine.encode("api_user:api_pass");
    let hook_basic = engine.encode("hook:hook/secret pw");
    vec![
        "api_pass".into(),
        "hook/secret pw".into(),
        "hook%2Fsecret%20pw".into(),
        "hook%2Fsecret+pw".into(),
        format!("Basic {api_basic}"),
        api_basic[..16].to_string(),
        hook_basic.clone(),
        hook_basic[..12].to_string(),
    ]
}

#[tokio::test]
async fn secrets_echoed_in_thuliums_error_body_are_redacted_in_every_error() {
    for status in [400u16, 401, 403, 500] {
        for echo in echoes() {
            let server = MockServer::start().await;
            let body = serde_json::json!({
                "request_id": format!("id-{echo}"),
                "errors": [{"message": format!("you sent <{echo}>"), "code": 7}],
            });
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(status).set_body_json(body))
                .mount(&server)
                .await;
            let request = vendor_webhook().with_auth("hook", "hook/secret pw");
            let err = client_for(&server)
                .create_webhook(&request)
                .await
                .unwrap_err();
            assert!(
                matches!(err, Error::Api { .. } | Error::Unauthorized { .. }),
                "{err:?}"
            );
            for text in [
                err.to_string(),
                format!("{err:?}"),
                format!("{:?}", err.api_messages()),
            ] {
                assert!(!text.contains(&echo), "HTTP {status}, echo {echo}: {text}");
                assert!(text.contains("[REDACTED]"), "{text}");
            }
        }
    }
}
