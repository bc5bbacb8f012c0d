//! The demo's source system: the billing database of a telecom reseller (seed 03), generated
//! from a seed, so the same `--seed` and `--scale` always give the same rows, into SQLite (the
//! embedded default), MySQL/MariaDB or PostgreSQL.
//!
//! It keeps the habits of the legacy MySQL schema the seeds describe: unsigned ids, TINYINT
//! flags, ENUMs, `0000-00-00` for "no date" (NULL on PostgreSQL, which cannot store it),
//! legacy column names (`DocRef`, `dt_closed`, `flg_vip`). Sizes follow the seed's ratios: at
//! scale 1 about 180k invoices, 1M invoice items and 620k invoice × service rows; scale 28
//! gives the seed's 5.1M / 27.9M / 17.4M.
//!
//! [`Generator::initial`] writes twelve months of history (2025) and the billing dimensions;
//! [`Generator::night`] then moves the source on by one day the way a live system does: new
//! customers and invoices, customers updated (moving `updated_at`), churn, invoices paid or
//! overdue, a few customers erased, new call records, and on [`DRIFT_NIGHT`] a new column.

use std::fmt::Write as _;
use std::str::FromStr;

use anyhow::{Context, Result};
use basin_core::source::SourceKind;
use chrono::{Datelike, Days, Months, NaiveDate, NaiveDateTime, NaiveTime};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;
use sqlx::{AssertSqlSafe, Connection, Row};

/// The night on which `customer.segment` appears in the source (schema drift).
pub const DRIFT_NIGHT: u32 = 3;
/// The customer whose e-mail changes on night 2, so its history shows two versions.
pub const CHANGED_CUSTOMER: i64 = 1;
/// Rows per INSERT statement.
const ROWS_PER_INSERT: usize = 500;

/// A charge type the catalogue does not have (`--inject-fault`).
pub const UNKNOWN_CHARGE_TYPE: i64 = 9999;

/// The first day whose invoices are in the history, and the first simulated night.
pub fn history_start() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 1, 1).expect("valid date")
}
pub fn first_night() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 1).expect("valid date")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Mysql,
    Postgres,
}

enum Conn {
    Sqlite(sqlx::SqliteConnection),
    Mysql(sqlx::MySqlConnection),
    Postgres(sqlx::PgConnection),
}

/// A connection to the database the generator writes.
pub struct Target {
    pub dialect: Dialect,
    conn: Conn,
}

impl Target {
    /// `sqlite://path` (created if missing), `mysql://…`/`mariadb://…` or `postgres://…`.
    pub async fn open(url: &str) -> Result<Target> {
        let what = || format!("connecting to the demo source {}", redact(url));
        let (dialect, conn) = match SourceKind::of_url(url) {
            Some(SourceKind::Sqlite) => {
                let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                    .with_context(what)?
                    .create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Off);
                (
                    Dialect::Sqlite,
                    Conn::Sqlite(sqlx::SqliteConnection::connect_with(&options).await.with_context(what)?),
                )
            }
            Some(SourceKind::Mysql) => {
                let url = url.replacen("mariadb://", "mysql://", 1);
                let mut c = sqlx::MySqlConnection::connect(&url).await.with_context(what)?;
                // Zero dates are what the legacy schema stores; backslashes are plain characters.
                sqlx::raw_sql("SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES', time_zone = '+00:00'")
                    .execute(&mut c)
                    .await
                    .with_context(what)?;
                (Dialect::Mysql, Conn::Mysql(c))
            }
            Some(SourceKind::Postgres) => {
                (Dialect::Postgres, Conn::Postgres(sqlx::PgConnection::connect(url).await.with_context(what)?))
            }
            _ => anyhow::bail!(
                "the demo source must be a sqlite://, mysql://, mariadb:// or postgres:// URL, not {}",
                redact(url)
            ),
        };
        Ok(Target { dialect, conn })
    }

    async fn exec(&mut self, sql: &str) -> Result<()> {
        let safe = AssertSqlSafe(sql.to_string());
        let result = match &mut self.conn {
            Conn::Sqlite(c) => sqlx::raw_sql(safe).execute(c).await.map(drop),
            Conn::Mysql(c) => sqlx::raw_sql(safe).execute(c).await.map(drop),
            Conn::Postgres(c) => sqlx::raw_sql(safe).execute(c).await.map(drop),
        };
        result.with_context(|| format!("demo source: {}", sql_head(sql)))
    }

    /// The first column of every row of `sql`, as integers.
    async fn ints(&mut self, sql: &str) -> Result<Vec<i64>> {
        let q = AssertSqlSafe(sql.to_string());
        let rows: Result<Vec<i64>, sqlx::Error> = match &mut self.conn {
            Conn::Sqlite(c) => sqlx::query(q).fetch_all(c).await.map(|r| r.iter().map(|r| r.get(0)).collect()),
            Conn::Mysql(c) => sqlx::query(q).fetch_all(c).await.map(|r| r.iter().map(|r| r.get(0)).collect()),
            Conn::Postgres(c) => sqlx::query(q).fetch_all(c).await.map(|r| r.iter().map(|r| r.get(0)).collect()),
        };
        rows.with_context(|| format!("demo source: {}", sql_head(sql)))
    }

    async fn int(&mut self, sql: &str) -> Result<i64> {
        Ok(self.ints(sql).await?.first().copied().unwrap_or(0))
    }

    /// `expr` as a signed 64-bit integer, which every driver decodes as `i64`.
    fn big(&self, expr: &str) -> String {
        match self.dialect {
            Dialect::Mysql => format!("CAST({expr} AS SIGNED)"),
            _ => format!("CAST({expr} AS BIGINT)"),
        }
    }

    async fn next_id(&mut self, column: &str, table: &str) -> Result<i64> {
        let sql = format!("SELECT {} FROM {table}", self.big(&format!("COALESCE(MAX({column}), 0) + 1")));
        self.int(&sql).await
    }

    async fn begin(&mut self) -> Result<()> {
        self.exec(if self.dialect == Dialect::Mysql { "START TRANSACTION" } else { "BEGIN" }).await
    }
}

