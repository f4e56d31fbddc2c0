//! Passwords come from an environment variable, stdin or a prompt; never from a flag,
//! where they would land in shell history and `ps` output.

use std::io::{BufRead, IsTerminal};

use thulium::Password;

use crate::failure::Failure;

/// The environment variable with the API user's password.
pub const API_PASSWORD_ENV: &str = "THULIUM_API_PASSWORD";
/// The environment variable with a subscription's (receiver's) Basic-auth password.
pub const WEBHOOK_PASSWORD_ENV: &str = "THULIUM_WEBHOOK_PASSWORD";

/// Where a password is read from.
pub enum Source {
    /// The first line of stdin.
    Stdin,
    /// The variable, else a prompt when stdin is a terminal.
    EnvOrPrompt,
    /// The variable only (a reload while running: nobody is there to answer).
    Env,
}

/// Reads a password: what it is for goes into the messages.
pub fn read(env: &str, what: &str, source: Source) -> Result<Password, Failure> {
    let from_stdin = |failure_hint: &str| -> Result<Password, Failure> {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure::usage(format!("cannot read the {what} from stdin: {e}")))?;
        let password = line.trim_end_matches(['\n', '\r']).to_string();
        if password.is_empty() {
            return Err(Failure::usage(format!(
                "the {what} on stdin is empty{failure_hint}"
            )));
        }
        Ok(Password::new(password))
    };
    match source {
        Source::Stdin => from_stdin(""),
        Source::EnvOrPrompt | Source::Env => {
            if let Some(value) = std::env::var(env).ok().filter(|v| !v.is_empty()) {
                return Ok(Password::new(value));
            }
            if matches!(source, Source::EnvOrPrompt) && std::io::stdin().is_terminal() {
                let value = rpassword::prompt_password(format!("{what}: "))
                    .map_err(|e| Failure::usage(format!("cannot prompt for the {what}: {e}")))?;
                if value.is_empty() {
                    return Err(Failure::usage(format!("the {what} is empty")));
                }
                return Ok(Password::new(value));
            }
            Err(Failure::usage(format!(
                "no {what}: set {env} (passwords are never taken from flags)"
            )))
        }
    }
}

/// Reads a password from the first line of the file at `path` (a secret mounted by
/// the service manager); what it is for goes into the messages, the file's content
/// never does.
pub fn read_file(path: &std::path::Path, what: &str) -> Result<Password, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::usage(format!(
            "cannot read the {what} from {}: {e}",
            path.display()
        ))
    })?;
    let password = text.lines().next().unwrap_or_default().to_string();
    if password.is_empty() {
        return Err(Failure::usage(format!(
            "the {what} file {} is empty",
            path.display()
        )));
    }
    Ok(Password::new(password))
}

/// Reads a password from the file if one is named (`--...-password-file`), else as
/// [`read`] does from the variable.
pub fn read_env_or_file(
    env: &str,
    file: Option<&std::path::Path>,
    what: &str,
    source: Source,
) -> Result<Password, Failure> {
    match file {
        Some(path) => read_file(path, what),
        None => read(env, what, source),
    }
}
