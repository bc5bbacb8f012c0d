//! Integration tests of the engine against real Delta tables on the local filesystem and in
//! an in-memory object store.

mod bronze;
mod checks;
mod materialize;
mod sources;
mod support;
