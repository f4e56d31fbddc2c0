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
    assert!(table.starts_with("ID  ROUTE    STATE"), "{table}");

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

    // With credentials, still not over plain HTTP unless a TLS proxy is declared.
    let with_user = |extra: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_thulium"));
        command
            .args(["listen", "--no-auth", "--addr", "127.0.0.1:0", "--inbox"])
            .arg(&inbox)
            .args(["--console", "0.0.0.0:0", "--console-user", "admin"])
            .args(extra)
            .env("THULIUM_CONSOLE_PASSWORD", "console-password-3")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    };
    let refused = with_user(&[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--console-behind-tls-proxy"), "{stderr}");
    assert!(!stderr.contains("console-password-3"), "{stderr}");
    let mut started = Guarded::spawn(&mut with_user(&["--console-behind-tls-proxy"])).unwrap();
    let mut stderr = std::io::BufReader::new(started.child().stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("inbox console at") {
        line.clear();
        let read = std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
        assert!(read > 0, "the listener ended before serving the console");
    }
}

/// `thulium inbox migrate` upgrades a file written by thulium 0.1.0 (schema 1) and one
/// written before routes (schema 2; the inbox crate's `tests/fixtures`), and every
/// event then shows exactly as that version showed it, on the default route.
#[test]
fn an_old_inbox_file_migrates_and_shows_every_event_as_before() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../inbox/tests/fixtures");
    let dir = tempfile::tempdir().unwrap();
    for name in ["schema-1", "schema-2"] {
        let inbox = dir.path().join(format!("{name}.redb"));
        std::fs::copy(fixtures.join(format!("{name}.redb")), &inbox).unwrap();
        let inbox = inbox.to_str().unwrap();
        let (code, stdout, stderr) = thulium(&["inbox", "migrate", "--inbox", inbox]);
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("schema version 3"), "{stdout}");
        let before: Vec<serde_json::Value> = serde_json::from_str(
            &std::fs::read_to_string(fixtures.join(format!("{name}.json"))).unwrap(),
        )
        .unwrap();
        for mut shown in before {
            // What changed: an attempt's start is RFC 3339, as every other time
            // (schema 1's version printed milliseconds), and each event has a route.
            for attempt in shown["history"].as_array_mut().unwrap() {
                if let Some(ms) = attempt["started_at"].as_i64() {
                    let at =
                        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                            .unwrap()
                            .format(&time::format_description::well_known::Rfc3339)
                            .unwrap();
                    attempt["started_at"] = serde_json::json!(at);
                }
            }
            shown["route"] = serde_json::json!("default");
            shown["account"] = serde_json::Value::Null;
            let id = shown["id"].to_string();
            let now = json(&["inbox", "show", &id, "--output", "json", "--inbox", inbox]);
            assert_eq!(now, shown, "{name}: event {id}");
        }
    }
}

