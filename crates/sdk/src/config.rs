//! [`ClientBuilder`]: where the client talks to, as whom, and how patiently.

use std::fmt;
use std::time::Duration;

use reqwest::header::HeaderValue;
use url::{Host, Url};

use crate::client::Client;
use crate::error::Error;
use crate::hooks::ClientState;
use crate::retry::RetryPolicy;
use crate::secret::Password;

/// Environment variable naming the Thulium account (`acme` for `https://acme.thulium.com`).
pub const ENV_ACCOUNT: &str = "THULIUM_ACCOUNT";
/// Environment variable with a full base URL, instead of an account (tests, proxies).
pub const ENV_BASE_URL: &str = "THULIUM_BASE_URL";
/// Environment variable with the API user's login.
pub const ENV_API_USER: &str = "THULIUM_API_USER";
/// Environment variable with the API user's password.
pub const ENV_API_PASSWORD: &str = "THULIUM_API_PASSWORD";

/// The language of Thulium's error messages (`Accept-Language`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Language {
    /// English, Thulium's default.
    #[default]
    English,
    /// Polish.
    Polish,
}

impl Language {
    /// The language an `Accept-Language` value asks for first: Polish for `pl`,
    /// `pl-PL` (any case, with or without a weight), English for anything else.
    ///
    /// ```
    /// use thulium::Language;
    ///
    /// assert_eq!(Language::from_accept_language("pl-PL,en;q=0.5"), Language::Polish);
    /// assert_eq!(Language::from_accept_language("en, pl"), Language::English);
    /// ```
    pub fn from_accept_language(value: &str) -> Self {
        let first = value
            .split(',')
            .next()
            .and_then(|tag| tag.split(';').next())
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if first == "pl" || first.starts_with("pl-") {
            Language::Polish
        } else {
            Language::English
        }
    }

    /// The `Accept-Language` value.
    pub fn as_header(self) -> &'static str {
        match self {
            Language::English => "en",
            Language::Polish => "pl",
        }
    }
}

/// An API user's login and password, as created in the Thulium panel.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    user: String,
    password: Password,
}

impl Credentials {
    /// Pairs a login with its password.
    pub fn new(user: impl Into<String>, password: impl Into<Password>) -> Self {
        Self {
            user: user.into(),
            password: password.into(),
        }
    }

    /// The login.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The password (redacted in every output).
    pub fn password(&self) -> &Password {
        &self.password
    }

    fn validate(&self) -> Result<(), Error> {
        use crate::auth::ConfigError;
        crate::auth::check_credentials(&self.user, &self.password).map_err(|error| {
            let reason = match error {
                ConfigError::EmptyUser => "the API user is empty",
                ConfigError::EmptyPassword => "the API password is empty",
                _ => {
                    "the API user contains ':' or a control character, which HTTP Basic auth cannot carry"
                }
            };
            Error::Config {
                reason: reason.into(),
                source: Some(Box::new(error)),
            }
        })
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &self.password)
            .finish()
    }
}

/// Builds a [`Client`]. Start with [`Client::builder`] or [`ClientBuilder::from_env`].
///
/// ```
/// use std::time::Duration;
/// use thulium::{Client, Language};
///
/// let client = Client::builder()
///     .account("acme")
///     .credentials("api_user", "api_pass")
///     .timeout(Duration::from_secs(10))
///     .language(Language::Polish)
///     .build()
///     .unwrap();
/// assert_eq!(client.base_url().as_str(), "https://acme.thulium.com/");
///
/// // Credentials never travel over plain HTTP, except to this machine.
/// let err = Client::builder()
///     .base_url("http://example.com")
///     .credentials("api_user", "api_pass")
///     .build()
///     .unwrap_err();
/// assert!(err.to_string().contains("HTTPS"));
/// ```
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    target: Option<Target>,
    credentials: Option<Credentials>,
    timeout: Duration,
    connect_timeout: Duration,
    user_agent: String,
    language: Option<Language>,
    retry: RetryPolicy,
    max_response_bytes: usize,
    allow_plain_http_subscription_auth: bool,
    deadline: Option<Duration>,
    http_client: Option<reqwest::Client>,
}

