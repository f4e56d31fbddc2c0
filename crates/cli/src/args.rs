//! The command line, as clap parses it.

use std::net::SocketAddr;
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use thulium::event::BodyFormat;

use crate::logging::LogFormat;

/// Exit codes, also listed in `--help`.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success (also when the reader of the output went away, as with `| head`)
  2  usage error (bad flags or input; nothing was sent)
  3  refused: Thulium or the receiver answered with an error (including wrong credentials)
  4  network error (cannot connect, timeout)
  5  the output could not be written (a full disk)
  1  anything else";

const ROOT_AFTER_HELP: &str = "\
Connection settings come from flags or the environment: THULIUM_ACCOUNT or
THULIUM_BASE_URL, THULIUM_API_USER and THULIUM_API_PASSWORD. The API password is never
a flag; without the variable you are prompted for it.

Examples:
  thulium mock                                   # a fake Thulium on 127.0.0.1:8765
  thulium webhooks list --output json | jq .
  thulium listen --addr 127.0.0.1:8080 --path /thulium
  thulium events send --url http://127.0.0.1:8080/thulium --action TICKET_CREATED";

/// Manage Thulium webhook subscriptions, receive and send events, run a fake Thulium.
#[derive(Debug, Parser)]
#[command(name = "thulium", version, after_help = format!("{ROOT_AFTER_HELP}\n\n{EXIT_CODES}"))]
pub struct Cli {
    /// More log output on stderr: warnings and errors by default, -v one line per
    /// event's outcome, -vv debug, -vvv trace (`RUST_LOG` overrides). Secrets are
    /// never logged.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// The log level as a filter (`info`, `warn,thulium_inbox=debug`), instead of -v;
    /// `RUST_LOG` overrides it, -v overrides it.
    #[arg(long, value_name = "FILTER", global = true)]
    pub log_level: Option<String>,

    /// How log lines are written on stderr: text, or one JSON object per line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "THULIUM_LOG_FORMAT", global = true)]
    pub log_format: LogFormat,

    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,

    #[command(flatten)]
    pub connection: Connection,

    #[command(subcommand)]
    pub command: Command,
}

/// How results are printed on stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable tables and lines.
    Table,
    /// JSON (one object a line for streams), for scripts and jq.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List, create and ensure webhook subscriptions.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),

    /// Receive events on a local HTTP endpoint and print each as it arrives.
    #[command(
        after_help = "\
The receiver checks HTTP Basic auth (user --auth-user, password from
THULIUM_WEBHOOK_PASSWORD, or prompted) unless --no-auth is given. Each event is printed
on stdout as it arrives; the address is reported on stderr.

With --config FILE the settings come from a TOML file (see deploy/relay.toml); flags
given too override it.

Examples:
  THULIUM_WEBHOOK_PASSWORD=s3cret thulium listen --addr 127.0.0.1:8080 --path /thulium
  thulium listen --no-auth --output json | jq .action
  thulium listen --config /etc/thulium/relay.toml",
        args_override_self = true
    )]
    Listen(Box<ListenArgs>),

    /// Check a configuration file for `thulium listen --config`.
    #[command(subcommand)]
    Config(ConfigCommand),

    /// Make secrets: `thulium secret new` prints a fresh signing secret.
    #[command(subcommand)]
    Secret(SecretCommand),

    /// Serve the fake Thulium (API and event delivery) for local development.
    #[command(after_help = "\
Prints the fake's URL and API credentials, then serves until Ctrl-C. Point the other
commands at it with the printed THULIUM_* variables.

Examples:
  thulium mock
  thulium mock --addr 127.0.0.1:9000 --delivery-format json")]
    Mock(MockArgs),

    /// Send test events to a receiver, or have the fake Thulium emit them.
    #[command(subcommand)]
    Events(EventsCommand),

    /// Look into a durable inbox (thulium listen --inbox): counts, events, replays, purges.
    #[command(subcommand)]
    Inbox(InboxCommand),

    /// Print the manual page (roff), for `man -l -` or a man directory.
    #[command(
        after_help = "Examples:\n  thulium man | man -l -\n  thulium man > ~/.local/share/man/man1/thulium.1"
    )]
    Man,

    /// Print a shell completion script.
    #[command(
        after_help = "Example:\n  thulium completions bash > ~/.local/share/bash-completion/completions/thulium"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Where the Thulium API is, and as whom to call it: global, so the flags work before
