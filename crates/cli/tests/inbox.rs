//! `thulium listen --inbox --forward-to` and `thulium inbox ...` as an operator uses
//! them: an application that fails, dead letters, a replay once it is back, purges,
//! and clear errors, all while the listener runs.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use thulium_testkit::process::Guarded;

fn thulium(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_thulium"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("THULIUM_INBOX")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn json(args: &[&str]) -> serde_json::Value {
    let (code, stdout, stderr) = thulium(args);
    assert_eq!(code, 0, "{args:?}: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
}

fn wait_for(what: &str, inbox: &str, check: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = json(&["inbox", "stats", "--output", "json", "--inbox", inbox]);
        if check(&stats) {
            return;
        }
        assert!(Instant::now() < deadline, "never {what}: {stats}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Killed with its test, pass or fail.
struct Listener(#[allow(dead_code)] Guarded);

fn listen(inbox: &Path, addr: SocketAddr, sink: SocketAddr) -> Listener {
    Listener(
        Guarded::spawn(
            Command::new(env!("CARGO_BIN_EXE_thulium"))
                .args([
                    "listen",
                    "--no-auth",
                    "--addr",
                    &addr.to_string(),
                    "--inbox",
                    inbox.to_str().unwrap(),
                    "--forward-to",
                    &format!("http://{sink}/app"),
                    "--max-attempts",
                    "2",
                ])
                .env_remove("RUST_LOG")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap(),
    )
}

async fn send(url: &str, ticket: u32) -> String {
    let body = thulium::event::examples::event(
        "TICKET_CREATED",
        &[("ticket_id".into(), ticket.to_string())],
    )
    .expect("the vendor's example with another id")
    .to_form();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
            .await;
        if let Ok(answer) = answer {
            assert_eq!(answer.status().as_u16(), 200);
            return answer.text().await.unwrap();
        }
        assert!(Instant::now() < deadline, "the listener never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_shown_replayed_and_purged_while_the_listener_runs() {
    thulium::tls::install_default_provider();
    let dir = tempfile::tempdir().unwrap();
    let inbox_path = dir.path().join("events.redb");
    let inbox = inbox_path.to_str().unwrap().to_string();

    // The application: down (500) until switched on.
    let healthy = Arc::new(AtomicBool::new(false));
    let switch = Arc::clone(&healthy);
    let app = axum::Router::new().route(
        "/app",
        axum::routing::post(move || {
            let switch = Arc::clone(&switch);
            async move {
                if switch.load(Ordering::SeqCst) {
                    (axum::http::StatusCode::OK, "taken")
                } else {
                    (
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        "database is down",
                    )
                }
            }
        }),
    );
    let sink = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_addr = sink.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(sink, app).await.unwrap() });

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let url = format!("http://{addr}/thulium");
    let _listener = listen(&inbox_path, addr, sink_addr);
    for ticket in 1..=3 {
        assert_eq!(send(&url, ticket).await, "stored");
    }
    wait_for("dead", &inbox, |s| s["dead"] == 3);

    let dead = json(&[
        "inbox", "list", "--state", "dead", "--output", "json", "--inbox", &inbox,
    ]);
    let dead = dead.as_array().unwrap();
    assert_eq!(dead.len(), 3);
    let id = dead[0]["id"].as_u64().unwrap().to_string();
    let (code, shown, _) = thulium(&["inbox", "show", &id, "--inbox", &inbox]);
    assert_eq!(code, 0);
    assert!(
        shown.contains("failed") && shown.contains("database is down"),
        "{shown}"
    );
    let (code, table, _) = thulium(&["inbox", "list", "--inbox", &inbox]);
    assert_eq!(code, 0);
    assert!(table.starts_with("ID  STATE"), "{table}");

    healthy.store(true, Ordering::SeqCst);
    let replayed = json(&[
        "inbox",
        "replay",
        "--all-dead",
        "--output",
        "json",
        "--inbox",
        &inbox,
    ]);
    assert_eq!(replayed["replayed"], 3);
    wait_for("done after the replay", &inbox, |s| s["done"] == 3);

    let (code, _, stderr) = thulium(&["inbox", "set-aside", &id, "--inbox", &inbox]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("handed over already"), "{stderr}");
    let (code, _, stderr) = thulium(&["inbox", "replay", "999", "--inbox", &inbox]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no event 999"), "{stderr}");

    // Purge the done events; their dedup keys stay, so a late redelivery is known.
    let purged = json(&[
        "inbox",
        "purge",
        "--older-than",
        "1ms",
        "--output",
        "json",
        "--inbox",
        &inbox,
    ]);
    assert_eq!(
        (purged["events"].as_u64(), purged["keys"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(send(&url, 1).await, "duplicate");
    wait_for("nothing stored", &inbox, |s| {
        s["done"] == 0 && s["pending"] == 0
    });
}

#[test]
fn a_missing_inbox_is_a_usage_error() {
    let (code, _, stderr) = thulium(&["inbox", "stats", "--inbox", "/nonexistent/events.redb"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("thulium listen --inbox"), "{stderr}");
    let (code, _, stderr) = thulium(&[
        "listen",
        "--no-auth",
        "--inbox",
        "/nonexistent/dir/events.redb",
        "--addr",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("does the directory exist"), "{stderr}");
}

#[test]
fn the_console_refuses_to_serve_off_loopback_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("events.redb");
    let (code, _, stderr) = thulium(&[
        "listen",
        "--no-auth",
        "--addr",
        "127.0.0.1:0",
        "--inbox",
        inbox.to_str().unwrap(),
        "--console",
        "0.0.0.0:0",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("without credentials"), "{stderr}");
}

/// `thulium inbox migrate` upgrades a file written by thulium 0.1.0 (schema 1; the
/// inbox crate's `tests/fixtures`), and every event then shows exactly as that version
/// showed it.
#[test]
fn an_old_inbox_file_migrates_and_shows_every_event_as_before() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../inbox/tests/fixtures");
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("old.redb");
    std::fs::copy(fixtures.join("schema-1.redb"), &inbox).unwrap();
    let inbox = inbox.to_str().unwrap();
    let (code, stdout, stderr) = thulium(&["inbox", "migrate", "--inbox", inbox]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("schema version 2"), "{stdout}");
    let before: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("schema-1.json")).unwrap())
            .unwrap();
    for shown in before {
        let id = shown["id"].to_string();
        let now = json(&["inbox", "show", &id, "--output", "json", "--inbox", inbox]);
        assert_eq!(now, shown, "event {id}");
    }
}
