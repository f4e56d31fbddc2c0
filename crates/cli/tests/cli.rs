//! The built `thulium` binary, run as a user would: against the fake Thulium, with its
//! help, its output formats, its errors and exit codes, and the three-terminal
//! walkthrough of the README (mock + listen + create + emit/send).

use std::io::{BufRead, BufReader};
use std::process::{Command as StdCommand, Stdio};

use std::sync::mpsc;
use std::time::Duration;
use thulium_testkit::process::Guarded;

use assert_cmd::Command;
use thulium::{Action, NewWebhook};
use thulium_mock::{MockConfig, MockThulium};

const SECRETS: &[&str] = &["api_pass", "hook-secret-42", "YXBpX3VzZXI6YXBpX3Bhc3M"];

/// The binary with a clean environment: no THULIUM_* or RUST_LOG from the caller.
fn thulium() -> Command {
    let mut command = Command::cargo_bin("thulium").unwrap();
    for var in [
        "THULIUM_ACCOUNT",
        "THULIUM_BASE_URL",
        "THULIUM_API_USER",
        "THULIUM_API_PASSWORD",
        "THULIUM_WEBHOOK_PASSWORD",
        "THULIUM_MOCK_PASSWORD",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    command.env("NO_COLOR", "1");
    command
}

fn against(mock: &MockThulium) -> Command {
    let mut command = thulium();
    command
        .env("THULIUM_BASE_URL", mock.base_url())
        .env("THULIUM_API_USER", "api_user")
        .env("THULIUM_API_PASSWORD", "api_pass");
    command
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(command: &mut Command) -> Outcome {
    let output = command.write_stdin("").output().unwrap();
    let outcome = Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    };
    // Plain text everywhere: a pipe is not a terminal, and NO_COLOR is set.
    assert!(!outcome.stdout.contains('\u{1b}') && !outcome.stderr.contains('\u{1b}'));
    outcome
}

#[test]
fn help_texts() {
    for args in [
        &["--help"][..],
        &["webhooks", "list", "--help"],
        &["webhooks", "create", "--help"],
        &["listen", "--help"],
        &["mock", "--help"],
        &["events", "send", "--help"],
        &["events", "emit", "--help"],
    ] {
        let outcome = run(thulium().args(args));
        assert_eq!(outcome.code, 0);
        let name = match &args[..args.len() - 1] {
            [] => "help".to_string(),
            words => format!("help_{}", words.join("_")),
        };
        insta::assert_snapshot!(name, outcome.stdout);
    }
}

async fn mock_with_two_subscriptions() -> MockThulium {
    let mock = MockThulium::start().await.unwrap();
    let client = mock.client_builder().build().unwrap();
    client
        .create_webhook(&NewWebhook::new(
            "https://example.pl",
            [Action::ChatConversationCreated],
        ))
        .await
        .unwrap();
    client
        .create_webhook(
            &NewWebhook::new(
                "https://hooks.example.com/thulium",
                [Action::TicketCreated, Action::AgentRinging],
            )
            .with_auth("thulium", "hook-secret-42"),
        )
        .await
        .unwrap();
    mock
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_as_a_table_and_as_json() {
    let mock = mock_with_two_subscriptions().await;
    let table = run(against(&mock).args(["webhooks", "list"]));
    assert_eq!(table.code, 0, "{}", table.stderr);
    insta::assert_snapshot!("list_table", table.stdout);
    let json = run(against(&mock).args(["webhooks", "list", "--output", "json"]));
    assert_eq!(json.code, 0);
    insta::assert_snapshot!("list_json", json.stdout);
    let parsed: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(parsed.as_array().unwrap().len(), 2);
    for secret in SECRETS {
        assert!(!table.stdout.contains(secret) && !json.stdout.contains(secret));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_reads_the_subscription_password_from_env_or_stdin_never_a_flag() {
    let mock = MockThulium::start().await.unwrap();
    let created = run(against(&mock)
        .args([
            "webhooks",
            "create",
            "--action",
            "TICKET_CREATED",
            "--action",
            "CALL_ANSWERED",
        ])
        .args([
            "--url",
            "https://example.pl/hook",
            "--auth-user",
            "thulium",
            "--output",
            "json",
        ])
        .env("THULIUM_WEBHOOK_PASSWORD", "hook-secret-42"));
    assert_eq!(created.code, 0, "{}", created.stderr);
    insta::assert_snapshot!("create_json", created.stdout);

    let output = against(&mock)
        .args([
            "webhooks",
            "create",
            "--action",
            "AGENT_RINGING",
            "--url",
            "https://example.pl/2",
        ])
        .args(["--auth-user", "thulium", "--auth-password-stdin"])
        .write_stdin("from-stdin\n")
        .output()
        .unwrap();
    assert!(output.status.success());
    insta::assert_snapshot!("create_table", String::from_utf8(output.stdout).unwrap());

    let stored = mock.subscriptions();
    assert_eq!(stored[0].http_auth_password.expose(), "hook-secret-42");
    assert_eq!(stored[1].http_auth_password.expose(), "from-stdin");

    // There is no flag for it.
    let refused = run(thulium().args([
        "webhooks",
        "create",
        "--action",
        "A",
        "--url",
        "https://e.pl",
        "--password",
        "x",
    ]));
    assert_eq!(refused.code, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_one_line_with_an_exit_code_by_kind() {
    let mock = MockThulium::start().await.unwrap();

    // Usage: nothing sent.
    let missing = run(thulium().args(["webhooks", "list"]));
    assert_eq!(missing.code, 2);
    assert_eq!(
        missing.stderr,
        "error: no Thulium address: pass --account (or set THULIUM_ACCOUNT) or --base-url (THULIUM_BASE_URL)\n"
    );
    let bad_url = run(against(&mock).args([
        "webhooks",
        "create",
        "--action",
        "TICKET_CREATED",
        "--url",
        "example.pl",
    ]));
    assert_eq!(bad_url.code, 2);
    assert!(
        bad_url
            .stderr
            .starts_with("error: invalid subscription_url: `example.pl` is not an absolute URL"),
        "{}",
        bad_url.stderr
    );
    let no_password = run(thulium().args([
        "webhooks",
        "list",
        "--base-url",
        "http://127.0.0.1:9",
        "--api-user",
        "u",
    ]));
    assert_eq!(no_password.code, 2);
    assert_eq!(
        no_password.stderr,
        "error: no Thulium API password: set THULIUM_API_PASSWORD (passwords are never taken from flags)\n"
    );
    let plain_http = run(thulium()
        .args([
            "webhooks",
            "list",
            "--base-url",
            "http://example.com",
            "--api-user",
            "u",
        ])
        .env("THULIUM_API_PASSWORD", "api_pass"));
    assert_eq!(plain_http.code, 2);
    assert!(plain_http.stderr.contains("plain HTTP"));

    // Refused: wrong credentials, in Polish on request.
    let refused = run(against(&mock)
        .args(["webhooks", "list", "--polish"])
        .env("THULIUM_API_PASSWORD", "wrong-pass"));
    assert_eq!(refused.code, 3);
    assert!(
        refused.stderr.starts_with(
            "error: list_webhooks: Thulium refused the API credentials (HTTP 401: Brak autoryzacji"
        ),
        "{}",
        refused.stderr
    );
    assert_eq!(refused.stderr.lines().count(), 1);
    assert!(!refused.stderr.contains("wrong-pass"));

    // Network: nobody listens.
    let down = thulium_mock::RefusingAddress::bind().unwrap();
    let port = down.addr().port();
    let dead = run(thulium()
        .args([
            "webhooks",
            "list",
            "--base-url",
            &format!("http://127.0.0.1:{port}"),
            "--api-user",
            "u",
        ])
        .env("THULIUM_API_PASSWORD", "api_pass"));
    assert_eq!(dead.code, 4);
    assert!(
        dead.stderr.starts_with(&format!(
            "error: list_webhooks: cannot connect to 127.0.0.1:{port}"
        )),
        "{}",
        dead.stderr
    );
    let send = run(thulium().args([
        "events",
        "send",
        "--url",
        &format!("http://127.0.0.1:{port}/x"),
        "--action",
        "TICKET_CREATED",
    ]));
    assert_eq!(send.code, 4);
    assert!(
        send.stderr.contains("is the receiver running?"),
        "{}",
        send.stderr
    );

    let bad_event = run(thulium().args([
        "events",
        "send",
        "--url",
        "http://127.0.0.1:9/x",
        "--action",
        "TICKET_CREATED",
        "--field",
        "ticket_id=abc",
    ]));
    assert_eq!(bad_event.code, 2);
    assert_eq!(
        bad_event.stderr,
        "error: not a valid event: TICKET_CREATED: field `ticket_id` must be an integer, got \"abc\"\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_is_printed_even_at_trace_level() {
    let mock = mock_with_two_subscriptions().await;
    let outcomes = [
        run(against(&mock)
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
            .env("THULIUM_WEBHOOK_PASSWORD", "hook-secret-42")),
        run(against(&mock).args(["-vv", "webhooks", "list", "--output", "json"])),
        run(against(&mock)
            .args(["-vv", "webhooks", "list"])
            .env("THULIUM_API_PASSWORD", "api_pass-but-wrong")),
    ];
    assert!(
        outcomes[0].stderr.contains("TRACE") || outcomes[0].stderr.contains("DEBUG"),
        "{}",
        outcomes[0].stderr
    );
    for outcome in &outcomes {
        for secret in SECRETS.iter().chain(&["api_pass-but-wrong"]) {
            assert!(
                !outcome.stdout.contains(secret),
                "{secret} in stdout:\n{}",
                outcome.stdout
            );
            assert!(
                !outcome.stderr.contains(secret),
                "{secret} in stderr:\n{}",
                outcome.stderr
            );
        }
    }
}

#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let outcome = run(thulium().args(["completions", shell]));
        assert_eq!(outcome.code, 0);
        assert!(outcome.stdout.contains("webhooks"), "{shell}");
    }
}

/// A long-running `thulium` process whose stdout and stderr lines arrive on channels.
struct Running {
    /// Killed with the test, pass or fail.
    _child: Guarded,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl Running {
    fn start(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut command = StdCommand::new(env!("CARGO_BIN_EXE_thulium"));
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command.env_remove("RUST_LOG").env("NO_COLOR", "1");
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = Guarded::spawn(&mut command).unwrap();
        let lines = |stream: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        };
        let stdout = lines(Box::new(child.child().stdout.take().unwrap()));
        let stderr = lines(Box::new(child.child().stderr.take().unwrap()));
        Self {
            _child: child,
            stdout,
            stderr,
        }
    }

    fn next_line(channel: &mpsc::Receiver<String>, what: &str) -> String {
        channel
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no {what} within 20 s"))
    }
}

/// The README's walkthrough: `thulium mock`, `thulium listen`, `thulium webhooks create`,
/// then `thulium events emit` (the fake delivers) and `thulium events send` (direct).
#[test]
fn mock_listen_create_and_events_end_to_end() {
    let mock = Running::start(&["mock", "--addr", "127.0.0.1:0", "--output", "json"], &[]);
    let info: serde_json::Value =
        serde_json::from_str(&Running::next_line(&mock.stdout, "mock address")).unwrap();
    let base_url = info["base_url"].as_str().unwrap().to_string();
    assert_eq!(info["api_user"], "api_user");

    let listen = Running::start(
        &[
            "listen",
            "--addr",
            "127.0.0.1:0",
            "--path",
            "/hook",
            "--output",
            "json",
        ],
        &[("THULIUM_WEBHOOK_PASSWORD", "hook-secret-42")],
    );
    let ready = Running::next_line(&listen.stderr, "listen address");
    let hook_url = ready
        .strip_prefix("listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{ready}"))
        .to_string();

    let env = |command: &mut Command| {
        command
            .env("THULIUM_BASE_URL", &base_url)
            .env("THULIUM_API_USER", "api_user")
            .env("THULIUM_API_PASSWORD", "api_pass")
            .env("THULIUM_WEBHOOK_PASSWORD", "hook-secret-42");
    };
    let mut create = thulium();
    env(&mut create);
    let created = run(create.args([
        "webhooks",
        "create",
        "--action",
        "TICKET_CREATED",
        "--url",
        &hook_url,
        "--auth-user",
        "thulium",
    ]));
    assert_eq!(created.code, 0, "{}", created.stderr);

    let mut emit = thulium();
    env(&mut emit);
    let emitted = run(emit.args([
        "events",
        "emit",
        "--action",
        "TICKET_CREATED",
        "--field",
        "ticket_id=4242",
        "--wait",
    ]));
    assert_eq!(emitted.code, 0, "{}", emitted.stderr);
    assert_eq!(
        emitted.stdout,
        format!("delivery 1 TICKET_CREATED -> {hook_url}: attempt 1: HTTP 200, delivered\n")
    );
    // `thulium mock` printed the attempt too.
    let attempt: serde_json::Value =
        serde_json::from_str(&Running::next_line(&mock.stdout, "mock's attempt line")).unwrap();
    assert_eq!(
        (attempt["delivery"].as_u64(), attempt["state"].as_str()),
        (Some(1), Some("delivered")),
        "{attempt}"
    );
    assert_eq!(attempt["attempt"]["outcome"]["status"], 200, "{attempt}");
    // Times are RFC 3339 UTC in every JSON the command prints.
    let at = attempt["attempt"]["at"].as_str().unwrap_or_default();
    assert!(
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).is_ok()
            && at.ends_with('Z')
            && attempt["attempt"].get("at_unix_ms").is_none(),
        "{attempt}"
    );

    let line = Running::next_line(&listen.stdout, "delivered event");
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["action"], "TICKET_CREATED");
    assert_eq!(event["ticket_id"], 4242);
    assert_eq!(event["agent_login"], "jkowalski");
    // Not the vendor's 2014 example date: now, so two emits are two events.
    assert!(
        event["date"].as_str().unwrap().starts_with("20") && event["date"] != "2014-11-17 12:59:32",
        "{event}"
    );

    let mut send = thulium();
    env(&mut send);
    let sent = run(send.args([
        "events",
        "send",
        "--url",
        &hook_url,
        "--action",
        "CUSTOMER_UPDATED",
        "--field",
        "customer_id=7",
        "--format",
        "json",
        "--auth-user",
        "thulium",
    ]));
    assert_eq!(sent.code, 0, "{}", sent.stderr);
    assert_eq!(sent.stdout, "CUSTOMER_UPDATED -> HTTP 200 OK: OK\n");
    let event: serde_json::Value =
        serde_json::from_str(&Running::next_line(&listen.stdout, "sent event")).unwrap();
    assert_eq!(
        (event["action"].as_str(), event["customer_id"].as_i64()),
        (Some("CUSTOMER_UPDATED"), Some(7))
    );

    // Without the receiver's password the event is refused, and the exit code says so.
    let refused = run(thulium().args([
        "events",
        "send",
        "--url",
        &hook_url,
        "--action",
        "TICKET_CREATED",
    ]));
    assert_eq!(refused.code, 3);
    assert_eq!(
        refused.stderr,
        "error: the receiver answered HTTP 401 Unauthorized: missing or wrong credentials\n"
    );
}

#[test]
fn listen_prints_human_lines_by_default() {
    let listen = Running::start(&["listen", "--addr", "127.0.0.1:0", "--no-auth"], &[]);
    let ready = Running::next_line(&listen.stderr, "listen address");
    let url = ready
        .strip_prefix("listening on ")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let sent = run(thulium().args([
        "events",
        "send",
        "--url",
        &url,
        "--action",
        "AGENT_RINGING",
        "--field",
        "source_number=null",
        "--field",
        "date=2014-11-17 12:59:32",
    ]));
    assert_eq!(sent.code, 0, "{}", sent.stderr);
    assert_eq!(
        Running::next_line(&listen.stdout, "event line"),
        "2014-11-17 12:59:32  AGENT_RINGING  connection_id=1416225570.341  queue_id=155  agent_login=jkowalski  source_number=null  destination_number=162"
    );
}

/// `events emit --wait` against a subscriber that is down: every attempt fails, the
/// outcome is reported and the exit code says so.
#[test]
fn emit_wait_reports_a_failed_delivery_and_exits_3() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Refuses connections until the test ends.
    let down = thulium_mock::RefusingAddress::bind().unwrap();
    let mock = runtime.block_on(async {
        let config = MockConfig {
            delivery: thulium_mock::DeliveryPolicy {
                max_attempts: 2,
                initial_backoff: Duration::from_millis(50),
                ..Default::default()
            },
            ..MockConfig::default()
        };
        let mock = MockThulium::start_with(config).await.unwrap();
        let url = down.url("/hook");
        mock.client_builder()
            .build()
            .unwrap()
            .create_webhook(&thulium::NewWebhook::new(
                url,
                [thulium::Action::TicketCreated],
            ))
            .await
            .unwrap();
        mock
    });
    let out = run(against(&mock).args(["events", "emit", "--action", "TICKET_CREATED", "--wait"]));
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stdout.contains("attempt 2: ") && out.stdout.contains("gave up after 2 attempts"),
        "{}",
        out.stdout
    );
    assert_eq!(
        out.stderr,
        "error: 1 of 1 deliveries failed after every attempt\n"
    );
    drop(runtime);
}