fn sql_head(sql: &str) -> String {
    let head: String = sql.chars().take(80).collect();
    if head.len() < sql.len() { format!("{head}…") } else { head }
}

/// The URL without its password.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[derive(Clone, Copy)]
enum Ty {
    Id,
    BigId,
    Int,
    Tiny,
    Flag,
    Money,
    Qty,
    Str(u16),
    Enum(&'static [&'static str]),
    Date,
    DateTime,
}

impl Ty {
    fn sql(self, d: Dialect) -> String {
        use Dialect::*;
        match (self, d) {
            (Ty::Id, Postgres) => "integer".into(),
            (Ty::Id, _) => "INT UNSIGNED".into(),
            (Ty::BigId, Postgres) => "bigint".into(),
            (Ty::BigId, _) => "BIGINT UNSIGNED".into(),
            (Ty::Int, Postgres) => "integer".into(),
            (Ty::Int, _) => "INT".into(),
            (Ty::Tiny, Postgres) => "smallint".into(),
            (Ty::Tiny, _) => "TINYINT UNSIGNED".into(),
            (Ty::Flag, Postgres) => "smallint".into(),
            (Ty::Flag, _) => "TINYINT(1)".into(),
            (Ty::Money, _) => "DECIMAL(12,4)".into(),
            (Ty::Qty, _) => "DECIMAL(12,3)".into(),
            (Ty::Str(n), _) => format!("VARCHAR({n})"),
            (Ty::Enum(values), Mysql) => {
                format!("ENUM({})", values.iter().map(|v| format!("'{v}'")).collect::<Vec<_>>().join(","))
            }
            (Ty::Enum(_), _) => "VARCHAR(16)".into(),
            (Ty::Date, _) => "DATE".into(),
            (Ty::DateTime, Postgres) => "timestamp".into(),
            (Ty::DateTime, _) => "DATETIME".into(),
        }
    }
}

const CUSTOMER_STATUS: &[&str] = &["active", "suspended", "closed"];
const PLANS: &[&str] = &["S", "M", "L", "XL", "DATA"];
const PAYMENT: &[&str] = &["card", "sepa", "invoice", "paypal"];

/// Every table of the source: name, columns, primary key column.
const TABLES: &[(&str, &[(&str, Ty)])] = &[
    ("module_type", &[("module_type_id", Ty::Id), ("name", Ty::Str(40))]),
    ("usage_type_group", &[("usage_type_group_id", Ty::Id), ("name", Ty::Str(40))]),
    ("usage_unit", &[("usage_unit_id", Ty::Id), ("code", Ty::Str(8)), ("name", Ty::Str(40))]),
    (
        "usage_type",
        &[
            ("usage_type_id", Ty::Id),
            ("name", Ty::Str(60)),
            ("usage_type_group_id", Ty::Id),
            ("usage_unit_id", Ty::Id),
            ("flg_roaming", Ty::Flag),
        ],
    ),
    (
        "charge_type",
        &[
            ("charge_type_id", Ty::Id),
            ("code", Ty::Str(16)),
            ("name", Ty::Str(60)),
            ("module_type_id", Ty::Id),
            ("flg_recurring", Ty::Flag),
        ],
    ),
    ("invoice_status", &[("invoice_status_id", Ty::Tiny), ("code", Ty::Str(16)), ("label", Ty::Str(40))]),
    (
        "partner",
        &[
            ("partner_id", Ty::Id),
            ("name", Ty::Str(80)),
            ("country", Ty::Str(2)),
            ("flg_active", Ty::Flag),
            ("created_at", Ty::DateTime),
            ("updated_at", Ty::DateTime),
        ],
    ),
    (
        "customer",
        &[
            ("customer_id", Ty::Id),
            ("partner_id", Ty::Id),
            ("first_name", Ty::Str(60)),
            ("last_name", Ty::Str(60)),
            ("email", Ty::Str(120)),
            ("phone", Ty::Str(24)),
            ("status", Ty::Enum(CUSTOMER_STATUS)),
            ("bill_day", Ty::Tiny),
            ("birth_date", Ty::Date),
            ("flg_vip", Ty::Flag),
            ("dt_closed", Ty::Date),
            ("created_at", Ty::DateTime),
            ("updated_at", Ty::DateTime),
        ],
    ),
    (
        "service",
        &[
            ("service_id", Ty::Id),
            ("customer_id", Ty::Id),
            ("msisdn", Ty::Str(24)),
            ("plan_code", Ty::Enum(PLANS)),
            ("monthly_fee", Ty::Money),
            ("start_date", Ty::Date),
            ("end_date", Ty::Date),
            ("flg_active", Ty::Flag),
            ("updated_at", Ty::DateTime),
        ],
    ),
    (
        "invoice",
        &[
            ("invoice_id", Ty::Id),
            ("customer_id", Ty::Id),
            ("invoice_date", Ty::Date),
            ("period_start", Ty::Date),
            ("period_end", Ty::Date),
            ("invoice_status_id", Ty::Tiny),
            ("total_net", Ty::Money),
            ("total_vat", Ty::Money),
            ("created_at", Ty::DateTime),
            ("updated_at", Ty::DateTime),
        ],
    ),
    (
        "invoice_data",
        &[
            ("invoice_id", Ty::Id),
            ("payment_method", Ty::Enum(PAYMENT)),
            ("dunning_level", Ty::Tiny),
            ("due_date", Ty::Date),
            ("paid_on", Ty::Date),
            ("DocRef", Ty::Str(40)),
            ("updated_at", Ty::DateTime),
        ],
    ),
    (
        "invoice_item",
        &[
            ("invoice_item_id", Ty::BigId),
            ("invoice_id", Ty::Id),
            ("service_id", Ty::Id),
            ("charge_type_id", Ty::Id),
            ("quantity", Ty::Qty),
            ("unit_price", Ty::Money),
            ("amount", Ty::Money),
            ("updated_at", Ty::DateTime),
        ],
    ),
    (
        "invoice_service",
        &[
            ("invoice_service_id", Ty::BigId),
            ("invoice_id", Ty::Id),
            ("service_id", Ty::Id),
            ("amount", Ty::Money),
            ("updated_at", Ty::DateTime),
        ],
    ),
    (
        "cdr",
        &[
            ("cdr_id", Ty::BigId),
            ("service_id", Ty::Id),
            ("started_at", Ty::DateTime),
            ("usage_type_id", Ty::Id),
            ("duration_s", Ty::Int),
            ("volume", Ty::Qty),
            ("cost", Ty::Money),
        ],
    ),
];

