mod files;
mod mysql;
mod postgres;
mod sqlite;
mod support;