#[test]
fn connection_flags_work_before_the_subcommand() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mock = runtime.block_on(MockThulium::start()).unwrap();
    let out = run(thulium().env("THULIUM_API_PASSWORD", "api_pass").args([
        "--base-url",
        &mock.base_url(),
        "--api-user",
        "api_user",
        "webhooks",
        "list",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("ID"), "{}", out.stdout);
    drop(mock);
    drop(runtime);
}

#[test]
fn a_mistyped_action_gets_a_did_you_mean_unless_allowed() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mock = runtime.block_on(MockThulium::start()).unwrap();
    let create = |extra: &[&str]| {
        let mut command = against(&mock);
        command.args([
            "webhooks",
            "create",
            "--action",
            "ticket_created",
            "--url",
            "http://127.0.0.1:9/hook",
        ]);
        command.args(extra);
        run(&mut command)
    };
    let warned = create(&[]);
    assert_eq!(warned.code, 0, "{}", warned.stderr);
    assert_eq!(
        warned.stderr,
        "warning: `ticket_created` is not an action Thulium documents; did you mean TICKET_CREATED? \
         Using `ticket_created` as given (--allow-unknown-action accepts it without this warning)\n"
    );
    let quiet = create(&["--allow-unknown-action"]);
    assert_eq!(quiet.code, 0, "{}", quiet.stderr);
    assert_eq!(quiet.stderr, "");
    let known = run(against(&mock).args([
        "webhooks",
        "create",
        "--action",
        "TICKET_CREATED",
        "--url",
        "http://127.0.0.1:9/x",
    ]));
    assert_eq!(known.stderr, "");
    drop(mock);
    drop(runtime);
}

