//! `thulium mock`: the fake Thulium, served until Ctrl-C.

use thulium_mock::{DeliveryFormat, DeliveryPolicy, MockConfig, MockThulium};

use crate::args::{Format, MockArgs, Output};
use crate::failure::Failure;
use crate::output;

/// The environment variable that sets the fake's API password (default `api_pass`).
const MOCK_PASSWORD_ENV: &str = "THULIUM_MOCK_PASSWORD";

pub async fn run(args: MockArgs, format: Output) -> Result<(), Failure> {
    let mut config = MockConfig {
        api_user: args.api_user,
        delivery: DeliveryPolicy {
            format: match args.delivery_format {
                Format::Form => DeliveryFormat::Form,
                Format::Json => DeliveryFormat::Json,
            },
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
    eprintln!("serving; Ctrl-C stops");
    let _ = tokio::signal::ctrl_c().await;
    mock.shutdown().await;
    Ok(())
}
