//! End-to-end tests of the `basin` binary in temporary projects: real processes, real Delta
//! tables on disk, and the Python `deltalake` package as an independent reader.

mod backfill;
mod checks;
mod cli;
mod crash;
mod daemon;
mod deletes;
mod demo;
mod drift;
mod incremental;
mod ingest;
mod interop;
mod object_store;
mod runs;
mod security;
mod serve;
mod support;
mod validate;
mod watchdog;
