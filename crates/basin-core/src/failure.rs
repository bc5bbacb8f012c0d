//! Why a run or an asset failed, as a category that retry policies decide on: a transient
//! network error is worth another attempt, a SQL error or a wrong password is not.

use std::fmt;

/// Why a run failed, which decides whether a retry policy may relaunch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureCategory {
    /// A network error, a killed connection, a timeout talking to a source.
    Transient,
    /// The source could not be reached at all.
    SourceUnavailable,
    /// A wrong password or a missing permission: retrying does not help.
    Auth,
    OutOfMemory,
    /// Invalid SQL, an unknown table, a type error: retrying does not help.
    BadQuery,
    /// The worker stopped heartbeating (SIGKILL, OOM killer, a lost machine).
    WorkerDied,
    /// The run outlived its timeout and was stopped.
    Timeout,
    /// An error-severity check failed (retrying rebuilds the same data).
    CheckFailed,
    /// A safety check refused the write: a replace that would drop more rows than
    /// `max_shrink` allows, a snapshot that came back empty. A person decides
    /// (`--allow-shrink`); retrying gives the same answer.
    Guardrail,
    /// A source value or file Basin cannot land as declared (a malformed CSV value, an
    /// out-of-range date under `infinity = "error"`): the data must be fixed first.
    BadData,
    /// Anything else.
    Other,
}

impl FailureCategory {
    pub const ALL: [FailureCategory; 11] = [
        FailureCategory::Transient,
        FailureCategory::SourceUnavailable,
        FailureCategory::Auth,
        FailureCategory::OutOfMemory,
        FailureCategory::BadQuery,
        FailureCategory::WorkerDied,
        FailureCategory::Timeout,
        FailureCategory::CheckFailed,
        FailureCategory::Guardrail,
        FailureCategory::BadData,
        FailureCategory::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureCategory::Transient => "transient",
            FailureCategory::SourceUnavailable => "source_unavailable",
            FailureCategory::Auth => "auth",
            FailureCategory::OutOfMemory => "out_of_memory",
            FailureCategory::BadQuery => "bad_query",
            FailureCategory::WorkerDied => "worker_died",
            FailureCategory::Timeout => "timeout",
            FailureCategory::CheckFailed => "check_failed",
            FailureCategory::Guardrail => "guardrail",
            FailureCategory::BadData => "bad_data",
            FailureCategory::Other => "other",
        }
    }
}

impl std::str::FromStr for FailureCategory {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        FailureCategory::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown failure category `{s}`"))
    }
}

impl fmt::Display for FailureCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FailureCategory {
    /// Whether a retry policy may relaunch a run that failed this way by default: a network
    /// blip, an unreachable source, memory or a dead worker may pass; bad SQL, a wrong password,
    /// a timeout or bad data will not.
    pub fn retryable_by_default(self) -> bool {
        matches!(
            self,
            FailureCategory::Transient
                | FailureCategory::SourceUnavailable
                | FailureCategory::OutOfMemory
                | FailureCategory::WorkerDied
        )
    }
}