/// or after the subcommand.
#[derive(Debug, Args)]
#[command(next_help_heading = "Connection (webhooks, events emit)")]
pub struct Connection {
    /// The Thulium account (`acme` for https://acme.thulium.com).
    #[arg(
        long,
        env = "THULIUM_ACCOUNT",
        hide_env_values = true,
        conflicts_with = "base_url",
        global = true
    )]
    pub account: Option<String>,

    /// A base URL instead of an account (for example the fake Thulium).
    #[arg(long, env = "THULIUM_BASE_URL", hide_env_values = true, global = true)]
    pub base_url: Option<String>,

    /// The API user (the password comes from THULIUM_API_PASSWORD or a prompt).
    #[arg(long, env = "THULIUM_API_USER", hide_env_values = true, global = true)]
    pub api_user: Option<String>,

    /// Thulium's messages in Polish.
    #[arg(long, global = true)]
    pub polish: bool,
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// List every subscription of the account.
    #[command(
        after_help = "Examples:\n  thulium webhooks list\n  thulium webhooks list --output json | jq '.[].subscription_url'"
    )]
    List,

    /// Subscribe a URL to one or more actions.
    #[command(after_help = "\
The subscription's Basic-auth password (with --auth-user) is read from
THULIUM_WEBHOOK_PASSWORD, from stdin with --auth-password-stdin, or prompted; never
from a flag.

Examples:
  thulium webhooks create --action CHAT_CONVERSATION_CREATED --url https://example.pl/hook
  THULIUM_WEBHOOK_PASSWORD=s3cret thulium webhooks create \\
      --action TICKET_CREATED --action AGENT_RINGING --url https://example.pl/hook --auth-user thulium")]
    Create(NewWebhookArgs),

    /// Subscribe a URL to actions unless an equal subscription exists (the same URL,
    /// actions, auth user, and password where Thulium shows one): prints `created`
    /// or `exists`, exit 0 for both. Thulium has no idempotency key: two of these at
    /// the same moment can both create.
    #[command(after_help = "\
Same flags as `create`.

Example:
  THULIUM_WEBHOOK_PASSWORD=s3cret thulium webhooks ensure \\
      --action TICKET_CREATED --url https://example.pl/hook --auth-user thulium")]
    Ensure(NewWebhookArgs),
}

/// A subscription to make: `webhooks create` and `webhooks ensure`.
#[derive(Debug, Args)]
pub struct NewWebhookArgs {
    /// An action to deliver (repeat for several), such as TICKET_CREATED. A name
    /// that is not one of Thulium's documented actions gets a warning (with the
    /// closest one) and is subscribed as given.
    #[arg(long = "action", required = true, value_name = "ACTION")]
    pub actions: Vec<String>,

    /// Subscribe names that are not documented actions without a warning.
    #[arg(long)]
    pub allow_unknown_action: bool,

    /// The URL Thulium will POST events to.
    #[arg(long)]
    pub url: String,

    /// Have Thulium send HTTP Basic auth with this user.
    #[arg(long)]
    pub auth_user: Option<String>,

    /// Read the subscription's password from stdin (first line).
    #[arg(long, requires = "auth_user")]
    pub auth_password_stdin: bool,

