//! The error type of `basin-core`. Each error knows its kind so that the edges (the CLI's exit
//! code, later HTTP statuses and SQLSTATEs) can map it without guessing from the message.

use std::path::PathBuf;

use crate::diagnostic::Diagnostics;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What class of failure an error is; the edges map this, never the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    Invalid,
    Conflict,
    Unavailable,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no Basin project at {}: `basin.toml` not found", dir.display())]
    ProjectNotFound { dir: PathBuf },

    #[error("cannot read {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the project has {} problem(s); run `basin validate` to see them", .0.errors().count())]
    InvalidProject(Diagnostics),

    #[error("invalid selection `{selection}`: {reason}")]
    InvalidSelection { selection: String, reason: String },

    #[error("{path} already exists; refusing to overwrite it")]
    AlreadyExists { path: String },
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::ProjectNotFound { .. } => ErrorKind::NotFound,
            Error::Io { .. } => ErrorKind::Unavailable,
            Error::InvalidProject(_) | Error::InvalidSelection { .. } => ErrorKind::Invalid,
            Error::AlreadyExists { .. } => ErrorKind::Conflict,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

/// An error and its causes on one line, `outer: inner: root`, each cause said once (a message
/// that already contains its cause's text does not repeat it).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
