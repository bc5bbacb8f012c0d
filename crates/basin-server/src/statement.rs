//! What a client may send to the SQL endpoints. Both endpoints parse a request once, with one
//! parser and dialect (datafusion-postgres' PostgreSQL parser), and admit each statement
//! against an allow-list before anything is planned: queries, `EXPLAIN` of queries, `SHOW`,
//! transactions and cursors (no-ops over a read-only lake), `COPY (query) TO STDOUT`, and
//! `SET` of a few harmless session variables. Everything else is refused with SQLSTATE
//! 42501 (a write, a path, an engine setting) or 0A000 (not supported), and never reaches
//! DataFusion's planner. The planner's own `SQLOptions` ([`verify`]) and the read-only lake
//! stores ([`crate::stores`]) are the walls behind this one.

use std::ops::ControlFlow;
use std::sync::OnceLock;
use std::time::Duration;

use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::{
    CopySource, CopyTarget, Expr, FunctionArguments, ObjectName, Query, Select, SetExpr, Statement, TableFactor, Value,
    Visit, VisitMut, Visitor, VisitorMut,
};
use datafusion::sql::sqlparser::ast::{Ident, SelectItem, Set};
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;

use crate::policy::Role;

/// A statement refused before planning, with its SQLSTATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub code: &'static str,
    pub message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refused {}

impl Refused {
    /// Not allowed to a reader (SQLSTATE 42501).
    pub fn denied(message: impl Into<String>) -> Refused {
        Refused { code: "42501", message: message.into() }
    }

    /// Not something the endpoint does (SQLSTATE 0A000).
    pub fn unsupported(message: impl Into<String>) -> Refused {
        Refused { code: "0A000", message: message.into() }
    }

    /// A file or URL named by a statement.
    pub fn path() -> Refused {
        Refused::denied("the SQL endpoint reads only the lake's tables: files and URLs cannot be read or written")
    }

    fn write(what: &str) -> Refused {
        Refused::denied(format!("the SQL endpoint is read-only: {what} is not allowed"))
    }
}

/// The parser of both endpoints.
fn parser() -> &'static PostgresCompatibilityParser {
    static PARSER: OnceLock<PostgresCompatibilityParser> = OnceLock::new();
    PARSER.get_or_init(PostgresCompatibilityParser::new)
}

/// Statements that write or define: one the parser does not even know (DataFusion's own
/// `CREATE EXTERNAL TABLE`, say) is still refused as a write, not reported as a typo.
const WRITE_VERBS: &[&str] = &[
    "alter", "copy", "create", "delete", "drop", "grant", "insert", "merge", "revoke", "truncate", "update", "vacuum",
];

/// `sql` as statements, parsed the one way both endpoints parse.
pub fn parse(sql: &str) -> Result<Vec<Statement>, Refused> {
    parser().parse(sql).map_err(|e: ParserError| {
        let first = sql.split_whitespace().next().unwrap_or_default().to_ascii_lowercase();
        if WRITE_VERBS.contains(&first.as_str()) {
            Refused::write(&first.to_uppercase())
        } else {
            Refused { code: "42601", message: format!("syntax error: {e}") }
        }
    })
}

/// What an admitted statement does, which says how an endpoint executes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Admitted {
    /// Planned by DataFusion and returns rows: a query, `EXPLAIN`, `DESCRIBE`, `SHOW TABLES`…
    Query,
    /// Session state datafusion-postgres keeps per connection: `SET` of a harmless variable,
    /// `SHOW` of a variable, transactions, cursors.
    Session,
    /// `SET statement_timeout`: the new timeout (`None`: the role's).
    StatementTimeout(Option<Duration>),
    /// Accepted and ignored, answered with this command tag.
    NoOp(&'static str),
    /// `COPY (query) TO STDOUT`.
    CopyOut,
}

/// Variables a client may `SET` (lower case): each changes only how its own connection's
/// answers are formatted or labelled.
const SETTABLE: &[&str] = &[
    "application_name",
    "bytea_output",
    "client_encoding",
    "client_min_messages",
    "datestyle",
    "extra_float_digits",
    "intervalstyle",
    "search_path",
    "standard_conforming_strings",
    "statement_timeout",
    "timezone",
];

