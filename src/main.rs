use std::process::ExitCode;

use clap::Parser;
use guardrails::cli::{self, Cli};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Held to the end: dropping it flushes the buffered log lines.
    let _logging = cli::init_logging(cli.log_format);
    cli::run(cli)
}
