//! Connectors against real databases: here, SQLite files made by the test.

mod sqlite;