/// The operator's view of a relay that runs for months: with `-v` and JSON logs
/// (chosen by `THULIUM_LOG_FORMAT`), one record per outcome of each event, with its
/// stable fields; a start and a stop record; no secret anywhere; and a `/metrics`
/// page that `promtool check metrics` finds nothing wrong with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_say_each_outcome_once_and_metrics_pass_promtool() {
    thulium::tls::install_default_provider();
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("events.redb");
    // The application takes ticket 2 and always fails ticket 1.
    let app = axum::Router::new().route(
        "/app",
        axum::routing::post(|body: String| async move {
            match thulium_testkit::events::ticket_id(&body) {
                Some(2) => (axum::http::StatusCode::OK, "taken"),
                _ => (
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "database is down",
                ),
            }
        }),
    );
    let sink = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_addr = sink.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(sink, app).await.unwrap() });

    let addr: SocketAddr = format!("127.0.0.1:{}", thulium_testkit::free_port())
        .parse()
        .unwrap();
    let log_path = dir.path().join("stderr.log");
    let (receiver_password, forward_password) = ("rcv-secret-7Hq2", "fwd-secret-9Zx4");
    let mut listener = Guarded::spawn(
        Command::new(env!("CARGO_BIN_EXE_thulium"))
            .args(["listen", "-v", "--addr", &addr.to_string(), "--inbox"])
            .arg(&inbox)
            .args(["--forward-to", &format!("http://{sink_addr}/app")])
            .args(["--forward-auth-user", "relay", "--max-attempts", "2"])
            .env("THULIUM_WEBHOOK_PASSWORD", receiver_password)
            .env("THULIUM_FORWARD_PASSWORD", forward_password)
            .env("THULIUM_LOG_FORMAT", "json")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap()),
    )
    .unwrap();
    let http = reqwest::Client::new();
    let deliver = |ticket: usize| {
        http.post(format!("http://{addr}/thulium"))
            .basic_auth("thulium", Some(receiver_password))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(thulium_testkit::events::ticket_body(ticket))
            .send()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while deliver(1).await.is_err() {
        assert!(Instant::now() < deadline, "the listener never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for ticket in [2, 1] {
        assert_eq!(deliver(ticket).await.unwrap().status().as_u16(), 200);
    }
    let inbox_arg = inbox.to_str().unwrap();
    wait_for("one done, one dead", inbox_arg, |s| {
        s["done"] == 1 && s["dead"] == 1
    });

    let metrics = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for family in [
        "# HELP thulium_inbox_dead_total",
        "thulium_inbox_conflicts_total 0",
        "thulium_inbox_refused_total{reason=\"store\"} 0",
        "thulium_build_info{version=\"",
        "process_resident_memory_bytes",
    ] {
        assert!(metrics.contains(family), "{family} missing from\n{metrics}");
    }
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; .ci/run installs it)");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), metrics.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    listener.signal("TERM");
    assert!(listener.wait().unwrap().success());
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        !log.contains(receiver_password) && !log.contains(forward_password),
        "a secret in the log:\n{log}"
    );
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    // (message, ticket, attempt) of each outcome record; the attempt's fields are
    // on its span, the receiver's on the record.
    let outcomes: Vec<(String, u64, u64)> = records
        .iter()
        .filter_map(|record| {
            let fields = match record.get("dedup_key") {
                Some(_) => record,
                None => record.get("span")?,
            };
            let key = fields["dedup_key"].as_str()?;
            let ticket = key
                .split("ticket_id=")
                .nth(1)?
                .split('|')
                .next()?
                .parse()
                .ok()?;
            let message = record["message"].as_str()?.split(':').next()?.to_string();
            Some((message, ticket, fields["attempt"].as_u64().unwrap_or(0)))
        })
        .collect();
    let count = |message: &str, ticket: u64, attempt: u64| {
        outcomes
            .iter()
            .filter(|o| **o == (message.to_string(), ticket, attempt))
            .count()
    };
    assert_eq!(count("stored", 1, 0), 1, "{outcomes:?}");
    assert_eq!(count("duplicate", 1, 0), 1, "{outcomes:?}");
    assert_eq!(count("stored", 2, 0), 1, "{outcomes:?}");
    assert_eq!(count("failed; retrying later", 1, 1), 1, "{outcomes:?}");
    assert_eq!(count("dead", 1, 2), 1, "{outcomes:?}");
    assert_eq!(count("handed over", 2, 1), 1, "{outcomes:?}");
    assert_eq!(outcomes.len(), 6, "one record per outcome: {outcomes:?}");
    let handed = records
        .iter()
        .find(|r| r["message"] == "handed over")
        .unwrap();
    assert_eq!(handed["span"]["status"], "200", "{handed}");
    assert!(handed["duration_ms"].is_u64(), "{handed}");
    let dead = records.iter().find(|r| r["level"] == "ERROR").unwrap();
    assert!(
        dead["reason"].as_str().unwrap().contains("HTTP 500"),
        "{dead}"
    );
    for message in ["relay started", "relay stopped"] {
        assert!(
            records.iter().any(|r| r["message"] == message),
            "no {message:?} in {log}"
        );
    }
}

