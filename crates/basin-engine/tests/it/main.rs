//! Integration tests of the engine against real Delta tables on the local filesystem and in
//! an in-memory object store.

mod bronze;
mod checks;
mod files_table;
mod materialize;
mod sources;
mod support;
