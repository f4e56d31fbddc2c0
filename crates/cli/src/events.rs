//! `thulium events send|emit`.

use reqwest::header::CONTENT_TYPE;
use serde_json::json;
use thulium::event::Event;

use thulium::secret::Redactor;

use crate::args::{Connection, EventArgs, EventsCommand, Output};
use crate::connection;
use crate::failure::Failure;
use crate::output;
use crate::secrets::{self, Source, WEBHOOK_PASSWORD_ENV};
use thulium_mock::control::{Control, ControlError};
use thulium_mock::{Delivery, DeliveryState};

/// The vendor's example event of the action, happening now unless a date is given.
fn build(event: &EventArgs) -> Result<Event, Failure> {
    crate::actions::warn_unknown([event.action.as_str()], event.allow_unknown_action);
    thulium::event::examples::event_now(&event.action, &event.fields)
        .map_err(|e| Failure::usage(format!("not a valid event: {e}")))
}

fn http() -> Result<reqwest::Client, Failure> {
    thulium::tls::http_client_builder()
        .map_err(|e| Failure::other(format!("cannot set up TLS: {e}")))?
        .timeout(std::time::Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("thulium-cli/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Failure::other(format!("cannot set up HTTP: {e}")))
}

fn network(error: reqwest::Error, url: &str) -> Failure {
    let cause = thulium::error::root_cause(&error);
    if error.is_timeout() {
        Failure::network(format!("{url} did not answer within 30 s"))
    } else {
        Failure::network(format!(
            "cannot reach {url}: {cause}; is the receiver running?"
        ))
    }
}

pub async fn run(
    command: EventsCommand,
    connection: &Connection,
    output: Output,
) -> Result<(), Failure> {
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
            let (body, content_type) = (format.encode(&event), format.content_type());
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
            let answer = thulium::text::shorten(&answer, 500);
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
        EventsCommand::Emit {
            event,
            wait,
            wait_timeout,
        } => {
            let event = build(&event)?;
            let resolved = connection::resolve(connection)?;
            let control = Control::new(&resolved.base_url, resolved.user, resolved.password)
                .map_err(control_failure)?;
            let ids = control.emit(&event).await.map_err(control_failure)?;
            if !wait {
                return match output {
                    Output::Json => {
                        output::print(json!({"action": event.action(), "deliveries": ids}))
                    }
                    Output::Table => output::print(format!(
                        "{} emitted: {} deliver{} started (--wait reports how they end)",
                        event.action(),
                        ids.len(),
                        if ids.len() == 1 { "y" } else { "ies" }
                    )),
                };
            }
            let deliveries = control
                .wait_for(&ids, wait_timeout)
                .await
                .map_err(control_failure)?;
            report_deliveries(&event, &deliveries, output)?;
            let failed = deliveries
                .iter()
                .filter(|d| d.state == DeliveryState::GaveUp)
                .count();
            let pending = deliveries
                .iter()
                .filter(|d| d.state == DeliveryState::Pending)
                .count();
            if failed > 0 {
                return Err(Failure::refused(format!(
                    "{failed} of {} deliveries failed after every attempt",
                    deliveries.len()
                )));
            }
            if pending > 0 {
                return Err(Failure::network(format!(
                    "{pending} of {} deliveries were still being tried after {wait_timeout:?}",
                    deliveries.len()
                )));
            }
            if deliveries.is_empty() {
                eprintln!(
                    "warning: no subscription of {} on the fake, so nothing was delivered",
                    event.action()
                );
            }
        }
    }
    Ok(())
}

fn control_failure(error: ControlError) -> Failure {
    match error {
        ControlError::Config(reason) => Failure::usage(reason),
        ControlError::Network { .. } => Failure::network(error.to_string()),
        _ => Failure::refused(error.to_string()),
    }
}

/// One line per delivery: where it went, how it ended, and each attempt.
fn report_deliveries(
    event: &Event,
    deliveries: &[Delivery],
    output: Output,
) -> Result<(), Failure> {
    match output {
        Output::Json => output::print(json!({
            "action": event.action(),
            "deliveries": deliveries.iter().map(output::mock_delivery_json).collect::<Vec<_>>(),
        })),
        Output::Table => {
            let lines: Vec<String> = deliveries.iter().map(crate::mock::delivery_line).collect();
            output::print(lines.join("\n"))
        }
    }
}
