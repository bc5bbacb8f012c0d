//! Evaluating checks as SQL on DataFusion, over an asset as registered in a session (the version
//! just committed, in a run). Column checks that judge rows one at a time (`not_null`,
//! `accepted_values`, `expression`, `null_rate`, `row_count`, and the NOT NULL and freshness
//! parts of others) share one aggregate scan; `unique` and `relationships` need their own.
//! A failed row-level check then reads up to [`SAMPLES`] keys of failing rows.

use std::time::{Duration, Instant};

use basin_core::AssetKey;
use basin_core::check::{Check, CheckSpec, Expected};
use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::prelude::SessionContext;

/// Failing keys kept per check.
pub const SAMPLES: usize = 20;

pub use basin_core::outcome::CheckOutcome;

/// What checks know besides the table.
#[derive(Debug, Clone, Default)]
pub struct CheckContext {
    pub now: DateTime<Utc>,
    /// Columns that identify a row in samples (the model's key, the table's primary key).
    pub key_columns: Vec<String>,
    /// Rows written by this materialisation, and by earlier ones, newest first.
    pub rows_written: Option<u64>,
    pub earlier_rows: Vec<i64>,
    /// When the asset was last materialised (freshness without a column).
    pub last_materialized: Option<DateTime<Utc>>,
    /// This ingestion's source count and rows read (reconcile); with `reconciles_keys`, the
    /// keys the source has and the keys of the table's current state (a key snapshot's).
    pub reconciliation: Option<(u64, u64)>,
    pub reconciles_keys: bool,
}

/// Evaluate `checks` of `key`. A check that cannot be evaluated (a column that is not there,
/// an expression that does not plan) fails, saying why.
pub async fn evaluate(
    ctx: &SessionContext,
    key: &AssetKey,
    checks: &[CheckSpec],
    c: &CheckContext,
) -> Vec<CheckOutcome> {
    let table = format!("{}.{}", quote(&key.schema), quote(&key.name));
    let mut out = Vec::new();
    let scanned: Vec<&CheckSpec> = checks.iter().filter(|s| !scan_terms(&s.check).is_empty()).collect();
    let scan_started = Instant::now();
    let shared = shared_scan(ctx, &table, &scanned).await;
    // The shared scan's time, split among the checks it served.
    let scan_share = scan_started.elapsed() / scanned.len().max(1) as u32;
    for spec in checks {
        if let (Check::Reconcile { .. }, None) = (&spec.check, c.reconciliation) {
            continue; // Only an ingestion has counts to reconcile.
        }
        let start = Instant::now();
        let share = if scanned.iter().any(|s| s.name == spec.name) { scan_share } else { Duration::ZERO };
        let found = match &shared {
            Ok(values) if values.contains_key(&spec.name) => Ok(values[&spec.name].clone()),
            _ if !scan_terms(&spec.check).is_empty() => {
                // The shared scan failed (one bad expression spoils it): this check alone.
                shared_scan(ctx, &table, &[spec]).await.map(|mut v| v.remove(&spec.name).unwrap_or_default())
            }
            _ => Ok(Vec::new()),
        };
        let judged = match found {
            Ok(values) => judge(ctx, &table, spec, &values, c).await,
            Err(e) => Err(e),
        };
        let (passed, observed, threshold, samples) = match judged {
            Ok(j) => j,
            Err(e) => (false, format!("cannot evaluate: {e}"), "a check that runs".to_string(), Vec::new()),
        };
        out.push(CheckOutcome {
            name: spec.name.clone(),
            kind: spec.kind,
            severity: spec.severity,
            passed,
            observed,
            threshold,
            samples,
            duration: start.elapsed() + share,
        });
    }
    out
}