/// Secondary indexes: what incremental reads and the nightly updates look up.
const INDEXES: &[(&str, &str)] = &[
    ("customer", "updated_at"),
    ("service", "customer_id"),
    ("invoice", "updated_at"),
    ("invoice", "invoice_status_id"),
    ("invoice_data", "updated_at"),
    ("invoice_item", "updated_at"),
    ("invoice_service", "updated_at"),
];

/// A value as a SQL literal.
enum V<'a> {
    Null,
    Int(i64),
    /// An exact decimal: units of 10^-scale.
    Dec(i64, u32),
    Str(&'a str),
    Date(NaiveDate),
    /// "No date": `0000-00-00` where the dialect stores it, NULL on PostgreSQL.
    ZeroDate,
    Ts(NaiveDateTime),
}

fn write_value(out: &mut String, v: &V, d: Dialect) {
    match v {
        V::Null => out.push_str("NULL"),
        V::Int(i) => write!(out, "{i}").expect("write to String"),
        V::Dec(units, scale) => {
            let p = 10i64.pow(*scale);
            let sign = if *units < 0 { "-" } else { "" };
            let a = units.unsigned_abs();
            write!(out, "{sign}{}.{:0w$}", a / p as u64, a % p as u64, w = *scale as usize).expect("write to String")
        }
        V::Str(s) => {
            out.push('\'');
            out.push_str(&s.replace('\'', "''"));
            out.push('\'');
        }
        V::Date(date) => write!(out, "'{}'", date.format("%Y-%m-%d")).expect("write to String"),
        V::ZeroDate if d == Dialect::Postgres => out.push_str("NULL"),
        V::ZeroDate => out.push_str("'0000-00-00'"),
        V::Ts(t) => write!(out, "'{}'", t.format("%Y-%m-%d %H:%M:%S")).expect("write to String"),
    }
}

/// Multi-row INSERTs into one table, sent every [`ROWS_PER_INSERT`] rows.
struct Insert {
    head: String,
    sql: String,
    rows: usize,
    total: u64,
}

impl Insert {
    fn new(table: &str, d: Dialect) -> Insert {
        let columns = TABLES.iter().find(|(t, _)| *t == table).expect("known table").1;
        let list = columns.iter().map(|(c, _)| quote(c, d)).collect::<Vec<_>>().join(", ");
        Insert {
            head: format!("INSERT INTO {} ({list}) VALUES ", quote(table, d)),
            sql: String::new(),
            rows: 0,
            total: 0,
        }
    }

