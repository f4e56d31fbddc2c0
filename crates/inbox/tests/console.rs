//! The console's pages and actions over real HTTP, with JavaScript off (as a plain
//! HTTP client sees them): every page, every bad input, CSRF, credentials, escaping.

use std::time::Duration;

use thulium::Password;
use thulium::event::Event;
use thulium_inbox::conformance::ticket;
use thulium_inbox::console::{self, ConsoleAuth};
use thulium_inbox::{ClaimRequest, EmbeddedStore, NewEvent, Outcome, State, Store};

async fn serve(store: EmbeddedStore, auth: Option<ConsoleAuth>) -> String {
    thulium::tls::install_default_provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(thulium::server::serve(
        listener,
        console::router(store, auth),
        Default::default(),
        std::future::pending(),
    ));
    url
}

/// A store with two done events, two dead ones and one whose body tries to inject HTML.
async fn seeded() -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("inbox.redb")).unwrap();
    for ticket_id in 1..=4 {
        store.put(ticket(ticket_id, 0)).await.unwrap();
    }
    let claimed = store
        .claim(ClaimRequest::now(4, Duration::from_secs(60)))
        .await
        .unwrap();
    for (i, claim) in claimed.into_iter().enumerate() {
        let attempt =
            |outcome| thulium_inbox::Attempt::ended_now(1, thulium_inbox::model::now_ms(), outcome);
        if i < 2 {
            store
                .ack(claim.claim, attempt(Outcome::Delivered))
                .await
                .unwrap();
        } else {
            store
                .dead_letter(
                    claim.claim,
                    attempt(Outcome::Failed("<b>database</b> is down".into())),
                )
                .await
                .unwrap();
        }
    }
    let hostile = "action=CUSTOM_ACTION&note=%3Cscript%3Ealert(1)%3C%2Fscript%3E";
    let event = Event::parse(hostile.as_bytes(), None).unwrap();
    store
        .put(NewEvent::from_event(&event, hostile, None))
        .await
        .unwrap();
    (dir, store)
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    let csp = response.headers().get("content-security-policy").is_some();
    let text = response.text().await.unwrap();
    assert!(csp || status == 404, "no CSP on {url}");
    (status, text)
}