/// Variables datafusion-postgres records for the connection; the others are accepted as no-ops.
const KEPT_BY_SESSION: &[&str] =
    &["application_name", "bytea_output", "datestyle", "extra_float_digits", "intervalstyle", "search_path"];

/// Table functions a query may call: they generate rows, none reads a file or URL.
const TABLE_FUNCTIONS: &[&str] = &["generate_series", "range", "unnest", "pg_get_keywords"];

/// Whether `statement` may run for `role`, and how.
pub fn admit(statement: &Statement, role: &Role) -> Result<Admitted, Refused> {
    match statement {
        Statement::Query(q) => inspect(q.as_ref()).map(|_| Admitted::Query),
        Statement::Explain { statement, .. } => match statement.as_ref() {
            Statement::Query(q) => inspect(q.as_ref()).map(|_| Admitted::Query),
            other => Err(refusal(other)),
        },
        Statement::ExplainTable { table_name, .. } => inspect_name(table_name).map(|_| Admitted::Query),
        Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowFunctions { .. } => Ok(Admitted::Query),
        Statement::ShowVariable { .. } | Statement::ShowCatalogs { .. } => Ok(Admitted::Session),
        Statement::StartTransaction { .. } | Statement::Commit { .. } => Ok(Admitted::Session),
        Statement::Rollback { savepoint: None, .. } => Ok(Admitted::Session),
        Statement::Declare { stmts } => {
            for d in stmts {
                match &d.for_query {
                    Some(q) => inspect(q.as_ref())?,
                    None => return Err(Refused::unsupported("DECLARE without a query is not supported")),
                }
            }
            Ok(Admitted::Session)
        }
        Statement::Fetch { .. } | Statement::Close { .. } => Ok(Admitted::Session),
        Statement::Discard { .. } => Ok(Admitted::NoOp("DISCARD ALL")),
        Statement::Deallocate { .. } => Ok(Admitted::NoOp("DEALLOCATE")),
        Statement::Set(set) => admit_set(set, role),
        Statement::Copy { source: CopySource::Query(q), to: true, target: CopyTarget::Stdout, .. } => {
            inspect(q.as_ref()).map(|_| Admitted::CopyOut)
        }
        Statement::Copy {
            source: CopySource::Table { table_name, .. }, to: true, target: CopyTarget::Stdout, ..
        } => inspect_name(table_name).map(|_| Admitted::CopyOut),
        other => Err(refusal(other)),
    }
}

/// Why `statement`, not on the allow-list, is refused.
fn refusal(statement: &Statement) -> Refused {
    let text = statement.to_string();
    let verb: String = text.split_whitespace().take(2).collect::<Vec<_>>().join(" ").to_uppercase();
    match statement {
        Statement::Copy { target: CopyTarget::Stdin, .. } => Refused::write("COPY FROM"),
        Statement::Copy { .. } => Refused::denied(
            "the SQL endpoint reads only the lake's tables: COPY writes only to the client (COPY (query) TO STDOUT)",
        ),
        Statement::Insert(_)
        | Statement::Update(_)
        | Statement::Delete(_)
        | Statement::Merge(_)
        | Statement::Truncate(_)
        | Statement::Drop { .. }
        | Statement::Grant(_)
        | Statement::Revoke(_)
        | Statement::Comment { .. }
        | Statement::RenameTable(_)
        | Statement::CreateView(_)
        | Statement::CreateTable(_)
        | Statement::CreateIndex(_)
        | Statement::CreateSchema { .. }
        | Statement::CreateDatabase { .. }
        | Statement::CreateFunction(_)
        | Statement::CreateExtension(_)
        | Statement::CreateRole(_)
        | Statement::CreateSecret { .. }
        | Statement::AlterTable(_)
        | Statement::AlterSchema(_)
        | Statement::AttachDatabase { .. }
        | Statement::AttachDuckDBDatabase { .. }
        | Statement::Analyze(_)
        | Statement::Call(_)
        | Statement::Install { .. }
        | Statement::Load { .. }
        | Statement::LoadData { .. }
        | Statement::Unload { .. } => Refused::write(&verb),
        Statement::Prepare { .. } | Statement::Execute { .. } => Refused::unsupported(
            "PREPARE and EXECUTE are not supported: drivers prepare statements with the extended protocol",
        ),
        Statement::Explain { .. } => Refused::unsupported("EXPLAIN is supported for queries only"),
        _ if verb.starts_with("CREATE") || verb.starts_with("ALTER") || verb.starts_with("DROP") => {
            Refused::write(&verb)
        }
        _ => Refused::unsupported(format!("{verb} is not supported by the SQL endpoint")),
    }
}

