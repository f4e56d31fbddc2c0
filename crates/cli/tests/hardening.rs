//! The `thulium` binary against what broke it before: closed pipes and full disks,
//! control characters, secrets echoed by servers, credentials over plain HTTP, usage
//! errors, huge rows, and a listener whose stdout nobody reads.

use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use base64::Engine as _;
use thulium::{Action, NewWebhook};
use thulium_mock::MockThulium;

const HANG: Duration = Duration::from_secs(30);

fn thulium() -> Command {
    let mut command = Command::cargo_bin("thulium").unwrap();
    for var in [
        "THULIUM_ACCOUNT",
        "THULIUM_BASE_URL",
        "THULIUM_API_USER",
        "THULIUM_API_PASSWORD",
        "THULIUM_WEBHOOK_PASSWORD",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    command
}

fn against(base_url: &str) -> Command {
    let mut command = thulium();
    command
        .env("THULIUM_BASE_URL", base_url)
        .env("THULIUM_API_USER", "api_user")
        .env("THULIUM_API_PASSWORD", "api_pass");
    command
}

fn output(command: &mut Command) -> (i32, String, String) {
    let out = command.write_stdin("").output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the binary with stdout going to `stdout`; (exit code, stderr).
fn with_stdout(args: &[&str], base_url: Option<&str>, stdout: Stdio) -> (i32, String) {
    let mut command = StdCommand::new(env!("CARGO_BIN_EXE_thulium"));
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG");
    if let Some(url) = base_url {
        command
            .env("THULIUM_BASE_URL", url)
            .env("THULIUM_API_USER", "api_user")
            .env("THULIUM_API_PASSWORD", "api_pass");
    }
    let out = command.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_ends_quietly_and_a_full_disk_is_one_line_exit_5() {
    let mock = MockThulium::start().await.unwrap();
    let client = mock.client_builder().build().unwrap();
    for i in 0..50 {
        client
            .create_webhook(&NewWebhook::new(
                format!("https://example.pl/{i}"),
                [Action::TicketCreated],
            ))
            .await
            .unwrap();
    }
    let url = mock.base_url();
    for args in [
        &["webhooks", "list"][..],
        &["webhooks", "list", "--output", "json"],
        &["completions", "bash"],
        &["--help"],
    ] {
        // A reader that is already gone: every write fails with EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let (code, stderr) = with_stdout(args, Some(&url), Stdio::from(writer));
        assert_eq!((code, stderr.as_str()), (0, ""), "{args:?}");

        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let (code, stderr) = with_stdout(args, Some(&url), Stdio::from(full));
        assert_eq!(code, 5, "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("error: cannot write the output: "),
            "{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_escape_control_characters_and_cut_huge_cells() {
    let mock = MockThulium::start().await.unwrap();
    let client = mock.client_builder().build().unwrap();
    client
        .create_webhook(&NewWebhook::new(
            "https://example.pl/a",
            ["FORGED\n1  FAKE_ROW  https://evil\u{1b}[2J"],
        ))
        .await
        .unwrap();
    let many: Vec<String> = (0..3000).map(|i| format!("ACTION_NUMBER_{i}")).collect();
    client
        .create_webhook(&NewWebhook::new("https://example.pl/b", many))
        .await
        .unwrap();
    let (code, stdout, _) = output(against(&mock.base_url()).args(["webhooks", "list"]));
    assert_eq!(code, 0);
    assert!(!stdout.contains('\u{1b}'), "{stdout:?}");
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    assert!(stdout.contains("FORGED\\n1"), "{stdout}");
    assert!(stdout.lines().all(|l| l.chars().count() < 200), "{stdout}");
    assert!(stdout.contains("more)"), "{stdout}");
}

/// A server that answers every request with a Thulium error body (or, on `/hook`, a
/// plain text answer) that echoes the Authorization header and the decoded password.
async fn echoing_server() -> String {
    use axum::http::{HeaderMap, StatusCode};
    let echo = |headers: HeaderMap| {
        let header = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let token = header.trim_start_matches("Basic ");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let password = decoded
            .split_once(':')
            .map(|(_, p)| p.to_string())
            .unwrap_or_default();
        format!(
            "you sent {header} ({decoded}), cut: {}, password {password}",
            &token[..token.len().min(16)]
        )
    };
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap| async move {
                (StatusCode::FORBIDDEN, echo(headers))
            }),
        )
        .fallback(move |headers: HeaderMap| async move {
            let body = serde_json::json!({"request_id": "r1", "errors": [{"code": 1, "message": echo(headers)}]});
            (
                StatusCode::BAD_REQUEST,
                [("content-type", "application/json")],
                body.to_string(),
            )
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_a_server_echoes_never_reach_the_output_or_the_log() {
    let url = echoing_server().await;
    let engine = base64::engine::general_purpose::STANDARD;
    let secrets = [
        "api_pass".to_string(),
        "hook-secret-42".into(),
        engine.encode("api_user:api_pass"),
        engine.encode("api_user:api_pass")[..14].to_string(),
        engine.encode("thulium:hook-secret-42"),
        engine.encode("thulium:hook-secret-42")[..14].to_string(),
    ];
    let runs = [
        output(against(&url).args(["-vv", "webhooks", "list"])),
        output(
            against(&url)
                .args([
                    "-vv",
                    "webhooks",
                    "create",
                    "--action",
                    "TICKET_CREATED",
                    "--url",
                    "https://example.pl/x",
                    "--auth-user",
                    "thulium",
                ])
                .env("THULIUM_WEBHOOK_PASSWORD", "hook-secret-42"),
        ),
        output(against(&url).args(["-vv", "events", "emit", "--action", "TICKET_CREATED"])),
        output(
            thulium()
                .args([
                    "-vv",
                    "events",
                    "send",
                    "--url",
                    &format!("{url}/hook"),
                    "--action",
                    "TICKET_CREATED",
                    "--auth-user",
                    "thulium",
                ])
                .env("THULIUM_WEBHOOK_PASSWORD", "hook-secret-42"),
        ),
    ];
    for (i, (code, stdout, stderr)) in runs.iter().enumerate() {
        assert_eq!(*code, 3, "run {i}: {stderr}");
        assert!(stderr.contains("[REDACTED]"), "run {i}: {stderr}");
        for secret in &secrets {
            assert!(
                !stdout.contains(secret.as_str()),
                "run {i}: {secret} in {stdout}"
            );
            assert!(
                !stderr.contains(secret.as_str()),
                "run {i}: {secret} in {stderr}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_go_only_over_https_or_to_loopback() {
    // The check comes before any connection: these hosts are never contacted.
    let (code, _, stderr) = output(against("http://thulium.example.invalid").args([
        "events",
        "emit",
        "--action",
        "TICKET_CREATED",
    ]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("plain HTTP"), "{stderr}");

    let mock = MockThulium::start().await.unwrap();
    let create = |extra: &[&str]| {
        let mut command = against(&mock.base_url());
        command
            .args([
                "webhooks",
                "create",
                "--action",
                "TICKET_CREATED",
                "--url",
                "http://10.1.2.3/hook",
                "--auth-user",
                "thulium",
            ])
            .args(extra)
            .env("THULIUM_WEBHOOK_PASSWORD", "hook-secret-42");
        output(&mut command)
    };
    let (code, _, stderr) = create(&[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("in clear"), "{stderr}");
    assert!(mock.subscriptions().is_empty());
    let (code, _, stderr) = create(&["--insecure-plain-http-auth"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(mock.subscriptions().len(), 1);
}

#[test]
fn usage_errors_are_one_line_with_exit_2() {
    for args in [
        &["webhooks", "list", "--bogus"][..],
        &["webhook", "list"],
        &["events", "send", "--action", "TICKET_CREATED"],
        &["listen", "--addr", "not-an-address"],
        &["listen", "--header-timeout", "soon"],
        &[
            "events",
            "send",
            "--url",
            "ftp://example.pl/x",
            "--action",
            "TICKET_CREATED",
        ],
    ] {
        let (code, stdout, stderr) = output(thulium().args(args));
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(stdout.is_empty());
    }
}

#[test]
fn a_listener_whose_stdout_nobody_reads_keeps_answering_and_stops_on_ctrl_c() {
    let port = thulium_testkit::free_port();
    let addr = format!("127.0.0.1:{port}");
    // stdout is a pipe that this test never reads.
    let (_reader, writer) = std::io::pipe().unwrap();
    let mut child = thulium_testkit::process::Guarded::spawn(
        StdCommand::new(env!("CARGO_BIN_EXE_thulium"))
            .args(["listen", "--no-auth", "--addr", &addr])
            .stdin(Stdio::null())
            .stdout(Stdio::from(writer))
            .stderr(Stdio::null()),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let url = format!("http://{addr}/thulium");
    thulium::tls::install_default_provider();
    let statuses = runtime.block_on(async {
        let http = reqwest::Client::builder().timeout(HANG).build().unwrap();
        // Wait until it listens.
        let started = Instant::now();
        while tokio::net::TcpStream::connect(&addr).await.is_err() {
            assert!(started.elapsed() < HANG, "the listener never started");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Lines of 4 KiB: the pipe (64 KiB) fills after a few, then the queue.
        let body =
            thulium::event::examples::event("TICKET_CREATED", &[("pad".into(), "x".repeat(4096))])
                .expect("the vendor's example, padded")
                .to_form();
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let (http, url, body) = (http.clone(), url.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..8 {
                    let status = http
                        .post(&url)
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(body.clone())
                        .send()
                        .await
                        .expect("a delivery hung or failed")
                        .status()
                        .as_u16();
                    statuses.push(status);
                }
                statuses
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        // Still answering: a malformed request gets its 400 at once.
        let malformed = http
            .post(&url)
            .body("not an event")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        (all, malformed)
    });
    let (all, malformed) = statuses;
    assert_eq!(malformed, 400);
    assert!(all.contains(&200), "{all:?}");
    assert!(
        all.contains(&500),
        "nothing was refused although stdout is full: {all:?}"
    );
    assert!(all.iter().all(|s| *s == 200 || *s == 500), "{all:?}");

    // Ctrl-C stops it although a thread is stuck writing to stdout.
    StdCommand::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(started.elapsed() < HANG, "ctrl-c did not stop the listener");
        std::thread::sleep(Duration::from_millis(50));
    }
}
