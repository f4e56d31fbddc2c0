//! The SDK against the fake Thulium, and the fake's own promises: Thulium's error
//! shape for every bad request, concurrency, and event delivery with retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use thulium::event::Event;
use thulium::receiver::Receiver;
use thulium::{Action, Error, Language, NewWebhook, RetryPolicy};
use thulium_mock::{AttemptOutcome, DeliveryPolicy, DeliveryState, MockConfig, MockThulium};
use thulium_tests::serve;
use tokio::sync::mpsc;

/// The vendor's example ticket event, form-encoded.
fn ticket() -> String {
    thulium::event::examples::event("TICKET_CREATED", &[])
        .unwrap()
        .to_form()
}

fn quick_delivery() -> DeliveryPolicy {
    DeliveryPolicy {
        format: thulium::event::BodyFormat::Form,
        max_attempts: 4,
        initial_backoff: Duration::from_millis(50),
        timeout: Duration::from_secs(2),
        ..DeliveryPolicy::default()
    }
}

async fn mock_with(delivery: DeliveryPolicy) -> MockThulium {
    MockThulium::start_with(MockConfig {
        delivery,
        ..MockConfig::default()
    })
    .await
    .unwrap()
}

fn raw_http() -> reqwest::Client {
    thulium::tls::install_default_provider();
    reqwest::Client::new()
}

#[tokio::test]
async fn create_and_list_through_the_sdk() {
    let mock = MockThulium::start().await.unwrap();
    let client = mock.client_builder().build().unwrap();
    let first = client
        .create_webhook(&NewWebhook::new(
            "https://example.pl",
            [Action::ChatConversationCreated],
        ))
        .await
        .unwrap();
    assert_eq!(first.id, 1);
    assert_eq!(first.http_auth_user, "");
    assert!(first.http_auth_password.is_empty());
    let second = client
        .create_webhook(
            &NewWebhook::new(
                "https://example.com/hook",
                ["CALL_ANSWERED", "TICKET_CREATED"],
            )
            .with_auth("hook", "pw"),
        )
        .await
        .unwrap();
    assert_eq!(second.id, 2);
    assert_eq!(
        second.actions,
        vec![Action::from("CALL_ANSWERED"), Action::TicketCreated]
    );
    assert_eq!(second.http_auth_password.expose(), "pw");
    assert_eq!(client.list_webhooks().await.unwrap(), vec![first, second]);
}

