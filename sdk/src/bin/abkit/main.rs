//! The `abkit` command-line tool. The subcommands live in the library (`abkit::cli`, feature
//! `cli`); this binary parses the command line and adds `abkit demo` (module `demo`), which
//! only the tool needs: the library carries none of it.

mod demo;

use abkit::cli::{CliError, DefaultLogLevel, LogArgs};
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Command-line arguments of `abkit`.
#[derive(Debug, Parser)]
#[command(
    name = "abkit",
    version,
    about = "Assign units to A/B-experiment variants; manage signed strategy plugins."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Lib(abkit::cli::Command),
    /// Run the built-in demo (embedded configuration, no server needed).
    Demo(demo::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse(); // exits with code 2 on usage errors
    let result = match cli.command {
        Command::Lib(command) => {
            cli.log.init(DefaultLogLevel::Warn);
            command.run()
        }
        Command::Demo(args) => {
            cli.log.init(DefaultLogLevel::Error);
            demo::run(args)
        }
    };
    match result {
        Ok(code) => code,
        Err(CliError::Invalid(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
    }
}
