//! The `breachmail` binary: parse the command line, hand it to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    breachmail::commands::main_with(breachmail::cli::Cli::parse())
}
