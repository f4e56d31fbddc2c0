//! `thulium events send|emit`.

use reqwest::header::CONTENT_TYPE;
use serde_json::json;
use thulium::event::Event;

use thulium::secret::Redactor;

use crate::args::{EventArgs, EventsCommand, Format, Output};
use crate::connection;
use crate::failure::Failure;
use crate::output;
use crate::secrets::{self, Source, WEBHOOK_PASSWORD_ENV};

fn build(event: &EventArgs) -> Result<Event, Failure> {
    thulium_mock::samples::event(&event.action, &event.fields)
        .map_err(|e| Failure::usage(format!("not a valid event: {e}")))
}

fn http() -> Result<reqwest::Client, Failure> {
    thulium::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("thulium-cli/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Failure::other(format!("cannot set up HTTP: {e}")))
}

fn network(error: reqwest::Error, url: &str) -> Failure {
    let mut cause: &dyn std::error::Error = &error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    if error.is_timeout() {
        Failure::network(format!("{url} did not answer within 30 s"))
    } else {
        Failure::network(format!(
            "cannot reach {url}: {cause}; is the receiver running?"
        ))
    }
}

pub async fn run(command: EventsCommand, output: Output) -> Result<(), Failure> {
    match command {
        EventsCommand::Send {
            url,
            event,
            format,
            auth_user,
        } => {
            let event = build(&event)?;
            let parsed = reqwest::Url::parse(&url).map_err(|e| {
                Failure::usage(format!("--url `{url}` is not an absolute URL ({e})"))
            })?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return Err(Failure::usage(format!(
                    "--url `{url}` must be an http:// or https:// URL with a host"
                )));
            }
            let (body, content_type) = match format {
                Format::Form => (event.to_form(), "application/x-www-form-urlencoded"),
                Format::Json => (event.to_json(), "application/json"),
            };
            let mut request = http()?
                .post(parsed.clone())
                .header(CONTENT_TYPE, content_type)
                .body(body);
            let mut redactor = Redactor::new();
            if let Some(user) = auth_user {
                if !thulium::config::credentials_may_travel_to(&parsed) {
                    return Err(Failure::usage(
                        "refusing to send credentials over plain HTTP to a non-loopback host; use https://",
                    ));
                }
                let password = secrets::read(
                    WEBHOOK_PASSWORD_ENV,
                    "receiver password",
                    Source::EnvOrPrompt,
                )?;
                request = request.basic_auth(&user, Some(password.expose()));
                redactor = redactor.basic_credentials(&user, password);
            }
            let response = request.send().await.map_err(|e| network(e, &url))?;
            let status = response.status();
            // The receiver's answer is its own text: cut, with our secrets removed.
            let answer = response.text().await.unwrap_or_default();
            let answer = redactor.redact_string(answer);
            let answer = output::truncate(&answer, 500);
            match output {
                Output::Json => output::print(
                    json!({"action": event.action(), "status": status.as_u16(), "body": answer}),
                )?,
                Output::Table => output::print(format!(
                    "{} -> HTTP {status}: {}",
                    event.action(),
                    output::escape(&answer)
                ))?,
            }
            if !status.is_success() {
                return Err(Failure::refused(format!(
                    "the receiver answered HTTP {status}: {answer}"
                )));
            }
        }
        EventsCommand::Emit { connection, event } => {
            let event = build(&event)?;
            let resolved = connection::resolve(&connection)?;
            let url = format!("{}/_mock/events", resolved.base_url.trim_end_matches('/'));
            let parsed = reqwest::Url::parse(&url)
                .map_err(|e| Failure::usage(format!("the base URL is not a URL ({e})")))?;
            if !thulium::config::credentials_may_travel_to(&parsed) {
                return Err(Failure::usage(
                    "refusing to send the API credentials over plain HTTP to a non-loopback host; use https://",
                ));
            }
            let redactor =
                Redactor::new().basic_credentials(&resolved.user, resolved.password.clone());
            let response = http()?
                .post(parsed)
                .basic_auth(&resolved.user, Some(resolved.password.expose()))
                .header(CONTENT_TYPE, "application/json")
                .body(event.to_json())
                .send()
                .await
                .map_err(|e| network(e, &url))?;
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            let answer: serde_json::Value = serde_json::from_str(&redactor.redact(&text))
                .unwrap_or_else(|_| {
                    serde_json::Value::String(
                        output::truncate(&redactor.redact(&text), 500).into_owned(),
                    )
                });
            if !status.is_success() {
                return Err(Failure::refused(format!(
                    "{url} answered HTTP {status}: {answer}; is THULIUM_BASE_URL the fake's (thulium mock)?"
                )));
            }
            match output {
                Output::Json => output::print(answer)?,
                Output::Table => {
                    let count = answer["deliveries"].as_array().map_or(0, Vec::len);
                    output::print(format!(
                        "{} emitted to {count} subscription(s)",
                        event.action()
                    ))?;
                }
            }
        }
    }
    Ok(())
}
