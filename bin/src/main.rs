//! `cslake`: the command line of the customer-success lakehouse. This file parses the command
//! line, runs the command and maps its outcome to an exit code; `cli` declares the commands,
//! `commands/` runs them (one function per command, grouped by stage), `output` prints what
//! people read and `summary` the JSON line schedulers read.
#![allow(clippy::print_stdout, clippy::print_stderr)] // the binary owns stdout and stderr

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use cslake_pipeline::{Error, mask};

mod cli;
mod commands;
mod output;
mod progress;
mod summary;

use summary::Summary;

/// How DataFusion words an operator that cannot keep within the memory pool, even spilling.
const RESOURCES_EXHAUSTED: &str = "Resources exhausted";

fn main() -> ExitCode {
    let parsed = cli::Cli::command()
        .try_get_matches()
        .and_then(|m| Ok((cli::Cli::from_arg_matches(&m)?, cli::command_name(&m))));
    let (cli, name) = match parsed {
        Ok(parsed) => parsed,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            let first = e.to_string().lines().next().unwrap_or_default().to_string();
            Summary::failed(2, first).print();
            return ExitCode::from(2);
        }
    };
    progress::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(cli, name)) {
        Ok(summary) => {
            summary.print();
            match &summary.unsuccessful {
                None => ExitCode::SUCCESS,
                Some(why) => {
                    eprintln!("error: {}", mask(why));
                    ExitCode::from(1)
                }
            }
        }
        Err(e) => {
            // 2 usage or configuration, 3 input rejected, 1 the job failed (never 99: Airflow
            // reads it as "skipped")
            let mut code = e.downcast_ref::<Error>().map_or(1, Error::exit_code);
            // missing S3 credentials surface through the store, Delta and DataFusion errors: the
            // message names them, and they are the configuration's to fix
            if e.chain().any(|c| {
                c.to_string()
                    .contains(cslake_pipeline::lake::storage::NO_CREDENTIALS)
            }) {
                code = 2;
            }
            eprintln!("error: {}", mask(&e.to_string()));
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {}", mask(&cause.to_string()));
            }
            // an operator that could not spill within the budget: say which setting it is
            if e.chain().any(|c| c.to_string().contains(RESOURCES_EXHAUSTED)) {
                eprintln!(
                    "  hint: this step needs more memory than its budget allows; raise --memory-limit \
                     (CSLAKE_MEMORY_LIMIT, or memory_limit in cslake.toml)"
                );
            }
            Summary::failed(code, mask(&e.to_string()).into_owned()).print();
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
    }
}