/// The aggregate expressions a check needs from the shared scan.
fn scan_terms(check: &Check) -> Vec<String> {
    let count_if = |predicate: String| format!("SUM(CASE WHEN {predicate} THEN 1 ELSE 0 END)");
    match check {
        Check::NotNull { columns } => vec![count_if(any_null(columns))],
        Check::AcceptedValues { column, values } => vec![count_if(not_accepted(column, values))],
        Check::Expression { sql } => vec![count_if(format!("NOT COALESCE(({sql}), FALSE)"))],
        Check::NullRate { columns, .. } => {
            let mut terms = vec!["COUNT(*)".to_string()];
            terms.extend(columns.iter().map(|c| count_if(format!("{} IS NULL", quote(c)))));
            terms
        }
        Check::RowCount { .. } => vec!["COUNT(*)".to_string()],
        Check::Schema { expected, .. } => {
            expected.iter().filter(|e| e.not_null).map(|e| count_if(format!("{} IS NULL", quote(&e.column)))).collect()
        }
        Check::Freshness { column: Some(col), .. } => {
            vec![format!("date_part('epoch', CAST(MAX({}) AS TIMESTAMP))", quote(col))]
        }
        _ => Vec::new(),
    }
}

fn any_null(columns: &[String]) -> String {
    columns.iter().map(|c| format!("{} IS NULL", quote(c))).collect::<Vec<_>>().join(" OR ")
}

fn not_accepted(column: &str, values: &[basin_core::check::Literal]) -> String {
    let list: Vec<String> = values.iter().map(|v| v.sql()).collect();
    format!("{} IS NOT NULL AND {} NOT IN ({})", quote(column), quote(column), list.join(", "))
}

/// The rows a row-level check fails, as a predicate.
fn failing_predicate(check: &Check) -> Option<String> {
    match check {
        Check::NotNull { columns } => Some(any_null(columns)),
        Check::AcceptedValues { column, values } => Some(not_accepted(column, values)),
        Check::Expression { sql } => Some(format!("NOT COALESCE(({sql}), FALSE)")),
        _ => None,
    }
}

/// A `dq_flags` model's query with its row-level checks as columns: `dq_failure_reason` (the
/// names of the checks a row fails, `; `-separated, NULL when it passes them all) and
/// `dq_passed`.
pub fn flagged_sql(sql: &str, flags: &[CheckSpec]) -> String {
    let body = sql.trim_end().trim_end_matches(';');
    let mut joins = String::new();
    let mut reasons = Vec::new();
    for (i, spec) in flags.iter().enumerate() {
        let failing = match &spec.check {
            Check::Relationships { column, to, field } => {
                let k = format!("__dq_k{i}");
                joins.push_str(&format!(
                    " LEFT JOIN (SELECT DISTINCT {f} AS {k} FROM {}.{}) __dq_r{i} ON q.{c} = __dq_r{i}.{k}",
                    quote(&to.schema),
                    quote(&to.name),
                    f = quote(field),
                    c = quote(column),
                ));
                format!("q.{c} IS NOT NULL AND __dq_r{i}.{k} IS NULL", c = quote(column))
            }
            other => match failing_predicate(other) {
                Some(p) => p,
                None => continue,
            },
        };
        reasons.push(format!("CASE WHEN {failing} THEN '{}' END", spec.name.replace('\'', "''")));
    }
    let reason = if reasons.is_empty() {
        "CAST(NULL AS VARCHAR)".to_string()
    } else {
        format!("NULLIF(concat_ws('; ', {}), '')", reasons.join(", "))
    };
    format!(
        "SELECT f.*, f.dq_failure_reason IS NULL AS dq_passed FROM \
         (SELECT q.*, {reason} AS dq_failure_reason FROM (\n{body}\n) q{joins}) f"
    )
}

/// One aggregate query for the checks that need one: each check's values, by name.
async fn shared_scan(
    ctx: &SessionContext,
    table: &str,
    checks: &[&CheckSpec],
) -> Result<std::collections::BTreeMap<String, Vec<ScalarValue>>, String> {
    let mut terms = Vec::new();
    let mut spans = Vec::new();
    for spec in checks {
        let t = scan_terms(&spec.check);
        spans.push((spec.name.clone(), terms.len(), t.len()));
        terms.extend(t);
    }
    if terms.is_empty() {
        return Ok(Default::default());
    }
    let select: Vec<String> = terms.iter().enumerate().map(|(i, t)| format!("{t} AS v{i}")).collect();
    let row = one_row(ctx, &format!("SELECT {} FROM {table}", select.join(", "))).await?;
    Ok(spans.into_iter().map(|(name, from, n)| (name, row[from..from + n].to_vec())).collect())
}

