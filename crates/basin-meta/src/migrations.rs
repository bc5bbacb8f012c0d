//! The metadata schema, as numbered migrations applied in order, each once, each in the same
//! transaction as its entry in `meta_migrations`. A store whose schema is newer than this
//! list is refused rather than written by an older Basin.
//!
//! Times are microseconds since the Unix epoch (UTC) in BIGINT columns, so both backends sort
//! and compare them the same way; lists and maps are JSON text.

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

/// Tables shared by both backends; only the identity columns differ.
macro_rules! v1 {
    ($id:literal) => {
        concat!(
            "CREATE TABLE runs (
                seq ",
            $id,
            ",
                id TEXT NOT NULL UNIQUE,
                status TEXT NOT NULL,
                selection TEXT NOT NULL,
                partition_key TEXT,
                tags TEXT NOT NULL,
                launcher TEXT NOT NULL,
                priority BIGINT NOT NULL,
                attempt BIGINT NOT NULL,
                parent_run_id TEXT,
                full_refresh BOOLEAN NOT NULL,
                created_at BIGINT NOT NULL,
                started_at BIGINT,
                finished_at BIGINT,
                heartbeat_at BIGINT,
                worker TEXT,
                cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
                failure_category TEXT,
                failure_message TEXT,
                queued BOOLEAN NOT NULL,
                retried BOOLEAN NOT NULL DEFAULT FALSE,
                not_before BIGINT
            );
            CREATE INDEX runs_by_status ON runs (status, priority, seq);
            CREATE INDEX runs_by_created ON runs (created_at);
            CREATE TABLE run_events (
                id ",
            $id,
            ",
                run_id TEXT NOT NULL REFERENCES runs (id),
                at BIGINT NOT NULL,
                kind TEXT NOT NULL,
                level TEXT NOT NULL,
                asset TEXT,
                message TEXT NOT NULL
            );
            CREATE INDEX run_events_by_run ON run_events (run_id, id);
            CREATE INDEX run_events_by_asset ON run_events (asset, run_id);
            CREATE TABLE materializations (
                id ",
            $id,
            ",
                run_id TEXT NOT NULL,
                asset TEXT NOT NULL,
                partition_key TEXT,
                delta_version BIGINT,
                row_count BIGINT NOT NULL,
                bytes BIGINT,
                duration_ms BIGINT NOT NULL,
                sql_hash TEXT,
                schema_hash TEXT,
                at BIGINT NOT NULL
            );
            CREATE INDEX materializations_by_asset ON materializations (asset, id);
            CREATE TABLE cursors (
                name TEXT PRIMARY KEY,
                value TEXT NOT NULL,
                updated_at BIGINT NOT NULL
            );
            CREATE TABLE daemons (
                id TEXT PRIMARY KEY,
                host TEXT NOT NULL,
                pid BIGINT NOT NULL,
                started_at BIGINT NOT NULL,
                heartbeat_at BIGINT NOT NULL
            );"
        )
    };
}

macro_rules! v2 {
    ($id:literal) => {
        concat!(
            "CREATE TABLE check_results (
                id ",
            $id,
            ",
                run_id TEXT,
                asset TEXT NOT NULL,
                check_name TEXT NOT NULL,
                check_type TEXT NOT NULL,
                severity TEXT NOT NULL,
                passed BOOLEAN NOT NULL,
                observed TEXT NOT NULL,
                threshold TEXT NOT NULL,
                samples TEXT NOT NULL,
                delta_version BIGINT,
                duration_ms BIGINT NOT NULL,
                at BIGINT NOT NULL
            );
            CREATE INDEX check_results_by_asset ON check_results (asset, check_name, id);
            CREATE INDEX check_results_by_run ON check_results (run_id, id);"
        )
    };
}

macro_rules! v3 {
    ($id:literal) => {
        concat!(
            "CREATE TABLE query_log (
                id ",
            $id,
            ",
                at BIGINT NOT NULL,
                user_name TEXT NOT NULL,
                role TEXT NOT NULL,
                protocol TEXT NOT NULL,
                query TEXT NOT NULL,
                duration_ms BIGINT NOT NULL,
                rows_returned BIGINT NOT NULL,
                bytes_scanned BIGINT,
                sqlstate TEXT,
                error TEXT
            );
            CREATE INDEX query_log_by_time ON query_log (at);"
        )
    };
}

macro_rules! v4 {
    ($id:literal) => {
        concat!(
            "CREATE TABLE asset_status (
                subject TEXT PRIMARY KEY,
                class TEXT NOT NULL,
                reason TEXT NOT NULL,
                run_id TEXT,
                since BIGINT NOT NULL,
                checked_at BIGINT NOT NULL
            );
            CREATE TABLE watchdog_events (
                id ",
            $id,
            ",
                at BIGINT NOT NULL,
                subject TEXT NOT NULL,
                from_class TEXT,
                to_class TEXT NOT NULL,
                reason TEXT NOT NULL,
                run_id TEXT,
                action TEXT
            );
            CREATE INDEX watchdog_events_by_subject ON watchdog_events (subject, id);
            CREATE INDEX watchdog_events_by_action ON watchdog_events (action, at);
            CREATE TABLE alerts (
                channel TEXT NOT NULL,
                subject TEXT NOT NULL,
                class TEXT NOT NULL,
                firing BOOLEAN NOT NULL,
                fired_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                PRIMARY KEY (channel, subject)
            );
            CREATE TABLE alert_deliveries (
                id ",
            $id,
            ",
                at BIGINT NOT NULL,
                channel TEXT NOT NULL,
                dedup_key TEXT NOT NULL,
                state TEXT NOT NULL,
                subject TEXT NOT NULL,
                class TEXT NOT NULL,
                attempts BIGINT NOT NULL,
                delivered BOOLEAN NOT NULL,
                error TEXT
            );
            CREATE INDEX alert_deliveries_by_time ON alert_deliveries (at);
            CREATE TABLE slo_results (
                asset TEXT NOT NULL,
                day TEXT NOT NULL,
                deadline BIGINT NOT NULL,
                verdict TEXT NOT NULL,
                built_at BIGINT,
                judged_at BIGINT NOT NULL,
                PRIMARY KEY (asset, day)
            );
            CREATE INDEX slo_results_by_deadline ON slo_results (deadline);
            CREATE INDEX run_events_latest ON run_events (asset, kind, id);
            CREATE INDEX materializations_latest ON materializations (asset, at);"
        )
    };
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "runs, events, materialisations, cursors, daemons",
        sqlite: v1!("INTEGER PRIMARY KEY AUTOINCREMENT"),
        postgres: v1!("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"),
    },
    Migration {
        version: 2,
        name: "check results",
        sqlite: v2!("INTEGER PRIMARY KEY AUTOINCREMENT"),
        postgres: v2!("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"),
    },
    Migration {
        version: 3,
        name: "query log",
        sqlite: v3!("INTEGER PRIMARY KEY AUTOINCREMENT"),
        postgres: v3!("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"),
    },
    Migration {
        version: 4,
        name: "watchdog: asset status, its transitions, alerts and their deliveries, SLO results, indexes for each asset's latest event and build",
        sqlite: v4!("INTEGER PRIMARY KEY AUTOINCREMENT"),
        postgres: v4!("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"),
    },
];

/// The newest schema version this Basin knows.
pub fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

pub const LEDGER: &str = "CREATE TABLE IF NOT EXISTS meta_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at BIGINT NOT NULL
)";