    /// DANGEROUS: allow a plain http:// URL on another machine with --auth-user.
    /// Thulium would then send the subscription's password in clear with every
    /// event; use only on a network you trust end to end.
    #[arg(long, requires = "auth_user")]
    pub insecure_plain_http_auth: bool,
}

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Read settings from this TOML file (`thulium config check` checks it); flags
    /// given too override it. SIGHUP re-reads it: the log level and the forward's
    /// credentials change at once; any other change is logged as needing a restart.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,

    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// At start, make sure Thulium delivers to this public URL (where Thulium
    /// reaches this listener, e.g. https://relay.example.com/thulium): the
    /// subscription is created unless an equal one exists (`webhooks ensure`), with
    /// this listener's auth user and password. Uses the API connection settings.
    #[arg(long, value_name = "PUBLIC_URL", requires = "subscribe_actions")]
    pub subscribe: Option<String>,

    /// With --subscribe: an action to subscribe to (repeat for several).
    #[arg(long = "action", value_name = "ACTION", requires = "subscribe")]
    pub subscribe_actions: Vec<String>,

    /// The path events are POSTed to.
    #[arg(long, default_value = "/thulium")]
    pub path: String,

    /// The Basic-auth user Thulium sends (password from THULIUM_WEBHOOK_PASSWORD or a prompt).
    #[arg(long, default_value = "thulium")]
    pub auth_user: String,

    /// Accept events without credentials.
    #[arg(long)]
    pub no_auth: bool,

    /// The environment variable that holds the receiver's password.
    #[arg(long, value_name = "VAR", default_value = crate::secrets::WEBHOOK_PASSWORD_ENV)]
    pub password_env: String,

    /// Read the receiver's password from this file instead (first line): a secret
    /// the service manager mounts (systemd's LoadCredential=).
    #[arg(long, value_name = "PATH")]
    pub password_file: Option<std::path::PathBuf>,

    /// The largest body accepted, in bytes.
    #[arg(long, default_value_t = thulium::receiver::DEFAULT_BODY_LIMIT)]
    pub body_limit: usize,

    #[command(flatten)]
    pub limits: ServerLimitArgs,

    #[command(flatten)]
    pub inbox: InboxArgs,
}

/// Durable receiving: store each event before answering, then hand it over.
#[derive(Debug, Args)]
pub struct InboxArgs {
    /// Receive durably into this inbox: a file (created if missing) or a PostgreSQL
    /// URL (postgres://user@host/db; password in THULIUM_INBOX_PASSWORD). Each event is
    /// stored durably before the 200, then printed or forwarded with retries.
    #[arg(long, value_name = "PATH|URL")]
    pub inbox: Option<String>,

    /// With a PostgreSQL inbox: the schema of its tables (several inboxes may share a
    /// database in different schemas).
    #[arg(long, value_name = "NAME", default_value = "thulium_inbox")]
    pub inbox_schema: String,

    /// With an inbox file: the most memory its page cache holds, in MiB (default
    /// 1024, redb's). A relay that runs for months keeps as much of its file as this
    /// allows; less saves memory, pages outside it are read from the disk.
    #[arg(long, value_name = "MIB", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub inbox_cache_mb: u32,

    /// With a PostgreSQL inbox: keep a trigram index (pg_trgm) so that console text
    /// searches read an index instead of every event. Every put updates it (ingest
    /// measured about a third slower, see BENCHMARKS.md).
    #[arg(long)]
    pub inbox_search_index: bool,

    /// With a PostgreSQL inbox: the environment variable that holds its password.
    #[arg(long, value_name = "VAR", default_value = crate::location::INBOX_PASSWORD_ENV)]
    pub inbox_password_env: String,

    /// With --inbox: POST each event to this URL (a 2xx is success), as Thulium would.
    #[arg(long, value_name = "URL", requires = "inbox")]
    pub forward_to: Option<String>,