async fn one_row(ctx: &SessionContext, sql: &str) -> Result<Vec<ScalarValue>, String> {
    let batches = query(ctx, sql).await?;
    let batch = batches.iter().find(|b| b.num_rows() > 0).ok_or("the query returned no row")?;
    (0..batch.num_columns())
        .map(|i| ScalarValue::try_from_array(batch.column(i), 0).map_err(|e| e.to_string()))
        .collect()
}

async fn query(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, String> {
    let df = ctx.sql(sql).await.map_err(|e| e.to_string())?;
    df.collect().await.map_err(|e| e.to_string())
}

fn int(v: Option<&ScalarValue>) -> u64 {
    match v {
        Some(ScalarValue::Int64(Some(n))) => (*n).max(0) as u64,
        Some(ScalarValue::UInt64(Some(n))) => *n,
        Some(other) => other.to_string().parse().unwrap_or(0),
        None => 0,
    }
}

fn rows(n: u64) -> String {
    if n == 1 { "1 row".to_string() } else { format!("{n} rows") }
}

type Judged = (bool, String, String, Vec<String>);

async fn judge(
    ctx: &SessionContext,
    table: &str,
    spec: &CheckSpec,
    values: &[ScalarValue],
    c: &CheckContext,
) -> Result<Judged, String> {
    let zero_rows = || "0 rows".to_string();
    Ok(match &spec.check {
        Check::NotNull { .. } | Check::AcceptedValues { .. } | Check::Expression { .. } => {
            let failing = int(values.first());
            let samples = if failing > 0 {
                let predicate = failing_predicate(&spec.check).expect("a row-level check");
                samples(ctx, table, &predicate, &key_columns(spec, c)).await?
            } else {
                Vec::new()
            };
            (failing == 0, rows(failing), zero_rows(), samples)
        }
        Check::NullRate { columns, max } => {
            let total = int(values.first()).max(1);
            let rates: Vec<(String, f64)> = columns
                .iter()
                .enumerate()
                .map(|(i, col)| (col.clone(), int(values.get(i + 1)) as f64 / total as f64))
                .collect();
            let worst = rates.iter().cloned().fold((String::new(), 0.0), |a, b| if b.1 > a.1 { b } else { a });
            let observed = rates.iter().map(|(col, r)| format!("{col} {r:.4}")).collect::<Vec<_>>().join(", ");
            (worst.1 <= *max, observed, format!("<= {max}"), Vec::new())
        }
        Check::RowCount { min, max } => {
            let n = int(values.first());
            let ok = min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m);
            let threshold = match (min, max) {
                (Some(a), Some(b)) => format!("{a}..={b} rows"),
                (Some(a), None) => format!(">= {a} rows"),
                (None, Some(b)) => format!("<= {b} rows"),
                (None, None) => String::new(),
            };
            (ok, rows(n), threshold, Vec::new())
        }
        Check::Unique { columns } => {
            let cols: Vec<String> = columns.iter().map(|c| quote(c)).collect();
            let cols = cols.join(", ");
            let dupes = format!(
                "SELECT {cols}, COUNT(*) AS n FROM {table} WHERE NOT ({}) GROUP BY {cols} HAVING COUNT(*) > 1",
                any_null(columns)
            );
            let summary = one_row(ctx, &format!("SELECT COUNT(*), COALESCE(SUM(n), 0) FROM ({dupes}) d")).await?;
            let (keys, rows_in) = (int(summary.first()), int(summary.get(1)));
            let samples =
                if keys > 0 { render(&query(ctx, &format!("{dupes} LIMIT {SAMPLES}")).await?) } else { Vec::new() };
            (keys == 0, format!("{keys} duplicated key(s) in {}", rows(rows_in)), "no duplicated key".into(), samples)
        }
        Check::Relationships { column, to, field } => {
            let other = format!("{}.{}", quote(&to.schema), quote(&to.name));
            let orphans = format!(
                "FROM {table} t LEFT JOIN (SELECT DISTINCT {f} AS k FROM {other}) o ON t.{c} = o.k \
                 WHERE t.{c} IS NOT NULL AND o.k IS NULL",
                c = quote(column),
                f = quote(field),
            );
            let n = int(one_row(ctx, &format!("SELECT COUNT(*) {orphans}")).await?.first());
            let samples = if n > 0 {
                render(&query(ctx, &format!("SELECT DISTINCT t.{} {orphans} LIMIT {SAMPLES}", quote(column))).await?)
            } else {
                Vec::new()
            };
            (n == 0, format!("{} without a match in {to}", rows(n)), zero_rows(), samples)
        }
        Check::Schema { expected, allow_extra } => {
            let df = ctx.sql(&format!("SELECT * FROM {table}")).await.map_err(|e| e.to_string())?;
            let schema = df.schema();
            let mut problems = Vec::new();
            let mut nulls = values.iter();
            for e in expected {
                match schema.field_with_unqualified_name(&e.column) {
                    Err(_) => problems.push(format!("{} missing", e.column)),
                    Ok(f) if !type_matches(e, f.data_type()) => {
                        problems.push(format!("{} is {}, not {}", e.column, f.data_type(), e.sql_type))
                    }
                    Ok(_) => {}
                }
                if e.not_null {
                    let n = int(nulls.next());
                    if n > 0 {
                        problems.push(format!("{} has {} NULL", e.column, rows(n)));
                    }
                }
            }
            if !allow_extra {
                for f in schema.fields() {
                    if !expected.iter().any(|e| e.column == *f.name()) {
                        problems.push(format!("{} not in the contract", f.name()));
                    }
                }
            }
            let observed = if problems.is_empty() { "as contracted".to_string() } else { problems.join("; ") };
            (problems.is_empty(), observed, "the contract".into(), Vec::new())
        }
        Check::Freshness { column, max_age, ready_by } => {
            let at = match column {
                Some(_) => match values.first() {
                    Some(ScalarValue::Float64(Some(secs))) => DateTime::from_timestamp_micros((secs * 1e6) as i64),
                    _ => None,
                },
                None => c.last_materialized,
            };
            let Some(at) = at else {
                return Ok((false, "no data".into(), "a recent value".into(), Vec::new()));
            };
            let age = c.now - at;
            let mut ok = true;
            let mut threshold = Vec::new();
            if let Some(max) = max_age {
                ok &= age <= chrono::Duration::from_std(*max).unwrap_or(chrono::Duration::MAX);
                threshold.push(format!("age <= {}s", max.as_secs()));
            }
            if let Some((time, tz)) = ready_by {
                let local = c.now.with_timezone(tz);
                let due = local.date_naive().and_time(*time);
                if local.naive_local() >= due {
                    let midnight = local.date_naive().and_hms_opt(0, 0, 0).expect("midnight exists");
                    ok &= at.with_timezone(tz).naive_local() >= midnight;
                }
                threshold.push(format!("today's data by {} {tz}", time.format("%H:%M")));
            }
            (
                ok,
                format!("latest {} ({}s old)", at.format("%Y-%m-%d %H:%M:%S UTC"), age.num_seconds()),
                threshold.join(", "),
                Vec::new(),
            )
        }
        Check::VolumeChange { max_change, window } => {
            let Some(now) = c.rows_written else {
                return Ok((true, "no materialisation to compare".into(), format!("±{max_change}"), Vec::new()));
            };
            let earlier: Vec<i64> = c.earlier_rows.iter().take(*window).copied().collect();
            if earlier.is_empty() {
                return Ok((true, format!("{} (no history yet)", rows(now)), format!("±{max_change}"), Vec::new()));
            }
            let avg = earlier.iter().sum::<i64>() as f64 / earlier.len() as f64;
            let change =
                if avg == 0.0 { if now == 0 { 0.0 } else { f64::INFINITY } } else { (now as f64 - avg).abs() / avg };
            let observed = format!(
                "{} against an average of {avg:.0} ({:+.1}%)",
                rows(now),
                (now as f64 - avg) / avg.max(1e-9) * 100.0
            );
            (change <= *max_change, observed, format!("±{:.0}%", max_change * 100.0), Vec::new())
        }
        Check::Reconcile { tolerance } => {
            let (source, read) = c.reconciliation.unwrap_or((0, 0));
            let allowed = (source as f64 * tolerance).floor() as u64;
            (
                source.abs_diff(read) <= allowed,
                if c.reconciles_keys {
                    format!("source {source} keys, current state {read} keys")
                } else {
                    format!("source {source}, read {read}")
                },
                format!("difference <= {allowed} ({:.1}%)", tolerance * 100.0),
                Vec::new(),
            )
        }
    })
}