/// The largest answer read unless configured otherwise: far above a list of thousands
/// of subscriptions, far below what would hurt a process.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Clone, Debug)]
enum Target {
    Account(String),
    BaseUrl(String),
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            target: None,
            credentials: None,
            // The vendor's own samples use 30 s.
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            user_agent: concat!("thulium-rs/", env!("CARGO_PKG_VERSION")).to_string(),
            language: None,
            retry: RetryPolicy::default(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            allow_plain_http_subscription_auth: false,
            deadline: None,
            http_client: None,
        }
    }
}

impl ClientBuilder {
    /// A builder with defaults: 30 s timeout, 10 s connect timeout, 3 attempts.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder configured from `THULIUM_ACCOUNT` or `THULIUM_BASE_URL`,
    /// `THULIUM_API_USER` and `THULIUM_API_PASSWORD`; further settings may follow.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`Self::from_env`], reading variables through `lookup` (for tests and for
    /// configuration systems other than the process environment).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let non_empty = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut builder = Self::new();
        builder = match (non_empty(ENV_ACCOUNT), non_empty(ENV_BASE_URL)) {
            (Some(_), Some(_)) => {
                return Err(Error::config(format!(
                    "both {ENV_ACCOUNT} and {ENV_BASE_URL} are set; set only one"
                )));
            }
            (Some(account), None) => builder.account(account.trim()),
            (None, Some(url)) => builder.base_url(url.trim()),
            (None, None) => {
                return Err(Error::config(format!(
                    "set {ENV_ACCOUNT} (e.g. `acme` for https://acme.thulium.com) or {ENV_BASE_URL}"
                )));
            }
        };
        match (non_empty(ENV_API_USER), lookup(ENV_API_PASSWORD)) {
            (Some(user), Some(password)) => Ok(builder.credentials(user, password)),
            _ => Err(Error::config(format!(
                "set {ENV_API_USER} and {ENV_API_PASSWORD} to the API user created in the Thulium panel"
            ))),
        }
    }

    /// Talk to `https://{account}.thulium.com`.
    pub fn account(mut self, account: impl Into<String>) -> Self {
        self.target = Some(Target::Account(account.into()));
        self
    }

    /// Talk to this base URL instead (for example the fake server on loopback).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.target = Some(Target::BaseUrl(url.into()));
        self
    }

    /// The API user to authenticate as (HTTP Basic).
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<Password>) -> Self {
        self.credentials = Some(Credentials::new(user, password));
        self
    }

    /// The longest one attempt may take, from connecting to the last byte.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The longest a whole call may take: every attempt and every pause between them.
    /// Without one (the default), a call may take up to the attempts times the
    /// [`Self::timeout`] plus the backoffs (about 95 s with the defaults). When it
    /// passes, the call ends with [`Error::Deadline`]; no retry starts a wait that
    /// would end past it.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let client = thulium::Client::builder()
    ///     .account("acme")
    ///     .credentials("api_user", "api_pass")
    ///     .timeout(Duration::from_secs(5))
    ///     .deadline(Duration::from_secs(12))
    ///     .build()
    ///     .unwrap();
    /// # drop(client);
    /// ```
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Sends requests through this `reqwest` client instead of one the SDK builds: for
    /// a proxy, your own trust roots or client certificates, or one connection pool
    /// shared with the rest of your application. Start from
    /// [`crate::tls::http_client_builder`] unless your process installs a rustls
    /// provider itself.
    ///
    /// The SDK still sets, per request, the credentials, `User-Agent`,
    /// `Accept-Language` and the [`Self::timeout`]. What belongs to the client is then
    /// yours: its connect timeout, proxies, and its redirect policy (the SDK's own
    /// client follows no redirect; reqwest drops the `Authorization` header when a
    /// redirect leads to another host). The plain-HTTP rule still applies: credentials
    /// go only over HTTPS or to loopback.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// The longest opening a connection may take (for the SDK's own HTTP client; a
    /// client passed to [`Self::http_client`] keeps its own).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The `User-Agent` header (default `thulium-rs/VERSION`).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// The language of Thulium's error messages.
    pub fn language(mut self, language: Language) -> Self {
        self.language = Some(language);
        self
    }

    /// The largest answer the client reads, in bytes (default 16 MiB); a larger one
    /// is an [`Error::UnexpectedResponse`].
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// Lets [`Client::create_webhook`] subscribe a plain-`http://` URL on another
    /// machine with HTTP Basic auth. Off by default: Thulium would then send the
    /// subscription's password in clear over the network with every event. Turn it on
    /// only for a network you trust end to end.
    pub fn allow_plain_http_subscription_auth(mut self, allow: bool) -> Self {
        self.allow_plain_http_subscription_auth = allow;
        self
    }

    /// When failed attempts are repeated; see [`RetryPolicy`].
    pub fn retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Checks the configuration and builds the client. Nothing is sent yet.
    pub fn build(self) -> Result<Client, Error> {
        let base_url = match &self.target {
            Some(Target::Account(account)) => account_url(account)?,
            Some(Target::BaseUrl(url)) => parse_base_url(url)?,
            None => {
                return Err(Error::config(
                    "no Thulium address: call .account(\"acme\") or .base_url(...)",
                ));
            }
        };
        let credentials = self.credentials.ok_or_else(|| {
            Error::config("no API credentials: call .credentials(user, password)")
        })?;
        credentials.validate()?;
        if !credentials_may_travel_to(&base_url) {
            return Err(Error::config(format!(
                "refusing to send credentials to {} over plain HTTP; use HTTPS (plain HTTP is allowed only to loopback addresses)",
                base_url.host_str().unwrap_or_default()
            )));
        }

        let user_agent = HeaderValue::from_str(&self.user_agent)
            .map_err(|_| Error::config("the user agent is not a valid header value"))?;

        let authorization =
            crate::auth::basic_authorization(credentials.user(), credentials.password());
        let accept_language = self
            .language
            .map(|language| HeaderValue::from_static(language.as_header()));

        // The SDK's own client carries the timeout (reqwest then keeps nothing in each
        // request's extensions); a client passed in gets it on each request from the
        // hooks. The headers go on each request either way: as the client's defaults
        // they cost reqwest more to merge than the hooks to insert (measured).
        let (http, timeout_per_request) = match self.http_client {
            Some(client) => (client, true),
            None => {
                let builder = crate::tls::http_client_builder().map_err(|e| Error::Config {
                    reason: "cannot set up TLS".into(),
                    source: Some(Box::new(e)),
                })?;
                let client = builder
                    .connect_timeout(self.connect_timeout)
                    .timeout(self.timeout)
                    // A redirect could carry the request to another host or to plain
                    // HTTP; Thulium's API does not redirect, so one is reported, not
                    // followed.
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| Error::Config {
                        reason: "cannot set up HTTP".into(),
                        source: Some(Box::new(e)),
                    })?;
                (client, false)
            }
        };

        // progenitor appends paths to the base URL as text; drop the trailing slash
        // so `/api/webhooks` does not become `//api/webhooks`.
        let base = base_url.as_str().trim_end_matches('/').to_string();
        let generated = crate::generated::Client::new_with_client(
            &base,
            http,
            ClientState {
                retry: self.retry,
                max_response_bytes: self.max_response_bytes,
                authorization,
                user_agent,
                accept_language,
                timeout: self.timeout,
                timeout_per_request,
            },
        );
        Ok(Client::from_parts(
            generated,
            base_url,
            credentials,
            self.deadline,
            self.allow_plain_http_subscription_auth,
        ))
    }
}