fn admit_set(set: &Set, role: &Role) -> Result<Admitted, Refused> {
    match set {
        Set::SingleAssignment { hivevar: false, variable, values, .. } => {
            let name = variable.to_string().to_ascii_lowercase();
            if !SETTABLE.contains(&name.as_str()) {
                return Err(Refused::denied(format!(
                    "SET {name} is not allowed: a client may set only {}",
                    SETTABLE.join(", ")
                )));
            }
            let value = values.first().map(set_value).unwrap_or_default();
            match name.as_str() {
                "statement_timeout" => statement_timeout(&value, role).map(Admitted::StatementTimeout),
                "client_encoding" if !matches!(value.to_ascii_lowercase().as_str(), "utf8" | "utf-8" | "unicode") => {
                    Err(Refused::unsupported(format!(
                        "client_encoding {value} is not supported: the server speaks UTF8"
                    )))
                }
                "timezone" => Ok(Admitted::Session),
                n if KEPT_BY_SESSION.contains(&n) => Ok(Admitted::Session),
                _ => Ok(Admitted::NoOp("SET")),
            }
        }
        Set::SetTimeZone { .. } => Ok(Admitted::Session),
        Set::SetNames { charset_name, .. } if charset_name.value.eq_ignore_ascii_case("utf8") => {
            Ok(Admitted::NoOp("SET"))
        }
        // Transactions are no-ops over a read-only lake; every one is read-only already.
        Set::SetTransaction { .. } => Ok(Admitted::NoOp("SET")),
        Set::SetRole { .. } | Set::SetSessionAuthorization(_) => {
            Err(Refused::denied("a session keeps the role it authenticated as"))
        }
        other => Err(Refused::denied(format!("{other} is not allowed: a client may set only {}", SETTABLE.join(", ")))),
    }
}

/// The text datafusion-postgres gets for an admitted [`Admitted::Session`] statement. `SET
/// timezone = …` goes as `SET TIME ZONE …`, which it keeps for the connection; the first form
/// it would hand to DataFusion, which would change the time zone of every connection of the
/// role.
pub fn session_text(statement: &Statement) -> String {
    if let Statement::Set(Set::SingleAssignment { variable, values, .. }) = statement
        && variable.to_string().eq_ignore_ascii_case("timezone")
        && let Some(value) = values.first()
    {
        return Statement::Set(Set::SetTimeZone { local: false, value: value.clone() }).to_string();
    }
    statement.to_string()
}

/// A `SET` value as text (`'5s'`, `5000`, `DEFAULT`).
fn set_value(e: &Expr) -> String {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            Value::Number(n, _) => n.clone(),
            other => other.to_string(),
        },
        Expr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
}

/// The timeout a `SET statement_timeout` asks for, which may only be shorter than the role's.
fn statement_timeout(value: &str, role: &Role) -> Result<Option<Duration>, Refused> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("default") {
        return Ok(None);
    }
    let asked = parse_timeout(value)
        .ok_or_else(|| Refused { code: "22023", message: format!("invalid value for statement_timeout: {value:?}") })?;
    match (role.statement_timeout, asked) {
        (Some(limit), asked) if asked.is_none_or(|a| a > limit) => Err(Refused::denied(format!(
            "statement_timeout can only be lowered, not raised or turned off: role {} allows statements {} ms at most",
            role.name,
            limit.as_millis()
        ))),
        (_, asked) => Ok(asked),
    }
}

/// PostgreSQL's forms: a number of milliseconds, or a duration with a unit (`500ms`, `5s`,
/// `1min`, `2h`). `0` is no timeout (`Some(None)`).
fn parse_timeout(value: &str) -> Option<Option<Duration>> {
    let d = match value.parse::<u64>() {
        Ok(ms) => Duration::from_millis(ms),
        Err(_) => basin_core::values::parse_duration(value).ok()?,
    };
    Some((!d.is_zero()).then_some(d))
}

