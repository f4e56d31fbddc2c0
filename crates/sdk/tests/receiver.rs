//! The SDK's receiver over real loopback HTTP: what Thulium (or an attacker) can send,
//! and what the application sees.

use std::sync::{Arc, Mutex};

use std::net::SocketAddr;

use base64::Engine as _;
use reqwest::StatusCode;
use thulium::event::{Event, examples};
use thulium::receiver::Receiver;
use thulium::server::{ServerLimits, serve as serve_limited};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FORM: &str = "application/x-www-form-urlencoded";

/// The vendor's example chat event, form-encoded as Thulium sends it.
fn vendor_form() -> String {
    examples::event("CHAT_CONVERSATION_CREATED", &[])
        .unwrap()
        .to_form()
}

/// Serves `app` on a fresh loopback port for the rest of the test.
async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_limited(
        listener,
        app,
        ServerLimits::default(),
        std::future::pending(),
    ));
    addr
}

type Seen = Arc<Mutex<Vec<Event>>>;

/// A receiver on loopback expecting `thulium:s3cret`, whose handler records every
/// event and fails when the event's action is `FAIL_ME`.
async fn start(limit: Option<usize>) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let mut receiver = Receiver::with_basic_auth("thulium", "s3cret").unwrap();
    if let Some(limit) = limit {
        receiver = receiver.body_limit(limit);
    }
    let record = Arc::clone(&seen);
    let app = receiver.router("/hook", move |event: Event| {
        let record = Arc::clone(&record);
        async move {
            if event.action().as_str() == "FAIL_ME" {
                return Err("database is down");
            }
            if event.action().as_str() == "PANIC_ME" {
                panic!("a bug in the application's handler");
            }
            record.lock().unwrap().push(event);
            Ok(())
        }
    });
    let addr = serve(app).await;
    (format!("http://{addr}/hook"), seen)
}

fn http() -> reqwest::Client {
    thulium::tls::http_client_builder()
        .unwrap()
        .no_proxy()
        .build()
        .unwrap()
}

async fn post(
    url: &str,
    auth: Option<&str>,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, Option<String>, String) {
    let mut request = http()
        .post(url)
        .header("content-type", content_type)
        .body(body);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    (status, challenge, response.text().await.unwrap())
}

fn basic(pair: &str) -> String {
    let (user, password) = pair.split_once(':').unwrap_or((pair, ""));
    let value = thulium::auth::basic_authorization(user, &password.into());
    value.to_str().unwrap().to_string()
}

#[tokio::test]
async fn the_vendors_event_is_handed_over_in_both_encodings() {
    let (url, seen) = start(None).await;
    let auth = basic("thulium:s3cret");
    let (status, _, body) = post(&url, Some(&auth), FORM, vendor_form()).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "OK"));
    let json = Event::from_form(vendor_form().as_bytes())
        .unwrap()
        .to_json();
    let (status, _, _) = post(&url, Some(&auth), "application/json", json).await;
    assert_eq!(status, StatusCode::OK);
    // No content type at all: the receiver works it out.
    let response = http()
        .post(&url)
        .header("authorization", &auth)
        .body(vendor_form())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|e| *e == seen[0]));
    let Event::ChatConversationCreated(chat) = &seen[0] else {
        panic!("{:?}", seen[0])
    };
    assert_eq!(chat.client_name.as_deref(), Some("John Smith"));
    assert_eq!(chat.chat_queue_id, 1);
}

#[tokio::test]
async fn null_fields_and_unknown_actions_are_accepted() {
    let (url, seen) = start(None).await;
    let auth = basic("thulium:s3cret");
    let body =
        "action=CUSTOMER_UPDATED&customer_id=682&company_id=null&date=2026-09-04+12%3A19%3A43";
    assert_eq!(post(&url, Some(&auth), FORM, body).await.0, StatusCode::OK);
    let body = "action=CALL_QUEUE_ENTERED&queue_id=155&caller=null";
    assert_eq!(post(&url, Some(&auth), FORM, body).await.0, StatusCode::OK);

    let seen = seen.lock().unwrap();
    assert!(
        matches!(&seen[0], Event::CustomerUpdated(c) if c.company_id.is_none() && c.customer_id == 682)
    );
    let Event::Other(other) = &seen[1] else {
        panic!("{:?}", seen[1])
    };
    assert_eq!(other.action.as_str(), "CALL_QUEUE_ENTERED");
    assert_eq!(other.fields["caller"], "null");
}