    /// With --inbox: a route, instead of --forward-to (repeat for several): NAME=URL
    /// (http(s)://; nats://host:port with subject=thulium.{account}.{action};
    /// redis://host:port/db with stream=thulium:events and maxlen=N; mqtt://host:port
    /// with topic=thulium/{account}/{action}; amqp://host:port/vhost with exchange=NAME
    /// and routing-key=thulium.{account}.{action}), then key=value
    /// words: actions=CHAT_*,TICKET_CREATED (default all),
    /// format=as-received|form|json, concurrency=N, timeout=30s, max-attempts=N,
    /// retry=1s..1h (first and longest wait), breaker=N (failures in a row that
    /// pause it; 0: never), rate=20/s (forwards started per second), final=400,410
    /// (answers that dead-letter at once; default 400,401,403,404,410,422; none),
    /// accounts=acme,beta
    /// (only their events), auth-user=USER, password-env=VAR, password-file=PATH, sign,
    /// signing-secret-env=VAR. Each event is stored once per route that takes it and
    /// each route is delivered, retried and dead-lettered on its own; an event no
    /// route takes is kept as `unrouted`.
    #[arg(
        long,
        value_name = "SPEC",
        requires = "inbox",
        conflicts_with = "forward_to"
    )]
    pub route: Vec<crate::routes::RouteSpec>,

    /// With --inbox: a Thulium account to receive for (repeat for several), each on
    /// its own path with its own password, instead of --path and --auth-user: NAME,
    /// then key=value words: path=/thulium/NAME, auth-user=thulium,
    /// password-env=THULIUM_ACCOUNT_<NAME>_PASSWORD, password-file=PATH. Each event
    /// is stored with its account (redeliveries are recognised within it), listed
    /// and filtered by it, and forwarded with X-Thulium-Account; a route's
    /// accounts=a,b takes only theirs.
    #[arg(
        long = "receive-for",
        value_name = "SPEC",
        requires = "inbox",
        conflicts_with = "subscribe"
    )]
    pub receive_for: Vec<crate::accounts::AccountSpec>,

    /// With --forward-to: send HTTP Basic auth with this user (password from
    /// THULIUM_FORWARD_PASSWORD or a prompt).
    #[arg(long, value_name = "USER", requires = "forward_to")]
    pub forward_auth_user: Option<String>,

    /// With --forward-auth-user: the environment variable that holds its password.
    #[arg(long, value_name = "VAR", default_value = crate::durable::FORWARD_PASSWORD_ENV)]
    pub forward_password_env: String,

    /// With --forward-auth-user: read its password from this file instead (first
    /// line), again at each SIGHUP: how a rotated password (systemd's
    /// LoadCredential=, a mounted secret) takes effect without a restart.
    #[arg(long, value_name = "PATH", requires = "forward_auth_user")]
    pub forward_password_file: Option<std::path::PathBuf>,

    /// With --forward-to: sign every forward as Standard Webhooks defines it
    /// (webhook-id, webhook-timestamp, webhook-signature), with the `whsec_`
    /// secrets in THULIUM_FORWARD_SIGNING_SECRET (several, space-separated, during a
    /// rotation; `thulium secret new` makes one).
    #[arg(long, requires = "forward_to")]
    pub forward_sign: bool,

    /// With --forward-sign: the environment variable that holds the secrets.
    #[arg(long, value_name = "VAR", default_value = crate::durable::SIGNING_SECRET_ENV)]
    pub forward_signing_secret_env: String,

    /// With --forward-to: the body sent.
    #[arg(long, value_enum, default_value_t = ForwardFormat::AsReceived, requires = "forward_to")]
    pub forward_format: ForwardFormat,

    /// With --inbox: events handed over at once.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,

    /// With --inbox: the longest one attempt (one forward, one print) may take.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub handler_timeout: Duration,

    /// With --inbox: attempts before an event is dead (replay brings it back).
    #[arg(long, value_name = "N", default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,

    /// With --inbox: pause a route after this many failed attempts in a row (its
    /// circuit breaker; 0: never), then try one event after 10 s, 20 s, ... up to
    /// 5 min, and resume once one is taken. Its events wait meanwhile, spending no
    /// attempts. `thulium inbox resume ROUTE` ends it at once.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub breaker_after: u32,

    /// With --inbox: answer 503 while more than this many events wait.
    #[arg(long, value_name = "N", default_value_t = thulium_inbox::receiver::DEFAULT_MAX_BACKLOG)]
    pub max_backlog: u64,

    #[command(flatten)]
    pub console: ConsoleArgs,

    /// With --inbox: remove handed-over events this old, and forget their dedup keys
    /// this long after they were received (late redeliveries are recognised until then).
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_duration)]
    pub keep: Duration,
}