/// Check everything a query reads and does: no statement nested in it other than queries
/// (`WITH x AS (DELETE …)`), no `SELECT … INTO`, no path or URL as a table, and only table
/// functions that generate rows.
fn inspect(query: &Query) -> Result<(), Refused> {
    match query.visit(&mut Inspector) {
        ControlFlow::Break(r) => Err(r),
        ControlFlow::Continue(()) => Ok(()),
    }
}

fn inspect_name(name: &ObjectName) -> Result<(), Refused> {
    match Inspector.pre_visit_relation(name) {
        ControlFlow::Break(r) => Err(r),
        ControlFlow::Continue(()) => Ok(()),
    }
}

struct Inspector;

impl Visitor for Inspector {
    type Break = Refused;

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<Refused> {
        match statement {
            Statement::Query(_) => ControlFlow::Continue(()),
            other => ControlFlow::Break(refusal(other)),
        }
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Refused> {
        fn writes(set: &SetExpr) -> Option<Refused> {
            match set {
                SetExpr::Select(s) if s.into.is_some() => Some(Refused::write("SELECT INTO")),
                SetExpr::SetOperation { left, right, .. } => writes(left).or_else(|| writes(right)),
                SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) => Some(refusal(s)),
                _ => None,
            }
        }
        match writes(&query.body) {
            Some(r) => ControlFlow::Break(r),
            None => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<Refused> {
        if select.into.is_some() {
            return ControlFlow::Break(Refused::write("SELECT INTO"));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, name: &ObjectName) -> ControlFlow<Refused> {
        let path_like = name.0.iter().any(|part| match part.as_ident() {
            Some(i) => i.value.contains(['/', '\\', ':', '~']) || i.value.starts_with('.'),
            None => true,
        });
        if path_like { ControlFlow::Break(Refused::path()) } else { ControlFlow::Continue(()) }
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Refused> {
        let function = match factor {
            TableFactor::Table { name, args: Some(_), .. } | TableFactor::Function { name, .. } => Some(name),
            TableFactor::TableFunction { .. } => {
                return ControlFlow::Break(Refused::unsupported("TABLE(…) is not supported"));
            }
            _ => None,
        };
        if let Some(name) = function {
            let last = name.0.last().and_then(|p| p.as_ident()).map(|i| i.value.to_ascii_lowercase());
            if !last.as_deref().is_some_and(|f| TABLE_FUNCTIONS.contains(&f)) {
                return ControlFlow::Break(Refused::denied(format!(
                    "table function {name} is not available: a query may call only {}",
                    TABLE_FUNCTIONS.join(", ")
                )));
            }
        }
        ControlFlow::Continue(())
    }
}

/// Make `current_user`, `session_user`, `user` and `current_role` answer `user`, the
/// authenticated Basin user (the role, for an unauthenticated local client).
pub fn identify(statement: &mut Statement, user: &str) {
    /// The register `e` reads (`current_user`, …), if it is one.
    fn register(e: &Expr) -> Option<String> {
        let Expr::Function(f) = e else { return None };
        let parts: Vec<String> =
            f.name.0.iter().filter_map(|p| p.as_ident()).map(|i| i.value.to_ascii_lowercase()).collect();
        let name = match parts.as_slice() {
            [n] => n,
            [schema, n] if schema == "pg_catalog" => n,
            _ => return None,
        };
        let no_args = match &f.args {
            FunctionArguments::None => true,
            FunctionArguments::List(l) => l.args.is_empty(),
            FunctionArguments::Subquery(_) => false,
        };
        (no_args && matches!(name.as_str(), "current_user" | "session_user" | "user" | "current_role"))
            .then(|| name.clone())
    }
    struct Identify<'a>(&'a str);
    impl VisitorMut for Identify<'_> {
        type Break = ();
        // A selected register keeps its name as the column's, as in PostgreSQL.
        fn pre_visit_select(&mut self, select: &mut Select) -> ControlFlow<()> {
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(e) = item
                    && let Some(name) = register(e)
                {
                    *item = SelectItem::ExprWithAlias { expr: e.clone(), alias: Ident::new(name) };
                }
            }
            ControlFlow::Continue(())
        }
        fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            if register(expr).is_some() {
                *expr = Expr::Value(Value::SingleQuotedString(self.0.to_string()).into());
            }
            ControlFlow::Continue(())
        }
    }
    let _ = VisitMut::visit(statement, &mut Identify(user));
}

