//! `thulium`: manage Thulium webhook subscriptions, receive and send events, and run the
//! fake Thulium. Every error is one line on stderr; the exit code says what kind.

mod accounts;
mod actions;
mod args;
mod config;
mod connection;
mod console;
mod durable;
mod events;
mod failure;
mod inbox;
mod listen;
mod location;
mod logging;
mod mock;
mod output;
mod reload;
mod routes;
mod secrets;
mod telemetry;
mod webhooks;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::args::{Cli, Command};
use crate::failure::Failure;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(error),
    };
    // `listen --config FILE`: the file's settings as flags, before the typed ones.
    let cli = match &cli.command {
        Command::Listen(args) if args.config.is_some() => {
            let path = args.config.clone().unwrap_or_default();
            let settings = match config::load(&path) {
                Ok(Ok(settings)) => settings,
                Ok(Err(mistakes)) => {
                    eprintln!("{}", config::report(&path, &mistakes));
                    eprintln!("error: {} has mistakes; see above", path.display());
                    return ExitCode::from(2);
                }
                Err(failure) => return report(&failure),
            };
            match Cli::try_parse_from(config::command_line(
                &settings,
                std::env::args_os().collect(),
            )) {
                Ok(cli) => cli,
                Err(error) => return usage_error(error),
            }
        }
        _ => cli,
    };
    let telemetry = logging::init(cli.verbose, cli.log_level.as_deref(), cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(cli));
    if let Some(telemetry) = telemetry {
        telemetry.shutdown();
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => report(&failure),
    }
}

/// One line on stderr (none for a closed pipe), and the failure's exit code.
fn report(failure: &Failure) -> ExitCode {
    if !failure.is_silent() {
        // Server text can reach the message: escape it so it stays one line.
        eprintln!("error: {}", output::escape(&failure.to_string()));
    }
    failure.exit_code()
}

/// Help and version go to stdout as clap prints them; a usage error is one line on
/// stderr (clap's first line and its tip), then exit 2.
fn usage_error(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let text = error.render().to_string();
        let code = if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            2
        } else {
            0
        };
        return match output::print(text.trim_end()) {
            Ok(()) => ExitCode::from(code),
            Err(failure) => report(&failure),
        };
    }
    let rendered = error.render().to_string();
    let mut lines = rendered.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ");
    let tips: Vec<&str> = lines.filter(|l| l.starts_with("tip:")).collect();
    let mut line = format!("error: {first}");
    for tip in tips {
        line.push_str("; ");
        line.push_str(tip.trim_start_matches("tip: "));
    }
    eprintln!("{line} (see 'thulium --help')");
    ExitCode::from(2)
}

async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Webhooks(command) => webhooks::run(command, &cli.connection, cli.output).await,
        Command::Listen(args) => listen::run(*args, &cli.connection, cli.output).await,
        Command::Mock(args) => mock::run(args, cli.output).await,
        Command::Events(command) => events::run(command, &cli.connection, cli.output).await,
        Command::Inbox(command) => inbox::run(command, cli.output).await,
        Command::Secret(args::SecretCommand::New) => {
            output::print(thulium_inbox::signing::SigningSecrets::generate())
        }
        Command::Config(args::ConfigCommand::Check { file }) => match config::load(&file)? {
            Ok(settings) => output::print(format!(
                "{}: good ({} settings)",
                file.display(),
                settings.values.len()
            )),
            Err(mistakes) => {
                // One line per mistake, then the error line and exit 2.
                eprintln!("{}", config::report(&file, &mistakes));
                Err(Failure::usage(format!(
                    "{} has {} mistake(s)",
                    file.display(),
                    mistakes.len()
                )))
            }
        },
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .map_err(|e| Failure::other(format!("cannot render the manual page: {e}")))?;
            output::print(String::from_utf8_lossy(&page).trim_end())
        }
        Command::Completions { shell } => {
            // Generated into memory first: clap_complete panics on a failed write.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "thulium", &mut script);
            output::print(String::from_utf8_lossy(&script).trim_end())
        }
    }
}