/// `listen --config`: the file's settings with typed flags over them; SIGHUP
/// re-reads it, applies the forward's rotated password at once, says which change
/// waits for a restart, and the listener keeps running; `config check` points at
/// each mistake with its line and column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_runs_the_relay_and_sighup_rotates_the_forward_password() {
    thulium::tls::install_default_provider();
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let record = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/app",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let record = Arc::clone(&record);
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                record.lock().unwrap().push(auth);
                "taken"
            }
        }),
    );
    let sink = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_addr = sink.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(sink, app).await.unwrap() });

    let password_file = dir.path().join("forward-password");
    std::fs::write(&password_file, "first-password\n").unwrap();
    let inbox = dir.path().join("events.redb");
    let config = dir.path().join("relay.toml");
    let file = |addr: &str, level: &str| {
        format!(
            "# the relay\n[receive]\naddr = \"{addr}\"\nno_auth = true\n\n[inbox]\nlocation = {inbox:?}\n\n\
             [forward]\nto = \"http://{sink_addr}/app\"\nauth_user = \"relay\"\npassword_file = {password_file:?}\n\n\
             [log]\nlevel = \"{level}\"\nformat = \"json\"\n"
        )
    };
    std::fs::write(&config, file("127.0.0.1:1", "info")).unwrap();
    let (code, stdout, stderr) = thulium(&["config", "check", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("good"), "{stdout}");

    // The typed --addr overrides the file's.
    let addr = format!("127.0.0.1:{}", thulium_testkit::free_port());
    let log_path = dir.path().join("stderr.log");
    let mut listener = Guarded::spawn(
        Command::new(env!("CARGO_BIN_EXE_thulium"))
            .args([
                "listen",
                "--config",
                config.to_str().unwrap(),
                "--addr",
                &addr,
            ])
            .env_remove("RUST_LOG")
            .env_remove("THULIUM_LOG_FORMAT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap()),
    )
    .unwrap();
    let url = format!("http://{addr}/thulium");
    assert_eq!(send(&url, 1).await, "stored");
    let inbox_arg = inbox.to_str().unwrap();
    wait_for("the first forward", inbox_arg, |s| s["done"] == 1);

    // Rotate the password, change the level and the address (which waits), SIGHUP.
    std::fs::write(&password_file, "second-password\n").unwrap();
    std::fs::write(&config, file("127.0.0.1:2", "warn")).unwrap();
    listener.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log_path)
        .unwrap()
        .contains("configuration re-read")
    {
        assert!(Instant::now() < deadline, "SIGHUP was not handled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        send(&url, 2).await,
        "stored",
        "still serving on the typed address"
    );
    wait_for("the second forward", inbox_arg, |s| s["done"] == 2);
    assert!(
        listener.try_wait().unwrap().is_none(),
        "SIGHUP stopped the listener"
    );

    let basic = |password: &str| {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("relay:{password}"))
        )
    };
    assert_eq!(
        *seen.lock().unwrap(),
        [basic("first-password"), basic("second-password")]
    );
    listener.signal("TERM");
    assert!(listener.wait().unwrap().success());
    let log = std::fs::read_to_string(&log_path).unwrap();
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let said = |message: &str| records.iter().find(|r| r["message"] == message);
    let waiting = said("SIGHUP: these settings changed in the file and apply at the next start")
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(waiting["keys"], "receive.addr", "{waiting}");
    assert!(said("SIGHUP: log level changed").is_some(), "{log}");
    assert!(
        said("SIGHUP: the forward's credentials were re-read").is_some(),
        "{log}"
    );
    // At `info` before the SIGHUP, `warn` after: the second event's outcome is not logged.
    let stored = records.iter().filter(|r| r["message"] == "stored").count();
    assert_eq!(stored, 1, "{log}");
    assert!(!log.contains("first-password") && !log.contains("second-password"));

    // A bad file: every mistake with its place, exit 2.
    std::fs::write(
        &config,
        "[receive]\naddr = \"nowhere\"\npassword = \"hunter2\"\n[dispatch]\nmax_attempts = 0\n\
         [routes.crm]\nactions = [\"CHAT_*\"]\n[routes.Bad]\nto = \"http://x/\"\n\
         [routes.audit]\nto = \"http://x/\"\ncolour = \"red\"\npassword = \"hunter2\"\n",
    )
    .unwrap();
    let (code, _, stderr) = thulium(&["config", "check", config.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    let path = config.display().to_string();
    for place in [
        ":2:8: receive.addr",
        ":3:1: `password`",
        ":5:16: dispatch.max_attempts",
        ":6:9: [routes.crm] needs `to`",
        ":8:9: `Bad` is not a route name",
        ":12:1: unknown key `colour`",
        ":13:1: `password`: a secret is never written",
    ] {
        assert!(
            stderr.contains(&format!("{path}{place}")),
            "{place} in {stderr}"
        );
    }
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

/// The deployment kit as shipped: the example configurations (one forward, and a
/// gateway of three routes) pass `config check`,
/// and the systemd unit passes `systemd-analyze verify` without a single warning
/// (an unknown or misspelt directive is only a warning there, so any output fails).
#[test]
fn the_deployment_kit_verifies() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    for example in ["relay.toml", "gateway.toml"] {
        let (code, stdout, stderr) =
            thulium(&["config", "check", deploy.join(example).to_str().unwrap()]);
        assert_eq!(code, 0, "{example}: {stderr}");
        assert!(stdout.contains("good"), "{example}: {stdout}");
    }

    // The unit names the installed binary; verify checks it is executable.
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(deploy.join("thulium-relay.service"))
        .unwrap()
        .replace("/usr/local/bin/thulium", env!("CARGO_BIN_EXE_thulium"));
    for directive in [
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "StateDirectory=thulium",
    ] {
        assert!(unit.contains(directive), "{directive}");
    }
    let path = dir.path().join("thulium-relay.service");
    std::fs::write(&path, unit).unwrap();
    let verified = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian's systemd package; .ci/run installs it)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(
        verified.status.success() && said.trim().is_empty(),
        "{said}"
    );
}

