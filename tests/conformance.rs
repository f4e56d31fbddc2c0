//! Every answer the fake Thulium gives, checked against the spec's schemas with a
//! JSON Schema validator: a drift between the fake and `openapi/thulium-webhooks.yaml`
//! fails `cargo test`, not only the schemathesis step of CI.

use reqwest::Method;
use serde_json::{Value, json};
use thulium_mock::{MockConfig, MockThulium};

/// The spec as JSON, for the validator.
fn spec_json() -> Value {
    let path = thulium_tests::spec_path();
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

/// The schema of the answer `method /api/webhooks` documents for `status` (the
/// exact status, else `4XX`/`5XX`), resolved through `components/responses`, with
/// the spec's components beside it so that `$ref`s resolve.
fn answer_schema(spec: &Value, method: &str, status: u16) -> jsonschema::Validator {
    let responses = &spec["paths"]["/api/webhooks"][method]["responses"];
    let range = format!("{}XX", status / 100);
    let mut response = responses
        .get(status.to_string())
        .or_else(|| responses.get(&range))
        .unwrap_or_else(|| panic!("{method} documents no answer for {status}"))
        .clone();
    if let Some(reference) = response.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap();
        response = spec["components"]["responses"][name].clone();
    }
    let mut schema = response["content"]["application/json"]["schema"].clone();
    schema["components"] = spec["components"].clone();
    jsonschema::validator_for(&schema).unwrap()
}

/// Sends one request and checks the answer against the spec; returns its status.
async fn check(
    spec: &Value,
    mock: &MockThulium,
    method: Method,
    path: &str,
    (user, password): (&str, &str),
    body: Option<(&str, String)>,
) -> u16 {
    let client = reqwest::Client::new();
    let mut request = client
        .request(method.clone(), format!("{}{path}", mock.base_url()))
        .basic_auth(user, Some(password));
    if let Some((content_type, body)) = &body {
        request = request
            .header("content-type", *content_type)
            .body(body.clone());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let answer: Value = response.json().await.unwrap_or_else(|e| {
        panic!("{method} {path}: HTTP {status} with a body that is not JSON: {e}")
    });
    assert_eq!(
        content_type.as_deref(),
        Some("application/json"),
        "{method} {path}"
    );
    // Paths and methods the spec does not have still answer Thulium's error body.
    let documented = path == "/api/webhooks" && matches!(method, Method::GET | Method::POST);
    let operation = if documented {
        method.as_str().to_ascii_lowercase()
    } else {
        "get".into()
    };
    let status_for_schema = if documented { status } else { 400 };
    let validator = answer_schema(spec, &operation, status_for_schema);
    let errors: Vec<String> = validator
        .iter_errors(&answer)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} -> {status}: {answer}\ndoes not match the spec: {errors:?}"
    );
    status
}

