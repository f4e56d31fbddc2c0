//! The inbox console, served beside a listener or alone.

use thulium_inbox::Store;
use thulium_inbox::console::{self, ConsoleAuth, ConsoleOptions};

use crate::args::ConsoleArgs;
use crate::failure::Failure;
use crate::secrets::{self, Source};

/// The environment variable with the console's Basic-auth password, unless
/// --console-password-env names another.
pub const CONSOLE_PASSWORD_ENV: &str = "THULIUM_CONSOLE_PASSWORD";

/// Binds the console's address and checks its safety rule; the bound listener and
/// the router, to serve.
pub async fn prepare<S: Store + Clone>(
    args: &ConsoleArgs,
    store: S,
) -> Result<Option<(tokio::net::TcpListener, axum::Router)>, Failure> {
    let Some(addr) = args.console else {
        return Ok(None);
    };
    let auth = match &args.console_user {
        Some(user) => {
            let password = secrets::read_env_or_file(
                &args.console_password_env,
                args.console_password_file.as_deref(),
                "console password",
                Source::EnvOrPrompt,
            )?;
            Some(ConsoleAuth::basic(user, password).map_err(|e| Failure::usage(e.to_string()))?)
        }
        None if !addr.ip().is_loopback() => {
            return Err(Failure::usage(format!(
                "refusing to serve the console on {addr} without credentials: anyone who reaches it could replay events; add --console-user (password in {}) or bind to 127.0.0.1",
                args.console_password_env
            )));
        }
        None => None,
    };
    if auth.is_some() && !addr.ip().is_loopback() && !args.console_behind_tls_proxy {
        return Err(Failure::usage(format!(
            "refusing to serve the console on {addr} with a password over plain HTTP: browsers would send it in clear; put a proxy that terminates TLS in front and say so with --console-behind-tls-proxy, or bind to 127.0.0.1"
        )));
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::usage(format!("cannot serve the console on {addr}: {e}")))?;
    let mut options = ConsoleOptions::default();
    options.auth = auth;
    options.hosts = args.console_host.clone();
    Ok(Some((listener, console::router_with(store, options))))
}
