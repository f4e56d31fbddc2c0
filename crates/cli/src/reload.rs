//! SIGHUP: re-read the configuration file and apply what can change safely while
//! events are in flight (the log level, the forward's credentials); log every
//! other change as waiting for a restart. A hangup never stops the listener: one
//! holding events must not die because its terminal closed.

use std::path::PathBuf;

use thulium_inbox::forward::Forwarder;

use crate::config::{self, Settings};

/// The keys a reload applies; any other change waits for a restart.
const APPLIED: &[&str] = &[
    "log.level",
    "forward.auth_user",
    "forward.password_env",
    "forward.password_file",
];

/// What a reload can change.
pub struct Reloadable {
    /// The file `listen --config` read, if any.
    pub config: Option<PathBuf>,
    /// The forwarder whose credentials a reload replaces, with the settings its
    /// credentials came from at start (user, variable, file).
    pub forward: Option<(Forwarder, ForwardAuth)>,
}

/// Where the forward's credentials come from.
#[derive(Clone, Debug, PartialEq)]
pub struct ForwardAuth {
    pub user: Option<String>,
    pub password_env: String,
    pub password_file: Option<PathBuf>,
}

/// Handles SIGHUP until the process ends.
pub fn on_hangup(reloadable: Reloadable) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(error) => {
                tracing::warn!(%error, "cannot catch SIGHUP; a hangup stops the listener");
                return;
            }
        };
        let mut reloadable = reloadable;
        // The file as it was at start: what a reload compares with.
        let mut current = reloadable
            .config
            .as_deref()
            .and_then(|path| config::load(path).ok()?.ok());
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                if let Some(settings) = reload(&mut reloadable, current.as_ref()) {
                    current = Some(settings);
                }
            }
        });
    }
}

/// One SIGHUP: the new settings, if the file was read and applied.
fn reload(reloadable: &mut Reloadable, current: Option<&Settings>) -> Option<Settings> {
    let Some(path) = reloadable.config.clone() else {
        // No file: the forward's password file, if any, may still have been rotated.
        reforward(reloadable, None);
        tracing::warn!("SIGHUP: no configuration file (--config) to re-read; still running");
        return None;
    };
    let settings = match config::load(&path) {
        Ok(Ok(settings)) => settings,
        Ok(Err(mistakes)) => {
            tracing::error!(
                file = %path.display(),
                mistakes = %config::report(&path, &mistakes),
                "SIGHUP: the configuration file has mistakes; nothing changed"
            );
            return None;
        }
        Err(failure) => {
            tracing::error!(%failure, "SIGHUP: cannot read the configuration file; nothing changed");
            return None;
        }
    };
    let empty = Settings::default();
    let before = current.unwrap_or(&empty);
    let mut keys: Vec<&str> = before
        .values
        .iter()
        .chain(&settings.values)
        .map(|(key, ..)| key.as_str())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let changed: Vec<&str> = keys
        .into_iter()
        .filter(|key| before.get(key) != settings.get(key))
        .collect();
    let waiting: Vec<&str> = changed
        .iter()
        .copied()
        .filter(|key| !APPLIED.contains(key))
        .collect();
    if changed.contains(&"log.level") {
        let level = settings.get("log.level").unwrap_or("warn");
        match crate::logging::set_level(level) {
            Ok(()) => tracing::warn!(level, "SIGHUP: log level changed"),
            Err(reason) => tracing::warn!(%reason, "SIGHUP: the log level stays"),
        }
    }
    let forward_changes: Vec<(&str, Option<&str>)> = changed
        .iter()
        .filter(|key| key.starts_with("forward."))
        .map(|key| (*key, settings.get(key)))
        .collect();
    reforward(reloadable, Some(&forward_changes));
    if !waiting.is_empty() {
        tracing::warn!(
            keys = %waiting.join(", "),
            "SIGHUP: these settings changed in the file and apply at the next start"
        );
    }
    tracing::warn!(file = %path.display(), "SIGHUP: configuration re-read");
    Some(settings)
}

/// Applies the file's changed forward settings (a setting the file did not change
/// keeps its value, typed flags included), re-reads the password and hands the
/// credentials to the running forwarder. Without a file only a password file is
/// re-read.
fn reforward(reloadable: &mut Reloadable, changes: Option<&[(&str, Option<&str>)]>) {
    let Some((forwarder, auth)) = &mut reloadable.forward else {
        return;
    };
    match changes {
        Some(changes) => {
            for (key, value) in changes {
                match *key {
                    "forward.auth_user" => auth.user = value.map(str::to_owned),
                    "forward.password_env" => {
                        auth.password_env = value
                            .unwrap_or(crate::durable::FORWARD_PASSWORD_ENV)
                            .to_owned();
                    }
                    "forward.password_file" => auth.password_file = value.map(PathBuf::from),
                    _ => {}
                }
            }
        }
        None if auth.password_file.is_none() => return,
        None => {}
    }
    if auth.user.is_none() && changes.is_some_and(|c| c.is_empty()) {
        return;
    }
    let credentials = crate::durable::forward_credentials(
        auth.user.as_deref(),
        &auth.password_env,
        auth.password_file.as_deref(),
        crate::secrets::Source::Env,
    );
    match credentials.map(|c| forwarder.set_auth(c)) {
        Ok(Ok(())) => tracing::warn!(
            user = auth.user.as_deref().unwrap_or("(none)"),
            "SIGHUP: the forward's credentials were re-read"
        ),
        Ok(Err(error)) => tracing::error!(%error, "SIGHUP: the forward's credentials stay"),
        Err(failure) => tracing::error!(%failure, "SIGHUP: the forward's credentials stay"),
    }
}
