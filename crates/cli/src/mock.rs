//! `thulium mock`: the fake Thulium, served until Ctrl-C, printing every delivery
//! attempt as it ends.

use thulium_mock::{
    AttemptOutcome, Delivery, DeliveryPolicy, DeliveryState, MockConfig, MockThulium,
};
use tokio::sync::broadcast::error::RecvError;

use crate::args::{MockArgs, Output};
use crate::failure::Failure;
use crate::output;

/// The environment variable that sets the fake's API password (default `api_pass`).
const MOCK_PASSWORD_ENV: &str = "THULIUM_MOCK_PASSWORD";

pub async fn run(args: MockArgs, format: Output) -> Result<(), Failure> {
    let mut config = MockConfig {
        api_user: args.api_user,
        delivery: DeliveryPolicy {
            format: args.delivery_format,
            ..DeliveryPolicy::default()
        },
        server: args.limits.limits(),
        ..MockConfig::default()
    };
    if let Some(password) = std::env::var(MOCK_PASSWORD_ENV)
        .ok()
        .filter(|p| !p.is_empty())
    {
        config.api_password = password.into();
    }
    let mock = MockThulium::bind(args.addr, config)
        .await
        .map_err(|e| Failure::usage(format!("cannot serve on {}: {e}", args.addr)))?;
    // Subscribed before anything can be emitted, so no attempt goes unreported.
    let mut attempts = mock.watch_attempts();

    // The fake's own demo credentials: printing them is the point of this command.
    let password = mock.api_password().expose().to_string();
    match format {
        Output::Json => output::print(
            serde_json::json!({"base_url": mock.base_url(), "api_user": mock.api_user(), "api_password": password}),
        )?,
        Output::Table => output::print(format!(
            "fake Thulium at {url}\n  API user:     {user}\n  API password: {password}\n\n\
             point the other commands at it:\n  \
             export THULIUM_BASE_URL={url} THULIUM_API_USER={user} THULIUM_API_PASSWORD={password}",
            url = mock.base_url(),
            user = output::escape(mock.api_user()),
        ))?,
    }
    eprintln!("serving; each delivery attempt is printed below; Ctrl-C stops");

    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            received = attempts.recv() => match received {
                Ok(delivery) => match format {
                    Output::Json => output::print(attempt_json(&delivery))?,
                    Output::Table => output::print(delivery_line(&delivery))?,
                },
                Err(RecvError::Lagged(missed)) => {
                    eprintln!("warning: {missed} delivery attempts were not printed (output too slow)");
                }
                Err(RecvError::Closed) => break,
            },
        }
    }
    mock.shutdown().await;
    Ok(())
}

/// The latest attempt of `delivery` as one JSON object.
fn attempt_json(delivery: &Delivery) -> serde_json::Value {
    serde_json::json!({
        "delivery": delivery.id,
        "subscription_id": delivery.subscription_id,
        "url": delivery.url,
        "action": delivery.action,
        "state": delivery.state,
        "attempt": delivery.attempts.last().map(crate::output::mock_attempt_json),
    })
}

/// `delivery 3 TICKET_CREATED -> http://...: attempt 2: HTTP 500, will retry`: one
/// delivery as it stands after its latest attempt.
pub fn delivery_line(delivery: &Delivery) -> String {
    let last = delivery.attempts.last();
    let outcome = match last.map(|a| &a.outcome) {
        Some(AttemptOutcome::Status(status)) => format!("HTTP {status}"),
        Some(AttemptOutcome::Error(reason)) => reason.clone(),
        Some(_) => "answered".to_string(),
        None => "not tried yet".to_string(),
    };
    let state = match delivery.state {
        DeliveryState::Delivered => "delivered".to_string(),
        DeliveryState::GaveUp => format!("gave up after {} attempts", delivery.attempts.len()),
        DeliveryState::Pending => "will retry".to_string(),
        _ => format!("{:?}", delivery.state),
    };
    output::escape(&format!(
        "delivery {} {} -> {}: attempt {}: {outcome}, {state}",
        delivery.id,
        delivery.action,
        delivery.url,
        last.map_or(0, |a| a.attempt),
    ))
    .into_owned()
}
