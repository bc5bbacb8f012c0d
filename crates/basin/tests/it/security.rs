//! The SQL endpoints are read-only by construction: every statement that would write, define,
//! change an engine setting or open a path or URL is refused — over the wire protocol (simple
//! and extended) and over HTTP — with its SQLSTATE, in the query log with the user, and
//! nothing on disk changes. Browsers' requests from other sites are refused before anything
//! runs, and `current_user` is the authenticated user.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use sqlx::{Connection, Row};

use crate::serve::{ENGINEER_PASSWORD, Served, basic, column, http, rt, served, served_with, sqlstate, url};
use crate::support::Basin;

/// Every file under `dirs` with its size and modification time.
fn listing(dirs: &[&Path]) -> BTreeMap<PathBuf, (u64, SystemTime)> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, (u64, SystemTime)>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                let m = std::fs::metadata(&p).unwrap();
                out.insert(p, (m.len(), m.modified().unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    for d in dirs {
        walk(d, &mut out);
    }
    out
}

/// The attempts, each with the SQLSTATE it is refused with. `{marker}` is a folder of the
/// test's, `{lake}` the lake's root, `{home}` the user's home folder.
const ATTEMPTS: &[(&str, &str)] = &[
    ("COPY (SELECT 1 AS x) TO '{marker}/cp1.csv'", "42501"),
    ("COPY (SELECT email FROM silver.customer) TO '{marker}/emails.csv' WITH (FORMAT csv)", "42501"),
    ("COPY (SELECT '{}' AS x) TO '{lake}/silver/customer/_delta_log/00000000000000000099.json'", "42501"),
    ("COPY silver.customer TO '{home}/basin-security-test.csv'", "42501"),
    ("COPY silver.customer FROM '/etc/passwd'", "42501"),
    ("COPY silver.customer FROM STDIN", "42501"),
    ("COPY (SELECT 1) TO PROGRAM 'touch {marker}/pwned'", "42501"),
    ("CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'", "42501"),
    ("CREATE EXTERNAL TABLE q STORED AS PARQUET LOCATION '{lake}/silver/customer/'", "42501"),
    ("CREATE TABLE t AS SELECT 1 AS a", "42501"),
    ("CREATE VIEW v AS SELECT 1 AS a", "42501"),
    ("CREATE FUNCTION f() RETURNS INT AS 'SELECT 1' LANGUAGE SQL", "42501"),
    ("DROP TABLE silver.customer", "42501"),
    ("INSERT INTO silver.customer VALUES (9, 'x@y.z', 'X')", "42501"),
    ("UPDATE silver.customer SET name = 'X'", "42501"),
    ("DELETE FROM silver.customer", "42501"),
    ("MERGE INTO silver.customer t USING silver.customer s ON t.id = s.id WHEN MATCHED THEN DELETE", "42501"),
    ("ALTER TABLE silver.customer ADD COLUMN x INT", "42501"),
    ("TRUNCATE silver.customer", "42501"),
    ("SET datafusion.runtime.memory_limit = '1K'", "42501"),
    ("SET datafusion.sql_parser.dialect = 'MySQL'", "42501"),
    ("SET datafusion.execution.batch_size = 1", "42501"),
    ("SET ROLE engineer", "42501"),
    ("SELECT * FROM \"/etc/passwd\"", "42501"),
    ("SELECT * FROM \"file:///etc/passwd\"", "42501"),
    ("SELECT * FROM read_csv('/etc/passwd')", "42501"),
    ("SELECT * FROM read_parquet('http://127.0.0.1:9/x.parquet')", "42501"),
    ("SELECT 1; COPY (SELECT 1) TO '{marker}/hidden.csv'", "42501"),
    ("SELECT 1 AS a; DROP TABLE silver.customer", "42501"),
    ("WITH d AS (DELETE FROM silver.customer RETURNING *) SELECT * FROM d", "42501"),
    ("SELECT * INTO silver.stolen FROM silver.customer", "42501"),
    ("EXPLAIN ANALYZE DELETE FROM silver.customer", "42501"),
    ("PREPARE p AS SELECT 1", "0A000"),
];

struct Setup {
    s: Served,
    marker: tempfile::TempDir,
    lake: PathBuf,
    home: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let s = served();
        let lake = s.basin.path().join("lake");
        assert!(lake.join("silver/customer/_delta_log").is_dir());
        let home = PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()));
        Setup { s, marker: tempfile::tempdir().unwrap(), lake, home }
    }

    fn sql(&self, template: &str) -> String {
        template
            .replace("{marker}", &self.marker.path().display().to_string())
            .replace("{lake}", &self.lake.display().to_string())
            .replace("{home}", &self.home.display().to_string())
    }

    fn listing(&self) -> BTreeMap<PathBuf, (u64, SystemTime)> {
        listing(&[&self.lake, self.marker.path()])
    }
}

