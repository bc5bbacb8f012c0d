//! `basin`: the command line. Parses arguments, loads and validates the project, and hands the
//! work to the engine. Data goes to stdout, diagnostics and progress to stderr.

mod backfill;
mod checks;
mod cli;
mod daemon;
mod demo;
mod exit;
mod ingest;
mod open;
mod run;
mod runs;
mod sensors;
mod slo;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let args = cli::Cli::parse();
    logging(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(cli::dispatch(args));
    // A canceled build busy on the CPU may not have reached its next yield; do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            exit::of_error(&e)
        }
    }
}

/// Diagnostics to stderr, filtered by `RUST_LOG` (or `BASIN_LOG`), as text or JSON lines.
fn logging(format: cli::LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("RUST_LOG").or_else(|_| EnvFilter::try_from_env("BASIN_LOG")).unwrap_or_else(|_| {
            // sqlx reports every query over a second, and every wait over two for a pooled
            // connection, as a warning; a long read of a big table is what ingestion does, and
            // chunks queue for a source's connections by design (`max_connections`). deltalake
            // warns about its own metrics on every MERGE, and the Delta kernel logs as errors what
            // Basin reports itself (a version a table does not have): nothing to act on twice.
            "warn,sqlx::query=error,sqlx::pool::acquire=error,deltalake_core::operations::merge=error,buoyant_kernel=off"
                .into()
        });
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        cli::LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).init(),
        cli::LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none())
            .init(),
    }
}

/// A reader that closed its end of stdout (`basin plan | head`) ends the command quietly, as it
/// ends other Unix tools; every other panic is reported as before.
fn quiet_on_closed_stdout() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        report(info);
    }));
}