/// The inbox console (a web page to see, search and replay events).
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// Serve the inbox console on this address (loopback unless --console-user is given).
    #[arg(long, value_name = "ADDR")]
    pub console: Option<SocketAddr>,

    /// Require HTTP Basic auth on the console with this user (password from
    /// THULIUM_CONSOLE_PASSWORD or a prompt); required off loopback.
    #[arg(long, value_name = "USER", requires = "console")]
    pub console_user: Option<String>,

    /// With --console-user: the environment variable that holds its password.
    #[arg(long, value_name = "VAR", default_value = crate::console::CONSOLE_PASSWORD_ENV)]
    pub console_password_env: String,

    /// A host name the console answers to besides its address (and localhost):
    /// the name users type, or that a proxy passes on (repeat for several). Any
    /// other Host is refused (421), so a rebound DNS name cannot read it.
    #[arg(long, value_name = "NAME", requires = "console")]
    pub console_host: Vec<String>,

    /// With --console-user off loopback: a proxy in front terminates TLS, so the
    /// password does not travel in clear (without it, such a console is refused).
    #[arg(long, requires = "console_user")]
    pub console_behind_tls_proxy: bool,

    /// With --console-user: read its password from this file instead (first line).
    #[arg(long, value_name = "PATH", requires = "console_user")]
    pub console_password_file: Option<std::path::PathBuf>,
}

/// How forwarded events are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ForwardFormat {
    /// Exactly the body and content type Thulium sent.
    AsReceived,
    /// Re-encoded as a form body.
    Form,
    /// Re-encoded as JSON.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Print a new random Standard Webhooks secret (`whsec_` and 32 random bytes in
    /// base64) for `listen --forward-sign`; give the same to the application.
    #[command(
        after_help = "Example:\n  export THULIUM_FORWARD_SIGNING_SECRET=\"$(thulium secret new)\""
    )]
    New,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Report each mistake in FILE with its line and column (exit 2), or that it is
    /// good (exit 0). Environment variables it names are not read.
    #[command(after_help = "Example:\n  thulium config check /etc/thulium/relay.toml")]
    Check {
        /// The file.
        file: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum InboxCommand {
    /// Counts per state, totals and the oldest waiting event.
    Stats {
        #[command(flatten)]
        at: InboxAt,
    },
    /// Events, newest first.
    #[command(
        after_help = "Examples:\n  thulium inbox list --inbox events.redb --state dead\n  thulium inbox list --inbox events.redb --action TICKET_CREATED --output json | jq .id"
    )]
    List {
        #[command(flatten)]
        at: InboxAt,
        /// Only events in this state.
        #[arg(long, value_parser = ["pending", "in_flight", "done", "dead"])]
        state: Option<String>,
        /// Only the entries of this route (`unrouted`: the events no route took).
        #[arg(long, value_name = "NAME", value_parser = parse_route)]
        route: Option<thulium_inbox::RouteName>,
        /// Only the events of this Thulium account (of a relay that receives for
        /// several).
        #[arg(long, value_name = "NAME")]
        from_account: Option<thulium_inbox::routing::AccountName>,
        /// Only events of this action.
        #[arg(long)]
        action: Option<String>,
        /// Only events whose body contains this text.
        #[arg(long)]
        text: Option<String>,
        /// Only events with an id below this (the last id of the previous page).
        #[arg(long, value_name = "ID")]
        before: Option<u64>,
        /// At most this many.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
    /// One event: its fields, its body as received and every attempt.
    Show {
        #[command(flatten)]
        at: InboxAt,
        /// The event's id.
        id: u64,
    },
    /// Hand events over again: one, every dead one, or those received in a time range.
    #[command(
        after_help = "Examples:\n  thulium inbox replay --inbox events.redb 42\n  thulium inbox replay --inbox events.redb --all-dead\n  thulium inbox replay --inbox events.redb --since 2h"
    )]
    Replay {
        #[command(flatten)]
        at: InboxAt,
        /// The event's id.
        #[arg(conflicts_with_all = ["all_dead", "since"], required_unless_present_any = ["all_dead", "since"])]
        id: Option<u64>,
        /// Every dead event.
        #[arg(long)]
        all_dead: bool,
        /// With --all-dead: only this route's dead entries.
        #[arg(long, value_name = "NAME", requires = "all_dead", value_parser = parse_route)]
        route: Option<thulium_inbox::RouteName>,
        /// Every done or dead event received within this long (e.g. 2h, 1d).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "all_dead")]
        since: Option<Duration>,
    },
    /// Set an event aside by hand: it becomes dead, and waits for a replay.
    SetAside {
        #[command(flatten)]
        at: InboxAt,
        /// The event's id.
        id: u64,
        /// Why (kept with the event).
        #[arg(long, default_value = "set aside by hand")]
        reason: String,
    },
    /// Pause a route: its relays (on every host) hand nothing over until it is
    /// resumed; its events wait, nothing is dropped.
    #[command(
        after_help = "Example:\n  thulium inbox pause --inbox events.redb crm --reason \"CRM maintenance until 18:00\""
    )]
    Pause {
        #[command(flatten)]
        at: InboxAt,
        /// The route.
        #[arg(value_parser = parse_route)]
        route: thulium_inbox::RouteName,
        /// Why (shown with the route).
        #[arg(long, default_value = "paused by hand")]
        reason: String,
    },
    /// Resume a route paused by hand or by its circuit breaker: its waiting events
    /// are handed over at once.
    Resume {
        #[command(flatten)]
        at: InboxAt,
        /// The route.
        #[arg(value_parser = parse_route)]
        route: thulium_inbox::RouteName,
    },
    /// Serve the inbox console alone (a web page to see, search and replay events).
    #[command(
        after_help = "Example:\n  thulium inbox console --inbox events.redb --console 127.0.0.1:8081"
    )]
    Console {
        #[command(flatten)]
        at: InboxAt,
        #[command(flatten)]
        console: ConsoleArgs,
    },
    /// Create or upgrade an inbox's tables: a file written by an older version, or a
    /// PostgreSQL schema (listeners also do it at start).
    Migrate {
        #[command(flatten)]
        at: InboxAt,
    },
    /// Copy an inbox file consistently while listeners use it; the copy opens as an
    /// inbox (restore: stop the listener, put the copy in the file's place). For a
    /// PostgreSQL inbox use the database's own tools (pg_dump, base backups).
    #[command(
        after_help = "Example:\n  thulium inbox backup --inbox /var/lib/thulium/events.redb --to /backup/events-$(date +%F).redb"
    )]
    Backup {
        #[command(flatten)]
        at: InboxAt,
        /// The new file (it must not exist).
        #[arg(long, value_name = "FILE")]
        to: std::path::PathBuf,
    },
    /// Copy every event that can still be read from a damaged inbox file into a new
    /// one, and list the events that could not be read (with why). The damaged file
    /// is only read. Stop the listener, salvage, then start it on the new file.
    #[command(
        after_help = "Example:\n  thulium inbox salvage --inbox /var/lib/thulium/events.redb --to /var/lib/thulium/salvaged.redb"
    )]
    Salvage {
        #[command(flatten)]
        at: InboxAt,
        /// The new file (it must not exist).
        #[arg(long, value_name = "FILE")]
        to: std::path::PathBuf,
    },
    /// Remove handed-over events, keeping their dedup keys for the window.
    Purge {
        #[command(flatten)]
        at: InboxAt,
        /// Remove events handed over this long ago or more.
        #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_duration)]
        older_than: Duration,
        /// Forget dedup keys of events received this long ago or more.
        #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_duration)]
        keep_keys: Duration,
    },
}

