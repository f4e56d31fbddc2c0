//! `thulium`: manage Thulium webhook subscriptions, receive and send events, and run the
//! fake Thulium. Every error is one line on stderr; the exit code says what kind.

mod args;
mod connection;
mod events;
mod failure;
mod listen;
mod mock;
mod output;
mod secrets;
mod webhooks;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::args::{Cli, Command};
use crate::failure::Failure;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
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
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {failure}");
            failure.exit_code()
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Webhooks(command) => webhooks::run(command, cli.output).await,
        Command::Listen(args) => listen::run(args, cli.output).await,
        Command::Mock(args) => mock::run(args, cli.output).await,
        Command::Events(command) => events::run(command, cli.output).await,
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "thulium",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    }
}

/// Logs go to stderr: errors only by default, `-v` debug, `-vv` trace; `RUST_LOG`
/// overrides. The SDK never logs a secret, at any level.
fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "off",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}
