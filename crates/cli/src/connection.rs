//! From flags and environment to an SDK client (or, for the fake's control endpoint,
//! to a base URL and credentials).

use thulium::{Client, ClientBuilder, Language, Password};

use crate::args::Connection;
use crate::failure::Failure;
use crate::secrets::{self, API_PASSWORD_ENV, Source};

/// The base URL, the API user and its password.
pub struct Resolved {
    pub base_url: String,
    pub user: String,
    pub password: Password,
}

pub fn resolve(connection: &Connection) -> Result<Resolved, Failure> {
    let base_url = match (&connection.account, &connection.base_url) {
        // The SDK's rule for account names and their URL, so both agree.
        (Some(account), None) => thulium::config::account_url(account)
            .map_err(|e| Failure::usage(e.to_string()))?
            .to_string(),
        (None, Some(url)) => url.clone(),
        (Some(_), Some(_)) => {
            return Err(Failure::usage("give --account or --base-url, not both"));
        }
        (None, None) => {
            return Err(Failure::usage(
                "no Thulium address: pass --account (or set THULIUM_ACCOUNT) or --base-url (THULIUM_BASE_URL)",
            ));
        }
    };
    let user = connection
        .api_user
        .clone()
        .ok_or_else(|| Failure::usage("no API user: pass --api-user or set THULIUM_API_USER"))?;
    let password = secrets::read(
        API_PASSWORD_ENV,
        "Thulium API password",
        Source::EnvOrPrompt,
    )?;
    Ok(Resolved {
        base_url,
        user,
        password,
    })
}

pub fn client(connection: &Connection) -> Result<Client, Failure> {
    client_with(connection, |builder| builder)
}

/// Like [`client`], with further settings applied to the builder.
pub fn client_with(
    connection: &Connection,
    configure: impl FnOnce(ClientBuilder) -> ClientBuilder,
) -> Result<Client, Failure> {
    let resolved = resolve(connection)?;
    let mut builder = ClientBuilder::new().credentials(resolved.user, resolved.password);
    builder = match &connection.account {
        Some(account) => builder.account(account),
        None => builder.base_url(resolved.base_url),
    };
    if connection.polish {
        builder = builder.language(Language::Polish);
    }
    Ok(configure(builder).build()?)
}