/// The base URL of a Thulium account: `https://{account}.thulium.com/`, for the first
/// label of the account's host (letters, digits and inner hyphens, up to 63).
///
/// ```
/// let url = thulium::config::account_url("Acme").unwrap();
/// assert_eq!(url.as_str(), "https://acme.thulium.com/");
/// assert!(thulium::config::account_url("acme.thulium.com").is_err());
/// ```
pub fn account_url(account: &str) -> Result<Url, Error> {
    let valid = !account.is_empty()
        && account.len() <= 63
        && account
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !account.starts_with('-')
        && !account.ends_with('-');
    if !valid {
        return Err(Error::config(format!(
            "`{account}` is not a Thulium account name; use the first label of your host, e.g. `acme` for https://acme.thulium.com"
        )));
    }
    Url::parse(&format!(
        "https://{}.thulium.com/",
        account.to_ascii_lowercase()
    ))
    .map_err(|e| Error::config(format!("cannot form the account URL: {e}")))
}

fn parse_base_url(text: &str) -> Result<Url, Error> {
    let url = Url::parse(text).map_err(|e| {
        Error::config(format!(
            "base URL `{text}` is not an absolute URL ({e}); use e.g. https://acme.thulium.com"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(Error::config(format!(
            "base URL `{text}` must be http:// or https:// with a host"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Do not echo the URL: it holds the credentials.
        return Err(Error::config(
            "the base URL contains credentials; pass them with .credentials() instead",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::config(format!(
            "base URL `{text}` must not have a query or fragment"
        )));
    }
    Ok(url)
}

/// Whether credentials may be sent to `url`: over HTTPS, or over plain HTTP only to a
/// loopback host ([`is_loopback`]). Every place that sends a password applies this.
///
/// ```
/// let url = |text| url::Url::parse(text).unwrap();
/// assert!(thulium::config::credentials_may_travel_to(&url("https://example.pl/hook")));
/// assert!(thulium::config::credentials_may_travel_to(&url("http://127.0.0.1:8080/hook")));
/// assert!(!thulium::config::credentials_may_travel_to(&url("http://example.pl/hook")));
/// ```
pub fn credentials_may_travel_to(url: &Url) -> bool {
    url.scheme() == "https" || is_loopback(url)
}

/// Whether `url` names a loopback host (`127.0.0.0/8`, `::1`, `localhost` or a
/// `*.localhost` name): the only hosts credentials may reach over plain HTTP, since
/// nobody else on the network can read that traffic.
///
/// ```
/// let url = |text| url::Url::parse(text).unwrap();
/// assert!(thulium::config::is_loopback(&url("http://127.0.0.1:8080/hook")));
/// assert!(!thulium::config::is_loopback(&url("http://localhost.evil.com")));
/// ```
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(domain)) => is_loopback_host(domain),
        None => false,
    }
}

/// [`is_loopback`] for a bare host: an IP address (IPv6 with or without brackets) or
/// a name, as a database URL or a bind address gives it. The one loopback rule of the
/// workspace: the inbox's PostgreSQL connection applies it too.
///
/// ```
/// assert!(thulium::config::is_loopback_host("localhost"));
/// assert!(thulium::config::is_loopback_host("[::1]"));
/// assert!(!thulium::config::is_loopback_host("db.example.pl"));
/// ```
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host == "localhost" || host.ends_with(".localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn builds_from_the_environment() {
        let client = ClientBuilder::from_lookup(env(&[
            (ENV_ACCOUNT, "acme"),
            (ENV_API_USER, "api_user"),
            (ENV_API_PASSWORD, "api_pass"),
        ]))
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(client.base_url().as_str(), "https://acme.thulium.com/");

        let client = ClientBuilder::from_lookup(env(&[
            (ENV_BASE_URL, "http://127.0.0.1:9999"),
            (ENV_API_USER, "u"),
            (ENV_API_PASSWORD, "p"),
        ]))
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(client.base_url().as_str(), "http://127.0.0.1:9999/");
    }

    #[test]
    fn environment_errors_name_the_variables() {
        let err = ClientBuilder::from_lookup(env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(ENV_ACCOUNT) && err.contains(ENV_BASE_URL),
            "{err}"
        );
        let err = ClientBuilder::from_lookup(env(&[(ENV_ACCOUNT, "acme"), (ENV_API_USER, "u")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains(ENV_API_PASSWORD), "{err}");
        let err = ClientBuilder::from_lookup(env(&[
            (ENV_ACCOUNT, "acme"),
            (ENV_BASE_URL, "https://x.example"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("set only one"), "{err}");
    }

    #[test]
    fn plain_http_is_refused_except_to_loopback() {
        let build = |url: &str| {
            ClientBuilder::new()
                .base_url(url)
                .credentials("u", "secret-pw")
                .build()
        };
        for ok in [
            "http://127.0.0.1:1",
            "http://127.8.9.10",
            "http://[::1]:8080",
            "http://localhost:3000",
            "http://api.localhost",
            "https://example.com",
        ] {
            assert!(build(ok).is_ok(), "{ok}");
        }
        for refused in [
            "http://example.com",
            "http://10.0.0.1",
            "http://localhost.evil.com",
        ] {
            let err = build(refused).unwrap_err().to_string();
            assert!(err.contains("plain HTTP"), "{refused}: {err}");
            assert!(!err.contains("secret-pw"));
        }
    }

    #[test]
    fn bad_addresses_and_credentials_get_clear_errors() {
        let cases: &[(ClientBuilder, &str)] = &[
            (
                ClientBuilder::new().credentials("u", "p"),
                "no Thulium address",
            ),
            (ClientBuilder::new().account("acme"), "no API credentials"),
            (
                ClientBuilder::new().account("ac me").credentials("u", "p"),
                "not a Thulium account name",
            ),
            (
                ClientBuilder::new().account("-acme").credentials("u", "p"),
                "not a Thulium account name",
            ),
            (
                ClientBuilder::new()
                    .base_url("acme.thulium.com")
                    .credentials("u", "p"),
                "not an absolute URL",
            ),
            (
                ClientBuilder::new()
                    .base_url("ftp://acme.thulium.com")
                    .credentials("u", "p"),
                "must be http:// or https://",
            ),
            (
                ClientBuilder::new()
                    .base_url("https://x.example/?a=1")
                    .credentials("u", "p"),
                "query",
            ),
            (
                ClientBuilder::new().account("acme").credentials("", "p"),
                "API user is empty",
            ),
            (
                ClientBuilder::new().account("acme").credentials("a:b", "p"),
                "':'",
            ),
            (
                ClientBuilder::new().account("acme").credentials("u", ""),
                "API password is empty",
            ),
        ];
        for (builder, expected) in cases {
            let err = builder.clone().build().unwrap_err().to_string();
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
        let err = ClientBuilder::new()
            .base_url("https://user:hunter2@acme.thulium.com")
            .credentials("u", "p")
            .build()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("contains credentials") && !err.contains("hunter2"),
            "{err}"
        );
    }

    #[test]
    fn debug_output_hides_the_password_and_the_authorization_header() {
        let builder = ClientBuilder::new()
            .account("acme")
            .credentials("api_user", "hunter2");
        let client = builder.clone().build().unwrap();
        let creds = Credentials::new("api_user", "hunter2");
        let header = crate::auth::basic_authorization(creds.user(), creds.password());
        for text in [
            format!("{builder:?}"),
            format!("{client:?}"),
            format!("{creds:?}"),
            format!("{header:?}"),
        ] {
            assert!(!text.contains("hunter2"), "{text}");
            // base64("api_user:hunter2")
            assert!(!text.contains("YXBpX3VzZXI6aHVudGVyMg"), "{text}");
        }
        assert!(header.is_sensitive());
    }
}
