//! Basin's engine: the lake of Delta tables under one storage root, a DataFusion session over
//! it, and the materialisations that turn SQL models into tables. The only library crate that
//! links DataFusion and deltalake.

pub mod bronze;
mod changes;
pub mod checks;
pub mod current;
mod delta;
pub mod error;
pub mod files_table;
pub mod functions;
mod guard;
pub mod history;
pub mod ingest;
pub mod lake;
pub mod materialize;
pub mod observe;
mod schema;
pub mod validate;
pub mod work;

pub use error::{Error, Result};
pub use lake::{AsOf, Lake, LakeSession};
pub use materialize::{Action, Materialized, ModelRun};

/// DataFusion and Arrow as the engine uses them, for callers that print or convert results.
pub use datafusion;