/// One entry of `basin.query_log`.
#[derive(Debug)]
struct Logged {
    user: String,
    sqlstate: Option<String>,
    error: Option<String>,
    rows: i64,
}

/// The entries of `basin.query_log` (read as the engineer) whose query contains `marker`, once
/// there are `n` of them or 20 s have passed.
async fn logged(s: &Served, marker: &str, n: usize) -> Vec<Logged> {
    let mut eng = sqlx::PgConnection::connect(&url(s, "eng", ENGINEER_PASSWORD)).await.unwrap();
    logged_on(&mut eng, marker, n).await
}

/// [`logged`] on `conn`, through one prepared statement executed again and again: the log
/// reaches the store up to 100 ms after a statement ends.
async fn logged_on(eng: &mut sqlx::PgConnection, marker: &str, n: usize) -> Vec<Logged> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = sqlx::query(
            "SELECT user_name, sqlstate, error, rows_returned FROM basin.query_log WHERE strpos(query, $1) > 0",
        )
        .bind(marker)
        .fetch_all(&mut *eng)
        .await
        .unwrap();
        let entries: Vec<Logged> = rows
            .iter()
            .map(|r| Logged { user: r.get(0), sqlstate: r.get(1), error: r.get(2), rows: r.get(3) })
            .collect();
        if entries.len() >= n || Instant::now() > deadline {
            return entries;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Attempts naming `/etc/passwd`, each refused and logged.
fn passwd_attempts() -> usize {
    ATTEMPTS.iter().filter(|(sql, _)| sql.contains("/etc/passwd")).count()
}

#[test]
fn no_statement_writes_defines_sets_or_opens_a_path_over_the_wire() {
    let t = Setup::new();
    let before = t.listing();
    rt().block_on(async {
        let mut ana = sqlx::PgConnection::connect(&url(&t.s, "ana", "analyst-pw")).await.unwrap();
        for (template, code) in ATTEMPTS {
            let sql = t.sql(template);
            // The simple protocol (psql's) and the extended one (drivers' prepared statements).
            let simple = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone())).execute(&mut ana).await.unwrap_err();
            assert_eq!(sqlstate(simple), *code, "simple: {sql}");
            if !sql.contains(';') {
                let prepared = sqlx::query(sqlx::AssertSqlSafe(sql.clone())).execute(&mut ana).await.unwrap_err();
                assert_eq!(sqlstate(prepared), *code, "extended: {sql}");
            }
            // The connection and the server go on.
            assert_eq!(column(&mut ana, "SELECT name FROM silver.customer WHERE id = 3").await.unwrap(), ["Cy"]);
        }
        // A setting the client may not raise: the role's timeout is 300 ms.
        let mut tim = sqlx::PgConnection::connect(&url(&t.s, "tim", ENGINEER_PASSWORD)).await.unwrap();
        for sql in ["SET statement_timeout = 0", "SET statement_timeout = '10min'"] {
            assert_eq!(sqlstate(sqlx::raw_sql(sql).execute(&mut tim).await.unwrap_err()), "42501", "{sql}");
        }
        sqlx::raw_sql("SET statement_timeout = '100ms'").execute(&mut tim).await.expect("lowering is allowed");
        assert_eq!(column(&mut tim, "SHOW statement_timeout").await.unwrap(), ["100ms"]);

        // What a reader may do still works: harmless settings, transactions, catalog reads.
        for sql in [
            "SET application_name = 'security-test'",
            "SET search_path = silver, public",
            "SET extra_float_digits = 3",
            "SET DateStyle = 'ISO'",
            "SET TIME ZONE 'UTC'",
            "BEGIN",
            "COMMIT",
        ] {
            sqlx::raw_sql(sql).execute(&mut ana).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        assert_eq!(
            column(&mut ana, "SELECT CAST(count(*) AS VARCHAR) FROM silver.customer").await.unwrap(),
            ["3"],
            "the dialect stayed PostgreSQL and the table is whole"
        );

        // The query log has every refusal, simple and extended, with the user.
        let entries = logged(&t.s, "/etc/passwd", 2 * passwd_attempts()).await;
        assert_eq!(entries.len(), 2 * passwd_attempts(), "{entries:?}");
        assert!(
            entries.iter().all(|e| e.user == "ana"
                && e.sqlstate.as_deref() == Some("42501")
                && e.error.as_deref().is_some_and(|e| e.starts_with("refused:"))),
            "{entries:?}"
        );
        let copies = logged(&t.s, "cp1.csv", 2).await;
        assert_eq!(copies.len(), 2, "simple and extended: {copies:?}");
    });
    assert_eq!(t.listing(), before, "nothing on disk changed");
    assert!(!t.home.join("basin-security-test.csv").exists());
}

