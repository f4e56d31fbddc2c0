//! `thulium listen --inbox PATH`: receive into the durable inbox, then print or
//! forward each event with retries.

use std::time::Duration;

use thulium::event::Event;
use thulium::receiver::Receiver;
use thulium_inbox::dispatcher::{Delivery, DispatchConfig, Dispatcher, RetrySchedule};
use thulium_inbox::forward::{ForwardFormat, Forwarder};
use thulium_inbox::receiver::DurableReceiver;
use thulium_inbox::{Store, model::now_ms};
use tokio::sync::watch;

use crate::args::{ForwardFormat as FormatArg, ListenArgs, Output};
use crate::failure::Failure;
use crate::listen::{StdoutWriter, line, shutdown_signal};
use crate::location::{self, Opened};
use crate::output;
use crate::secrets::{self, Source};

/// The environment variable with the password --forward-auth-user sends.
const FORWARD_PASSWORD_ENV: &str = "THULIUM_FORWARD_PASSWORD";
/// How often the listener purges handed-over events past --keep.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

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
            let auth = match &inbox.forward_auth_user {
                Some(user) => Some((
                    user.clone(),
                    secrets::read(
                        FORWARD_PASSWORD_ENV,
                        "forward password",
                        Source::EnvOrPrompt,
                    )?,
                )),
                None => None,
            };
            let format = match inbox.forward_format {
                FormatArg::AsReceived => ForwardFormat::AsReceived,
                FormatArg::Form => ForwardFormat::Reencoded(thulium::event::BodyFormat::Form),
                FormatArg::Json => ForwardFormat::Reencoded(thulium::event::BodyFormat::Json),
            };
            Some(
                Forwarder::new(url, auth, format, inbox.handler_timeout)
                    .map_err(|e| Failure::usage(e.to_string()))?,
            )
        }
        None => None,
    };

    match location::open(&location, &inbox.inbox_schema, true, true).await? {
        Opened::File(store) => {
            let _lock = store.lock_for_dispatch()?;
            // Only this process dispatches from the file: claims left by a process
            // that died are released now rather than when their leases run out.
            let released = store.release_claims().await?;
            if released > 0 {
                eprintln!("released {released} event(s) a previous listener was handing over");
            }
            let label = store.path().display().to_string();
            serve(
                args, receiver, listener, stdout, format, forwarder, store, label,
            )
            .await
        }
        // Other listeners may hold claims in a shared database: theirs run out by
        // their leases, never released by us.
        Opened::Postgres(store) => {
            let label = store.label().to_string();
            serve(
                args, receiver, listener, stdout, format, forwarder, store, label,
            )
            .await
        }
    }
}

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
    let metrics = thulium_inbox::ops::install_prometheus()
        .map_err(|e| tracing::warn!("{e}"))
        .ok();
    let app = DurableReceiver::new(receiver, store.clone())
        .max_backlog(inbox.max_backlog)
        .router(&args.path)
        .merge(thulium_inbox::ops::router(store.clone(), metrics));

    let (stop, stopped) = watch::channel(false);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    let config = DispatchConfig::default()
        .concurrency(inbox.concurrency as usize)
        .handler_timeout(inbox.handler_timeout)
        .schedule(RetrySchedule::new(
            inbox.max_attempts,
            Duration::from_secs(1),
            Duration::from_secs(3600),
        ));
    let dispatcher = Dispatcher::new(store.clone(), config);
    let dispatching = match forwarder {
        Some(forwarder) => tokio::spawn(dispatcher.run(forwarder, until_stopped())),
        None => tokio::spawn(dispatcher.run(
            move |event: Event, _: Delivery| {
                let stdout = stdout.clone();
                async move { stdout.write(line(&event, format)).await }
            },
            until_stopped(),
        )),
    };
    let purging = tokio::spawn(purge_now_and_then(
        store.clone(),
        inbox.keep,
        until_stopped(),
    ));
    let console = match crate::console::prepare(&inbox.console, store.clone()).await? {
        Some((console_listener, router)) => {
            eprintln!(
                "inbox console at http://{}/",
                console_listener.local_addr()?
            );
            Some(tokio::spawn(thulium::server::serve(
                console_listener,
                router,
                args.limits.limits(),
                until_stopped(),
            )))
        }
        None => None,
    };

    let addr = listener.local_addr()?;
    eprintln!(
        "listening on http://{addr}{} into the inbox {}; {}; /healthz /readyz /metrics; Ctrl-C stops",
        args.path,
        output::escape(&label),
        match &inbox.forward_to {
            Some(url) => format!("forwarding to {}", output::escape(url)),
            None => "printing each event".to_string(),
        }
    );
    let serving = thulium::server::serve(listener, app, args.limits.limits(), async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    })
    .await;
    let _ = dispatching.await;
    if let Some(console) = console {
        let _ = console.await;
    }
    purging.abort();
    serving?;
    Ok(())
}

/// Purges at start and every [`PURGE_EVERY`]: done events older than `keep`, dedup
/// keys of events received more than `keep` ago.
async fn purge_now_and_then<S: Store>(
    store: S,
    keep: Duration,
    stopped: impl std::future::Future<Output = ()>,
) {
    let mut stopped = std::pin::pin!(stopped);
    loop {
        let cut = now_ms().saturating_sub(u64::try_from(keep.as_millis()).unwrap_or(u64::MAX));
        match store.purge(cut, cut).await {
            Ok(purged) if purged.events + purged.keys > 0 => {
                tracing::info!(events = purged.events, keys = purged.keys, "purged");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "purge failed; trying again later"),
        }
        tokio::select! {
            () = tokio::time::sleep(PURGE_EVERY) => {}
            () = &mut stopped => return,
        }
    }
}
