//! `thulium listen --inbox PATH`: receive into the durable inbox, then print or
//! forward each event with retries.

use std::time::Duration;

use thulium::event::Event;
use thulium::receiver::Receiver;
use thulium_inbox::Store;
use thulium_inbox::dispatcher::{Delivery, DispatchConfig, RetrySchedule};
use thulium_inbox::forward::{ForwardFormat, Forwarder};
use thulium_inbox::relay::{Relay, shutdown_signal};

use crate::args::{ForwardFormat as FormatArg, ListenArgs, Output};
use crate::failure::Failure;
use crate::listen::{StdoutWriter, line};
use crate::location::{self, Opened};
use crate::output;
use crate::secrets::{self, Source};

/// The environment variable with the password --forward-auth-user sends, unless
/// --forward-password-env names another.
pub const FORWARD_PASSWORD_ENV: &str = "THULIUM_FORWARD_PASSWORD";

pub async fn run(
    args: ListenArgs,
    receiver: Receiver,
    listener: tokio::net::TcpListener,
    stdout: StdoutWriter,
    format: Output,
) -> Result<(), Failure> {
    let inbox = &args.inbox;
    let location = inbox.inbox.clone().expect("called with --inbox");
    let forwarder = match &inbox.forward_to {
        Some(url) => {
            let auth = forward_credentials(
                inbox.forward_auth_user.as_deref(),
                &inbox.forward_password_env,
                inbox.forward_password_file.as_deref(),
                Source::EnvOrPrompt,
            )?;
            let format = match inbox.forward_format {
                FormatArg::AsReceived => ForwardFormat::AsReceived,
                FormatArg::Form => ForwardFormat::Reencoded(thulium::event::BodyFormat::Form),
                FormatArg::Json => ForwardFormat::Reencoded(thulium::event::BodyFormat::Json),
            };
            let mut forwarder = Forwarder::new(url, auth, format, inbox.handler_timeout)
                .map_err(|e| Failure::usage(e.to_string()))?;
            if inbox.forward_sign {
                forwarder = forwarder.signing(signing_secrets(&inbox.forward_signing_secret_env)?);
            }
            Some(forwarder)
        }
        None => None,
    };

    match location::open_with(
        &location,
        &inbox.inbox_schema,
        &inbox.inbox_password_env,
        true,
        true,
        inbox.inbox_search_index,
        Some(inbox.inbox_cache_mb as usize * 1024 * 1024),
    )
    .await?
    {
        Opened::File(store) => {
            let label = store.path().display().to_string();
            serve(
                args, receiver, listener, stdout, format, forwarder, store, label,
            )
            .await
        }
        Opened::Postgres(store) => {
            let label = store.label().to_string();
            serve(
                args, receiver, listener, stdout, format, forwarder, store, label,
            )
            .await
        }
        // A listener opens to create and write: never read-only.
        Opened::ReadOnly(store) => Err(thulium_inbox::StoreError::ReadOnly {
            path: store.path().to_path_buf(),
        }
        .into()),
    }
}

/// The environment variable with the secrets --forward-sign signs with, unless
/// --forward-signing-secret-env names another.
pub const SIGNING_SECRET_ENV: &str = "THULIUM_FORWARD_SIGNING_SECRET";

/// The signing secrets from the variable `env` (never a flag, never a prompt).
fn signing_secrets(env: &str) -> Result<thulium_inbox::signing::SigningSecrets, Failure> {
    let text = std::env::var(env).unwrap_or_default();
    thulium_inbox::signing::SigningSecrets::parse(&text)
        .map_err(|e| Failure::usage(format!("{env}: {e}")))
}

/// The forward's Basic auth: the user and its password from the file if one is
/// named, else from the variable (or a prompt).
pub fn forward_credentials(
    user: Option<&str>,
    password_env: &str,
    password_file: Option<&std::path::Path>,
    source: Source,
) -> Result<Option<(String, thulium::Password)>, Failure> {
    let Some(user) = user else {
        return Ok(None);
    };
    let password =
        secrets::read_env_or_file(password_env, password_file, "forward password", source)?;
    Ok(Some((user.to_string(), password)))
}

/// The library's [`Relay`] with the command line's settings: one path for the
/// listener and for applications that embed the inbox.
#[allow(clippy::too_many_arguments)]
async fn serve<S: Store + Clone>(
    args: ListenArgs,
    receiver: Receiver,
    listener: tokio::net::TcpListener,
    stdout: StdoutWriter,
    format: Output,
    forwarder: Option<Forwarder>,
    store: S,
    label: String,
) -> Result<(), Failure> {
    let inbox = &args.inbox;
    let config = DispatchConfig::default()
        .concurrency(inbox.concurrency as usize)
        .handler_timeout(inbox.handler_timeout)
        .schedule(RetrySchedule::new(
            inbox.max_attempts,
            Duration::from_secs(1),
            Duration::from_secs(3600),
        ));
    let mut relay = Relay::new(store.clone(), receiver)
        .path(&args.path)
        .max_backlog(inbox.max_backlog)
        .dispatch(config)
        .keep(inbox.keep)
        .limits(args.limits.limits());
    match thulium_inbox::ops::install_prometheus() {
        Ok(handle) => relay = relay.metrics(handle),
        Err(error) => tracing::warn!(%error, "/metrics is off"),
    }
    crate::reload::on_hangup(crate::reload::Reloadable {
        config: args.config.clone(),
        forward: forwarder.clone().map(|forwarder| {
            let auth = crate::reload::ForwardAuth {
                user: inbox.forward_auth_user.clone(),
                password_env: inbox.forward_password_env.clone(),
                password_file: inbox.forward_password_file.clone(),
            };
            (forwarder, auth)
        }),
    });
    let running = match forwarder {
        Some(forwarder) => relay.start(listener, forwarder).await,
        None => {
            relay
                .start(listener, move |event: Event, _: Delivery| {
                    let stdout = stdout.clone();
                    async move { stdout.write(line(&event, format)).await }
                })
                .await
        }
    }?;
    let console = match crate::console::prepare(&inbox.console, store).await? {
        Some((console_listener, router)) => {
            crate::logging::notice(&format!(
                "inbox console at http://{}/",
                console_listener.local_addr()?
            ));
            Some(tokio::spawn(thulium::server::serve(
                console_listener,
                router,
                args.limits.limits(),
                running.stopping(),
            )))
        }
        None => None,
    };
    crate::logging::notice(&format!(
        "listening on http://{}{} into the inbox {}; {}; /healthz /readyz /metrics; Ctrl-C stops",
        running.local_addr(),
        args.path,
        output::escape(&label),
        match &inbox.forward_to {
            Some(url) => format!("forwarding to {}", output::escape(url)),
            None => "printing each event".to_string(),
        }
    ));
    let stopped = running.shutdown_on(shutdown_signal()).await;
    if let Some(console) = console {
        let _ = console.await;
    }
    crate::logging::notice("stopped; every event received is in the inbox");
    stopped?;
    Ok(())
}