#[test]
fn no_statement_writes_defines_sets_or_opens_a_path_over_http() {
    let t = Setup::new();
    let before = t.listing();
    let auth = basic("ana", "analyst-pw");
    for (template, code) in ATTEMPTS {
        let sql = t.sql(template);
        let (status, body) = http(&t.s, "POST", "/api/sql", &[("Authorization", &auth)], &sql);
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{sql}: {body}"));
        assert_eq!(answer["sqlstate"], *code, "{sql}: {body}");
        assert_eq!(status, if *code == "42501" { 403 } else { 400 }, "{sql}");
        assert!(!body.contains("root:"), "no file content in the answer: {body}");
    }
    // Over HTTP a request is one query, in the endpoints' one dialect.
    let (status, body) = http(&t.s, "POST", "/api/sql", &[("Authorization", &auth)], "SELECT 1; SELECT 2");
    assert_eq!((status, body.contains("0A000")), (400, true), "{body}");
    let (status, body) = http(&t.s, "POST", "/api/sql", &[("Authorization", &auth)], "SET search_path = silver");
    assert_eq!((status, body.contains("0A000")), (400, true), "{body}");
    let (status, body) = http(
        &t.s,
        "POST",
        "/api/sql",
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        r#"{"sql": "SELECT name FROM silver.customer WHERE id = 3"}"#,
    );
    assert_eq!((status, body.as_str()), (200, r#"[{"name":"Cy"}]"#));
    assert_eq!(t.listing(), before, "nothing on disk changed");
    rt().block_on(async {
        let entries = logged(&t.s, "/etc/passwd", passwd_attempts()).await;
        assert_eq!(entries.len(), passwd_attempts(), "{entries:?}");
        assert!(entries.iter().all(|e| e.user == "ana" && e.sqlstate.as_deref() == Some("42501")), "{entries:?}");
    });
}

#[test]
fn requests_from_other_sites_pages_are_refused_before_anything_runs() {
    let t = Setup::new();
    let auth = basic("ana", "analyst-pw");
    let probe = "SELECT 'cross-site-probe' AS p";
    let attempts: &[(&[(&str, &str)], u16)] = &[
        // DNS rebinding: the page's own host name, resolved to 127.0.0.1.
        (&[("Host", "evil.example:8080")], 421),
        // A cross-origin fetch.
        (&[("Origin", "http://evil.example")], 403),
        (&[("Origin", "null")], 403),
        // What a form or a simple fetch can send, without a preflight.
        (&[("Content-Type", "text/plain")], 415),
        (&[("Content-Type", "application/x-www-form-urlencoded")], 415),
        (&[("Content-Type", "multipart/form-data; boundary=x")], 415),
    ];
    for (headers, status) in attempts {
        let mut with_auth: Vec<(&str, &str)> = headers.to_vec();
        with_auth.push(("Authorization", &auth));
        let (got, body) = http(&t.s, "POST", "/api/sql", &with_auth, probe);
        assert_eq!(got, *status, "{headers:?}: {body}");
        assert!(!body.contains("cross-site-probe"), "{body}");
        assert!(!body.to_ascii_lowercase().contains("access-control"), "{body}");
    }
    let (status, _) = http(&t.s, "GET", "/api/assets", &[("Authorization", &auth), ("Host", "evil.example")], "");
    assert_eq!(status, 421);
    // The API's own origin, a loopback name and an address are served.
    let own = format!("http://{}", t.s.http);
    for headers in [vec![("Origin", own.as_str())], vec![("Host", "localhost:8080")], vec![("Host", "[::1]:8080")]] {
        let mut with_auth = headers.clone();
        with_auth.push(("Authorization", &auth));
        let (status, body) = http(&t.s, "POST", "/api/sql", &with_auth, "SELECT 1 AS one");
        assert_eq!((status, body.as_str()), (200, r#"[{"one":1}]"#), "{headers:?}");
    }
    rt().block_on(async {
        // The engineer's own statement proves the log is written; none of the probes is in it.
        let mut eng = sqlx::PgConnection::connect(&url(&t.s, "eng", ENGINEER_PASSWORD)).await.unwrap();
        column(&mut eng, "SELECT 'cross-site-control' AS c").await.unwrap();
        assert_eq!(logged(&t.s, "cross-site-control", 1).await.len(), 1);
        assert!(logged(&t.s, "cross-site-probe", 0).await.is_empty());
    });
}

#[test]
fn a_prepared_statement_over_the_query_log_sees_entries_logged_after_it_was_planned() {
    let s = served();
    rt().block_on(async {
        let mut eng = sqlx::PgConnection::connect(&url(&s, "eng", ENGINEER_PASSWORD)).await.unwrap();
        let probe = "prepared-log-probe";
        assert!(logged_on(&mut eng, probe, 0).await.is_empty());
        column(&mut eng, "SELECT 'prepared-log-probe' AS p").await.unwrap();
        // The same prepared statement (sqlx keeps it per connection), executed again.
        let entries = logged_on(&mut eng, probe, 1).await;
        assert_eq!(entries.len(), 1, "the prepared statement kept reading the log as it was planned");
    });
}

#[test]
fn current_user_is_the_authenticated_user_or_the_local_role() {
    let s = served();
    rt().block_on(async {
        let mut ana = sqlx::PgConnection::connect(&url(&s, "ana", "analyst-pw")).await.unwrap();
        for sql in ["SELECT current_user", "SELECT session_user", "SELECT user"] {
            assert_eq!(column(&mut ana, sql).await.unwrap(), ["ana"], "{sql}");
        }
        let mut eng = sqlx::PgConnection::connect(&url(&s, "eng", ENGINEER_PASSWORD)).await.unwrap();
        assert_eq!(column(&mut eng, "SELECT current_user").await.unwrap(), ["eng"]);
    });
    let (_, body) =
        http(&s, "POST", "/api/sql", &[("Authorization", &basic("ana", "analyst-pw"))], "SELECT current_user AS u");
    assert_eq!(body, r#"[{"u":"ana"}]"#);
    drop(s);

    // Without a password on loopback, a client is its role, whatever user name it sends.
    let local =
        served_with(Basin::empty(), "allow_unauthenticated = true\nunauthenticated_role = \"analyst\"", &["serve"]);
    rt().block_on(async {
        let address = format!("postgres://postgres@127.0.0.1:{}/basin?sslmode=disable", local.pg_port);
        let mut conn = sqlx::PgConnection::connect(&address).await.unwrap();
        assert_eq!(column(&mut conn, "SELECT current_user").await.unwrap(), ["analyst"]);
        column(&mut conn, "SELECT 'local-identity' AS x").await.unwrap();
        let entries = logged(&local, "local-identity", 1).await;
        assert_eq!(entries.first().map(|e| e.user.as_str()), Some("analyst"), "{entries:?}");
    });
    let (_, body) = http(&local, "POST", "/api/sql", &[], "SELECT current_user AS u");
    assert_eq!(body, r#"[{"u":"analyst"}]"#);
}

#[test]
fn http_answers_stream_in_every_format_and_stop_when_the_client_goes() {
    use std::io::{Read, Write};

    let s = served_with(Basin::empty(), "", &["serve"]);
    let auth = basic("eng", ENGINEER_PASSWORD);
    let sql = "SELECT id, name FROM silver.customer ORDER BY id";
    let (status, body) =
        http(&s, "POST", "/api/sql", &[("Authorization", &auth), ("Accept", "application/x-ndjson")], sql);
    assert_eq!(status, 200);
    assert_eq!(body, "{\"id\":1,\"name\":\"Ann\"}\n{\"id\":2,\"name\":\"Bob\"}\n{\"id\":3,\"name\":\"Cy\"}\n");
    let (status, body) =
        http(&s, "POST", "/api/sql", &[("Authorization", &auth)], "SELECT id FROM silver.customer WHERE id > 99");
    assert_eq!((status, body.as_str()), (200, "[]"), "an empty answer is an empty array");
    let (status, body) = http(
        &s,
        "POST",
        "/api/sql",
        &[("Authorization", &auth), ("Accept", "text/csv")],
        "SELECT id FROM silver.customer WHERE id > 99",
    );
    assert_eq!((status, body.as_str()), (200, "id\n"), "an empty CSV names its columns");

    // A client that reads the start of a long answer and goes away stops the query: the query
    // log records it as ended by the client, and the server goes on.
    let endless = "SELECT value, 'client-goes-away' AS marker FROM generate_series(1, 2000000000) AS t(value)";
    let mut conn = std::net::TcpStream::connect(&s.http).unwrap();
    write!(
        conn,
        "POST /api/sql HTTP/1.1\r\nHost: {}\r\nAuthorization: {auth}\r\nContent-Type: application/sql\r\n\
         Content-Length: {}\r\n\r\n{endless}",
        s.http,
        endless.len()
    )
    .unwrap();
    let mut start = [0u8; 4096];
    let n = conn.read(&mut start).unwrap();
    assert!(
        String::from_utf8_lossy(&start[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&start[..n])
    );
    drop(conn);
    rt().block_on(async {
        let entries = logged(&s, "client-goes-away", 1).await;
        let [ended] = entries.as_slice() else { panic!("the abandoned answer was not logged once: {entries:?}") };
        assert_eq!(ended.sqlstate.as_deref(), Some("08006"), "{ended:?}");
        assert!(ended.rows < 2_000_000_000, "{ended:?}");
        let mut eng = sqlx::PgConnection::connect(&url(&s, "eng", ENGINEER_PASSWORD)).await.unwrap();
        assert_eq!(column(&mut eng, "SELECT name FROM silver.customer WHERE id = 1").await.unwrap(), ["Ann"]);
    });
}

#[test]
fn a_role_row_limit_cuts_http_answers_and_says_so() {
    // A role of its own after the `[serve]` settings.
    let capped = "\n[roles.capped]\nselect = [\"*\"]\nmax_rows = 2\n\n\
                  [users.cap]\nrole = \"capped\"\npassword_env = \"BASIN_TEST_ENGINEER_PW\"\n";
    let s = served_with(Basin::empty(), capped, &["serve"]);
    let sql = "SELECT id FROM silver.customer ORDER BY id";
    let (status, body) = http(&s, "POST", "/api/sql", &[("Authorization", &basic("cap", ENGINEER_PASSWORD))], sql);
    assert_eq!((status, body.as_str()), (200, r#"[{"id":1},{"id":2}]"#));
    // The answer says it was cut (a raw request, to read its headers).
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(&s.http).unwrap();
    write!(
        conn,
        "POST /api/sql HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAuthorization: {}\r\n\
         Content-Type: application/sql\r\nContent-Length: {}\r\n\r\n{sql}",
        s.http,
        basic("cap", ENGINEER_PASSWORD),
        sql.len()
    )
    .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(response.to_ascii_lowercase().contains("\r\nbasin-row-limit: 2\r\n"), "{response}");
    let (status, body) = http(&s, "POST", "/api/sql", &[("Authorization", &basic("eng", ENGINEER_PASSWORD))], sql);
    assert_eq!((status, body.as_str()), (200, r#"[{"id":1},{"id":2},{"id":3}]"#), "other roles are not cut");
}