/// Which inbox.
#[derive(Debug, Args)]
pub struct InboxAt {
    /// The inbox: a file, or a PostgreSQL URL (password in THULIUM_INBOX_PASSWORD).
    /// Works while listeners use it.
    #[arg(
        long,
        value_name = "PATH|URL",
        env = "THULIUM_INBOX",
        hide_env_values = true
    )]
    pub inbox: String,

    /// With a PostgreSQL inbox: the schema of its tables.
    #[arg(long, value_name = "NAME", default_value = "thulium_inbox")]
    pub inbox_schema: String,
}

/// Bounds on what a client may hold of the server (see thulium::server::ServerLimits).
#[derive(Debug, Args)]
pub struct ServerLimitArgs {
    /// How long a client may take to send request headers, and keep an idle
    /// connection open (e.g. 10s, 500ms).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// How long a client may take to send a whole request body.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub body_timeout: Duration,

    /// The most connections served at once; more are closed at once.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
}

impl ServerLimitArgs {
    /// The SDK's limits with these settings.
    pub fn limits(&self) -> thulium::server::ServerLimits {
        thulium::server::ServerLimits::default()
            .header_read_timeout(self.header_timeout)
            .body_read_timeout(self.body_timeout)
            .max_connections(self.max_connections as usize)
    }
}