#[tokio::test]
async fn every_wrong_credential_gets_the_same_401() {
    let (url, seen) = start(None).await;
    let cases: Vec<Option<String>> = vec![
        None,
        Some("Bearer abc".into()),
        Some("Basic %%%not-base64%%%".into()),
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("no-colon")
        )),
        Some(basic("thulium:wrong")),
        Some(basic("thulium:")),
        Some(basic("wrong:s3cret")),
        Some(basic("THULIUM:s3cret")),
        Some(basic("thulium:s3cret ")),
    ];
    let mut answers = Vec::new();
    for auth in &cases {
        answers.push(post(&url, auth.as_deref(), FORM, vendor_form()).await);
    }
    for (auth, answer) in cases.iter().zip(&answers) {
        assert_eq!(answer.0, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(
            answer, &answers[0],
            "{auth:?} must look like every other refusal"
        );
    }
    assert_eq!(
        answers[0].1.as_deref(),
        Some(r#"Basic realm="thulium-webhooks", charset="UTF-8""#)
    );
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn oversized_bodies_get_413_with_or_without_a_length() {
    let (url, seen) = start(Some(1024)).await;
    let auth = basic("thulium:s3cret");
    let big = format!("{}&padding={}", vendor_form(), "x".repeat(2000));
    assert_eq!(
        post(&url, Some(&auth), FORM, big.clone()).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    // Streamed without Content-Length: the limit holds while reading.
    let chunks: Vec<Result<String, std::io::Error>> = big
        .as_bytes()
        .chunks(100)
        .map(|c| Ok(String::from_utf8(c.to_vec()).unwrap()))
        .collect();
    let stream = reqwest::Body::wrap_stream(futures_util_stream(chunks));
    assert_eq!(
        post(&url, Some(&auth), FORM, stream).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    // Just under the limit passes.
    let fits = format!(
        "{}&padding={}",
        vendor_form(),
        "x".repeat(1024 - vendor_form().len() - 9)
    );
    assert_eq!(fits.len(), 1024);
    assert_eq!(post(&url, Some(&auth), FORM, fits).await.0, StatusCode::OK);
    assert_eq!(seen.lock().unwrap().len(), 1);
}

fn futures_util_stream(
    items: Vec<Result<String, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<String, std::io::Error>> {
    futures_util::stream::iter(items)
}

#[tokio::test]
async fn malformed_and_truncated_bodies_get_400_with_a_reason() {
    let (url, seen) = start(None).await;
    let auth = basic("thulium:s3cret");
    let (status, _, body) = post(
        &url,
        Some(&auth),
        "application/json",
        r#"{"action":"TICKET_CREATED""#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.starts_with("the body is not valid JSON"), "{body}");
    let (status, _, body) =
        post(&url, Some(&auth), FORM, "action=TICKET_CREATED&ticket_id=x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        "TICKET_CREATED: field `ticket_id` must be an integer, got \"x\""
    );

    // A connection that promises 500 bytes, sends 20 and stops sending.
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/hook")
        .to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /hook HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\nContent-Type: {FORM}\r\nContent-Length: 500\r\n\r\naction=TICKET_CREATED"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("the body could not be read"), "{answer}");
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_failing_handler_gets_500_so_thulium_retries() {
    let (url, seen) = start(None).await;
    let (status, _, body) =
        post(&url, Some(&basic("thulium:s3cret")), FORM, "action=FAIL_ME").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body, "the event was not taken; deliver it again");
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_panicking_handler_gets_500_and_the_receiver_keeps_serving() {
    let (url, seen) = start(None).await;
    let auth = basic("thulium:s3cret");
    let (status, _, body) = post(&url, Some(&auth), FORM, "action=PANIC_ME").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body, "the event was not taken; deliver it again");
    assert_eq!(
        post(&url, Some(&auth), FORM, vendor_form()).await.0,
        StatusCode::OK
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn only_post_is_routed() {
    let (url, _) = start(None).await;
    let response = http()
        .get(&url)
        .header("authorization", basic("thulium:s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_all_reach_the_application() {
    let (url, seen) = start(None).await;
    let auth = basic("thulium:s3cret");
    let client = http();
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (url, auth, client) = (url.clone(), auth.clone(), client.clone());
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for j in 0..8 {
                let body = format!("action=TICKET_MESSAGE_RECEIVED&ticket_id={}", i * 100 + j);
                let response = client
                    .post(&url)
                    .header("authorization", &auth)
                    .header("content-type", FORM)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                statuses.push(response.status());
            }
            statuses
        }));
    }
    for task in tasks {
        assert!(task.await.unwrap().iter().all(|s| *s == StatusCode::OK));
    }
    let seen = seen.lock().unwrap();
    let mut ids: Vec<i64> = seen
        .iter()
        .map(|e| match e {
            Event::TicketMessageReceived(t) => t.ticket_id,
            other => panic!("{other:?}"),
        })
        .collect();
    ids.sort();
    let expected: Vec<i64> = (0..64)
        .flat_map(|i| (0..8).map(move |j| i * 100 + j))
        .collect();
    assert_eq!(ids, expected);
}