/// `inbox backup` while the listener stores events as fast as they come: the copy
/// is one consistent moment (its counts add up), opens as an inbox, and the
/// listener answered every delivery meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_opens_and_adds_up() {
    thulium::tls::install_default_provider();
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("events.redb");
    let sink = Arc::new(thulium_testkit::sink::Sink::default());
    let sink_addr = thulium_testkit::sink::start(Arc::clone(&sink), Duration::ZERO).await;
    let addr: SocketAddr = format!("127.0.0.1:{}", thulium_testkit::free_port())
        .parse()
        .unwrap();
    let _listener = listen(&inbox, addr, sink_addr);
    let url = format!("http://{addr}/thulium");
    assert_eq!(send(&url, 0).await, "stored");

    const EVENTS: u32 = 400;
    let senders: Vec<_> = (0..4)
        .map(|lane| {
            let url = url.clone();
            tokio::spawn(async move {
                for ticket in (1..=EVENTS).filter(|t| t % 4 == lane) {
                    assert_eq!(send(&url, ticket).await, "stored");
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let copy = dir.path().join("copy.redb");
    let (inbox_arg, copy_arg) = (
        inbox.to_str().unwrap().to_string(),
        copy.to_str().unwrap().to_string(),
    );
    let backup = tokio::task::spawn_blocking(move || {
        json(&[
            "inbox", "backup", "--inbox", &inbox_arg, "--to", &copy_arg, "--output", "json",
        ])
    })
    .await
    .unwrap();
    assert!(backup["rows"].as_u64().unwrap() > 0, "{backup}");
    for sender in senders {
        sender.await.unwrap();
    }

    let copy_arg = copy.to_str().unwrap();
    let stats = json(&["inbox", "stats", "--output", "json", "--inbox", copy_arg]);
    let count = |key: &str| stats[key].as_u64().unwrap();
    let stored = count("pending") + count("in_flight") + count("done") + count("dead");
    assert_eq!(stored, count("received") - count("duplicates"), "{stats}");
    assert!(
        (1..=u64::from(EVENTS) + 1).contains(&stored),
        "the copy is a moment of the stream: {stats}"
    );
    let listed = json(&[
        "inbox", "list", "--limit", "1000", "--output", "json", "--inbox", copy_arg,
    ]);
    assert_eq!(listed.as_array().unwrap().len() as u64, stored);
    // A second backup to the same name is refused, the first left as it is.
    let (code, _, stderr) = thulium(&[
        "inbox",
        "backup",
        "--inbox",
        inbox.to_str().unwrap(),
        "--to",
        copy_arg,
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("never replaces"), "{stderr}");
    wait_for("everything handed over", inbox.to_str().unwrap(), |s| {
        s["done"] == EVENTS + 1
    });
}

/// OpenTelemetry from the standard variables: a real OTLP/HTTP receiver (this test's)
/// gets a `receive` span and an `attempt` span with the event's fields and the
/// answer's status, decoded from the protobuf export; the forward carried the
/// attempt's W3C `traceparent`, so the application's trace continues it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_reach_an_otlp_receiver_and_the_forward_carries_traceparent() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use prost::Message as _;

    thulium::tls::install_default_provider();
    let dir = tempfile::tempdir().unwrap();
    let exports = Arc::new(std::sync::Mutex::new(
        Vec::<ExportTraceServiceRequest>::new(),
    ));
    let received = Arc::clone(&exports);
    let collector = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let received = Arc::clone(&received);
            async move {
                let export = ExportTraceServiceRequest::decode(body).expect("an OTLP export");
                received.lock().unwrap().push(export);
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let otlp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp_addr = otlp.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(otlp, collector).await.unwrap() });

    let traceparents = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = Arc::clone(&traceparents);
    let app = axum::Router::new().route(
        "/app",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let seen = Arc::clone(&seen);
            async move {
                if let Some(value) = headers.get("traceparent") {
                    seen.lock()
                        .unwrap()
                        .push(value.to_str().unwrap().to_string());
                }
                "taken"
            }
        }),
    );
    let sink = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_addr = sink.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(sink, app).await.unwrap() });

    let addr = format!("127.0.0.1:{}", thulium_testkit::free_port());
    let inbox = dir.path().join("events.redb");
    let mut listener = Guarded::spawn(
        Command::new(env!("CARGO_BIN_EXE_thulium"))
            .args(["listen", "--no-auth", "--addr", &addr, "--inbox"])
            .arg(&inbox)
            .args(["--forward-to", &format!("http://{sink_addr}/app")])
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp_addr}"))
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env_remove("OTEL_SDK_DISABLED")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap();
    assert_eq!(send(&format!("http://{addr}/thulium"), 7).await, "stored");
    wait_for("handed over", inbox.to_str().unwrap(), |s| s["done"] == 1);
    listener.signal("TERM");
    assert!(listener.wait().unwrap().success());

    let spans: Vec<_> = exports
        .lock()
        .unwrap()
        .iter()
        .flat_map(|export| &export.resource_spans)
        .flat_map(|resource| &resource.scope_spans)
        .flat_map(|scope| scope.spans.clone())
        .collect();
    let attribute = |span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.clone())
    };
    let receive = spans.iter().find(|s| s.name == "receive");
    assert!(receive.is_some(), "no receive span in {spans:#?}");
    let attempt = spans
        .iter()
        .find(|s| s.name == "attempt")
        .unwrap_or_else(|| panic!("no attempt span in {spans:#?}"));
    assert_eq!(
        attribute(attempt, "action"),
        Some(Any::StringValue("TICKET_CREATED".into()))
    );
    assert_eq!(attribute(attempt, "attempt"), Some(Any::IntValue(1)));
    assert_eq!(attribute(attempt, "inbox_id"), Some(Any::IntValue(1)));
    assert_eq!(
        attribute(attempt, "status"),
        Some(Any::StringValue("200".into()))
    );
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let traceparents = traceparents.lock().unwrap().clone();
    assert_eq!(
        traceparents,
        [format!(
            "00-{}-{}-01",
            hex(&attempt.trace_id),
            hex(&attempt.span_id)
        )]
    );
}

