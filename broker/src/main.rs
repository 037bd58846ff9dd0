//! `coro`: the Coro daemon and its tools.

#![forbid(unsafe_code)]

mod cli;
mod decode;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = <cli::Cli as clap::Parser>::parse();
    match cli.command {
        cli::Command::Decode(args) => decode::run(&args),
    }
}
