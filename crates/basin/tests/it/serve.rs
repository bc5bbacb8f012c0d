//! `basin serve`: real clients (sqlx over the wire with SCRAM and prepared statements, psql,
//! raw HTTP) against the endpoint, as two roles: an analyst who sees e-mail addresses masked
//! and cannot read a secret table, and an engineer who sees everything.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};

use sqlx::{Connection, Row};

use crate::support::Basin;

const ENGINEER_PASSWORD: &str = "engineer-pw";

struct Served {
    basin: Basin,
    child: Child,
    pg_port: u16,
    http: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn served() -> Served {
    let b = Basin::empty();
    let verifier = {
        let mut c =
            b.command(&["serve", "--hash-password"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        c.stdin.take().unwrap().write_all(b"analyst-pw\n").unwrap();
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    assert!(verifier.starts_with("SCRAM-SHA-256$4096:"), "{verifier}");
    b.write(
        "basin.toml",
        &format!(
            "[project]\nname = \"t\"\n\n[serve]\nlisten = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\n\
             [users.ana]\nrole = \"analyst\"\npassword = \"{verifier}\"\n\n\
             [users.eng]\nrole = \"engineer\"\npassword_env = \"BASIN_TEST_ENGINEER_PW\"\n\n\
             [roles.analyst]\nselect = [\"silver.customer\", \"gold\"]\nmask = {{ \"pii:email\" = \"mask_email\" }}\n\n\
             [roles.engineer]\nselect = [\"*\"]\n"
        ),
    );
    b.write(
        "models/silver/customer.sql",
        "/* basin\n[columns.email]\ntags = [\"pii:email\"]\n*/\n\
         SELECT * FROM (VALUES (1, 'ann@acme.com', 'Ann'), (2, 'bob@x.org', 'Bob'), (3, NULL, 'Cy')) AS t(id, email, name)",
    );
    b.write("models/silver/secret.sql", "SELECT 42 AS answer");
    b.write(
        "models/gold/shouting.sql",
        "/* basin\nmaterialized = \"view\"\n*/\nSELECT id, upper(email) AS email_upper FROM silver.customer",
    );
    b.cmd(&["run"]).success();
    let mut child =
        b.command(&["serve"]).env("BASIN_TEST_ENGINEER_PW", ENGINEER_PASSWORD).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let banner = loop {
        let line = lines.next().expect("basin serve ended before it listened").unwrap();
        if line.starts_with("serving") {
            break line;
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    // "serving t over PostgreSQL at 127.0.0.1:PORT and HTTP at http://127.0.0.1:PORT"
    let words: Vec<&str> = banner.split_whitespace().collect();
    let pg = words[words.iter().position(|w| *w == "at").unwrap() + 1];
    let http = words.last().unwrap().trim_start_matches("http://").to_string();
    Served { basin: b, child, pg_port: pg.rsplit(':').next().unwrap().parse().unwrap(), http }
}

fn url(s: &Served, user: &str, password: &str) -> String {
    format!("postgres://{user}:{password}@127.0.0.1:{}/basin?sslmode=disable", s.pg_port)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Every value of the first column, as text (NULL as "NULL").
async fn column(conn: &mut sqlx::PgConnection, sql: &str) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).fetch_all(&mut *conn).await?;
    Ok(rows.iter().map(|r| r.try_get::<Option<String>, _>(0).unwrap().unwrap_or_else(|| "NULL".into())).collect())
}

fn sqlstate(e: sqlx::Error) -> String {
    e.as_database_error().and_then(|d| d.code()).map(|c| c.to_string()).unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

/// A raw HTTP/1.1 request; the status code and body.
fn http(s: &Served, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut conn = std::net::TcpStream::connect(&s.http).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        s.http,
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    conn.write_all(req.as_bytes()).unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

#[test]
fn roles_see_what_they_are_granted_with_pii_masked_in_every_query_shape() {
    let s = served();
    rt().block_on(async {
        let mut ana =
            sqlx::PgConnection::connect(&url(&s, "ana", "analyst-pw")).await.expect("ana connects with SCRAM");
        let masked = ["****@acme.com", "****@x.org", "NULL"];
        // Every shape of reading the column gets the masked value.
        for sql in [
            "SELECT email FROM silver.customer ORDER BY id",
            "SELECT c.email AS e FROM silver.customer c ORDER BY c.id",
            "SELECT CAST(email AS VARCHAR) FROM silver.customer ORDER BY id",
            "WITH c AS (SELECT id, email FROM silver.customer) SELECT email FROM c ORDER BY id",
            "SELECT email FROM (SELECT * FROM silver.customer) s ORDER BY id",
            "SELECT b.email FROM silver.customer a JOIN silver.customer b ON a.id = b.id ORDER BY a.id",
            "SELECT email FROM (SELECT id, email FROM silver.customer WHERE id < 3 UNION ALL \
             SELECT id, email FROM silver.customer WHERE id = 3) u ORDER BY id",
        ] {
            assert_eq!(column(&mut ana, sql).await.unwrap(), masked, "{sql}");
        }
        // Expressions, grouping, filters and views over the column see only the mask.
        assert_eq!(
            column(&mut ana, "SELECT lower(email) FROM silver.customer WHERE id = 1").await.unwrap(),
            ["****@acme.com"]
        );
        assert_eq!(
            column(&mut ana, "SELECT email FROM silver.customer GROUP BY email ORDER BY email NULLS LAST")
                .await
                .unwrap(),
            masked
        );
        assert!(
            column(&mut ana, "SELECT name FROM silver.customer WHERE email = 'ann@acme.com'").await.unwrap().is_empty()
        );
        assert_eq!(
            column(&mut ana, "SELECT email_upper FROM gold.shouting ORDER BY id").await.unwrap(),
            ["****@ACME.COM", "****@X.ORG", "NULL"],
            "a view over a masked column is masked"
        );
        // A prepared statement with a parameter.
        let row = sqlx::query("SELECT email, name FROM silver.customer WHERE id = $1")
            .bind(2i64)
            .fetch_one(&mut ana)
            .await
            .unwrap();
        assert_eq!((row.get::<String, _>(0), row.get::<String, _>(1)), ("****@x.org".into(), "Bob".into()));
        // EXPLAIN and errors do not carry the raw value either.
        let plan = sqlx::query("EXPLAIN SELECT email FROM silver.customer").fetch_all(&mut ana).await.unwrap();
        let plan: String = plan.iter().map(|r| r.get::<String, _>(1)).collect();
        assert!(!plan.contains("acme.com"), "{plan}");
        let err = sqlx::query("SELECT CAST(email AS INT) FROM silver.customer").fetch_all(&mut ana).await.unwrap_err();
        assert!(!err.to_string().contains("ann@"), "{err}");

        // Outside the grants: 42501, and the connection goes on.
        let denied = column(&mut ana, "SELECT CAST(answer AS VARCHAR) FROM silver.secret").await.unwrap_err();
        assert_eq!(sqlstate(denied), "42501");
        assert_eq!(sqlstate(column(&mut ana, "SELECT query FROM basin.query_log").await.unwrap_err()), "42501");
        assert_eq!(sqlstate(column(&mut ana, "SELEC 1").await.unwrap_err()), "42601");
        assert_eq!(sqlstate(column(&mut ana, "SELECT * FROM silver.nope").await.unwrap_err()), "42P01");
        assert_eq!(column(&mut ana, "SELECT name FROM silver.customer WHERE id = 3").await.unwrap(), ["Cy"]);

        // The engineer sees raw values and everything.
        let mut eng = sqlx::PgConnection::connect(&url(&s, "eng", ENGINEER_PASSWORD)).await.expect("eng connects");
        assert_eq!(
            column(&mut eng, "SELECT email FROM silver.customer ORDER BY id").await.unwrap(),
            ["ann@acme.com", "bob@x.org", "NULL"]
        );
        assert_eq!(column(&mut eng, "SELECT CAST(answer AS VARCHAR) FROM silver.secret").await.unwrap(), ["42"]);

        // Wrong password and unknown user: the same refusal.
        for (user, password) in [("ana", "wrong"), ("nobody", "analyst-pw")] {
            let e = sqlx::PgConnection::connect(&url(&s, user, password)).await.unwrap_err();
            assert_eq!(sqlstate(e), "28P01", "{user}");
        }

        // A new build is visible to the next statement, without a restart.
        s.basin.write(
            "models/silver/customer.sql",
            "/* basin\n[columns.email]\ntags = [\"pii:email\"]\n*/\n\
             SELECT * FROM (VALUES (1, 'ann@acme.com', 'Ann'), (2, 'bob@x.org', 'Bob'), (3, NULL, 'Cy'), \
             (4, 'dee@y.io', 'Dee')) AS t(id, email, name)",
        );
        s.basin.cmd(&["run", "silver.customer"]).success();
        assert_eq!(column(&mut ana, "SELECT email FROM silver.customer WHERE id = 4").await.unwrap(), ["****@y.io"]);

        // Every statement is in the query log, with who ran it and how it ended.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let log = sqlx::query(
            "SELECT user_name, sqlstate, rows_returned FROM basin.query_log WHERE query LIKE '%silver.secret%'",
        )
        .fetch_all(&mut eng)
        .await
        .unwrap();
        let entries: Vec<(String, Option<String>, i64)> = log.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
        assert!(entries.contains(&("ana".into(), Some("42501".into()), 0)), "{entries:?}");
        assert!(entries.contains(&("eng".into(), None, 1)), "{entries:?}");
    });

    // HTTP: the same users, grants and masks.
    let auth = basic("ana", "analyst-pw");
    let (status, body) = http(
        &s,
        "POST",
        "/api/sql",
        &[("Authorization", &auth)],
        "SELECT id, email FROM silver.customer ORDER BY id LIMIT 1",
    );
    assert_eq!((status, body.as_str()), (200, r#"[{"id":1,"email":"****@acme.com"}]"#));
    let (status, body) = http(
        &s,
        "POST",
        "/api/sql",
        &[("Authorization", &auth), ("Accept", "text/csv")],
        "SELECT name FROM silver.customer ORDER BY id",
    );
    assert_eq!((status, body.as_str()), (200, "name\nAnn\nBob\nCy\nDee\n"));
    let (status, body) = http(&s, "POST", "/api/sql", &[("Authorization", &auth)], "SELECT * FROM silver.secret");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("42501") && !body.contains("42,"), "{body}");
    let (status, _) = http(&s, "POST", "/api/sql", &[("Authorization", &basic("ana", "nope"))], "SELECT 1");
    assert_eq!(status, 401);
    let (status, body) = http(&s, "GET", "/api/assets", &[("Authorization", &auth)], "");
    assert_eq!(status, 200, "{body}");
    let assets: serde_json::Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = assets.as_array().unwrap().iter().map(|a| a["asset"].as_str().unwrap()).collect();
    assert_eq!(names, ["gold.shouting", "silver.customer"], "only what the analyst may read");
    let (status, body) = http(&s, "POST", "/api/token", &[("Authorization", &auth)], "");
    assert_eq!(status, 200, "{body}");
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    let bearer = format!("Bearer {}", token["token"].as_str().unwrap());
    let (status, body) =
        http(&s, "POST", "/api/sql", &[("Authorization", &bearer)], "SELECT email FROM silver.customer WHERE id = 2");
    assert_eq!((status, body.as_str()), (200, r#"[{"email":"****@x.org"}]"#));
}

#[test]
fn psql_lists_and_describes_tables_through_the_catalog() {
    if std::process::Command::new("psql").arg("--version").output().is_err() {
        assert!(std::env::var("CI").is_err(), "psql is needed under CI");
        eprintln!("skipped: psql is not installed");
        return;
    }
    let s = served();
    let psql = |args: &[&str]| {
        let out = std::process::Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &s.pg_port.to_string(), "-U", "ana", "-d", "basin", "-X", "-A", "-t"])
            .args(args)
            .env("PGPASSWORD", "analyst-pw")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = psql(&["-c", "SELECT email FROM silver.customer ORDER BY id"]);
    assert!(ok, "{err}");
    assert_eq!(out, "****@acme.com\n****@x.org\n\n");
    let (ok, out, err) = psql(&["-c", "\\dt silver.*"]);
    assert!(ok, "{err}");
    assert!(out.contains("silver|customer"), "{out}");
    assert!(!out.contains("secret"), "a table outside the grants is not listed: {out}");
    let (ok, out, err) = psql(&["-c", "\\d silver.customer"]);
    assert!(ok, "{err}");
    assert!(out.contains("email"), "{out}");
}
