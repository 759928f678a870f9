use std::process::ExitCode;

use clap::Parser;
use guardrails::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(cli.log_format);
    cli::run(cli)
}
