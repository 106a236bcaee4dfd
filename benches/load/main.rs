//! `cargo bench --bench load -- [flags]`: drives virtual shoppers against minimart
//! and prints what they saw. `--help` lists the flags; the README explains them.
//! Exits non-zero when an invariant broke (or the run could not be made).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use minimart_load as load;

use std::process::ExitCode;

use clap::Parser;

/// The allocator `minimart` itself runs on: the server here is in-process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let options = load::Options::parse();
    // The in-process server logs only when asked (RUST_LOG=minimart=debug, say):
    // its per-order log lines would otherwise cost the run what it measures.
    if std::env::var_os("RUST_LOG").is_some() {
        minimart::telemetry::init(minimart::telemetry::LogFormat::Text);
    }
    let results = match load::run(&options) {
        Ok(results) => results,
        Err(error) => {
            eprintln!("load: {}", minimart::telemetry::error_chain(&error));
            return ExitCode::from(2);
        }
    };
    println!("{}", results.table());
    let written = [
        options.json.as_deref().map(|path| results.write_json(path)),
        options
            .report
            .as_deref()
            .map(|dir| results.write_report(dir)),
    ];
    for outcome in written.into_iter().flatten() {
        if let Err(error) = outcome {
            eprintln!("load: {}", minimart::telemetry::error_chain(&error));
            return ExitCode::from(2);
        }
    }
    if results.invariants_ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("load: an invariant broke (see above)");
        ExitCode::FAILURE
    }
}
