//! `thulium listen --inbox PATH`: receive into the durable inbox, then print or
//! forward each event with retries.

use std::time::Duration;

use thulium::event::Event;
use thulium::receiver::Receiver;
use thulium_inbox::Store;
use thulium_inbox::breaker::BreakerConfig;
use thulium_inbox::bus::Destination;
use thulium_inbox::bus::mqtt::MqttPublisher;
use thulium_inbox::bus::nats::NatsPublisher;
use thulium_inbox::bus::rabbitmq::RabbitPublisher;
use thulium_inbox::bus::redis::RedisStreams;
use thulium_inbox::dispatcher::{Delivery, DispatchConfig, RetrySchedule};
use thulium_inbox::forward::{ForwardFormat, Forwarder};
use thulium_inbox::relay::{Account, Relay, Route, shutdown_signal};
use thulium_inbox::routing::RouteName;

use crate::accounts::AccountSpec;
use crate::args::{ForwardFormat as FormatArg, InboxArgs, ListenArgs, Output};
use crate::failure::Failure;
use crate::listen::{StdoutWriter, line};
use crate::location::{self, Opened};
use crate::output;
use crate::routes::{Bus, RouteSpec};
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
            let format = forward_format(inbox.forward_format);
            let mut forwarder = Forwarder::new(url, auth, format, inbox.handler_timeout)
                .map_err(|e| Failure::usage(e.to_string()))?;
            if inbox.forward_sign {
                forwarder = forwarder.signing(signing_secrets(&inbox.forward_signing_secret_env)?);
            }
            Some(forwarder)
        }
        None => None,
    };
    let mut routes = Vec::with_capacity(inbox.route.len());
    for spec in &inbox.route {
        routes.push(route_of(spec, inbox).await?);
    }
    let accounts = inbox
        .receive_for
        .iter()
        .map(|spec| account_of(spec, args.body_limit))
        .collect::<Result<Vec<_>, _>>()?;
    let handing = Handing {
        forwarder,
        routes,
        accounts,
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
                args, receiver, listener, stdout, format, handing, store, label,
            )
            .await
        }
        Opened::Postgres(store) => {
            let label = store.label().to_string();
            serve(
                args, receiver, listener, stdout, format, handing, store, label,
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

/// How events are handed over: forwarded to one URL, routed to several, or (neither)
/// printed.
struct Handing {
    forwarder: Option<Forwarder>,
    routes: Vec<Route<Destination>>,
    /// The accounts received for (none: the one receiver of --path).
    accounts: Vec<Account>,
}

/// An account's receiver from its spec: its own credentials, from its variable or
/// file.
fn account_of(spec: &AccountSpec, body_limit: usize) -> Result<Account, Failure> {
    let password = secrets::read_env_or_file(
        &spec.password_env,
        spec.password_file.as_deref(),
        &format!("account {}'s webhook password", spec.name),
        Source::EnvOrPrompt,
    )?;
    let receiver = Receiver::with_basic_auth(&spec.auth_user, password)
        .map_err(|e| Failure::usage(format!("account {}: {e}", spec.name)))?
        .body_limit(body_limit);
    Ok(Account::new(spec.name.clone(), receiver).path(&spec.path))
}

/// The library's forward format for the command line's.
fn forward_format(format: FormatArg) -> ForwardFormat {
    match format {
        FormatArg::AsReceived => ForwardFormat::AsReceived,
        FormatArg::Form => ForwardFormat::Reencoded(thulium::event::BodyFormat::Form),
        FormatArg::Json => ForwardFormat::Reencoded(thulium::event::BodyFormat::Json),
    }
}

/// The waits between attempts unless a route gives its own: from 1 s, doubling,
/// to an hour.
const RETRY: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(3600));

/// How attempts are made: `concurrency` at once, each within `timeout`, dead after
/// `max_attempts`, retried `retry.0` to `retry.1` apart, paused after `breaker`
/// failures in a row (0: never).
fn dispatch_config(
    concurrency: u32,
    timeout: Duration,
    max_attempts: u32,
    retry: (Duration, Duration),
    breaker: u32,
) -> DispatchConfig {
    let breaker = (breaker > 0).then(|| {
        let defaults = BreakerConfig::default();
        BreakerConfig::new(breaker, defaults.first_wait, defaults.longest_wait)
    });
    DispatchConfig::default()
        .concurrency(concurrency as usize)
        .handler_timeout(timeout)
        .schedule(RetrySchedule::new(max_attempts, retry.0, retry.1))
        .breaker(breaker)
}

/// The variable that holds route `name`'s password unless its spec names one:
/// `THULIUM_ROUTE_CRM_EU_PASSWORD` for `crm-eu`.
pub fn route_password_env(name: &RouteName) -> String {
    format!(
        "THULIUM_ROUTE_{}_PASSWORD",
        name.as_str().to_ascii_uppercase().replace('-', "_")
    )
}

/// A route from its spec, with the listener's settings where it gives none.
async fn route_of(spec: &RouteSpec, inbox: &InboxArgs) -> Result<Route<Destination>, Failure> {
    let password_env = spec
        .password_env
        .clone()
        .unwrap_or_else(|| route_password_env(&spec.name));
    let auth = forward_credentials(
        spec.auth_user.as_deref(),
        &password_env,
        spec.password_file.as_deref(),
        Source::EnvOrPrompt,
    )?;
    let timeout = spec.timeout.unwrap_or(inbox.handler_timeout);
    let format = forward_format(spec.format.unwrap_or(inbox.forward_format));
    let signing = match spec.sign {
        true => {
            let env = spec
                .signing_secret_env
                .as_deref()
                .unwrap_or(&inbox.forward_signing_secret_env);
            Some(signing_secrets(env)?)
        }
        false => None,
    };
    let failed = |e: thulium_inbox::forward::ForwardError| {
        Failure::usage(format!("route {}: {e}", spec.name))
    };
    let destination = match &spec.bus {
        None => {
            let mut forwarder = Forwarder::new(&spec.to, auth, format, timeout).map_err(failed)?;
            if let Some(statuses) = &spec.final_statuses {
                forwarder = forwarder.final_statuses(statuses);
            }
            if let Some(secrets) = signing {
                forwarder = forwarder.signing(secrets);
            }
            Destination::Http(forwarder)
        }
        Some(Bus::Nats { subject }) => {
            let mut publisher =
                NatsPublisher::connect(&spec.to, auth, subject.clone(), format, timeout)
                    .await
                    .map_err(failed)?;
            if let Some(secrets) = signing {
                publisher = publisher.signing(secrets);
            }
            Destination::Nats(publisher)
        }
        Some(Bus::Redis { stream, max_len }) => {
            let mut streams =
                RedisStreams::connect(&spec.to, auth, stream.clone(), *max_len, format, timeout)
                    .await
                    .map_err(failed)?;
            if let Some(secrets) = signing {
                streams = streams.signing(secrets);
            }
            Destination::Redis(streams)
        }
        Some(Bus::Rabbit {
            exchange,
            routing_key,
        }) => {
            let mut publisher = RabbitPublisher::connect(
                &spec.to,
                auth,
                exchange,
                routing_key.clone(),
                format,
                timeout,
            )
            .map_err(failed)?;
            if let Some(secrets) = signing {
                publisher = publisher.signing(secrets);
            }
            Destination::Rabbit(publisher)
        }
        Some(Bus::Mqtt { topic }) => Destination::Mqtt(
            MqttPublisher::connect(&spec.to, auth, topic.clone(), format, timeout)
                .map_err(failed)?,
        ),
    };
    let config = dispatch_config(
        spec.concurrency.unwrap_or(inbox.concurrency),
        timeout,
        spec.max_attempts.unwrap_or(inbox.max_attempts),
        spec.retry.unwrap_or(RETRY),
        spec.breaker.unwrap_or(inbox.breaker_after),
    );
    Ok(Route::new(spec.name.clone(), destination)
        .actions(spec.actions.clone())
        .accounts(spec.accounts.clone())
        .dispatch(config.rate_limit(spec.rate)))
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
    handing: Handing,
    store: S,
    label: String,
) -> Result<(), Failure> {
    let inbox = &args.inbox;
    let Handing {
        forwarder,
        routes,
        accounts,
    } = handing;
    let paths: Vec<String> = if accounts.is_empty() {
        vec![args.path.clone()]
    } else {
        accounts
            .iter()
            .map(|a| format!("{} ({})", a.path, a.name))
            .collect()
    };
    let config = dispatch_config(
        inbox.concurrency,
        inbox.handler_timeout,
        inbox.max_attempts,
        RETRY,
        inbox.breaker_after,
    );
    let mut relay = Relay::new(store.clone(), receiver)
        .path(&args.path)
        .max_backlog(inbox.max_backlog)
        .dispatch(config)
        .keep(inbox.keep)
        .limits(args.limits.limits())
        .accounts(accounts);
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
    let route_names: Vec<String> = routes.iter().map(|r| r.name.to_string()).collect();
    let running = match forwarder {
        _ if !routes.is_empty() => relay.start_routes(listener, routes).await,
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
        output::escape(&paths.join(", ")),
        output::escape(&label),
        match &inbox.forward_to {
            _ if !route_names.is_empty() =>
                format!("routing to {}", output::escape(&route_names.join(", "))),
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