/// A new inbox file at `path` holding tickets 1 to `count`, pending, written by the
/// library (no listener needed).
fn inbox_with_tickets(path: &Path, count: usize) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use thulium_inbox::Store as _;
        let store = thulium_inbox::EmbeddedStore::open(path).unwrap();
        for ticket in 1..=count {
            let body = thulium_testkit::events::ticket_body(ticket);
            let event = thulium::event::Event::parse(body.as_bytes(), None).unwrap();
            store
                .put(thulium_inbox::NewEvent::from_event(&event, body, None))
                .await
                .unwrap();
        }
    });
}

/// A file this user may only read (a read-only mount, a snapshot, someone else's
/// backup): the read commands work on it and a change is refused with a reason.
/// Root may write anything, so as root the commands run as `nobody` (setpriv).
#[test]
fn a_read_only_inbox_can_be_read_but_not_changed() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("events.redb");
    inbox_with_tickets(&inbox, 3);
    std::fs::set_permissions(&inbox, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    let as_reader = |args: &[&str]| {
        let root = std::fs::metadata("/proc/self").map(|m| {
            use std::os::unix::fs::MetadataExt as _;
            m.uid() == 0
        });
        let mut command = if root.unwrap_or(false) {
            let mut command = Command::new("setpriv");
            command
                .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(env!("CARGO_BIN_EXE_thulium"));
            command
        } else {
            Command::new(env!("CARGO_BIN_EXE_thulium"))
        };
        let output = command
            .args(args)
            .args(["--inbox", inbox.to_str().unwrap()])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .expect("setpriv (util-linux) runs the command as nobody");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = as_reader(&["inbox", "stats", "--output", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let stats: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(stats["pending"], 3, "{stats}");
    let (code, stdout, stderr) = as_reader(&["inbox", "list", "--output", "json"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap()[2]["id"],
        1
    );
    let (code, _, stderr) = as_reader(&["inbox", "replay", "1"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("opened read-only"), "{stderr}");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `inbox salvage` on a file with bytes flipped in eight places: what decodes is
/// copied into a new inbox that works, what does not is listed with why; the
/// damaged file is left as it was.
#[test]
fn salvage_saves_a_damaged_inbox() {
    let dir = tempfile::tempdir().unwrap();
    let damaged = dir.path().join("damaged.redb");
    inbox_with_tickets(&damaged, 300);
    let bytes = thulium_testkit::damage::damage(&damaged, thulium_testkit::damage::Damage::Flip);
    let saved = dir.path().join("saved.redb");
    let (code, stdout, stderr) = thulium(&[
        "inbox",
        "salvage",
        "--inbox",
        damaged.to_str().unwrap(),
        "--to",
        saved.to_str().unwrap(),
        "--output",
        "json",
    ]);
    if code != 0 {
        // Damage that redb cannot open past: said so, naming the file.
        assert!(
            stderr.contains("damaged.redb") && stderr.contains("restore a backup"),
            "{stderr}"
        );
        return;
    }
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let saved_count = report["saved"].as_u64().unwrap();
    let lost = report["lost"].as_array().unwrap();
    assert!(
        saved_count > 0 && saved_count + lost.len() as u64 <= 300,
        "{report}"
    );
    assert!(
        lost.iter()
            .all(|l| l["reason"].as_str().is_some_and(|r| !r.is_empty()))
    );
    let stats = json(&[
        "inbox",
        "stats",
        "--output",
        "json",
        "--inbox",
        saved.to_str().unwrap(),
    ]);
    assert_eq!(stats["pending"].as_u64(), Some(saved_count), "{stats}");
    assert_eq!(
        std::fs::read(&damaged).unwrap(),
        bytes,
        "the damaged file is only read"
    );
}

/// Signed forwards, verified by a verifier no one here wrote: the official Standard
/// Webhooks library from PyPI (`THULIUM_STANDARD_WEBHOOKS_PYTHON` names a Python
/// that has it; `.ci/run` installs it) accepts every forward under either secret of
/// a rotation, and rejects a tampered body, a stale timestamp and another secret.
/// The `webhook-id` is the same for every attempt of an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_are_signed_as_standard_webhooks_verify_them() {
    thulium::tls::install_default_provider();
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let record = Arc::clone(&seen);
    let failed_once = Arc::new(AtomicBool::new(false));
    let app = axum::Router::new().route(
        "/app",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let (record, failed_once) = (Arc::clone(&record), Arc::clone(&failed_once));
            async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string()
                };
                record.lock().unwrap().push(serde_json::json!({
                    "headers": {
                        "webhook-id": header("webhook-id"),
                        "webhook-timestamp": header("webhook-timestamp"),
                        "webhook-signature": header("webhook-signature"),
                    },
                    "body": body,
                }));
                // The first forward fails once: its retry must carry the same id.
                if !failed_once.swap(true, Ordering::SeqCst) {
                    return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "later");
                }
                (axum::http::StatusCode::OK, "taken")
            }
        }),
    );
    let sink = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_addr = sink.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(sink, app).await.unwrap() });

    let secret = |_| thulium(&["secret", "new"]).1.trim().to_string();
    let (old, new) = (secret(1), secret(2));
    assert!(old.starts_with("whsec_") && old != new, "{old} {new}");
    let addr = format!("127.0.0.1:{}", thulium_testkit::free_port());
    let inbox = dir.path().join("events.redb");
    let _listener = Guarded::spawn(
        Command::new(env!("CARGO_BIN_EXE_thulium"))
            .args(["listen", "--no-auth", "--addr", &addr, "--inbox"])
            .arg(&inbox)
            .args([
                "--forward-to",
                &format!("http://{sink_addr}/app"),
                "--forward-sign",
            ])
            .env("THULIUM_FORWARD_SIGNING_SECRET", format!("{old} {new}"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap();
    let url = format!("http://{addr}/thulium");
    for ticket in [1, 2] {
        assert_eq!(send(&url, ticket).await, "stored");
    }
    wait_for("both handed over", inbox.to_str().unwrap(), |s| {
        s["done"] == 2
    });
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "two events, one retried: {seen:#?}");
    let ids: Vec<&str> = seen
        .iter()
        .map(|r| r["headers"]["webhook-id"].as_str().unwrap())
        .collect();
    assert!(ids.iter().all(|id| id.starts_with("msg_")), "{ids:?}");
    let retried = seen
        .iter()
        .filter(|r| r["headers"]["webhook-id"] == seen[0]["headers"]["webhook-id"])
        .count();
    assert_eq!(retried, 2, "the retry keeps its id: {ids:?}");
    assert_eq!(
        ids.iter().collect::<std::collections::HashSet<_>>().len(),
        2,
        "{ids:?}"
    );

    let Some(python) = std::env::var_os("THULIUM_STANDARD_WEBHOOKS_PYTHON") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs THULIUM_STANDARD_WEBHOOKS_PYTHON (.ci/run installs standardwebhooks)"
        );
        eprintln!(
            "NOT RUN: the Standard Webhooks library check (set THULIUM_STANDARD_WEBHOOKS_PYTHON)"
        );
        return;
    };
    let requests = dir.path().join("requests.json");
    std::fs::write(&requests, serde_json::to_string(&seen).unwrap()).unwrap();
    let script = r#"
