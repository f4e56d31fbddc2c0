//! `thulium listen`: the SDK's receiver, printing each event as it arrives.

use std::io::Write;

use thulium::event::Event;
use thulium::receiver::Receiver;

use crate::args::{ListenArgs, Output};
use crate::failure::Failure;
use crate::secrets::{self, Source, WEBHOOK_PASSWORD_ENV};

pub async fn run(args: ListenArgs, format: Output) -> Result<(), Failure> {
    if !args.path.starts_with('/') {
        return Err(Failure::usage(format!(
            "--path `{}` must start with /",
            args.path
        )));
    }
    let receiver = if args.no_auth {
        Receiver::without_auth()
    } else {
        let password = secrets::read(
            WEBHOOK_PASSWORD_ENV,
            "receiver password",
            Source::EnvOrPrompt,
        )?;
        Receiver::with_basic_auth(&args.auth_user, password)
            .map_err(|e| Failure::usage(e.to_string()))?
    }
    .body_limit(args.body_limit);

    let app = receiver.router(&args.path, move |event: Event| async move {
        let line = match format {
            Output::Json => event.to_json(),
            Output::Table => human_line(&event),
        };
        let mut stdout = std::io::stdout().lock();
        // If stdout is gone (a closed pipe), answer 500 so Thulium keeps the event.
        writeln!(stdout, "{line}").and_then(|()| stdout.flush())
    });
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|e| Failure::usage(format!("cannot listen on {}: {e}", args.addr)))?;
    let addr = listener.local_addr()?;
    eprintln!(
        "listening on http://{addr}{} ({}); Ctrl-C stops",
        args.path,
        if args.no_auth {
            "no auth".to_string()
        } else {
            format!("Basic auth, user {}", args.auth_user)
        }
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// `date  ACTION  field=value ...`, one event a line.
fn human_line(event: &Event) -> String {
    let date = event
        .occurred_at()
        .map_or_else(|| "-".repeat(19), |d| d.to_string());
    let mut line = format!("{date}  {}", event.action());
    for (name, value) in event
        .fields()
        .into_iter()
        .filter(|(name, _)| name != "date")
    {
        let text = match value {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        line.push_str(&format!("  {name}={text}"));
    }
    line
}