/// `250ms`, `10s`, `2m`, `3h`, `7d` or a bare number of seconds.
/// A route name as a filter: `unrouted` included.
fn parse_route(text: &str) -> Result<thulium_inbox::RouteName, String> {
    thulium_inbox::RouteName::try_from(text.to_string()).map_err(|e| e.to_string())
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 500ms, 10s, 2m, 3h or 7d"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(value),
        "" | "s" => Duration::from_secs(value),
        "m" => Duration::from_secs(value.saturating_mul(60)),
        "h" => Duration::from_secs(value.saturating_mul(3600)),
        "d" => Duration::from_secs(value.saturating_mul(86_400)),
        _ => {
            return Err(format!(
                "`{text}` is not a duration such as 500ms, 10s, 2m, 3h or 7d"
            ));
        }
    };
    if duration.is_zero() {
        return Err("a duration must be above zero".into());
    }
    Ok(duration)
}

#[derive(Debug, Args)]
pub struct MockArgs {
    /// The address to serve on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8765")]
    pub addr: SocketAddr,

    /// The fake's API user.
    #[arg(long, default_value = "api_user")]
    pub api_user: String,

    /// How the fake encodes the events it delivers.
    #[arg(long, value_name = "FORMAT", default_value = "form", value_parser = body_format())]
    pub delivery_format: BodyFormat,

    #[command(flatten)]
    pub limits: ServerLimitArgs,
}

/// `form` (application/x-www-form-urlencoded, as Thulium sends) or `json`: the SDK's
/// one name for an event body's encoding.
fn body_format() -> impl clap::builder::TypedValueParser<Value = BodyFormat> {
    clap::builder::PossibleValuesParser::new([BodyFormat::Form.name(), BodyFormat::Json.name()])
        .map(|name| name.parse().expect("one of the possible values"))
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// POST a realistic event to a receiver and report its answer.
    #[command(after_help = "\
Fields not given with --field get the vendor's example values, except `date`: the
current time (UTC), so that two events sent are two events. With --auth-user, the
password comes from THULIUM_WEBHOOK_PASSWORD or a prompt.

Examples:
  thulium events send --url http://127.0.0.1:8080/thulium --action TICKET_CREATED
  thulium events send --url http://127.0.0.1:8080/thulium --action CUSTOMER_UPDATED \\
      --field customer_id=682 --field company_id=null --format json --auth-user thulium")]
    Send {
        /// The receiver's URL.
        #[arg(long)]
        url: String,

        #[command(flatten)]
        event: EventArgs,

        /// The body encoding.
        #[arg(long, value_name = "FORMAT", default_value = "form", value_parser = body_format())]
        format: BodyFormat,

        /// Send HTTP Basic auth with this user.
        #[arg(long)]
        auth_user: Option<String>,
    },

    /// Have the fake Thulium emit an event to its subscribers (thulium mock).
    #[command(after_help = "\
Uses the connection settings (THULIUM_BASE_URL of the fake, its API user and password).
With --wait, reports each delivery's outcome and exits 3 if one failed, 4 if one was
still being tried when the wait ended.

Examples:
  thulium events emit --action TICKET_CREATED --field ticket_id=99
  thulium events emit --action TICKET_CREATED --wait")]
    Emit {
        #[command(flatten)]
        event: EventArgs,

        /// Wait for every delivery to succeed or give up, and report each.
        #[arg(long)]
        wait: bool,

        /// With --wait: the longest to wait.
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, requires = "wait")]
        wait_timeout: Duration,
    },
}

#[derive(Debug, Args)]
pub struct EventArgs {
    /// The event's action, such as TICKET_CREATED (unknown names are sent as given,
    /// with a warning).
    #[arg(long)]
    pub action: String,

    /// Send a name that is not a documented action without a warning.
    #[arg(long)]
    pub allow_unknown_action: bool,

    /// A field as key=value (repeatable); overrides the example value.
    #[arg(long = "field", value_name = "KEY=VALUE", value_parser = parse_field)]
    pub fields: Vec<(String, String)>,
}

fn parse_field(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}