fn key_columns(spec: &CheckSpec, c: &CheckContext) -> Vec<String> {
    if !c.key_columns.is_empty() {
        return c.key_columns.clone();
    }
    match &spec.check {
        Check::NotNull { columns } => columns.clone(),
        Check::AcceptedValues { column, .. } => vec![column.clone()],
        _ => Vec::new(),
    }
}

/// Up to [`SAMPLES`] failing rows, by their key columns (every column when none are known).
async fn samples(ctx: &SessionContext, table: &str, predicate: &str, keys: &[String]) -> Result<Vec<String>, String> {
    let cols =
        if keys.is_empty() { "*".to_string() } else { keys.iter().map(|k| quote(k)).collect::<Vec<_>>().join(", ") };
    Ok(render(&query(ctx, &format!("SELECT {cols} FROM {table} WHERE {predicate} LIMIT {SAMPLES}")).await?))
}

/// Rows as `col=value, col=value`.
fn render(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        for row in 0..b.num_rows() {
            let cells: Vec<String> = b
                .schema()
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let v = b.column(i);
                    let text = if v.is_null(row) {
                        "NULL".to_string()
                    } else {
                        ScalarValue::try_from_array(v, row).map(|s| s.to_string()).unwrap_or_default()
                    };
                    format!("{}={text}", f.name())
                })
                .collect();
            out.push(cells.join(", "));
        }
    }
    out.truncate(SAMPLES);
    out
}

