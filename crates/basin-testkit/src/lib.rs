//! Test fixtures shared by Basin's crates (a dev-dependency only): throwaway databases on real
//! MySQL/MariaDB and PostgreSQL servers. Each [`TestDb`] is a uniquely named database, dropped when the
//! value is. The servers come from `BASIN_TEST_MYSQL_URL` / `BASIN_TEST_POSTGRES_URL`, or the
//! local defaults; a missing server skips the test with a message, except under `CI=true`,
//! where it fails it.

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{AssertSqlSafe, Connection};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Mysql,
    Postgres,
}

impl Server {
    fn admin_url(self) -> String {
        let (var, default) = match self {
            Server::Mysql => ("BASIN_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/mysql"),
            Server::Postgres => ("BASIN_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        };
        std::env::var(var).unwrap_or_else(|_| default.to_string())
    }

    pub fn kind(self) -> &'static str {
        match self {
            Server::Mysql => "mysql",
            Server::Postgres => "postgres",
        }
    }
}

pub struct TestDb {
    pub server: Server,
    /// URL of the throwaway database.
    pub url: String,
    pub name: String,
    admin: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn with_database(url: &str, db: &str) -> String {
    let mut u = url::Url::parse(url).expect("a valid test server URL");
    u.set_path(&format!("/{db}"));
    u.to_string()
}

impl TestDb {
    /// A new empty database, or `None` (after printing why) when the server is not there and
    /// this is not CI.
    pub async fn create(server: Server, label: &str) -> Option<TestDb> {
        let admin = server.admin_url();
        let name = format!("basin_test_{label}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let create = format!("CREATE DATABASE {name}");
        let result = match server {
            Server::Mysql => match sqlx::MySqlConnection::connect(&admin).await {
                Ok(mut c) => sqlx::raw_sql(AssertSqlSafe(create)).execute(&mut c).await.map(|_| ()),
                Err(e) => Err(e),
            },
            Server::Postgres => match sqlx::PgConnection::connect(&admin).await {
                Ok(mut c) => sqlx::raw_sql(AssertSqlSafe(create)).execute(&mut c).await.map(|_| ()),
                Err(e) => Err(e),
            },
        };
        if let Err(e) = result {
            let message = format!("{} test server at {admin} is not available: {e}", server.kind());
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{message} (CI=true: a missing server is a failure)");
            }
            eprintln!("SKIPPED: {message}");
            return None;
        }
        Some(TestDb { server, url: with_database(&admin, &name), name, admin })
    }

    /// Run statements in order on one connection.
    pub async fn execute(&self, statements: &[&str]) {
        match self.server {
            Server::Mysql => {
                let mut c = sqlx::MySqlConnection::connect(&self.url).await.expect("connect to the test database");
                for s in statements {
                    sqlx::raw_sql(AssertSqlSafe(s.to_string()))
                        .execute(&mut c)
                        .await
                        .unwrap_or_else(|e| panic!("{s}: {e}"));
                }
            }
            Server::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.expect("connect to the test database");
                for s in statements {
                    sqlx::raw_sql(AssertSqlSafe(s.to_string()))
                        .execute(&mut c)
                        .await
                        .unwrap_or_else(|e| panic!("{s}: {e}"));
                }
            }
        }
    }

    /// Kill the server sessions running a statement that contains `needle`; how many were.
    pub async fn kill_sessions_running(&self, needle: &str) -> u64 {
        self.sessions().kill_running(needle).await
    }

    /// The database's server sessions, as a handle that can move to another task.
    pub fn sessions(&self) -> Sessions {
        Sessions { server: self.server, admin: self.admin.clone(), name: self.name.clone() }
    }
}

/// The server sessions connected to one test database.
#[derive(Debug, Clone)]
pub struct Sessions {
    server: Server,
    admin: String,
    name: String,
}

impl Sessions {
    /// Kill the sessions running a statement that contains `needle`; how many there were.
    pub async fn kill_running(&self, needle: &str) -> u64 {
        match self.server {
            Server::Mysql => {
                let mut c = sqlx::MySqlConnection::connect(&self.admin).await.expect("connect as admin");
                let ids: Vec<(i64,)> = sqlx::query_as(
                    "SELECT CAST(ID AS SIGNED) FROM information_schema.PROCESSLIST \
                     WHERE DB = ? AND INFO LIKE CONCAT('%', ?, '%') AND COMMAND <> 'Sleep' AND ID <> CONNECTION_ID()",
                )
                .bind(&self.name)
                .bind(needle)
                .fetch_all(&mut c)
                .await
                .expect("read the process list");
                for (id,) in &ids {
                    sqlx::raw_sql(AssertSqlSafe(format!("KILL {id}"))).execute(&mut c).await.expect("KILL");
                }
                ids.len() as u64
            }
            Server::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.admin).await.expect("connect as admin");
                let (n,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE datname = $1 AND query LIKE '%' || $2 || '%' AND state = 'active' AND pid <> pg_backend_pid()",
                )
                .bind(&self.name)
                .bind(needle)
                .fetch_one(&mut c)
                .await
                .expect("terminate backends");
                n as u64
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (server, admin, name) = (self.server, self.admin.clone(), self.name.clone());
        // Drop runs outside any runtime guarantee; a thread with its own runtime does the work.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                match server {
                    Server::Mysql => {
                        if let Ok(mut c) = sqlx::MySqlConnection::connect(&admin).await {
                            let _ = sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}")))
                                .execute(&mut c)
                                .await;
                        }
                    }
                    Server::Postgres => {
                        if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                            let _ =
                                sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                                    .execute(&mut c)
                                    .await;
                        }
                    }
                }
            })
        })
        .join();
    }
}
