//! Basin's domain and project model: what a project folder says, checked and turned into an
//! asset graph. Nothing here touches data; DataFusion and Delta live in `basin-engine`.

pub mod alert;
pub mod asset;
pub mod check;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod diagnostic;
pub mod error;
pub mod failure;
pub mod graph;
pub mod model;
pub mod outcome;
pub mod partition;
pub mod project;
pub mod scaffold;
pub mod selection;
pub mod serve;
pub mod slo;
pub mod source;
pub mod sql_refs;
mod toml_check;
pub mod values;
pub mod work;

pub use asset::AssetKey;
pub use diagnostic::{Diagnostic, Diagnostics, Severity};
pub use error::{Error, ErrorKind, Result};
pub use project::Project;
