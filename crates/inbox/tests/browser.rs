//! The console in a real browser: headless Chromium driven through ChromeDriver
//! (Debian's `chromium` and `chromium-driver`, which `.ci/run` installs when missing).
//! Open the overview, go to the dead letters, open one, replay it, and watch it be
//! delivered by a running dispatcher, at phone width and in dark mode too; a name
//! rebound to the console is refused; hostile values stay in their cells.
//! A screenshot of the page is kept in `target/console-screenshots/` when a step fails.
//!
//! Without ChromeDriver the test says it was not run, unless `CI` or
//! `THULIUM_REQUIRE_BROWSER` is set: then it fails.

use std::process::{Command, Stdio};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use thulium_testkit::process::Guarded;

use fantoccini::{Client, ClientBuilder, Locator};
use thulium::event::Event;
use thulium_inbox::conformance::ticket;
use thulium_inbox::dispatcher::{Delivery, DispatchConfig, Dispatcher, RetrySchedule};
use thulium_inbox::{EmbeddedStore, Store};

/// ChromeDriver and the browsers it started, killed with the test, pass or fail.
struct Driver(#[allow(dead_code)] Guarded);

fn chromedriver() -> Option<(Driver, u16)> {
    let binary = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    match Guarded::spawn(
        Command::new(&binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    ) {
        Ok(child) => Some((Driver(child), port)),
        Err(error) => {
            if std::env::var_os("CI").is_some()
                || std::env::var_os("THULIUM_REQUIRE_BROWSER").is_some()
            {
                panic!(
                    "{binary} is required (CI) but cannot start: {error}; apt-get install chromium chromium-driver"
                );
            }
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "\nNOT RUN: console in a browser: {binary} cannot start ({error}); apt-get install chromium chromium-driver"
            );
            None
        }
    }
}

async fn browser(port: u16, width: u32, dark: bool) -> Client {
    browser_with(port, width, dark, &[]).await
}

async fn browser_with(port: u16, width: u32, dark: bool, extra: &[&str]) -> Client {
    let mut args = vec![
        "--headless=new".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        format!("--window-size={width},900"),
    ];
    args.extend(extra.iter().map(|arg| arg.to_string()));
    if dark {
        args.push("--force-dark-mode".into());
        args.push("--blink-settings=preferredColorScheme=0".into());
    }
    let mut options = serde_json::json!({ "args": args });
    // Chromium's windows are at least 500 px wide: narrower is a phone's viewport,
    // emulated.
    if width < 500 {
        options["mobileEmulation"] = serde_json::json!({
            "deviceMetrics": { "width": width, "height": 844, "pixelRatio": 3.0 }
        });
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    let started = Instant::now();
    loop {
        let connected =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await;
        match connected {
            Ok(client) => return client,
            Err(error) if started.elapsed() < Duration::from_secs(20) => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("cannot start headless Chromium through ChromeDriver: {error}"),
        }
    }
}

/// Runs `step`; if it fails, keeps a screenshot of the page and fails the test.
async fn step<T>(
    client: &Client,
    name: &str,
    step: impl std::future::Future<Output = Result<T, String>>,
) -> T {
    match step.await {
        Ok(value) => value,
        Err(problem) => {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/console-screenshots");
            let _ = std::fs::create_dir_all(&dir);
            let file = dir.join(format!("{}.png", name.replace(' ', "-")));
            if let Ok(png) = client.screenshot().await {
                let _ = std::fs::write(&file, png);
            }
            panic!("{name}: {problem} (screenshot: {})", file.display());
        }
    }
}

/// Waits until `selector`'s text satisfies `check`.
async fn text_becomes(
    client: &Client,
    selector: &str,
    check: impl Fn(&str) -> bool,
) -> Result<String, String> {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < Duration::from_secs(20) {
        if let Ok(element) = client.find(Locator::Css(selector)).await
            && let Ok(text) = element.text().await
        {
            if check(&text) {
                return Ok(text);
            }
            last = text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("`{selector}` never matched; last text {last:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_a_dead_event_in_the_browser_and_see_it_delivered() {
    let Some((_driver, port)) = chromedriver() else {
        return;
    };
    thulium::tls::install_default_provider();
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("inbox.redb")).unwrap();
    for ticket_id in 1..=3 {
        store.put(ticket(ticket_id, 0)).await.unwrap();
    }
    // The application fails at first: every event goes dead after one attempt.
    let healthy = Arc::new(AtomicBool::new(false));
    let switch = Arc::clone(&healthy);
    let config = DispatchConfig::default()
        .schedule(RetrySchedule::new(
            1,
            Duration::from_millis(10),
            Duration::from_millis(10),
        ))
        .poll_interval(Duration::from_millis(50));
    tokio::spawn(Dispatcher::new(store.clone(), config).run(
        move |_: Event, _: Delivery| {
            let switch = Arc::clone(&switch);
            async move {
                if switch.load(Ordering::SeqCst) {
                    Ok(())
                } else {
                    Err("the application is down")
                }
            }
        },
        std::future::pending(),
    ));
    let started = Instant::now();
    while store.stats().await.unwrap().dead < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the events never went dead"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(thulium::server::serve(
        listener,
        thulium_inbox::console::router(store.clone(), None),
        Default::default(),
        std::future::pending(),
    ));

    let client = browser(port, 1200, false).await;
    step(&client, "overview", async {
        client
            .goto(&format!("{url}/"))
            .await
            .map_err(|e| e.to_string())?;
        text_becomes(&client, r#"[data-stat="dead"]"#, |t| t == "3").await
    })
    .await;
    step(&client, "dead letters", async {
        client
            .find(Locator::LinkText("Dead letters"))
            .await
            .map_err(|e| e.to_string())?
            .click()
            .await
            .map_err(|e| e.to_string())?;
        let rows = client
            .find_all(Locator::Css("tr[data-id]"))
            .await
            .map_err(|e| e.to_string())?;
        if rows.len() != 3 {
            return Err(format!("{} dead rows, expected 3", rows.len()));
        }
        Ok(())
    })
    .await;
    let id = step(&client, "open an event", async {
        let link = client
            .find(Locator::Css("tr[data-id] td a"))
            .await
            .map_err(|e| e.to_string())?;
        let id = link.text().await.map_err(|e| e.to_string())?;
        link.click().await.map_err(|e| e.to_string())?;
        text_becomes(&client, "[data-state]", |t| t == "dead").await?;
        text_becomes(&client, "[data-history]", |t| {
            t.contains("the application is down")
        })
        .await?;
        Ok(id)
    })
    .await;
    step(&client, "a selection survives the polls", async {
        client
            .execute(
                "const table = document.querySelector('[data-history]'); \
                 table.dataset.marked = 'yes'; \
                 getSelection().selectAllChildren(table);",
                vec![],
            )
            .await
            .map_err(|e| e.to_string())?;
        // Two polls (every two seconds) with nothing new to show.
        tokio::time::sleep(Duration::from_millis(4500)).await;
        let kept = client
            .execute(
                "return [document.querySelector('[data-history]').dataset.marked || '', \
                         getSelection().toString().length];",
                vec![],
            )
            .await
            .map_err(|e| e.to_string())?;
        match (kept[0].as_str(), kept[1].as_u64()) {
            (Some("yes"), Some(selected)) if selected > 0 => Ok(()),
            _ => Err(format!("the attempts table was redrawn: {kept}")),
        }
    })
    .await;
    healthy.store(true, Ordering::SeqCst);
    step(&client, "replay", async {
        client
            .find(Locator::Css(r#"button[value="replay"]"#))
            .await
            .map_err(|e| e.to_string())?
            .click()
            .await
            .map_err(|e| e.to_string())?;
        text_becomes(&client, "[data-notice]", |t| t.contains("Replayed")).await?;
        // The dispatcher delivers it; the page shows it without a reload.
        text_becomes(&client, "[data-state]", |t| t == "done").await?;
        text_becomes(&client, "[data-history]", |t| t.contains("delivered")).await
    })
    .await;
    assert_eq!(
        store
            .get(thulium_inbox::EventId(id.parse().unwrap()))
            .await
            .unwrap()
            .unwrap()
            .state,
        thulium_inbox::State::Done
    );
    client.close().await.unwrap();

    // At phone width, in dark mode, the dead letters still read (no JavaScript needed).
    let phone = browser(port, 390, true).await;
    step(&phone, "phone width", async {
        phone
            .goto(&format!("{url}/events?state=dead"))
            .await
            .map_err(|e| e.to_string())?;
        let rows = phone
            .find_all(Locator::Css("tr[data-id]"))
            .await
            .map_err(|e| e.to_string())?;
        if rows.len() != 2 {
            return Err(format!("{} dead rows, expected 2", rows.len()));
        }
        let scrolls = phone
            .execute(
                "return document.documentElement.scrollWidth <= window.innerWidth + 1;",
                vec![],
            )
            .await
            .map_err(|e| e.to_string())?;
        if scrolls != serde_json::Value::Bool(true) {
            return Err("the page is wider than the phone".into());
        }
        let background = phone
            .execute(
                "return getComputedStyle(document.body).backgroundColor;",
                vec![],
            )
            .await
            .map_err(|e| e.to_string())?;
        if background.as_str() == Some("rgb(255, 255, 255)") {
            return Err(format!("dark mode not applied: {background}"));
        }
        Ok(())
    })
    .await;
    phone.close().await.unwrap();
}

/// What an attacker's page and hostile values see in a real browser: a name rebound
/// to the console's address (Chromium's `--host-resolver-rules`) gets the refusal,
/// not the page or its CSRF token; at 390 px the list of ordinary and hostile events
/// fits the screen; a right-to-left override in an action is shown marked, so the
/// action reads as received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebound_name_is_refused_and_hostile_values_stay_in_their_cells() {
    let Some((_driver, port)) = chromedriver() else {
        return;
    };
    thulium::tls::install_default_provider();
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("inbox.redb")).unwrap();
    for ticket_id in 1..=8 {
        store.put(ticket(ticket_id, 0)).await.unwrap();
    }
    let hostile = |action: String| {
        let body = format!("action={action}&ticket_id=99");
        let event = Event::parse(body.as_bytes(), None).unwrap();
        thulium_inbox::NewEvent::from_event(&event, body, None)
    };
    let long = "LONG_".repeat(400);
    store.put(hostile(long)).await.unwrap();
    let reversed = store
        .put(hostile("\u{202e}DETAERC_TEKCIT".to_string()))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let console_port = listener.local_addr().unwrap().port();
    tokio::spawn(thulium::server::serve(
        listener,
        thulium_inbox::console::router(store.clone(), None),
        Default::default(),
        std::future::pending(),
    ));

    let client = browser_with(
        port,
        390,
        false,
        &["--host-resolver-rules=MAP evil.example 127.0.0.1"],
    )
    .await;
    step(&client, "rebound name", async {
        client
            .goto(&format!("http://evil.example:{console_port}/events/1"))
            .await
            .map_err(|e| e.to_string())?;
        let body = client
            .find(Locator::Css("body"))
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        if !body.contains("does not answer to that host name") || body.contains("Replay") {
            return Err(format!("the rebound page was served: {body:.200}"));
        }
        let forms = client
            .find_all(Locator::Css("input[name=csrf]"))
            .await
            .map_err(|e| e.to_string())?;
        if !forms.is_empty() {
            return Err("the rebound page holds a CSRF token".into());
        }
        Ok(())
    })
    .await;
    step(&client, "list at 390 px", async {
        client
            .goto(&format!("http://127.0.0.1:{console_port}/events"))
            .await
            .map_err(|e| e.to_string())?;
        let fits = client
            .execute(
                "const t = document.querySelector('table'); \
                 return [window.innerWidth, document.documentElement.scrollWidth, \
                         Math.ceil(t.getBoundingClientRect().right), t.scrollWidth, t.clientWidth];",
                vec![],
            )
            .await
            .map_err(|e| e.to_string())?;
        let widths: Vec<u64> = fits
            .as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_u64).collect())
            .unwrap_or_default();
        match widths[..] {
            [inner, page, right, table, shown]
                if inner <= 400 && page <= inner + 1 && right <= inner + 1 && table <= shown + 1 =>
            {
                Ok(())
            }
            _ => Err(format!(
                "the list does not fit 390 px (inner, page, table right, table scroll, table shown): {widths:?}"
            )),
        }
    })
    .await;
    step(&client, "right-to-left override", async {
        let row = client
            .find(Locator::Css(&format!("tr[data-id=\"{}\"]", reversed.id())))
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        if row.contains('\u{202e}') || !row.contains("u{202e}DETAERC_TEKCIT") {
            return Err(format!("the override is not shown as received: {row:?}"));
        }
        Ok(())
    })
    .await;
    client.close().await.unwrap();
}
