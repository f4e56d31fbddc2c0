//! `thulium webhooks list|create`.

use thulium::NewWebhook;

use crate::args::{Connection, Output, WebhooksCommand};
use crate::connection;
use crate::failure::Failure;
use crate::output;
use crate::secrets::{self, Source, WEBHOOK_PASSWORD_ENV};

pub async fn run(
    command: WebhooksCommand,
    connection: &Connection,
    format: Output,
) -> Result<(), Failure> {
    match command {
        WebhooksCommand::List => {
            let webhooks = connection::client(connection)?.list_webhooks().await?;
            match format {
                Output::Table => output::print(output::webhooks_table(&webhooks))?,
                Output::Json => {
                    let list: Vec<_> = webhooks.iter().map(output::webhook_json).collect();
                    output::print(serde_json::Value::Array(list))?;
                }
            }
        }
        WebhooksCommand::Create {
            actions,
            allow_unknown_action,
            url,
            auth_user,
            auth_password_stdin,
            insecure_plain_http_auth,
        } => {
            crate::actions::warn_unknown(actions.iter().map(String::as_str), allow_unknown_action);
            let mut webhook = NewWebhook::new(url, actions);
            if let Some(user) = auth_user {
                let source = if auth_password_stdin {
                    Source::Stdin
                } else {
                    Source::EnvOrPrompt
                };
                let password =
                    secrets::read(WEBHOOK_PASSWORD_ENV, "subscription password", source)?;
                webhook = webhook.with_auth(user, password);
            }
            // Checked before asking for the API password or connecting.
            if !insecure_plain_http_auth {
                webhook.validate()?;
            }
            let created = connection::client_with(connection, |builder| {
                builder.allow_plain_http_subscription_auth(insecure_plain_http_auth)
            })?
            .create_webhook(&webhook)
            .await?;
            match format {
                Output::Table => output::print(output::webhooks_table(&[created]))?,
                Output::Json => output::print(output::webhook_json(&created))?,
            }
        }
    }
    Ok(())
}