/// DataFusion's own wall behind [`admit`]: a plan that defines, changes or writes anything,
/// or sets an engine option, is refused even if it got this far.
pub fn verify(plan: &LogicalPlan) -> datafusion::error::Result<()> {
    datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(timeout: Option<u64>) -> Role {
        let mut r = Role::superuser("analyst");
        r.statement_timeout = timeout.map(Duration::from_millis);
        r
    }

    /// The outcome of admitting every statement of `sql`: the first refusal's SQLSTATE, or "ok".
    fn outcome(sql: &str) -> String {
        let r = role(Some(30_000));
        let statements = match parse(sql) {
            Ok(s) => s,
            Err(e) => return e.code.to_string(),
        };
        for s in &statements {
            if let Err(e) = admit(s, &r) {
                return e.code.to_string();
            }
        }
        "ok".into()
    }

    #[test]
    fn reads_are_admitted() {
        for sql in [
            "SELECT 1",
            "WITH a AS (SELECT 1 AS x) SELECT * FROM a",
            "VALUES (1), (2)",
            "SELECT * FROM silver.customer c JOIN (SELECT 1 AS id) d ON c.id = d.id",
            "SELECT * FROM generate_series(1, 3)",
            "EXPLAIN SELECT 1",
            "EXPLAIN ANALYZE SELECT 1",
            "SHOW TABLES",
            "SHOW search_path",
            "BEGIN",
            "COMMIT",
            "ROLLBACK",
            "SET search_path = public",
            "SET application_name = 'psql'",
            "SET extra_float_digits = 3",
            "SET DateStyle = 'ISO'",
            "SET client_encoding = 'UTF8'",
            "SET TIME ZONE 'UTC'",
            "SET statement_timeout = '5s'",
            "SET statement_timeout = 1000",
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
            "COPY (SELECT 1) TO STDOUT",
            "COPY silver.customer TO STDOUT WITH (FORMAT csv)",
            "DECLARE c CURSOR FOR SELECT 1",
            "DISCARD ALL",
            "SELECT 1; SELECT 2",
        ] {
            assert_eq!(outcome(sql), "ok", "{sql}");
        }
    }

    #[test]
    fn writes_paths_and_settings_are_refused() {
        for (sql, code) in [
            ("COPY (SELECT 1 AS x) TO '/tmp/cp1.csv'", "42501"),
            ("COPY silver.customer TO '/tmp/lake/silver/customer/_delta_log/00000000000000000009.json'", "42501"),
            ("COPY silver.customer FROM '/etc/passwd'", "42501"),
            ("COPY silver.customer FROM STDIN", "42501"),
            ("COPY (SELECT 1) TO PROGRAM 'touch /tmp/x'", "42501"),
            ("CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'", "42501"),
            ("create external table p stored as parquet location 's3://bucket/x/'", "42501"),
            ("SELEC 1", "42601"),
            ("CREATE TABLE t (a INT)", "42501"),
            ("CREATE VIEW v AS SELECT 1", "42501"),
            ("CREATE FUNCTION f() RETURNS INT AS 'select 1' LANGUAGE sql", "42501"),
            ("DROP TABLE silver.customer", "42501"),
            ("INSERT INTO silver.customer VALUES (1)", "42501"),
            ("UPDATE silver.customer SET id = 2", "42501"),
            ("DELETE FROM silver.customer", "42501"),
            ("MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE", "42501"),
            ("ALTER TABLE silver.customer ADD COLUMN x INT", "42501"),
            ("TRUNCATE silver.customer", "42501"),
            ("SET datafusion.runtime.memory_limit = '100G'", "42501"),
            ("SET datafusion.sql_parser.dialect = 'MySQL'", "42501"),
            ("SET datafusion.execution.batch_size = 1", "42501"),
            ("SET statement_timeout = 0", "42501"),
            ("SET statement_timeout = '10min'", "42501"),
            ("SET ROLE engineer", "42501"),
            ("SET SESSION AUTHORIZATION eng", "42501"),
            ("SELECT 1; COPY (SELECT 1) TO '/tmp/x.csv'", "42501"),
            ("SELECT 1; DROP TABLE silver.customer", "42501"),
            ("WITH d AS (DELETE FROM silver.customer RETURNING *) SELECT * FROM d", "42501"),
            ("SELECT * INTO newtable FROM silver.customer", "42501"),
            ("SELECT * FROM \"/etc/passwd\"", "42501"),
            ("SELECT * FROM \"file:///etc/passwd\"", "42501"),
            ("SELECT * FROM \"s3://bucket/x.parquet\"", "42501"),
            ("SELECT * FROM read_csv('/etc/passwd')", "42501"),
            ("SELECT * FROM read_parquet('https://evil.example/x.parquet')", "42501"),
            ("SELECT * FROM (SELECT * FROM read_json('/etc/passwd')) t", "42501"),
            ("EXPLAIN COPY (SELECT 1) TO '/tmp/x'", "42501"),
            ("EXPLAIN ANALYZE DELETE FROM silver.customer", "42501"),
            ("EXPLAIN SHOW TABLES", "0A000"),
            ("PREPARE p AS SELECT 1", "0A000"),
            ("SET client_encoding = 'LATIN1'", "0A000"),
        ] {
            assert_eq!(outcome(sql), code, "{sql}");
        }
    }

    #[test]
    fn a_time_zone_is_set_for_the_connection_only() {
        let s = parse("SET timezone = 'Europe/Paris'").unwrap().remove(0);
        assert_eq!(session_text(&s), "SET TIME ZONE 'Europe/Paris'");
        let s = parse("SET search_path = silver").unwrap().remove(0);
        assert_eq!(session_text(&s), "SET search_path = silver");
    }

    #[test]
    fn statement_timeout_may_only_be_lowered() {
        let limited = role(Some(2_000));
        let set = |sql: &str, r: &Role| admit(&parse(sql).unwrap()[0], r);
        assert_eq!(
            set("SET statement_timeout = 500", &limited),
            Ok(Admitted::StatementTimeout(Some(Duration::from_millis(500))))
        );
        assert_eq!(
            set("SET statement_timeout = '2s'", &limited),
            Ok(Admitted::StatementTimeout(Some(Duration::from_secs(2))))
        );
        assert_eq!(set("SET statement_timeout = '3s'", &limited).unwrap_err().code, "42501");
        assert_eq!(set("SET statement_timeout = 0", &limited).unwrap_err().code, "42501");
        assert_eq!(set("SET statement_timeout = 'soon'", &limited).unwrap_err().code, "22023");
        assert_eq!(set("SET statement_timeout = 0", &role(None)), Ok(Admitted::StatementTimeout(None)));
        assert_eq!(
            set("SET statement_timeout = '1min'", &role(None)),
            Ok(Admitted::StatementTimeout(Some(Duration::from_secs(60))))
        );
    }

    #[test]
    fn the_session_user_is_the_authenticated_one() {
        for sql in ["SELECT current_user", "SELECT session_user", "SELECT user"] {
            let mut s = parse(sql).unwrap().remove(0);
            identify(&mut s, "ana");
            let column = sql.trim_start_matches("SELECT ");
            // datafusion-postgres' parser reads `current_user` as `session_user`.
            let column = if column == "current_user" { "session_user" } else { column };
            assert_eq!(s.to_string(), format!("SELECT 'ana' AS {column}"), "{sql}");
        }
        let mut s = parse("SELECT upper(current_user) AS u FROM t WHERE owner = session_user").unwrap().remove(0);
        identify(&mut s, "ana");
        assert_eq!(s.to_string(), "SELECT upper('ana') AS u FROM t WHERE owner = 'ana'");
        let mut s = parse("SELECT \"user\" FROM t").unwrap().remove(0);
        identify(&mut s, "ana");
        assert_eq!(s.to_string(), "SELECT \"user\" FROM t", "a column named user is a column");
    }
}