#[tokio::test]
async fn every_answer_of_the_fake_matches_the_spec() {
    thulium::tls::install_default_provider();
    let spec = spec_json();
    let mock = MockThulium::start_with(MockConfig {
        body_limit: 1024,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let good = ("api_user", "api_pass");
    let json_body = |value: Value| Some(("application/json", value.to_string()));

    let creates = [
        (
            json!({"actions": ["TICKET_CREATED"], "subscription_url": "https://example.pl"}),
            200,
        ),
        (
            json!({"actions": ["AGENT_RINGING", "CALL_QUEUE_ENTERED"], "subscription_url": "http://127.0.0.1:9/h?x=1",
                   "http_auth_user": "thulium", "http_auth_password": "s3cret"}),
            200,
        ),
        (
            json!({"actions": ["TICKET_CREATED"], "subscription_url": "https://e.pl", "http_auth_user": ""}),
            200,
        ),
        (
            json!({"actions": [], "subscription_url": "https://e.pl"}),
            400,
        ),
        (
            json!({"actions": [" "], "subscription_url": "https://e.pl"}),
            400,
        ),
        (
            json!({"actions": ["A"], "subscription_url": "not a url"}),
            400,
        ),
        (
            json!({"actions": ["A"], "subscription_url": "ftp://e.pl"}),
            400,
        ),
        (
            json!({"actions": ["A"], "subscription_url": "https://e.pl", "http_auth_user": null}),
            400,
        ),
        (
            json!({"actions": ["A"], "subscription_url": "https://e.pl", "http_auth_password": 5}),
            400,
        ),
        (json!({}), 400),
        (json!([1, 2]), 400),
        (
            json!({"actions": ["A"], "subscription_url": format!("{}/_mock/events", mock.base_url())}),
            400,
        ),
        (json!({"pad": "x".repeat(2000)}), 413),
    ];
    for (body, expected) in creates {
        let status = check(
            &spec,
            &mock,
            Method::POST,
            "/api/webhooks",
            good,
            json_body(body.clone()),
        )
        .await;
        assert_eq!(status, expected, "{body}");
    }
    for (content_type, body, expected) in [
        ("text/plain", "{}".to_string(), 415),
        ("application/json", "{\"actions\":".to_string(), 400),
    ] {
        let status = check(
            &spec,
            &mock,
            Method::POST,
            "/api/webhooks",
            good,
            Some((content_type, body)),
        )
        .await;
        assert_eq!(status, expected);
    }
    assert_eq!(
        check(&spec, &mock, Method::GET, "/api/webhooks", good, None).await,
        200
    );
    assert_eq!(
        check(
            &spec,
            &mock,
            Method::GET,
            "/api/webhooks",
            ("api_user", "wrong"),
            None
        )
        .await,
        401
    );
    assert_eq!(
        check(
            &spec,
            &mock,
            Method::POST,
            "/api/webhooks",
            ("x", "y"),
            json_body(json!({}))
        )
        .await,
        401
    );
    assert_eq!(
        check(&spec, &mock, Method::DELETE, "/api/webhooks", good, None).await,
        405
    );
    assert_eq!(
        check(&spec, &mock, Method::GET, "/api/webhooks/1", good, None).await,
        404
    );
}

/// A validator for one of the spec's component schemas.
fn component(spec: &Value, name: &str) -> jsonschema::Validator {
    let schema = json!({
        "$ref": format!("#/components/schemas/{name}"),
        "components": spec["components"].clone(),
    });
    jsonschema::validator_for(&schema).unwrap()
}

/// URL-like strings built from pieces that sit on every edge of the grammar.
fn url_candidates() -> Vec<String> {
    let schemes = ["http://", "https://", "HTTP://", "ftp://", "http:/", ""];
    let hosts = [
        "example.pl",
        "a",
        "a-b.c",
        "a--b.pl",
        "-a.pl",
        "a-.pl",
        "xn--a.pl",
        "1.2.3.4",
        "255.255.255.255",
        "256.1.1.1",
        "01.2.3.4",
        "1.2.3",
        "a.1",
        "1a.b2",
        "b2.1a",
        "localhost",
        "[::1]",
        "",
        "a..b",
        "a.b.",
        "u:p@a.pl",
        "ą.pl",
        "a_b.pl",
    ];
    let ports = [
        "", ":0", ":80", ":8080", ":65535", ":65536", ":08", ":", ":99999", ":x",
    ];
    let tails = [
        "",
        "/",
        "/thulium",
        "/a/b?c=d&e=f",
        "?x",
        "/a b",
        "/a#frag",
        "/%zz",
        "/ą",
        "/a\n",
        "/~user/(x);y=z",
        "??",
        "/a?b?c",
    ];
    let mut all = Vec::new();
    for scheme in schemes {
        for host in hosts {
            for port in ports {
                for tail in tails {
                    all.push(format!("{scheme}{host}{port}{tail}"));
                }
            }
        }
    }
    all
}

#[test]
fn the_sdk_and_the_spec_agree_on_every_subscription_url_and_action_name() {
    let spec = spec_json();
    let url_schema = component(&spec, "SubscriptionUrl");
    let mut accepted = 0;
    for candidate in url_candidates() {
        let by_spec = url_schema.is_valid(&json!(candidate));
        let by_sdk = thulium::is_subscription_url(&candidate);
        assert_eq!(
            by_spec, by_sdk,
            "{candidate:?}: spec {by_spec}, SDK {by_sdk}"
        );
        if by_sdk {
            accepted += 1;
            // Everything the grammar accepts is a URL the fake and reqwest can use.
            assert!(url::Url::parse(&candidate).is_ok(), "{candidate:?}");
        }
    }
    assert!(accepted > 500, "only {accepted} candidates were valid");

    let action_schema = component(&spec, "WebhookAction");
    for name in [
        "TICKET_CREATED",
        "x",
        "9",
        " ",
        "",
        "___",
        "\u{1c}",
        "ą",
        " A ",
    ] {
        let by_spec = action_schema.is_valid(&json!(name));
        let by_sdk = thulium::Action::from(name).is_valid_name();
        assert_eq!(by_spec, by_sdk, "{name:?}");
    }
}