#[test]
fn the_manual_page_is_roff_naming_every_command() {
    let out = run(thulium().arg("man"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with(".ie \\n(.g .ds Aq"),
        "{}",
        &out.stdout[..80.min(out.stdout.len())]
    );
    assert!(out.stdout.contains(".TH thulium 1"), "{}", out.stdout);
    for command in [
        "webhooks",
        "listen",
        "mock",
        "events",
        "inbox",
        "completions",
    ] {
        assert!(out.stdout.contains(command), "{command} missing");
    }
}

/// `webhooks ensure` creates a subscription once and then finds it (`exists`, exit
/// 0); `listen --subscribe` does the same at each start, with the listener's own
/// credentials: two starts, one subscription.
#[test]
fn ensure_and_listen_subscribe_create_one_subscription() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mock = runtime.block_on(MockThulium::start()).unwrap();
    let ensure = || {
        run(against(&mock)
            .env("THULIUM_WEBHOOK_PASSWORD", "hook-secret-5")
            .args([
                "webhooks",
                "ensure",
                "--action",
                "TICKET_CREATED",
                "--action",
                "AGENT_RINGING",
                "--url",
                "https://example.pl/hook",
                "--auth-user",
                "thulium",
            ]))
    };
    let first = ensure();
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(first.stdout.starts_with("created\n"), "{}", first.stdout);
    let second = ensure();
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(second.stdout.starts_with("exists\n"), "{}", second.stdout);
    assert!(!second.stdout.contains("hook-secret-5"));

    let public = format!("http://127.0.0.1:{}/thulium", thulium_testkit::free_port());
    for expected in ["created", "exists"] {
        let listen = Running::start(
            &[
                "listen",
                "--addr",
                "127.0.0.1:0",
                "--subscribe",
                &public,
                "--action",
                "TICKET_CREATED",
            ],
            &[
                ("THULIUM_BASE_URL", &mock.base_url()),
                ("THULIUM_API_USER", "api_user"),
                ("THULIUM_API_PASSWORD", "api_pass"),
                ("THULIUM_WEBHOOK_PASSWORD", "listener-secret-8"),
            ],
        );
        let said = Running::next_line(&listen.stderr, "the subscription notice");
        assert!(
            said.starts_with("subscription ")
                && said.contains(&format!(" {expected} for TICKET_CREATED -> {public}")),
            "{said}"
        );
        assert!(Running::next_line(&listen.stderr, "listen address").starts_with("listening on "));
    }
    let list = run(against(&mock).args(["webhooks", "list", "--output", "json"]));
    let list: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    let to_listener: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["subscription_url"] == public.as_str())
        .collect();
    assert_eq!(to_listener.len(), 1, "{list}");
    assert_eq!(to_listener[0]["http_auth_user"], "thulium");
    drop(mock);
    drop(runtime);
}