    /// Append a row to the statement being built.
    fn push(&mut self, values: &[V<'_>], d: Dialect) {
        self.sql.push_str(if self.rows == 0 { &self.head } else { ", " });
        write_row(&mut self.sql, values, d);
        self.rows += 1;
        self.total += 1;
    }

    /// Append a row, sending the statement once it holds [`ROWS_PER_INSERT`] rows.
    async fn row(&mut self, target: &mut Target, values: &[V<'_>]) -> Result<()> {
        self.push(values, target.dialect);
        if self.rows >= ROWS_PER_INSERT {
            self.flush(target).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, target: &mut Target) -> Result<()> {
        if self.rows > 0 {
            target.exec(&self.sql).await?;
            self.sql.clear();
            self.rows = 0;
        }
        Ok(())
    }
}

fn quote(name: &str, d: Dialect) -> String {
    match d {
        Dialect::Mysql => format!("`{name}`"),
        _ => format!("\"{name}\""),
    }
}

const FIRST: &[&str] = &[
    "Anna", "Luca", "Mia", "Noah", "Lea", "Elias", "Sofia", "Leon", "Emma", "Matteo", "Laura", "David", "Julia",
    "Marco", "Sara", "Jonas", "Nina", "Felix", "Chiara", "Tim", "Elena", "Samuel", "Lina", "Nico", "Zoé", "Björn",
];
const LAST: &[&str] = &[
    "Müller",
    "Meier",
    "Schmid",
    "Keller",
    "Weber",
    "Huber",
    "Rossi",
    "Bianchi",
    "Favre",
    "Dubois",
    "Baumann",
    "Fischer",
    "Gerber",
    "Brunner",
    "Frei",
    "Moser",
    "Widmer",
    "Zimmermann",
    "Steiner",
    "O'Neill",
    "Graf",
    "Roth",
];
const PARTNERS: &[&str] = &[
    "Alpine Mobile",
    "Lakeside Telecom",
    "Nordic Connect",
    "BlueWave",
    "Helvetia Net",
    "Summit SIM",
    "CityLink",
    "Riverside Comms",
    "Granite Wireless",
    "Valley Voice",
];
const COUNTRIES: &[&str] = &["CH", "CH", "CH", "DE", "AT", "FR", "IT"];

/// Monthly fee of each plan, in units of 10^-4.
fn plan_fee(plan: &str) -> i64 {
    match plan {
        "S" => 19_9000,
        "M" => 34_9000,
        "L" => 59_9000,
        "XL" => 89_9000,
        _ => 24_9000,
    }
}

struct Customer {
    id: i64,
    bill_day: u32,
    created: NaiveDateTime,
    closed: Option<NaiveDate>,
}

struct Service {
    id: i64,
    customer: usize,
    plan: &'static str,
    start: NaiveDate,
    end: Option<NaiveDate>,
}

/// What one run of the generator wrote, per table.
#[derive(Debug, Default)]
pub struct Written {
    pub rows: Vec<(&'static str, u64)>,
    pub notes: Vec<String>,
}

impl Written {
    fn add(&mut self, table: &'static str, rows: u64) {
        match self.rows.iter_mut().find(|(t, _)| *t == table) {
            Some((_, n)) => *n += rows,
            None => self.rows.push((table, rows)),
        }
    }
    pub fn total(&self) -> u64 {
        self.rows.iter().map(|(_, n)| n).sum()
    }
}

pub struct Generator {
    pub seed: u64,
    pub scale: f64,
}

/// The next ids of the growing tables, read from the source so that nights need no state.
struct Ids {
    customer: i64,
    service: i64,
    invoice: i64,
    item: i64,
    invoice_service: i64,
    cdr: i64,
}

fn at(date: NaiveDate, secs: u32) -> NaiveDateTime {
    date.and_time(NaiveTime::from_num_seconds_from_midnight_opt(secs % 86_400, 0).expect("valid time"))
}

fn add_days(date: NaiveDate, days: i64) -> NaiveDate {
    if days >= 0 { date + Days::new(days as u64) } else { date - Days::new((-days) as u64) }
}

impl Generator {
    fn rng(&self, stream: u64) -> Pcg64Mcg {
        Pcg64Mcg::seed_from_u64(self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ stream)
    }

    pub fn customers(&self) -> i64 {
        ((23_000.0 * self.scale).round() as i64).max(60)
    }

    fn partners(&self) -> i64 {
        (20.0 + 10.0 * self.scale.sqrt()).round() as i64
    }

    /// Create the tables and write the billing dimensions and twelve months of history.
    pub async fn initial(&self, target: &mut Target) -> Result<Written> {
        let d = target.dialect;
        let mut written = Written::default();
        for (table, _) in TABLES.iter().rev() {
            target.exec(&format!("DROP TABLE IF EXISTS {}", quote(table, d))).await?;
        }
        for (table, columns) in TABLES {
            let cols = columns
                .iter()
                .enumerate()
                .map(|(i, (c, t))| {
                    let pk = if i == 0 { " PRIMARY KEY" } else { "" };
                    format!("{} {}{pk}", quote(c, d), t.sql(d))
                })
                .collect::<Vec<_>>()
                .join(", ");
            target.exec(&format!("CREATE TABLE {} ({cols})", quote(table, d))).await?;
        }
        target.begin().await?;
        self.dimensions(target, &mut written).await?;
        let mut rng = self.rng(1);

        // Partners: a few large ones, a long tail (weights 1/rank).
        let partners = self.partners();
        let mut ins = Insert::new("partner", d);
        for p in 1..=partners {
            let name =
                format!("{} {}", PARTNERS[(p as usize - 1) % PARTNERS.len()], (p - 1) / PARTNERS.len() as i64 + 1);
            let created = at(add_days(history_start(), -900 + rng.random_range(0..300)), rng.random_range(0..86_400));
            let row = [
                V::Int(p),
                V::Str(&name),
                V::Str(COUNTRIES[rng.random_range(0..COUNTRIES.len())]),
                V::Int(i64::from(rng.random_bool(0.9))),
                V::Ts(created),
                V::Ts(created),
            ];
            ins.row(target, &row).await?;
        }
        ins.flush(target).await?;
        written.add("partner", ins.total);
        let weights: Vec<f64> = (1..=partners).map(|r| 1.0 / r as f64).collect();
        let weight_sum: f64 = weights.iter().sum();

        // Customers, created over the two years before the history, some churned since.
        let n = self.customers();
        let mut customers = Vec::with_capacity(n as usize);
        let mut ins = Insert::new("customer", d);
        let end = add_days(first_night(), -1);
        for id in 1..=n {
            let created = at(add_days(history_start(), -730 + rng.random_range(0..1095)), rng.random_range(0..86_400));
            let closed = rng.random_bool(0.2).then(|| {
                let span = (end - created.date()).num_days().max(1);
                add_days(created.date(), rng.random_range(1..=span))
            });
            let mut pick = rng.random::<f64>() * weight_sum;
            let partner = weights.iter().position(|w| {
                pick -= w;
                pick <= 0.0
            });
            let c = Customer { id, bill_day: rng.random_range(1..=28), created, closed };
            let status = if closed.is_some() {
                "closed"
            } else if rng.random_bool(0.03) {
                "suspended"
            } else {
                "active"
            };
            let updated = closed.map(|c| at(c, rng.random_range(0..86_400))).unwrap_or(created);
            self.customer_row(&mut rng, target, &mut ins, &c, partner.unwrap_or(0) as i64 + 1, status, updated).await?;
            customers.push(c);
        }
        ins.flush(target).await?;
        written.add("customer", ins.total);

        // Services: most customers have one to three lines, a few businesses dozens.
        let mut services = Vec::new();
        let mut ins = Insert::new("service", d);
        for (ci, c) in customers.iter().enumerate() {
            let lines = if rng.random_bool(0.02) {
                rng.random_range(10..60)
            } else {
                1 + (-(rng.random::<f64>().max(1e-9)).ln() * 2.3) as usize
            };
            for _ in 0..lines {
                let start = add_days(c.created.date(), rng.random_range(0..60)).min(end);
                let end = c.closed.or_else(|| {
                    rng.random_bool(0.08).then(|| add_days(start, rng.random_range(30..400))).filter(|e| *e < end)
                });
                let s = Service {
                    id: services.len() as i64 + 1,
                    customer: ci,
                    plan: PLANS[rng.random_range(0..5)],
                    start,
                    end,
                };
                let updated = s.end.map(|e| at(e, 3_600)).unwrap_or(at(s.start, 3_600));
                self.service_row(&mut rng, target, &mut ins, &s, c.id, updated).await?;
                services.push(s);
            }
        }
        ins.flush(target).await?;
        written.add("service", ins.total);

        // Invoices: one per customer and month, billed on the customer's bill day.
        let mut by_customer: Vec<Vec<usize>> = vec![Vec::new(); customers.len()];
        for (si, s) in services.iter().enumerate() {
            by_customer[s.customer].push(si);
        }
        let mut ids = Ids {
            customer: n + 1,
            service: services.len() as i64 + 1,
            invoice: 1,
            item: 1,
            invoice_service: 1,
            cdr: 1,
        };
        let mut inserts = InvoiceInserts::new(d);
        for month in 0..12 {
            let first = history_start() + Months::new(month);
            for (ci, c) in customers.iter().enumerate() {
                let date = first.with_day(c.bill_day).expect("bill days are 1..=28");
                let paid_by = add_days(end, -14);
                let status = if date > paid_by {
                    2
                } else if rng.random_bool(0.02) {
                    4
                } else if rng.random_bool(0.005) {
                    5
                } else {
                    3
                };
                self.invoice(&mut rng, target, &mut inserts, &mut ids, c, &services, &by_customer[ci], date, status)
                    .await?;
            }
        }
        inserts.flush(target, &mut written).await?;

        // Call records of December, for the lines active then.
        let mut ins = Insert::new("cdr", d);
        for day in 0..31 {
            let date = add_days(NaiveDate::from_ymd_opt(2025, 12, 1).expect("valid date"), day);
            self.cdrs(&mut rng, target, &mut ins, &mut ids, &services, date).await?;
        }
        ins.flush(target).await?;
        written.add("cdr", ins.total);
        target.exec("COMMIT").await?;
        for (table, column) in INDEXES {
            target
                .exec(&format!(
                    "CREATE INDEX {} ON {} ({})",
                    quote(&format!("ix_{table}_{column}"), d),
                    quote(table, d),
                    quote(column, d)
                ))
                .await?;
        }
        Ok(written)
    }

    async fn dimensions(&self, target: &mut Target, written: &mut Written) -> Result<()> {
        let d = target.dialect;
        let rows: &[(&'static str, &[&[V]])] = &[
            (
                "module_type",
                &[
                    &[V::Int(1), V::Str("Mobile")],
                    &[V::Int(2), V::Str("Data")],
                    &[V::Int(3), V::Str("Roaming")],
                    &[V::Int(4), V::Str("Services")],
                ],
            ),
            (
                "usage_type_group",
                &[&[V::Int(1), V::Str("Voice")], &[V::Int(2), V::Str("Messaging")], &[V::Int(3), V::Str("Data")]],
            ),
            (
                "usage_unit",
                &[
                    &[V::Int(1), V::Str("s"), V::Str("Seconds")],
                    &[V::Int(2), V::Str("msg"), V::Str("Messages")],
                    &[V::Int(3), V::Str("MB"), V::Str("Megabytes")],
                ],
            ),
            (
                "usage_type",
                &[
                    &[V::Int(1), V::Str("National call"), V::Int(1), V::Int(1), V::Int(0)],
                    &[V::Int(2), V::Str("International call"), V::Int(1), V::Int(1), V::Int(0)],
                    &[V::Int(3), V::Str("Roaming call"), V::Int(1), V::Int(1), V::Int(1)],
                    &[V::Int(4), V::Str("SMS"), V::Int(2), V::Int(2), V::Int(0)],
                    &[V::Int(5), V::Str("SMS abroad"), V::Int(2), V::Int(2), V::Int(1)],
                    &[V::Int(6), V::Str("Mobile data"), V::Int(3), V::Int(3), V::Int(0)],
                    &[V::Int(7), V::Str("Roaming data"), V::Int(3), V::Int(3), V::Int(1)],
                ],
            ),
            (
                "charge_type",
                &[
                    &[V::Int(1), V::Str("MRC"), V::Str("Monthly plan fee"), V::Int(1), V::Int(1)],
                    &[V::Int(2), V::Str("VOICE"), V::Str("Voice usage"), V::Int(1), V::Int(0)],
                    &[V::Int(3), V::Str("DATA"), V::Str("Data usage"), V::Int(2), V::Int(0)],
                    &[V::Int(4), V::Str("ROAM"), V::Str("Roaming usage"), V::Int(3), V::Int(0)],
                    &[V::Int(5), V::Str("SMS"), V::Str("Messaging usage"), V::Int(1), V::Int(0)],
                    &[V::Int(6), V::Str("ACT"), V::Str("Activation fee"), V::Int(4), V::Int(0)],
                    &[V::Int(7), V::Str("DISC"), V::Str("Loyalty discount"), V::Int(4), V::Int(1)],
                ],
            ),
            (
                "invoice_status",
                &[
                    &[V::Int(1), V::Str("DRAFT"), V::Str("Draft")],
                    &[V::Int(2), V::Str("OPEN"), V::Str("Open")],
                    &[V::Int(3), V::Str("PAID"), V::Str("Paid")],
                    &[V::Int(4), V::Str("OVERDUE"), V::Str("Overdue")],
                    &[V::Int(5), V::Str("CANCELLED"), V::Str("Cancelled")],
                ],
            ),
        ];
        for (table, values) in rows {
            let mut ins = Insert::new(table, d);
            for row in *values {
                ins.row(target, row).await?;
            }
            ins.flush(target).await?;
            written.add(table, ins.total);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn customer_row(
        &self,
        rng: &mut Pcg64Mcg,
        target: &mut Target,
        ins: &mut Insert,
        c: &Customer,
        partner: i64,
        status: &str,
        updated: NaiveDateTime,
    ) -> Result<()> {
        let first = FIRST[rng.random_range(0..FIRST.len())];
        let last = LAST[rng.random_range(0..LAST.len())];
        let email = format!("{}.{}{}@example.ch", ascii(first), ascii(last), c.id);
        let phone = format!(
            "+41 7{} {:03} {:02} {:02}",
            rng.random_range(5..10),
            rng.random_range(0..1000),
            rng.random_range(0..100),
            rng.random_range(0..100)
        );
        let birth = match rng.random_range(0..100) {
            0..2 => V::ZeroDate,
            2..7 => V::Null,
            _ => V::Date(
                NaiveDate::from_ymd_opt(rng.random_range(1940..2006), rng.random_range(1..13), rng.random_range(1..29))
                    .expect("valid date"),
            ),
        };
        let closed = c.closed.map(V::Date).unwrap_or(V::ZeroDate);
        let row = [
            V::Int(c.id),
            V::Int(partner),
            V::Str(first),
            V::Str(last),
            V::Str(&email),
            V::Str(&phone),
            V::Str(status),
            V::Int(c.bill_day.into()),
            birth,
            V::Int(i64::from(rng.random_bool(0.05))),
            closed,
            V::Ts(c.created),
            V::Ts(updated.max(c.created)),
        ];
        ins.row(target, &row).await
    }

    async fn service_row(
        &self,
        rng: &mut Pcg64Mcg,
        target: &mut Target,
        ins: &mut Insert,
        s: &Service,
        customer: i64,
        updated: NaiveDateTime,
    ) -> Result<()> {
        let msisdn = format!("+4179{:07}", rng.random_range(0..10_000_000));
        let row = [
            V::Int(s.id),
            V::Int(customer),
            V::Str(&msisdn),
            V::Str(s.plan),
            V::Dec(plan_fee(s.plan), 4),
            V::Date(s.start),
            s.end.map(V::Date).unwrap_or(V::ZeroDate),
            V::Int(i64::from(s.end.is_none())),
            V::Ts(updated),
        ];
        ins.row(target, &row).await
    }

    /// One invoice of customer `c` dated `date` for the month before, with an item per line
    /// and charge, its invoice × service rows and its `invoice_data`.
    #[allow(clippy::too_many_arguments)]
    async fn invoice(
        &self,
        rng: &mut Pcg64Mcg,
        target: &mut Target,
        ins: &mut InvoiceInserts,
        ids: &mut Ids,
        c: &Customer,
        services: &[Service],
        lines: &[usize],
        date: NaiveDate,
        status: i64,
    ) -> Result<bool> {
        let d = target.dialect;
        let period_start = date - Months::new(1);
        let period_end = add_days(date, -1);
        if c.created.date() >= date || c.closed.is_some_and(|cl| cl < period_start) {
            return Ok(false);
        }
        let active: Vec<&Service> = lines
            .iter()
            .map(|&i| &services[i])
            .filter(|s| s.start <= period_end && s.end.is_none_or(|e| e >= period_start))
            .collect();
        if active.is_empty() {
            return Ok(false);
        }
        let invoice_id = ids.invoice;
        ids.invoice += 1;
        let created = at(date, 7_200 + rng.random_range(0..3_600));
        let mut net = 0i64;
        for s in &active {
            let mut line = 0i64;
            let mut item = |ins: &mut InvoiceInserts, charge: i64, qty: i64, price: i64, amount: i64| {
                line += amount;
                let row = [
                    V::Int(ids.item),
                    V::Int(invoice_id),
                    V::Int(s.id),
                    V::Int(charge),
                    V::Dec(qty, 3),
                    V::Dec(price, 4),
                    V::Dec(amount, 4),
                    V::Ts(created),
                ];
                ids.item += 1;
                ins.items.push(&row, d);
            };
            let fee = plan_fee(s.plan);
            item(ins, 1, 1_000, fee, fee);
            for (charge, p) in [(2, 0.3), (3, 0.2), (4, 0.03), (5, 0.07)] {
                if rng.random_bool(p) {
                    let qty: i64 = rng.random_range(1..400_000); // thousandths
                    let price: i64 = rng.random_range(100..2_500); // ten-thousandths
                    let amount = (qty as i128 * price as i128 / 1_000) as i64;
                    item(ins, charge, qty, price, amount);
                }
            }
            if s.start >= period_start && s.start <= period_end {
                item(ins, 6, 1_000, 29_9000, 29_9000);
            }
            if rng.random_bool(0.03) {
                item(ins, 7, 1_000, -5_0000, -5_0000);
            }
            let row = [V::Int(ids.invoice_service), V::Int(invoice_id), V::Int(s.id), V::Dec(line, 4), V::Ts(created)];
            ids.invoice_service += 1;
            ins.services.push(&row, d);
            net += line;
        }
        let vat = (net as i128 * 81 / 1000) as i64;
        // Settled within two weeks: invoices of the history's last two weeks are still open, so
        // no `updated_at` lies after the night that reads it (a future timestamp would push the
        // watermark past every later change).
        let updated = if status == 2 {
            created
        } else {
            at(add_days(date, rng.random_range(1..14)), rng.random_range(0..86_400))
        };
        let row = [
            V::Int(invoice_id),
            V::Int(c.id),
            V::Date(date),
            V::Date(period_start),
            V::Date(period_end),
            V::Int(status),
            V::Dec(net, 4),
            V::Dec(vat, 4),
            V::Ts(created),
            V::Ts(updated),
        ];
        ins.invoices.push(&row, d);
        let doc = format!("INV/{}/{invoice_id:08}", date.year());
        let paid = if status == 3 { V::Date(updated.date()) } else { V::ZeroDate };
        let row = [
            V::Int(invoice_id),
            V::Str(PAYMENT[rng.random_range(0..PAYMENT.len())]),
            V::Int(if status == 4 { rng.random_range(1..4) } else { 0 }),
            V::Date(add_days(date, 30)),
            paid,
            V::Str(&doc),
            V::Ts(updated),
        ];
        ins.data.push(&row, d);
        ins.send_full(target).await?;
        Ok(true)
    }

    async fn cdrs(
        &self,
        rng: &mut Pcg64Mcg,
        target: &mut Target,
        ins: &mut Insert,
        ids: &mut Ids,
        services: &[Service],
        date: NaiveDate,
    ) -> Result<()> {
        for s in services {
            if s.start > date || s.end.is_some_and(|e| e < date) {
                continue;
            }
            let mut calls = 0;
            while calls < 4 && rng.random_bool(0.25) {
                calls += 1;
                let usage = rng.random_range(1..8);
                let (duration, volume) = match usage {
                    1..=3 => (rng.random_range(5..1_800), 0),
                    4 | 5 => (0, 1_000),
                    _ => (rng.random_range(60..7_200), rng.random_range(1..500_000)),
                };
                let cost = rng.random_range(0..20_000);
                let row = [
                    V::Int(ids.cdr),
                    V::Int(s.id),
                    V::Ts(at(date, rng.random_range(0..86_400))),
                    V::Int(usage),
                    V::Int(duration),
                    V::Dec(volume, 3),
                    V::Dec(cost, 4),
                ];
                ids.cdr += 1;
                ins.row(target, &row).await?;
            }
        }
        Ok(())
    }

    /// The defect of `basin demo --inject-fault`: the newest invoice items (not landed yet)
    /// charge for [`UNKNOWN_CHARGE_TYPE`], as after a botched migration of the charge
    /// catalogue. How many items it changed.
    pub async fn inject_fault(&self, target: &mut Target) -> Result<i64> {
        const ITEMS: i64 = 12;
        let last = target
            .int(&format!("SELECT {} FROM invoice_item", target.big("COALESCE(MAX(invoice_item_id), 0)")))
            .await?;
        target
            .exec(&format!(
                "UPDATE invoice_item SET charge_type_id = {UNKNOWN_CHARGE_TYPE} WHERE invoice_item_id > {}",
                last - ITEMS
            ))
            .await?;
        Ok(ITEMS.min(last))
    }

    /// Move the source on by night `night` (2, 3, …): the changes of the day before it.
    pub async fn night(&self, target: &mut Target, night: u32) -> Result<Written> {
        let d = target.dialect;
        let mut written = Written::default();
        let mut rng = self.rng(1_000 + night as u64);
        let day = add_days(first_night(), night as i64 - 2);
        let stamp = |rng: &mut Pcg64Mcg| at(day, 21_600 + rng.random_range(0..64_800));
        let ts = |t: NaiveDateTime| t.format("'%Y-%m-%d %H:%M:%S'").to_string();
        let date = |x: NaiveDate| x.format("'%Y-%m-%d'").to_string();
        // DDL first: MySQL commits any open transaction on ALTER TABLE.
        if night == DRIFT_NIGHT {
            target.exec(&format!("ALTER TABLE {} ADD COLUMN segment VARCHAR(16)", quote("customer", d))).await?;
            target
                .exec(&format!(
                    "UPDATE {} SET segment = CASE WHEN flg_vip = 1 THEN 'premium' ELSE 'standard' END",
                    quote("customer", d)
                ))
                .await?;
            written.notes.push("schema drift: column customer.segment added in the source".into());
        }
        target.begin().await?;
        let mut ids = Ids {
            customer: target.next_id("customer_id", "customer").await?,
            service: target.next_id("service_id", "service").await?,
            invoice: target.next_id("invoice_id", "invoice").await?,
            item: target.next_id("invoice_item_id", "invoice_item").await?,
            invoice_service: target.next_id("invoice_service_id", "invoice_service").await?,
            cdr: target.next_id("cdr_id", "cdr").await?,
        };
        let existing = ids.customer - 1;

        // Customers change: e-mail, phone or VIP flag; customer 1's e-mail on night 2.
        let mut changed = 0;
        let updates = ((existing as f64) * 0.005).ceil() as i64;
        for i in 0..updates {
            let id = if night == 2 && i == 0 { CHANGED_CUSTOMER } else { rng.random_range(1..=existing.max(1)) };
            let t = ts(stamp(&mut rng));
            let set = match rng.random_range(0..3) {
                _ if id == CHANGED_CUSTOMER && night == 2 => format!("email = 'customer{id}.new@example.ch'"),
                0 => format!("email = 'moved{night}.{id}@example.ch'"),
                1 => format!(
                    "phone = '+41 76 {:03} {:02} {:02}'",
                    rng.random_range(0..1000),
                    rng.random_range(0..100),
                    rng.random_range(0..100)
                ),
                _ => "flg_vip = 1 - flg_vip".to_string(),
            };
            target.exec(&format!("UPDATE customer SET {set}, updated_at = {t} WHERE customer_id = {id}")).await?;
            changed += 1;
        }
        // Churn: a few active customers close, their lines end.
        let churn = ((existing as f64) * 0.001).ceil() as i64;
        for _ in 0..churn {
            let id = rng.random_range(1..=existing.max(1));
            let t = ts(stamp(&mut rng));
            target
                .exec(&format!("UPDATE customer SET status = 'closed', dt_closed = {}, updated_at = {t} WHERE customer_id = {id} AND status <> 'closed'", date(day)))
                .await?;
            target
                .exec(&format!("UPDATE service SET end_date = {}, flg_active = 0, updated_at = {t} WHERE customer_id = {id} AND flg_active = 1", date(day)))
                .await?;
        }
        written.add("customer (updated)", changed + churn as u64);
        // Erasure requests: two closed customers deleted outright.
        let id = target.big("customer_id");
        let closed =
            target.ints(&format!("SELECT {id} FROM customer WHERE status = 'closed' ORDER BY customer_id")).await?;
        let mut erased = Vec::new();
        for _ in 0..2.min(closed.len()) {
            let id = closed[rng.random_range(0..closed.len())];
            if id != CHANGED_CUSTOMER && !erased.contains(&id) {
                erased.push(id);
            }
        }
        for id in &erased {
            target.exec(&format!("DELETE FROM customer WHERE customer_id = {id}")).await?;
        }
        written.add("customer (deleted)", erased.len() as u64);

        // New customers, each with a line or two.
        let new = ((self.customers() as f64) * 0.003).ceil() as i64;
        let mut cust = Insert::new("customer", d);
        let mut serv = Insert::new("service", d);
        for _ in 0..new {
            let c = Customer {
                id: ids.customer,
                bill_day: rng.random_range(1..=28),
                created: stamp(&mut rng),
                closed: None,
            };
            ids.customer += 1;
            let partner = 1 + (rng.random::<f64>().powi(3) * self.partners() as f64) as i64;
            self.customer_row(&mut rng, target, &mut cust, &c, partner, "active", c.created).await?;
            for _ in 0..rng.random_range(1..3) {
                let s = Service {
                    id: ids.service,
                    customer: 0,
                    plan: PLANS[rng.random_range(0..5)],
                    start: day,
                    end: None,
                };
                ids.service += 1;
                self.service_row(&mut rng, target, &mut serv, &s, c.id, c.created).await?;
            }
        }
        cust.flush(target).await?;
        serv.flush(target).await?;
        if night >= DRIFT_NIGHT {
            target
                .exec(&format!(
                    "UPDATE customer SET segment = 'standard' WHERE segment IS NULL AND customer_id >= {}",
                    ids.customer - new
                ))
                .await?;
        }
        written.add("customer (new)", cust.total);
        written.add("service (new)", serv.total);

        // Invoices paid or overdue two weeks after they were issued.
        let due = date(add_days(day, -14));
        let t = ts(at(day, 23 * 3_600));
        target
            .exec(&format!("UPDATE invoice_data SET paid_on = {}, updated_at = {t} WHERE invoice_id IN (SELECT invoice_id FROM invoice WHERE invoice_status_id = 2 AND invoice_date <= {due} AND invoice_id % 10 <> 0)", date(day)))
            .await?;
        target
            .exec(&format!("UPDATE invoice_data SET dunning_level = 1, updated_at = {t} WHERE invoice_id IN (SELECT invoice_id FROM invoice WHERE invoice_status_id = 2 AND invoice_date <= {due} AND invoice_id % 10 = 0)"))
            .await?;
        let count = target.big("COUNT(*)");
        let settled = target
            .int(&format!("SELECT {count} FROM invoice WHERE invoice_status_id = 2 AND invoice_date <= {due}"))
            .await?;
        target
            .exec(&format!("UPDATE invoice SET invoice_status_id = CASE WHEN invoice_id % 10 = 0 THEN 4 ELSE 3 END, updated_at = {t} WHERE invoice_status_id = 2 AND invoice_date <= {due}"))
            .await?;
        written.add("invoice (settled)", settled as u64);

        // Today's invoices: customers whose bill day it is.
        let bill_day = day.day();
        let mut inserts = InvoiceInserts::new(d);
        if bill_day <= 28 {
            let rows = self.billable(target, day).await?;
            for (c, lines) in rows {
                let refs: Vec<usize> = (0..lines.len()).collect();
                self.invoice(&mut rng, target, &mut inserts, &mut ids, &c, &lines, &refs, day, 2).await?;
            }
        }
        inserts.flush(target, &mut written).await?;

        // The day's call records.
        let id = target.big("service_id");
        let lines = target.ints(&format!("SELECT {id} FROM service WHERE flg_active = 1 ORDER BY service_id")).await?;
        let services: Vec<Service> =
            lines.into_iter().map(|id| Service { id, customer: 0, plan: "S", start: day, end: None }).collect();
        let mut ins = Insert::new("cdr", d);
        self.cdrs(&mut rng, target, &mut ins, &mut ids, &services, day).await?;
        ins.flush(target).await?;
        written.add("cdr", ins.total);
        target.exec("COMMIT").await?;
        Ok(written)
    }

    /// Customers billed on `bill_day`, with their lines, read back from the source.
    async fn billable(&self, target: &mut Target, day: NaiveDate) -> Result<Vec<(Customer, Vec<Service>)>> {
        let bill_day = day.day();
        // Customers who joined today get their first invoice next month.
        let billed =
            format!("c.bill_day = {bill_day} AND c.status <> 'closed' AND c.created_at < '{}'", day.format("%Y-%m-%d"));
        let id = target.big("c.customer_id");
        let ids = target.ints(&format!("SELECT {id} FROM customer c WHERE {billed} ORDER BY c.customer_id")).await?;
        // Service id, customer id and plan packed into one integer, to read them portably.
        let plan = PLANS.iter().enumerate().map(|(i, p)| format!(" WHEN '{p}' THEN {i}")).collect::<String>();
        let service = target.big("s.service_id");
        let packed = target.big(&format!("{service} * 10000000 + s.customer_id * 10 + CASE s.plan_code{plan} END"));
        let lines = target
            .ints(&format!(
                "SELECT {packed} FROM service s JOIN customer c ON c.customer_id = s.customer_id \
                 WHERE {billed} AND s.flg_active = 1 ORDER BY s.service_id"
            ))
            .await?;
        let mut out: Vec<(Customer, Vec<Service>)> = ids
            .iter()
            .map(|&id| (Customer { id, bill_day, created: at(history_start(), 0), closed: None }, Vec::new()))
            .collect();
        for packed in lines {
            let (service, customer, plan) = (packed / 10_000_000, packed % 10_000_000 / 10, packed % 10);
            if let Ok(i) = ids.binary_search(&customer) {
                let plan = PLANS[plan as usize];
                out[i].1.push(Service { id: service, customer: i, plan, start: history_start(), end: None });
            }
        }
        Ok(out)
    }
}

fn write_row(out: &mut String, values: &[V], d: Dialect) {
    out.push('(');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_value(out, v, d);
    }
    out.push(')');
}

/// The four tables an invoice writes, each a multi-row INSERT being built.
struct InvoiceInserts {
    invoices: Insert,
    data: Insert,
    items: Insert,
    services: Insert,
}

impl InvoiceInserts {
    fn new(d: Dialect) -> Self {
        InvoiceInserts {
            invoices: Insert::new("invoice", d),
            data: Insert::new("invoice_data", d),
            items: Insert::new("invoice_item", d),
            services: Insert::new("invoice_service", d),
        }
    }

    fn all(&mut self) -> [&mut Insert; 4] {
        [&mut self.invoices, &mut self.data, &mut self.items, &mut self.services]
    }

    /// Send the statements that have reached [`ROWS_PER_INSERT`] rows.
    async fn send_full(&mut self, target: &mut Target) -> Result<()> {
        for insert in self.all() {
            if insert.rows >= ROWS_PER_INSERT {
                insert.flush(target).await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self, target: &mut Target, written: &mut Written) -> Result<()> {
        for (table, insert) in
            ["invoice", "invoice_data", "invoice_item", "invoice_service"].into_iter().zip(self.all())
        {
            insert.flush(target).await?;
            written.add(table, insert.total);
        }
        Ok(())
    }
}

/// Names in e-mail addresses: ASCII, lower case, no apostrophes.
fn ascii(name: &str) -> String {
    name.chars()
        .filter_map(|c| match c {
            'ä' => Some('a'),
            'ö' => Some('o'),
            'ü' => Some('u'),
            'é' => Some('e'),
            c if c.is_ascii_alphabetic() => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        let mut s = String::new();
        write_value(&mut s, &V::Dec(-5_0000, 4), Dialect::Sqlite);
        s.push(' ');
        write_value(&mut s, &V::Dec(1_234, 3), Dialect::Sqlite);
        s.push(' ');
        write_value(&mut s, &V::Str("O'Neill"), Dialect::Mysql);
        s.push(' ');
        write_value(&mut s, &V::ZeroDate, Dialect::Postgres);
        s.push(' ');
        write_value(&mut s, &V::ZeroDate, Dialect::Mysql);
        assert_eq!(s, "-5.0000 1.234 'O''Neill' NULL '0000-00-00'");
    }
}
