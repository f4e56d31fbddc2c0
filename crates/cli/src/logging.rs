//! Where the CLI's logs go: stderr, as text or as one JSON object per line, at the
//! level `-v` or `RUST_LOG` sets; and the few notices a person starting a command
//! reads (where it listens, that it stopped).

use std::sync::OnceLock;

use clap::ValueEnum;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::telemetry::Telemetry;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One line of text per record.
    #[default]
    Text,
    /// One JSON object per line, for journald, Loki or ELK; notices are records too.
    Json,
}

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// The target of notices: enabled at `info` whatever the level, so that a JSON log
/// holds them as the text output does.
const NOTICE_TARGET: &str = "thulium::notice";

/// Changes the filter of the installed subscriber (SIGHUP's new log level).
static RELOAD: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Installs the subscriber. Warnings and errors by default (a failed forward, a
/// dead letter, a store that fails); `-v` adds one line per event's outcome
/// (`info`), `-vv` debug, `-vvv` trace; `--log-level` (or the configuration file's
/// `log.level`) sets a filter instead of -v; `RUST_LOG` overrides both. The SDK never
/// logs a secret, at any level. With OpenTelemetry asked for (see
/// [`crate::telemetry`]), spans are exported too; the returned handle sends the
/// last ones at exit.
pub fn init(verbose: u8, level: Option<&str>, format: LogFormat) -> Option<Telemetry> {
    let _ = FORMAT.set(format);
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(directives(verbose, level)))
        .unwrap_or_else(|error| {
            eprintln!("warning: --log-level: {error}; logging warnings and errors");
            EnvFilter::new(directives(0, None))
        });
    let (filter, handle) = reload::Layer::new(filter);
    let _ = RELOAD.set(handle);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let layer = match format {
        LogFormat::Text => layer.with_filter(filter).boxed(),
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
    };
    let (traces, telemetry) = match crate::telemetry::layer() {
        Some((traces, telemetry)) => (Some(traces), Some(telemetry)),
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(layer)
        .with(traces)
        .init();
    telemetry
}

/// The filter for `-v` or a level; notices are always on.
fn directives(verbose: u8, level: Option<&str>) -> String {
    // The HTTP stack's per-connection records drown the relay's own below debug.
    let quiet_http = "hyper=warn,h2=warn,reqwest=warn";
    match (verbose, level) {
        (0, Some(level)) => format!("{level},{NOTICE_TARGET}=info"),
        (0, None) => format!("warn,{quiet_http},{NOTICE_TARGET}=info"),
        (1, _) => format!("info,{quiet_http},{NOTICE_TARGET}=info"),
        (2, _) => format!("debug,{NOTICE_TARGET}=info"),
        _ => format!("trace,{NOTICE_TARGET}=info"),
    }
}

/// Sets the log filter to `level` while running; refused when `RUST_LOG` is set
/// (it decides) or the filter does not parse.
pub fn set_level(level: &str) -> Result<(), String> {
    if std::env::var_os("RUST_LOG").is_some() {
        return Err("RUST_LOG is set and decides the level".into());
    }
    let filter = EnvFilter::try_new(directives(0, Some(level))).map_err(|e| e.to_string())?;
    RELOAD
        .get()
        .ok_or("no log subscriber to change")?
        .reload(filter)
        .map_err(|e| e.to_string())
}

/// A line for the person who started the command: plain on stderr with text logs,
/// a record among the others with JSON logs.
pub fn notice(text: &str) {
    match FORMAT.get() {
        Some(LogFormat::Json) => tracing::info!(target: NOTICE_TARGET, "{text}"),
        _ => eprintln!("{text}"),
    }
}
