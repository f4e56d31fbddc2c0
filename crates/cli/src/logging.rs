//! Where the CLI's logs go: stderr, as text or as one JSON object per line, at the
//! level `-v` or `RUST_LOG` sets; and the few notices a person starting a command
//! reads (where it listens, that it stopped).

use std::sync::OnceLock;

use clap::ValueEnum;

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

/// Installs the subscriber. Warnings and errors by default (a failed forward, a
/// dead letter, a store that fails); `-v` adds one line per event's outcome
/// (`info`), `-vv` debug, `-vvv` trace; `RUST_LOG` overrides. The SDK never logs a
/// secret, at any level.
pub fn init(verbose: u8, format: LogFormat) {
    let _ = FORMAT.set(format);
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    // The HTTP stack's per-connection records drown the relay's own below debug.
    let default = match verbose {
        0 | 1 => format!("{level},hyper=warn,h2=warn,reqwest=warn,{NOTICE_TARGET}=info"),
        _ => format!("{level},{NOTICE_TARGET}=info"),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

/// A line for the person who started the command: plain on stderr with text logs,
/// a record among the others with JSON logs.
pub fn notice(text: &str) {
    match FORMAT.get() {
        Some(LogFormat::Json) => tracing::info!(target: NOTICE_TARGET, "{text}"),
        _ => eprintln!("{text}"),
    }
}
