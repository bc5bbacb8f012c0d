//! The exit codes of `basin`, as the README documents them.
//!
//! - `0`: done; every asset built and every `error` check passed.
//! - `1`: the run ran and something failed: an asset, an `error` check, or the run was canceled;
//!   for `basin status`, an asset needs a person.
//! - `2`: the project or the command line is invalid (nothing was run).
//! - `3`: a source or the metadata store could not be reached or refused the credentials.

use std::process::ExitCode;

use basin_core::failure::FailureCategory;

pub const FAILED: u8 = 1;
pub const INVALID: u8 = 2;
pub const UNREACHABLE: u8 = 3;

/// The exit code of a run that ended with `failure` (none: it succeeded).
pub fn of_run(failure: Option<FailureCategory>) -> ExitCode {
    match failure {
        None => ExitCode::SUCCESS,
        Some(FailureCategory::SourceUnavailable | FailureCategory::Auth) => ExitCode::from(UNREACHABLE),
        Some(_) => ExitCode::from(FAILED),
    }
}

/// The exit code of a run that ran: `0` only if it built everything and was not canceled.
pub fn of_report(report: &basin_orchestrator::run::Report) -> ExitCode {
    if !report.failed() {
        return ExitCode::SUCCESS;
    }
    of_run(Some(report.failure_category().unwrap_or(FailureCategory::Other)))
}

/// The exit code of a command that stopped with `error` before or instead of running: the
/// typed errors in its chain say whether the project was invalid or a server unreachable.
pub fn of_error(error: &anyhow::Error) -> ExitCode {
    for cause in error.chain() {
        let invalid = [basin_core::ErrorKind::Invalid, basin_core::ErrorKind::NotFound];
        if cause.downcast_ref::<basin_core::Error>().is_some_and(|e| invalid.contains(&e.kind())) {
            return ExitCode::from(INVALID);
        }
        if cause.downcast_ref::<basin_meta::Error>().is_some_and(basin_meta::Error::is_unreachable) {
            return ExitCode::from(UNREACHABLE);
        }
        match cause.downcast_ref::<basin_engine::Error>() {
            Some(basin_engine::Error::UnknownSource { .. }) => return ExitCode::from(INVALID),
            Some(e) => return of_run(Some(e.failure_category())),
            None => {}
        }
    }
    ExitCode::from(FAILED)
}