fn csrf(page: &str) -> String {
    let start = page
        .find(r#"name="csrf" value=""#)
        .expect("a form with a CSRF token")
        + 19;
    page[start..start + 32].to_string()
}

/// A form body.
fn form(pairs: &[(&str, &str)]) -> String {
    let mut body = form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        body.append_pair(key, value);
    }
    body.finish()
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_renders_on_the_server_and_escapes_what_events_carry() {
    thulium::tls::install_default_provider();
    let (_dir, store) = seeded().await;
    let url = serve(store, None).await;

    let (status, overview) = get(&format!("{url}/")).await;
    assert_eq!(status, 200);
    assert!(overview.contains(r#"data-stat="dead">2<"#), "{overview}");
    assert!(overview.contains("2 dead event(s)"));

    let (status, all) = get(&format!("{url}/events")).await;
    assert_eq!(status, 200);
    assert_eq!(all.matches("<tr data-id=").count(), 5);
    assert!(!all.contains("<b>database</b>") && all.contains("&lt;b&gt;database&lt;/b&gt;"));

    let (_, dead) = get(&format!("{url}/events?state=dead")).await;
    assert_eq!(dead.matches("<tr data-id=").count(), 2);
    let (_, by_action) = get(&format!("{url}/events?action=CUSTOM_ACTION")).await;
    assert_eq!(by_action.matches("<tr data-id=").count(), 1);
    let (_, by_text) = get(&format!("{url}/events?q=ticket_id%3D3%26")).await;
    assert_eq!(by_text.matches("<tr data-id=").count(), 1);
    let (_, paged) = get(&format!("{url}/events?limit=2")).await;
    assert_eq!(paged.matches("<tr data-id=").count(), 2);
    assert!(paged.contains("before=4"), "the next page link: {paged}");
    let (_, next) = get(&format!("{url}/events?limit=2&before=4")).await;
    assert_eq!(next.matches("<tr data-id=").count(), 2);
    let (_, ranged) = get(&format!("{url}/events?from=2000-01-01T00:00&to=2000-01-02")).await;
    assert!(ranged.contains("No event matches."));

    let (status, hostile) = get(&format!("{url}/events/5")).await;
    assert_eq!(status, 200);
    assert!(
        !hostile.contains("<script>alert"),
        "unescaped payload: {hostile}"
    );
    assert!(hostile.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let (_, dead_event) = get(&format!("{url}/events/3")).await;
    assert!(dead_event.contains(r#"class="state dead""#) && dead_event.contains("Replay"));
    assert!(dead_event.contains("failed"));

    let (status, css) = get(&format!("{url}/assets/console.css")).await;
    assert!(status == 200 && css.contains("prefers-color-scheme: dark"));
    let (status, stats) = get(&format!("{url}/api/stats")).await;
    assert_eq!(status, 200);
    assert!(stats.contains(r#""dead":2"#), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_get_a_page_that_says_what_is_wrong() {
    let (_dir, store) = seeded().await;
    let url = serve(store, None).await;
    for (query, says) in [
        ("state=sleeping", "is not a state"),
        ("from=yesterday", "is not a time"),
        ("from=2026-01-02&to=2026-01-01", "not before its end"),
        ("before=abc", "is not an event id"),
        ("limit=0", "page size"),
        ("limit=99999999999999999999", "page size"),
    ] {
        let (status, page) = get(&format!("{url}/events?{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert!(page.contains(says), "{query}: {page}");
        assert!(
            page.contains("<form class=\"filters\""),
            "the form stays for a correction"
        );
    }
    // A long wrong value is quoted back cut, never whole (the form field keeps it).
    let long = "x".repeat(2_000);
    for field in ["state", "before", "limit"] {
        let (status, page) = get(&format!("{url}/events?{field}={long}")).await;
        assert_eq!(status, 400, "{field}");
        let error = page
            .split("class=\"error\"")
            .nth(1)
            .unwrap_or(&page)
            .split("</p>")
            .next()
            .unwrap_or_default();
        assert!(
            error.len() < 300,
            "{field}: the error echoes the input: {error}"
        );
    }
    let (status, page) = get(&format!("{url}/events/abc")).await;
    assert!(status == 400 && page.contains("is not an event id"));
    let (status, page) = get(&format!("{url}/events/999")).await;
    assert!(
        status == 404 && page.contains("no event 999") || page.contains("There is no event 999")
    );
    let (status, _) = get(&format!("{url}/nowhere")).await;
    assert_eq!(status, 404);
}

/// A browser's session: its id cookie and the CSRF token of a page it was given.
async fn session(url: &str, page: &str) -> (String, String, String) {
    let response = reqwest::get(format!("{url}{page}")).await.unwrap();
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let text = response.text().await.unwrap();
    (cookie, csrf(&text), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_need_the_browsers_own_csrf_token_and_the_same_origin() {
    let (_dir, store) = seeded().await;
    let url = serve(store.clone(), None).await;
    let http = no_redirects();
    let (cookie, token, _) = session(&url, "/events/3").await;
    assert!(cookie.starts_with("thulium_console="), "{cookie}");
    let (other_cookie, other_token, _) = session(&url, "/events/3").await;
    assert_ne!(token, other_token, "each browser has its own token");
    // Pages and JSON carry customer data: nothing may cache them; the assets may.
    for (path, cache) in [
        ("/events/3", "no-store"),
        ("/api/stats", "no-store"),
        ("/assets/console.css", "max-age=3600"),
        ("/assets/favicon.svg", "max-age=3600"),
    ] {
        let response = http.get(format!("{url}{path}")).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        assert_eq!(response.headers()["cache-control"], cache, "{path}");
    }
    let post = |path: &str, cookie: Option<&str>, fields: &[(&str, &str)]| {
        let mut request = http
            .post(format!("{url}{path}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(fields));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request
    };
    let status = |response: reqwest::Response| response.status().as_u16();

    let zeros = "0".repeat(32);
    for (why, request) in [
        (
            "a forged token",
            post("/events/3/replay", Some(&cookie), &[("csrf", &zeros)]),
        ),
        ("no token", post("/events/3/replay", Some(&cookie), &[])),
        (
            "no cookie",
            post("/events/3/replay", None, &[("csrf", &token)]),
        ),
        (
            "another browser's token",
            post("/events/3/replay", Some(&other_cookie), &[("csrf", &token)]),
        ),
        (
            "another origin",
            post("/events/3/replay", Some(&cookie), &[("csrf", &token)])
                .header("origin", "https://evil.example"),
        ),
        (
            "a cross-site fetch",
            post("/events/3/replay", Some(&cookie), &[("csrf", &token)])
                .header("sec-fetch-site", "cross-site"),
        ),
        (
            // The console's own host under a scheme that is not the web's.
            "another scheme",
            post("/events/3/replay", Some(&cookie), &[("csrf", &token)]).header(
                "origin",
                format!("evil://{}", url.trim_start_matches("http://")),
            ),
        ),
    ] {
        assert_eq!(status(request.send().await.unwrap()), 403, "{why}");
    }
    let state = |id| {
        let store = store.clone();
        async move {
            store
                .get(thulium_inbox::EventId(id))
                .await
                .unwrap()
                .unwrap()
                .state
        }
    };
    assert_eq!(state(3).await, State::Dead);

    // Done: a redirect (POST, then GET) to a page that says what was done, once.
    let replayed = post("/events/3/replay", Some(&cookie), &[("csrf", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status().as_u16(), 303);
    assert_eq!(replayed.headers()["location"], "/events/3");
    let notice = replayed.headers()["set-cookie"].to_str().unwrap();
    let notice = notice.split(';').next().unwrap().to_string();
    assert_eq!(state(3).await, State::Pending);
    let shown = http
        .get(format!("{url}/events/3"))
        .header("cookie", format!("{cookie}; {notice}"))
        .send()
        .await
        .unwrap();
    let cleared = shown.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let shown = shown.text().await.unwrap();
    assert!(
        shown.contains("Replayed: the event is pending again."),
        "{shown}"
    );
    let again = http
        .get(format!("{url}/events/3"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!again.contains("Replayed:"), "a reload repeats the notice");
    let bogus = http
        .get(format!("{url}/events/3?done=bogus"))
        .header("cookie", format!("{cookie}; thulium_console_notice=bogus"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!bogus.contains("Set aside:") && !bogus.contains("Replayed:"));

    let aside = post("/events/3/set-aside", Some(&cookie), &[("csrf", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(aside.status().as_u16(), 303);
    assert_eq!(state(3).await, State::Dead);
    let done = post("/events/1/set-aside", Some(&cookie), &[("csrf", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(
        done.status().as_u16(),
        409,
        "a done event cannot be set aside"
    );

    // Replay all dead asks first, and does nothing without the confirmation.
    let confirm = http
        .get(format!("{url}/replay-dead"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        confirm.contains("Replay <strong>2</strong> dead event(s)?"),
        "{confirm}"
    );
    assert_eq!(csrf(&confirm), token);
    let unconfirmed = post("/replay-dead", Some(&cookie), &[("csrf", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(unconfirmed.status().as_u16(), 303);
    assert_eq!(store.stats().await.unwrap().dead, 2);
    let confirmed = post(
        "/replay-dead",
        Some(&cookie),
        &[("csrf", &token), ("confirm", "yes")],
    )
    .send()
    .await
    .unwrap();
    assert_eq!(
        confirmed.status().as_u16(),
        303,
        "redirected after the POST"
    );
    assert_eq!(confirmed.headers()["location"], "/events?state=pending");
    let notice = confirmed.headers()["set-cookie"].to_str().unwrap();
    assert!(
        notice.starts_with("thulium_console_notice=replayed-all-2"),
        "{notice}"
    );
    assert_eq!(store.stats().await.unwrap().dead, 0);
}

/// With routes, the overview lists each (counts, links to its events, whether it
/// hands over) with a Pause or Resume button: a POST with the browser's token that
/// stores the pause, refused without it; the list filters by route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_are_listed_and_paused_and_resumed_from_the_overview() {
    let (_dir, store) = seeded().await;
    let crm = thulium_inbox::RouteName::new("crm").unwrap();
    store
        .put(ticket(900, 0).for_routes(vec![crm.clone()]))
        .await
        .unwrap();
    store
        .put(ticket(901, 0).for_routes(Vec::new()))
        .await
        .unwrap();
    let url = serve(store.clone(), None).await;
    let http = no_redirects();
    let (cookie, token, overview) = session(&url, "/").await;
    for shown in [
        r#"<tr data-route="crm">"#,
        r#"<tr data-route="unrouted">"#,
        r#"action="/routes/crm/pause""#,
        r#"href="/events?route=crm&amp;state=pending""#,
    ] {
        assert!(overview.contains(shown), "{shown} missing from {overview}");
    }
    assert!(!overview.contains(r#"action="/routes/unrouted/pause""#));
    let post = |path: &str, token: &str| {
        http.post(format!("{url}{path}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", &cookie)
            .body(form(&[("csrf", token)]))
            .send()
    };
    let forged = post("/routes/crm/pause", &"0".repeat(32)).await.unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    assert_eq!(store.pause_of(crm.clone()).await.unwrap(), None);
    let paused = post("/routes/crm/pause", &token).await.unwrap();
    assert_eq!(paused.status().as_u16(), 303);
    assert!(
        paused.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("thulium_console_notice=paused")
    );
    let pause = store.pause_of(crm.clone()).await.unwrap().expect("paused");
    assert_eq!(pause.reason, "paused in the console");
    let (status, overview) = get(&format!("{url}/")).await;
    assert_eq!(status, 200);
    assert!(
        overview.contains(r#"action="/routes/crm/resume""#),
        "{overview}"
    );
    assert!(overview.contains("paused in the console"), "{overview}");
    let bad = post("/routes/Not%20A%20Route/pause", &token).await.unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let resumed = post("/routes/crm/resume", &token).await.unwrap();
    assert_eq!(resumed.status().as_u16(), 303);
    assert_eq!(store.pause_of(crm).await.unwrap(), None);
    let (_, listed) = get(&format!("{url}/events?route=crm")).await;
    assert_eq!(listed.matches("<tr data-id=").count(), 1, "{listed}");
    let (status, _) = get(&format!("{url}/events?route=Bad!")).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_guard_every_page_and_never_show() {
    let (_dir, store) = seeded().await;
    let auth = ConsoleAuth::basic("operator", Password::new("console-secret-9")).unwrap();
    let url = serve(store, Some(auth)).await;
    let http = reqwest::Client::new();
    for path in [
        "/",
        "/events",
        "/events/1",
        "/api/stats",
        "/assets/console.js",
        "/replay-dead",
    ] {
        let anonymous = http.get(format!("{url}{path}")).send().await.unwrap();
        assert_eq!(anonymous.status().as_u16(), 401, "{path}");
        assert!(anonymous.headers().contains_key("www-authenticate"));
        let wrong = http
            .get(format!("{url}{path}"))
            .basic_auth("operator", Some("nope"))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status().as_u16(), 401, "{path}");
        let right = http
            .get(format!("{url}{path}"))
            .basic_auth("operator", Some("console-secret-9"))
            .send()
            .await
            .unwrap();
        assert_eq!(right.status().as_u16(), 200, "{path}");
        assert!(!right.text().await.unwrap().contains("console-secret-9"));
    }
}

/// A right-to-left override cannot make one action read as another, and NUL or ESC
/// in a value reach no page raw: what is shown is what was received, marked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_and_bidi_characters_are_shown_not_obeyed() {
    let (_dir, store) = seeded().await;
    let body = "action=%E2%80%AEDETAERC_TEKCIT&note=a%00b%1B%5B31m";
    let event = Event::parse(body.as_bytes(), None).unwrap();
    let id = store
        .put(NewEvent::from_event(&event, body, None))
        .await
        .unwrap()
        .id();
    let url = serve(store, None).await;
    for page in [format!("{url}/events"), format!("{url}/events/{id}")] {
        let (status, html) = get(&page).await;
        assert_eq!(status, 200, "{page}");
        assert!(
            html.contains("\\u{202e}DETAERC_TEKCIT"),
            "{page}: the override is not shown"
        );
        for raw in ['\u{202e}', '\0', '\u{1b}'] {
            assert!(!html.contains(raw), "{page}: {raw:?} reached the page raw");
        }
    }
    let (_, html) = get(&format!("{url}/events/{id}")).await;
    assert!(
        html.contains("a\\u{0}b\\u{1b}[31m"),
        "the note's bytes are shown marked"
    );
}

/// One 2,000-character action is cut in the list (whole on its own page), so that the
/// other columns stay on screen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_value_is_cut_in_the_list() {
    let (_dir, store) = seeded().await;
    let action = "LONG_".repeat(400);
    let body = format!("action={action}&ticket_id=1");
    let event = Event::parse(body.as_bytes(), None).unwrap();
    let id = store
        .put(NewEvent::from_event(&event, body, None))
        .await
        .unwrap()
        .id();
    let url = serve(store, None).await;
    let (_, list) = get(&format!("{url}/events")).await;
    assert!(
        !list.contains(&action),
        "the list shows the whole 2,000 characters"
    );
    assert!(list.contains(&action[..50]));
    let (_, page) = get(&format!("{url}/events/{id}")).await;
    assert!(page.contains(&action), "the event's page shows it whole");
}

/// Guessing the password: after 10 wrong tries from one address in a minute every
/// request from it gets `429` with `Retry-After`, the right password included, until
/// the minute ends; asking without credentials (as a browser does first) does not
/// count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_are_throttled_per_address() {
    let (_dir, store) = seeded().await;
    let auth = ConsoleAuth::basic("operator", Password::new("console-secret-9")).unwrap();
    let url = serve(store, Some(auth)).await;
    let http = reqwest::Client::new();
    for _ in 0..20 {
        let anonymous = http.get(format!("{url}/")).send().await.unwrap();
        assert_eq!(anonymous.status().as_u16(), 401);
    }
    let mut statuses = Vec::new();
    for guess in 0..30 {
        let answer = http
            .get(format!("{url}/"))
            .basic_auth("operator", Some(format!("guess-{guess}")))
            .send()
            .await
            .unwrap();
        statuses.push(answer.status().as_u16());
    }
    assert_eq!(statuses[..10], [401; 10]);
    assert_eq!(statuses[10..], [429; 20]);
    let right = http
        .get(format!("{url}/"))
        .basic_auth("operator", Some("console-secret-9"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        right.status().as_u16(),
        429,
        "held up until the minute ends"
    );
    let wait: u64 = right.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
}

/// DNS rebinding: a page on another name that resolves to the console's address
/// gets `421` on every route (pages, JSON, actions); the address itself,
/// `localhost` on loopback and the names configured are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_the_console_does_not_answer_to_is_refused() {
    let (_dir, store) = seeded().await;
    thulium::tls::install_default_provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let options = console::ConsoleOptions::default().host("console.example.com");
    tokio::spawn(thulium::server::serve(
        listener,
        console::router_with(store, options),
        Default::default(),
        std::future::pending(),
    ));
    let http = no_redirects();
    let port = addr.port();
    for (host, status) in [
        (format!("evil.example:{port}"), 421),
        (format!("127.0.0.2:{port}"), 421),
        (format!("localhost:{}", port + 1), 421),
        (format!("127.0.0.1:{port}"), 200),
        (format!("localhost:{port}"), 200),
        (format!("LOCALHOST:{port}"), 200),
        ("console.example.com".to_string(), 200),
        ("console.example.com:443".to_string(), 200),
    ] {
        for path in ["/events/1", "/api/stats"] {
            let answer = http
                .get(format!("http://{addr}{path}"))
                .header("host", &host)
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status().as_u16(), status, "{host}{path}");
            if status == 421 {
                assert!(!answer.text().await.unwrap().contains("csrf"), "{host}");
            }
        }
    }
    // The forged action of the issue: refused before its token is even looked at.
    let page = http
        .get(format!("http://{addr}/events/1"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let forged = http
        .post(format!("http://{addr}/events/1/set-aside"))
        .header("host", format!("evil.example:{port}"))
        .header("origin", format!("http://evil.example:{port}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", &csrf(&page)), ("reason", "rebound")]))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 421);
}
