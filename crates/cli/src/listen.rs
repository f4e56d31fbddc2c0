//! `thulium listen`: the SDK's receiver, printing each event as it arrives.

use std::io::Write;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use thulium::event::Event;
use thulium::receiver::Receiver;
use tokio::sync::oneshot;

use thulium_inbox::relay::shutdown_signal;

use crate::args::{Connection, ListenArgs, Output};
use crate::durable;
use crate::failure::Failure;
use crate::output;
use crate::secrets::{self, Source};

/// Lines waiting for stdout; past this the reader is not keeping up.
const OUTPUT_QUEUE: usize = 64;
/// How long a delivery waits for its line to be written before it is refused.
const OUTPUT_WAIT: Duration = Duration::from_secs(5);

pub async fn run(args: ListenArgs, connection: &Connection, format: Output) -> Result<(), Failure> {
    if !args.path.starts_with('/') {
        return Err(Failure::usage(format!(
            "--path `{}` must start with /",
            args.path
        )));
    }
    // With accounts, each has its own credentials (read by `durable`).
    let password = if args.no_auth || !args.inbox.receive_for.is_empty() {
        None
    } else {
        Some(secrets::read_env_or_file(
            &args.password_env,
            args.password_file.as_deref(),
            "receiver password",
            Source::EnvOrPrompt,
        )?)
    };
    let receiver = match &password {
        None => Receiver::without_auth(),
        Some(password) => Receiver::with_basic_auth(&args.auth_user, password.clone())
            .map_err(|e| Failure::usage(e.to_string()))?,
    }
    .body_limit(args.body_limit);
    if let Some(url) = &args.subscribe {
        subscribe(url, &args, password, connection).await?;
    }

    let stdout = StdoutWriter::spawn();
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|e| Failure::usage(format!("cannot listen on {}: {e}", args.addr)))?;
    let addr = listener.local_addr()?;
    let auth = if args.no_auth {
        "no auth".to_string()
    } else {
        format!("Basic auth, user {}", output::escape(&args.auth_user))
    };
    if args.inbox.inbox.is_some() {
        return durable::run(args, receiver, listener, stdout, format).await;
    }
    crate::reload::on_hangup(crate::reload::Reloadable {
        config: args.config.clone(),
        forward: None,
    });
    let app = receiver.router(&args.path, move |event: Event| {
        let stdout = stdout.clone();
        async move { stdout.write(line(&event, format)).await }
    });
    crate::logging::notice(&format!(
        "listening on http://{addr}{} ({auth}); Ctrl-C stops",
        args.path
    ));
    thulium::server::serve(listener, app, args.limits.limits(), shutdown_signal()).await?;
    crate::logging::notice("stopped");
    Ok(())
}

/// `--subscribe`: makes sure Thulium delivers to `url` with this listener's
/// credentials, as `webhooks ensure` does, and says what it did.
async fn subscribe(
    url: &str,
    args: &ListenArgs,
    password: Option<thulium::Password>,
    connection: &Connection,
) -> Result<(), Failure> {
    crate::actions::warn_unknown(args.subscribe_actions.iter().map(String::as_str), false);
    let mut webhook = thulium::NewWebhook::new(url, args.subscribe_actions.iter().cloned());
    if let Some(password) = password {
        webhook = webhook.with_auth(&args.auth_user, password);
    }
    webhook.validate()?;
    let ensured = crate::connection::client(connection)?
        .ensure_webhook(&webhook)
        .await?;
    crate::logging::notice(&format!(
        "subscription {} {} for {} -> {}",
        ensured.webhook().id,
        if ensured.created() {
            "created"
        } else {
            "exists"
        },
        args.subscribe_actions.join(","),
        output::escape(url)
    ));
    Ok(())
}

/// One event as printed: JSON, or the human line.
pub fn line(event: &Event, format: Output) -> String {
    match format {
        Output::Json => event.to_json(),
        Output::Table => human_line(event),
    }
}

/// Writes lines to stdout on a thread of its own, so that a reader that stops
/// reading (a full pipe) can stall only that thread, never the server: deliveries
/// then get `500` within [`OUTPUT_WAIT`] (Thulium keeps the event), other requests
/// and Ctrl-C are served as usual.
#[derive(Clone)]
pub struct StdoutWriter {
    lines: SyncSender<(String, oneshot::Sender<std::io::Result<()>>)>,
}

impl StdoutWriter {
    pub fn spawn() -> Self {
        let (lines, queue) =
            sync_channel::<(String, oneshot::Sender<std::io::Result<()>>)>(OUTPUT_QUEUE);
        std::thread::Builder::new()
            .name("stdout".into())
            .spawn(move || {
                for (line, written) in queue {
                    let mut stdout = std::io::stdout().lock();
                    let result = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
                    let _ = written.send(result);
                }
            })
            .expect("spawning the stdout thread");
        Self { lines }
    }

    /// Queues `line` and waits until it is written: `Ok` only once it is on stdout.
    pub async fn write(&self, line: String) -> Result<(), String> {
        let (written, done) = oneshot::channel();
        match self.lines.try_send((line, written)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err("stdout is not being read; the event was not printed".into());
            }
            Err(TrySendError::Disconnected(_)) => return Err("stdout is closed".into()),
        }
        match tokio::time::timeout(OUTPUT_WAIT, done).await {
            Ok(Ok(Ok(()))) => Ok(()),
            // A closed pipe: answer 500 so Thulium keeps the event.
            Ok(Ok(Err(error))) => Err(format!("cannot write the event to stdout: {error}")),
            Ok(Err(_)) => Err("stdout is closed".into()),
            Err(_) => Err(format!(
                "stdout did not take the event within {OUTPUT_WAIT:?}; is anyone reading it?"
            )),
        }
    }
}

/// `date  ACTION  field=value ...`, one event a line; control characters escaped,
/// so an event cannot forge lines or drive the terminal.
fn human_line(event: &Event) -> String {
    let date = event
        .occurred_at()
        .map_or_else(|| "-".repeat(19), |d| d.to_string());
    let mut line = format!("{date}  {}", output::escape(event.action().as_str()));
    for (name, value) in event
        .fields()
        .into_iter()
        .filter(|(name, _)| name != "date")
    {
        let text = match value {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        line.push_str(&format!(
            "  {}={}",
            output::escape(&name),
            output::escape(&text)
        ));
    }
    line
}