/// Whether an Arrow type is what a contract's SQL type name means.
fn type_matches(e: &Expected, actual: &DataType) -> bool {
    let t = e.sql_type.as_str();
    let base = t.split('(').next().unwrap_or(t).trim();
    match base {
        "bigint" | "int8" | "long" => actual == &DataType::Int64,
        "int" | "integer" | "int4" => actual == &DataType::Int32,
        "smallint" | "int2" => actual == &DataType::Int16,
        "tinyint" => actual == &DataType::Int8,
        "bigint unsigned" => actual == &DataType::UInt64,
        "int unsigned" | "integer unsigned" => actual == &DataType::UInt32,
        "double" | "float8" | "double precision" => actual == &DataType::Float64,
        "real" | "float" | "float4" => actual == &DataType::Float32,
        "varchar" | "text" | "string" | "char" | "json" => {
            matches!(actual, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
        }
        "boolean" | "bool" => actual == &DataType::Boolean,
        "date" => matches!(actual, DataType::Date32 | DataType::Date64),
        "timestamp" => matches!(actual, DataType::Timestamp(_, None)),
        "timestamptz" | "timestamp with time zone" => matches!(actual, DataType::Timestamp(_, Some(_))),
        "time" => matches!(actual, DataType::Time32(_) | DataType::Time64(_)),
        "binary" | "bytea" | "blob" | "varbinary" => {
            matches!(actual, DataType::Binary | DataType::LargeBinary | DataType::BinaryView)
        }
        "decimal" | "numeric" => {
            let args: Vec<u8> = t
                .split_once('(')
                .map(|(_, rest)| rest.trim_end_matches(')').split(',').filter_map(|n| n.trim().parse().ok()).collect())
                .unwrap_or_default();
            match (actual, args.as_slice()) {
                (DataType::Decimal128(p, s) | DataType::Decimal256(p, s), [ep, es]) => {
                    *p == *ep && *s as i64 == *es as i64
                }
                (DataType::Decimal128(p, _) | DataType::Decimal256(p, _), [ep]) => *p == *ep,
                (DataType::Decimal128(..) | DataType::Decimal256(..), []) => true,
                _ => false,
            }
        }
        _ => actual.to_string().to_lowercase() == t,
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