#[tokio::test]
async fn the_api_answers_the_vendors_shapes_on_the_wire() {
    let mock = MockThulium::start().await.unwrap();
    let url = format!("{}/api/webhooks", mock.base_url());
    let response = raw_http()
        .post(&url)
        .basic_auth("api_user", Some("api_pass"))
        .header("content-type", "application/json; charset=utf-8")
        // The vendor's own request, with its escaped slashes and an extra field.
        .body(r#"{"actions":["CHAT_CONVERSATION_CREATED"],"subscription_url":"https:\/\/example.pl","colour":"blue"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"id": 1, "actions": ["CHAT_CONVERSATION_CREATED"], "subscription_url": "https://example.pl",
               "http_auth_user": "", "http_auth_password": ""})
    );
    let list: Value = raw_http()
        .get(&url)
        .basic_auth("api_user", Some("api_pass"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(list.is_array(), "a bare array: {list}");
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn wrong_credentials_are_a_typed_error_in_english_and_polish() {
    let mock = MockThulium::start().await.unwrap();
    for (language, message) in [
        (
            Language::English,
            "Unauthorized: wrong API user or password",
        ),
        (
            Language::Polish,
            "Brak autoryzacji: nieprawidłowy użytkownik API lub hasło",
        ),
    ] {
        let client = thulium::Client::builder()
            .base_url(mock.base_url())
            .credentials("api_user", "not-the-password-42")
            .language(language)
            .build()
            .unwrap();
        let err = client.list_webhooks().await.unwrap_err();
        match &err {
            Error::Unauthorized {
                status: 401,
                request_id: Some(id),
                errors,
                ..
            } => {
                assert_eq!(id.len(), 13);
                assert_eq!(errors.len(), 1);
                assert_eq!(errors[0].code, Some(1001));
                assert_eq!(errors[0].message, message);
            }
            other => panic!("expected Unauthorized, got {other:?}"),
        }
        assert!(
            !format!("{err} {err:?}").contains("not-the-password-42"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn a_request_the_fake_refuses_is_a_typed_api_error_with_its_code_and_message() {
    // The SDK accepts this URL (valid, absolute); the fake refuses the body's size.
    let mock = MockThulium::start_with(MockConfig {
        body_limit: 1024,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let long_url = format!("https://example.pl/{}", "a".repeat(2000));
    for (language, message) in [
        (Language::English, "Request body is larger than 1024 bytes"),
        (Language::Polish, "Treść żądania przekracza 1024 bajtów"),
    ] {
        let client = mock.client_builder().language(language).build().unwrap();
        let err = client
            .create_webhook(&NewWebhook::new(&long_url, [Action::TicketCreated]))
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(413));
        assert!(matches!(err, Error::Api { .. }), "{err:?}");
        let messages = err.api_messages();
        assert_eq!(
            (messages[0].code, messages[0].message.as_str()),
            (Some(1005), message)
        );
        assert!(err.request_id().is_some());
    }
    assert!(mock.subscriptions().is_empty());
}

async fn post_raw(mock: &MockThulium, content_type: &str, lang: &str, body: &str) -> (u16, Value) {
    let response = raw_http()
        .post(format!("{}/api/webhooks", mock.base_url()))
        .basic_auth("api_user", Some("api_pass"))
        .header("content-type", content_type)
        .header("accept-language", lang)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (
        status,
        response
            .json()
            .await
            .expect("an error body in Thulium's shape"),
    )
}

fn codes_and_messages(body: &Value) -> Vec<(i64, String)> {
    assert!(body["request_id"].is_string(), "{body}");
    body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["code"].as_i64().unwrap(),
                e["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn several_problems_are_reported_at_once_in_english_or_polish() {
    let mock = MockThulium::start().await.unwrap();
    let body = r#"{"subscription_url":"not a url","http_auth_user":5}"#;
    let (status, en) = post_raw(&mock, "application/json", "en", body).await;
    assert_eq!(status, 400);
    assert_eq!(
        codes_and_messages(&en),
        vec![
            (2001, "Field actions is required".to_string()),
            (
                2004,
                "Field subscription_url must be an absolute http or https URL".to_string()
            ),
            (2005, "Field http_auth_user must be a string".to_string()),
        ]
    );
    let (_, pl) = post_raw(&mock, "application/json", "pl-PL,pl;q=0.9,en;q=0.5", body).await;
    assert_eq!(
        codes_and_messages(&pl),
        vec![
            (2001, "Pole actions jest wymagane".to_string()),
            (
                2004,
                "Pole subscription_url musi być bezwzględnym adresem URL http lub https"
                    .to_string()
            ),
            (2005, "Pole http_auth_user musi być tekstem".to_string()),
        ]
    );
    let (status, body) = post_raw(
        &mock,
        "application/json",
        "en",
        r#"{"actions":[],"subscription_url":"https://e.pl"}"#,
    )
    .await;
    assert_eq!((status, codes_and_messages(&body)[0].0), (400, 2002));
    assert!(mock.subscriptions().is_empty());
}

#[tokio::test]
async fn malformed_requests_get_error_bodies_never_a_500() {
    let mock = MockThulium::start_with(MockConfig {
        body_limit: 512,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let cases: Vec<(&str, String, u16, i64)> = vec![
        ("application/json", "{\"actions\":".into(), 400, 1006),
        ("application/json", "[1,2,3]".into(), 400, 1007),
        (
            "text/plain",
            r#"{"actions":["A"],"subscription_url":"https://e.pl"}"#.into(),
            415,
            1004,
        ),
        (
            "application/x-www-form-urlencoded",
            "actions=A".into(),
            415,
            1004,
        ),
        (
            "application/json",
            format!("{{\"pad\":\"{}\"}}", "x".repeat(1000)),
            413,
            1005,
        ),
        ("application/json", "\u{0}\u{1}garbage".into(), 400, 1006),
    ];
    for (content_type, body, status, code) in cases {
        let (got_status, answer) = post_raw(&mock, content_type, "en", &body).await;
        assert_eq!(
            (got_status, codes_and_messages(&answer)[0].0),
            (status, code),
            "{content_type} {body:.40}"
        );
    }
    let base = mock.base_url();
    for (method, path, status, code) in [
        (reqwest::Method::DELETE, "/api/webhooks", 405, 1003),
        (reqwest::Method::PUT, "/api/webhooks", 405, 1003),
        (reqwest::Method::GET, "/api/webhooks/1", 404, 1002),
        (reqwest::Method::GET, "/", 404, 1002),
    ] {
        let response = raw_http()
            .request(method.clone(), format!("{base}{path}"))
            .basic_auth("api_user", Some("api_pass"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{method} {path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(codes_and_messages(&body)[0].0, code);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_creates_get_a_thousand_distinct_ids() {
    let mock = MockThulium::start().await.unwrap();
    let client = mock.client_builder().build().unwrap();
    let mut tasks = Vec::new();
    for task in 0..32 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            // 1,000 creates over 32 clients: 8 clients do 32, 24 do 31.
            let count = if task < 8 { 32 } else { 31 };
            for i in 0..count {
                let url = format!("https://example.pl/{task}/{i}");
                let created = client
                    .create_webhook(&NewWebhook::new(url, [Action::TicketCreated]))
                    .await
                    .unwrap();
                ids.push(created.id);
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.unwrap());
    }
    ids.sort_unstable();
    assert_eq!(ids, (1..=1000).collect::<Vec<i64>>());
    let listed = client.list_webhooks().await.unwrap();
    assert_eq!(listed.len(), 1000);
    let mut urls: Vec<_> = listed.iter().map(|w| w.subscription_url.clone()).collect();
    urls.sort();
    urls.dedup();
    assert_eq!(urls.len(), 1000);
}

/// A receiver on loopback that fails the first `failures` deliveries with 500.
async fn flaky_receiver(
    failures: usize,
) -> (
    String,
    Arc<AtomicUsize>,
    mpsc::UnboundedReceiver<(Event, ())>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let (taken, taken_rx) = mpsc::unbounded_channel();
    let counter = Arc::clone(&calls);
    let app = Receiver::with_basic_auth("hook", "hook-pw")
        .unwrap()
        .router("/hook", move |event: Event| {
            let counter = Arc::clone(&counter);
            let taken = taken.clone();
            async move {
                if counter.fetch_add(1, Ordering::SeqCst) < failures {
                    return Err("not yet");
                }
                taken.send((event, ())).map_err(|_| "closed")
            }
        });
    let addr = serve(app).await;
    (format!("http://{addr}/hook"), calls, taken_rx)
}

#[tokio::test]
async fn a_flaky_receiver_gets_the_event_once_after_three_attempts() {
    let mock = mock_with(quick_delivery()).await;
    let (hook, calls, mut taken) = flaky_receiver(2).await;
    let client = mock.client_builder().build().unwrap();
    client
        .create_webhook(
            &NewWebhook::new(&hook, [Action::TicketCreated]).with_auth("hook", "hook-pw"),
        )
        .await
        .unwrap();

    let event = Event::from_form(ticket().as_bytes()).unwrap();
    let ids = mock.emit(&event);
    assert_eq!(ids.len(), 1);
    let delivery = mock
        .wait_for_delivery(ids[0], Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(delivery.state, DeliveryState::Delivered);
    let outcomes: Vec<_> = delivery
        .attempts
        .iter()
        .map(|a| a.outcome.clone())
        .collect();
    assert_eq!(
        outcomes,
        vec![
            AttemptOutcome::Status(500),
            AttemptOutcome::Status(500),
            AttemptOutcome::Status(200)
        ]
    );
    assert_eq!(
        delivery
            .attempts
            .iter()
            .map(|a| a.attempt)
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(
        delivery
            .attempts
            .windows(2)
            .all(|w| w[0].at_unix_ms <= w[1].at_unix_ms)
    );
    assert_eq!(taken.recv().await.unwrap().0, event);
    assert!(
        taken.try_recv().is_err(),
        "handed to the application exactly once"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_dead_url_is_given_up_while_the_api_keeps_answering() {
    let mock = mock_with(DeliveryPolicy {
        initial_backoff: Duration::from_millis(300),
        ..quick_delivery()
    })
    .await;
    let down = thulium_mock::RefusingAddress::bind().unwrap();
    let dead = down.url("/gone");
    let client = mock
        .client_builder()
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    client
        .create_webhook(&NewWebhook::new(&dead, [Action::TicketCreated]))
        .await
        .unwrap();
    let ids = mock.emit(&Event::from_form(ticket().as_bytes()).unwrap());

    // While the delivery is still retrying, the API answers immediately.
    let started = Instant::now();
    assert_eq!(client.list_webhooks().await.unwrap().len(), 1);
    let answered_in = started.elapsed();
    assert_eq!(
        mock.delivery(ids[0]).unwrap().state,
        DeliveryState::Pending,
        "answered in {answered_in:?}"
    );

    let delivery = mock
        .wait_for_delivery(ids[0], Duration::from_secs(15))
        .await
        .unwrap();
    assert_eq!(delivery.state, DeliveryState::GaveUp);
    assert_eq!(delivery.attempts.len(), 4);
    assert!(delivery.attempts.iter().all(|a| matches!(&a.outcome, AttemptOutcome::Error(e) if e.to_lowercase().contains("refused"))), "{delivery:?}");
}

#[tokio::test]
async fn events_go_only_to_subscribers_of_their_action_with_their_auth_and_format() {
    let mock = mock_with(DeliveryPolicy {
        format: thulium::event::BodyFormat::Json,
        ..quick_delivery()
    })
    .await;
    let (hook, _, mut taken) = flaky_receiver(0).await;
    let client = mock.client_builder().build().unwrap();
    client
        .create_webhook(
            &NewWebhook::new(&hook, [Action::TicketCreated]).with_auth("hook", "hook-pw"),
        )
        .await
        .unwrap();
    // Subscribed to the action, but without the receiver's credentials: refused.
    client
        .create_webhook(&NewWebhook::new(&hook, [Action::TicketCreated]))
        .await
        .unwrap();

    assert!(
        mock.emit(
            &Event::from_form(
                b"action=CUSTOMER_CREATED&customer_id=1&date=2014-11-17+12%3A59%3A32"
            )
            .unwrap()
        )
        .is_empty()
    );
    let ids = mock.emit(&Event::from_form(ticket().as_bytes()).unwrap());
    assert_eq!(ids.len(), 2);
    assert!(mock.wait_until_settled(Duration::from_secs(10)).await);
    let states: Vec<_> = ids.iter().map(|id| mock.delivery(*id).unwrap()).collect();
    assert_eq!(states[0].state, DeliveryState::Delivered);
    assert_eq!(states[1].state, DeliveryState::GaveUp);
    assert!(
        states[1]
            .attempts
            .iter()
            .all(|a| a.outcome == AttemptOutcome::Status(401))
    );
    let (event, ()) = taken.recv().await.unwrap();
    assert!(matches!(event, Event::TicketCreated(t) if t.ticket_id == 12));
}

#[tokio::test]
async fn the_control_endpoint_emits_and_reports_deliveries() {
    let mock = mock_with(quick_delivery()).await;
    let (hook, _, mut taken) = flaky_receiver(0).await;
    mock.client_builder()
        .build()
        .unwrap()
        .create_webhook(&NewWebhook::new(&hook, ["CALL_ANSWERED"]).with_auth("hook", "hook-pw"))
        .await
        .unwrap();
    let http = raw_http();
    let answer: Value = http
        .post(format!("{}/_mock/events", mock.base_url()))
        .basic_auth("api_user", Some("api_pass"))
        .header("content-type", "application/json")
        .body(r#"{"action":"CALL_ANSWERED","connection_id":"1.2","agent_login":"jkowalski"}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        answer,
        json!({"action": "CALL_ANSWERED", "deliveries": [1]})
    );
    let (event, ()) = taken.recv().await.unwrap();
    assert_eq!(event.action(), Action::from("CALL_ANSWERED"));
    assert_eq!(event.extra()["connection_id"], "1.2");

    assert!(mock.wait_until_settled(Duration::from_secs(5)).await);
    let deliveries: Value = http
        .get(format!("{}/_mock/deliveries", mock.base_url()))
        .basic_auth("api_user", Some("api_pass"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(deliveries[0]["state"], "delivered");
    assert_eq!(
        deliveries[0]["attempts"][0]["outcome"],
        json!({"status": 200})
    );

    let refused = http
        .post(format!("{}/_mock/events", mock.base_url()))
        .basic_auth("api_user", Some("api_pass"))
        .body("action=TICKET_CREATED&ticket_id=oops")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(codes_and_messages(&body)[0].0, 3001);
}

#[tokio::test]
async fn a_subscription_to_the_fake_itself_is_refused_and_a_looping_event_too() {
    let mock = mock_with(quick_delivery()).await;
    let port = mock.addr().port();
    for url in [
        format!("http://127.0.0.1:{port}/_mock/events"),
        format!("http://localhost:{port}/_mock/events"),
        format!("http://127.0.0.2:{port}/api/webhooks"),
    ] {
        let (status, answer) = post_raw(
            &mock,
            "application/json",
            "en",
            &json!({"actions": ["TICKET_CREATED"], "subscription_url": url}).to_string(),
        )
        .await;
        assert_eq!(
            (status, codes_and_messages(&answer)[0].0),
            (400, 2006),
            "{url}"
        );
    }
    assert!(mock.subscriptions().is_empty());

    // An event that carries the fake's own delivery mark is not emitted again.
    let response = raw_http()
        .post(format!("{}/_mock/events", mock.base_url()))
        .basic_auth("api_user", Some("api_pass"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header(thulium_mock::DELIVERY_HEADER, "1")
        .body(ticket())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(codes_and_messages(&body)[0].0, 3002);
    assert!(mock.deliveries().is_empty());
}

#[tokio::test]
async fn the_delivery_log_keeps_only_the_newest_deliveries() {
    let mock = mock_with(DeliveryPolicy {
        log_capacity: 5,
        max_attempts: 1,
        ..quick_delivery()
    })
    .await;
    mock.client_builder()
        .build()
        .unwrap()
        .create_webhook(&NewWebhook::new(
            "http://127.0.0.1:9/dead",
            [Action::TicketCreated],
        ))
        .await
        .unwrap();
    let event = Event::parse(ticket().as_bytes(), None).unwrap();
    let mut last = 0;
    for _ in 0..40 {
        last = *mock.emit(&event).last().unwrap();
    }
    assert!(mock.wait_until_settled(Duration::from_secs(20)).await);
    let kept: Vec<u64> = mock.deliveries().iter().map(|d| d.id).collect();
    assert_eq!(kept.len(), 5, "{kept:?}");
    assert_eq!(*kept.last().unwrap(), last);
}