import json, sys, time
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
requests = json.load(open(sys.argv[1]))
old, new, other = sys.argv[2], sys.argv[3], sys.argv[4]
def refused(secret, body, headers, why):
    try:
        Webhook(secret).verify(body, headers, json_parse=False)
    except WebhookVerificationError as error:
        assert why in str(error), (why, str(error))
        return
    raise SystemExit("accepted: " + why)
for request in requests:
    body, headers = request["body"], request["headers"]
    for secret in (old, new):
        Webhook(secret).verify(body, headers, json_parse=False)
    refused(new, body + "x", headers, "No matching signature")
    stale = dict(headers, **{"webhook-timestamp": str(int(time.time()) - 600)})
    refused(new, body, stale, "too old")
    refused(other, body, headers, "No matching signature")
print("verified", len(requests))
"#;
    let other = secret(3);
    let verified = Command::new(python)
        .args(["-c", script])
        .arg(&requests)
        .args([&old, &new, &other])
        .output()
        .expect("the Python with standardwebhooks runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(verified.status.success(), "{said}");
    assert_eq!(said.trim(), "verified 3");
}

/// `thulium inbox pause ROUTE` while a relay of two routes runs: the paused route's
/// events wait (the other's are handed over), `inbox stats` shows the pause with its
/// reason, and `inbox resume` hands them over at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_paused_by_hand_waits_until_it_is_resumed() {
    use thulium_testkit::sink::{self, Sink};
    thulium::tls::install_default_provider();
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("events.redb");
    let inbox = inbox.to_str().unwrap().to_string();
    let (crm, audit) = (Arc::new(Sink::default()), Arc::new(Sink::default()));
    let crm_at = sink::start(Arc::clone(&crm), Duration::ZERO).await;
    let audit_at = sink::start(Arc::clone(&audit), Duration::ZERO).await;
    let addr: SocketAddr = format!("127.0.0.1:{}", thulium_testkit::free_port())
        .parse()
        .unwrap();
    let _listener = Listener(
        Guarded::spawn(
            Command::new(env!("CARGO_BIN_EXE_thulium"))
                .args([
                    "listen",
                    "--no-auth",
                    "--addr",
                    &addr.to_string(),
                    "--inbox",
                    &inbox,
                ])
                .arg("--route")
                .arg(format!("crm=http://{crm_at}/app"))
                .arg("--route")
                .arg(format!("audit=http://{audit_at}/app"))
                .env_remove("RUST_LOG")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap(),
    );
    let url = format!("http://{addr}/thulium");
    send(&url, 1).await;
    wait_for("the first event handed over on both routes", &inbox, |s| {
        s["routes"]["crm"]["done"] == 1 && s["routes"]["audit"]["done"] == 1
    });
    let (code, said, stderr) = thulium(&[
        "inbox",
        "pause",
        "--inbox",
        &inbox,
        "crm",
        "--reason",
        "CRM upgrade \u{1b}[31m",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(said.contains("route crm is paused"), "{said}");
    // The relay reads the pause within a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for ticket in 2..=6 {
        send(&url, ticket).await;
    }
    wait_for("audit got every event", &inbox, |s| {
        s["routes"]["audit"]["done"] == 6
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(crm.deliveries(), 1, "a paused route was handed events");
    let stats = json(&["inbox", "stats", "--output", "json", "--inbox", &inbox]);
    assert_eq!(stats["routes"]["crm"]["pending"], 5, "{stats}");
    let reason = stats["routes"]["crm"]["paused"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("CRM upgrade") && !reason.contains('\u{1b}'),
        "{reason}"
    );
    let (_, table, _) = thulium(&["inbox", "stats", "--inbox", &inbox]);
    assert!(
        table.contains("PAUSED") && table.contains("CRM upgrade"),
        "{table}"
    );

    let (code, said, stderr) = thulium(&["inbox", "resume", "--inbox", &inbox, "crm"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(said.contains("resumed"), "{said}");
    wait_for("crm got every event after the resume", &inbox, |s| {
        s["routes"]["crm"]["done"] == 6 && s["routes"]["crm"]["paused"].is_null()
    });
    assert_eq!(crm.deliveries(), 6);
    let (_, said, _) = thulium(&["inbox", "resume", "--inbox", &inbox, "crm"]);
    assert!(said.contains("was not paused"), "{said}");
    let (code, _, stderr) = thulium(&["inbox", "pause", "--inbox", &inbox, "Not-A-Route"]);
    assert_eq!(code, 2, "{stderr}");
}

/// One relay for two Thulium accounts: each on its own path with its own password
/// (one account's credentials on the other's path get `401`), the same ticket from
/// both is two events, each forwarded with `X-Thulium-Account`, a route limited to
/// one account takes only its events, and lists filter by account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_accounts_each_on_its_own_path_with_its_own_password() {
    thulium::tls::install_default_provider();
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("events.redb");
    let inbox = inbox.to_str().unwrap().to_string();
    // The application: (route, account header, body) of each forward.
    type Seen = Arc<std::sync::Mutex<Vec<(String, String, String)>>>;
    let seen: Seen = Arc::default();
    let app = {
        let seen = Arc::clone(&seen);
        axum::Router::new().route(
            "/{route}",
            axum::routing::post(
                move |axum::extract::Path(route): axum::extract::Path<String>,
                      headers: axum::http::HeaderMap,
                      body: String| {
                    let seen = Arc::clone(&seen);
                    async move {
                        let account = headers
                            .get("x-thulium-account")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-")
                            .to_string();
                        seen.lock().unwrap().push((route, account, body));
                        "ok"
                    }
                },
            ),
        )
    };
    let app_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_at = app_listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(app_listener, app).await });
    let addr: SocketAddr = format!("127.0.0.1:{}", thulium_testkit::free_port())
        .parse()
        .unwrap();
    let _listener = Listener(
        Guarded::spawn(
            Command::new(env!("CARGO_BIN_EXE_thulium"))
                .args(["listen", "--addr", &addr.to_string(), "--inbox", &inbox])
                .args(["--receive-for", "acme"])
                .args(["--receive-for", "beta path=/hooks/beta auth-user=hooks"])
                .arg("--route")
                .arg(format!("crm=http://{app_at}/crm accounts=acme"))
                .arg("--route")
                .arg(format!("audit=http://{app_at}/audit"))
                .env("THULIUM_ACCOUNT_ACME_PASSWORD", "acme-password")
                .env("THULIUM_ACCOUNT_BETA_PASSWORD", "beta-password")
                .env_remove("RUST_LOG")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap(),
    );
    let body = |ticket: u32| {
        thulium::event::examples::event(
            "TICKET_CREATED",
            &[("ticket_id".into(), ticket.to_string())],
        )
        .unwrap()
        .to_form()
    };
    let http = reqwest::Client::new();
    let post = |path: &str, user: &str, password: &str, ticket: u32| {
        http.post(format!("http://{addr}{path}"))
            .basic_auth(user, Some(password))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body(ticket))
            .send()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while post("/thulium/acme", "thulium", "acme-password", 1)
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the listener never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(
            post("/hooks/beta", "hooks", "beta-password", 1)
                .await
                .unwrap()
        ),
        200
    );
    for (path, user, password) in [
        ("/hooks/beta", "thulium", "acme-password"),
        ("/thulium/acme", "hooks", "beta-password"),
        ("/thulium/acme", "thulium", "beta-password"),
    ] {
        let answer = post(path, user, password, 2).await.unwrap();
        assert_eq!(status(answer), 401, "{user} on {path}");
    }
    assert_eq!(
        status(
            post("/thulium", "thulium", "acme-password", 2)
                .await
                .unwrap()
        ),
        404
    );
    // A redelivery within an account is a duplicate.
    let again = post("/thulium/acme", "thulium", "acme-password", 1)
        .await
        .unwrap();
    assert_eq!(again.text().await.unwrap(), "duplicate");

    wait_for("every forward", &inbox, |s| {
        s["routes"]["audit"]["done"] == 2 && s["routes"]["crm"]["done"] == 1
    });
    let mut forwards = seen.lock().unwrap().clone();
    forwards.sort();
    let routed: Vec<(&str, &str)> = forwards
        .iter()
        .map(|(r, a, _)| (r.as_str(), a.as_str()))
        .collect();
    assert_eq!(
        routed,
        [("audit", "acme"), ("audit", "beta"), ("crm", "acme")]
    );
    let beta = json(&[
        "inbox",
        "list",
        "--inbox",
        &inbox,
        "--from-account",
        "beta",
        "--output",
        "json",
    ]);
    let beta = beta.as_array().unwrap();
    assert_eq!(beta.len(), 1, "{beta:?}");
    assert_eq!(
        (beta[0]["account"].as_str(), beta[0]["route"].as_str()),
        (Some("beta"), Some("audit"))
    );
    let (_, table, _) = thulium(&["inbox", "list", "--inbox", &inbox]);
    assert!(table.starts_with("ID  ROUTE  ACCOUNT  STATE"), "{table}");
    let stats = json(&["inbox", "stats", "--output", "json", "--inbox", &inbox]);
    assert_eq!(
        (stats["received"].as_u64(), stats["duplicates"].as_u64()),
        (Some(3), Some(1)),
        "{stats}"
    );
}
