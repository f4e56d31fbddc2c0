//! `thulium webhooks list|create|ensure`.

use thulium::NewWebhook;

use crate::args::{Connection, NewWebhookArgs, Output, WebhooksCommand};
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
        WebhooksCommand::Create(args) => {
            let (webhook, client) = prepare(args, connection)?;
            let created = client.create_webhook(&webhook).await?;
            match format {
                Output::Table => output::print(output::webhooks_table(&[created]))?,
                Output::Json => output::print(output::webhook_json(&created))?,
            }
        }
        WebhooksCommand::Ensure(args) => {
            let (webhook, client) = prepare(args, connection)?;
            let ensured = client.ensure_webhook(&webhook).await?;
            let said = if ensured.created() {
                "created"
            } else {
                "exists"
            };
            match format {
                Output::Table => output::print(format!(
                    "{said}\n{}",
                    output::webhooks_table(std::slice::from_ref(ensured.webhook()))
                ))?,
                Output::Json => output::print(serde_json::json!({
                    "outcome": said,
                    "webhook": output::webhook_json(ensured.webhook()),
                }))?,
            }
        }
    }
    Ok(())
}

/// The subscription the flags describe, checked before the API password is asked
/// for or anything is sent, and the client to send it with.
fn prepare(
    args: NewWebhookArgs,
    connection: &Connection,
) -> Result<(NewWebhook, thulium::Client), Failure> {
    let NewWebhookArgs {
        actions,
        allow_unknown_action,
        url,
        auth_user,
        auth_password_stdin,
        insecure_plain_http_auth,
    } = args;
    crate::actions::warn_unknown(actions.iter().map(String::as_str), allow_unknown_action);
    let mut webhook = NewWebhook::new(url, actions);
    if let Some(user) = auth_user {
        let source = if auth_password_stdin {
            Source::Stdin
        } else {
            Source::EnvOrPrompt
        };
        let password = secrets::read(WEBHOOK_PASSWORD_ENV, "subscription password", source)?;
        webhook = webhook.with_auth(user, password);
    }
    if !insecure_plain_http_auth {
        webhook.validate()?;
    }
    let client = connection::client_with(connection, |builder| {
        builder.allow_plain_http_subscription_auth(insecure_plain_http_auth)
    })?;
    Ok((webhook, client))
}
