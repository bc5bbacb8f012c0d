//! MySQL and MariaDB sources. The catalog comes from `information_schema`; rows are read with
//! the binary protocol of a prepared statement (numbers, dates and times arrive as binary
//! values, which costs the server and us less than printing and parsing them as text), streamed,
//! and put into Arrow builders. Columns whose binary form we do not read (TIME, UUID, INET…)
//! are selected as `CAST(… AS CHAR)`, the server's own text.
//! Table and column names are checked against the catalog and quoted with backticks; window
//! bounds are embedded as integer literals after parsing, or as hex string literals
//! (`CONVERT(X'…' USING utf8mb4)`), so no name or value can inject SQL.
//!
//! Sessions run in UTC (`time_zone = '+00:00'`) with `utf8mb4`, so TIMESTAMP values are UTC
//! instants and text arrives as UTF-8 whatever the server's defaults.

use std::str::FromStr;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use basin_core::source::Source;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::{AssertSqlSafe, Connection, Row, ValueRef};

use crate::batch::{Batcher, range_conditions, row_key};
use crate::error::{Error, Result};
use crate::types::Value;
use crate::{Connector, Extract, KeyRange, Window};

pub struct MysqlConnector {
    name: String,
    pool: MySqlPool,
    tinyint1_as_boolean: bool,
}

/// A column as `information_schema.COLUMNS` describes it.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    /// `DATA_TYPE`, lower case: `int`, `decimal`, `datetime`…
    pub data_type: String,
    /// `COLUMN_TYPE`, lower case: `int(10) unsigned`, `decimal(18,4)`, `enum('a','b')`…
    pub column_type: String,
    pub key: bool,
}

/// How a column's binary-protocol bytes become a [`Value`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Text: strings, and DECIMAL (sent as its digits).
    Text,
    /// Text the server makes: TIME, UUID, INET… are selected as `CAST(… AS CHAR)`, since
    /// their binary forms are not read here.
    Cast,
    Bytes,
    /// BIT(n): big-endian bytes of an unsigned integer.
    Bit,
    /// Little-endian integers of 1, 2, 4 or 8 bytes, signed or not.
    Int,
    UInt,
    Float,
    Double,
    /// DATE, DATETIME, TIMESTAMP: a length byte, then year (2 bytes), month, day, and for
    /// date-times hour, minute, second and microseconds (4 bytes) when not zero.
    Date,
    DateTime,
}

fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn is_integer(data_type: &str) -> bool {
    matches!(data_type, "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year")
}

/// A window bound as a literal of the cursor's type that cannot carry SQL.
fn literal(column: &Column, value: &str) -> Result<String, String> {
    if is_integer(&column.data_type) {
        return value.trim().parse::<i128>().map(|v| v.to_string()).map_err(|_| format!("`{value}` is not an integer"));
    }
    // A date-time as a plain literal (digits and separators only, after parsing), so that
    // MariaDB compares it with the column directly and uses the cursor's index.
    if matches!(column.data_type.as_str(), "datetime" | "timestamp" | "date")
        && let Ok(Some(t)) = crate::types::parse_datetime(value)
    {
        return Ok(format!("'{}'", t.format("%Y-%m-%d %H:%M:%S%.6f")));
    }
    let hex: String = value.bytes().map(|b| format!("{b:02X}")).collect();
    Ok(format!("CONVERT(X'{hex}' USING utf8mb4)"))
}

impl MysqlConnector {
    pub async fn connect(source: &Source) -> Result<Self> {
        let url = source.config.url.as_ref().map(|u| u.expose().to_string()).unwrap_or_default();
        let connect_err = |e| Error::Connect { source_name: source.name.clone(), source: e };
        let options = MySqlConnectOptions::from_str(&url.replacen("mariadb://", "mysql://", 1))
            .map_err(connect_err)?
            .charset("utf8mb4")
            .timezone(Some("+00:00".to_string()));
        // One connection first, so that a wrong password or an unreachable host fails at once
        // with the server's own message, instead of after the pool's acquire timeout.
        let mut first = MySqlConnection::connect_with(&options).await.map_err(connect_err)?;
        let version: String =
            sqlx::query_scalar("SELECT CAST(VERSION() AS CHAR)").fetch_one(&mut first).await.map_err(connect_err)?;
        first.close().await.map_err(connect_err)?;
        let mariadb = version.to_ascii_lowercase().contains("mariadb");
        let pool = MySqlPoolOptions::new()
            .max_connections(source.max_connections() as u32)
            // Chunks and tables queue for a connection; the limit is the source's, not a timeout.
            .acquire_timeout(std::time::Duration::from_secs(600))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if mariadb {
                        // An increment reads the rows past the watermark through the cursor's
                        // index; with multi-range read MariaDB fetches them in primary-key
                        // order (sequential pages) instead of one random page per row. MySQL
                        // has MRR on by default (and no `mrr_sort_keys`).
                        sqlx::Executor::execute(conn, "SET SESSION optimizer_switch = 'mrr=on,mrr_sort_keys=on'")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_lazy_with(options);
        Ok(MysqlConnector {
            name: source.name.clone(),
            pool,
            tinyint1_as_boolean: source.config.tinyint1_as_boolean.unwrap_or(true),
        })
    }

    fn query_err(&self, table: &str, what: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
        let (source_name, table) = (self.name.clone(), table.to_string());
        move |source| Error::Query { source_name, table, what, source }
    }

    /// The table's columns, in order; `NoSuchTable` if the catalog does not have it.
    pub async fn catalog_columns(&self, table: &str) -> Result<Vec<Column>> {
        let rows = sqlx::query(
            "SELECT CAST(COLUMN_NAME AS CHAR), CAST(LOWER(DATA_TYPE) AS CHAR), CAST(LOWER(COLUMN_TYPE) AS CHAR),
                    CAST(COLUMN_KEY AS CHAR)
             FROM information_schema.COLUMNS
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
        )
        .bind(table)
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_err(table, "reading the catalog"))?;
        if rows.is_empty() {
            return Err(Error::NoSuchTable { source_name: self.name.clone(), table: table.to_string() });
        }
        Ok(rows
            .iter()
            .map(|r| Column {
                name: r.get(0),
                data_type: r.get(1),
                column_type: r.get(2),
                key: r.get::<String, _>(3) == "PRI",
            })
            .collect())
    }

    fn column<'c>(&self, table: &str, columns: &'c [Column], name: &str) -> Result<&'c Column> {
        columns
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| Error::column(&self.name, table, name, "the column does not exist"))
    }

    /// `WHERE` clause for a window and a key range, with bounds as safe literals.
    fn where_clause(
        &self,
        table: &str,
        columns: &[Column],
        window: Option<&Window>,
        range: Option<&KeyRange>,
    ) -> Result<String> {
        let mut conditions = Vec::new();
        let bad = |column: &str, problem: String| Error::column(&self.name, table, column, problem);
        if let Some(w) = window {
            let c = self.column(table, columns, &w.cursor)?;
            let q = quote(&c.name);
            if let Some(from) = &w.from {
                conditions.push(format!("{q} >= {}", literal(c, from).map_err(|p| bad(&c.name, p))?));
            }
            conditions.push(format!("{q} <= {}", literal(c, &w.to).map_err(|p| bad(&c.name, p))?));
        }
        if let Some(r) = range {
            conditions.extend(range_conditions(&quote(&self.column(table, columns, &r.column)?.name), r));
        }
        Ok(if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) })
    }
}

#[async_trait::async_trait]
impl Connector for MysqlConnector {
    async fn tables(&self) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_err("*", "listing tables"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn columns(&self, table: &str) -> Result<Vec<String>> {
        Ok(self.catalog_columns(table).await?.into_iter().map(|c| c.name).collect())
    }

    async fn schema(&self, table: &str) -> Result<Option<SchemaRef>> {
        let columns = self.catalog_columns(table).await?;
        let mapped: Vec<(DataType, Read)> =
            columns.iter().map(|c| column_mapping(&c.data_type, &c.column_type, self.tinyint1_as_boolean)).collect();
        Ok(Some(schema_of(&columns, &mapped)))
    }

    async fn primary_key(&self, table: &str) -> Result<Vec<String>> {
        self.catalog_columns(table).await?;
        let rows = sqlx::query(
            "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.KEY_COLUMN_USAGE
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY'
             ORDER BY ORDINAL_POSITION",
        )
        .bind(table)
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_err(table, "reading the primary key"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn count(&self, table: &str, window: Option<&Window>) -> Result<u64> {
        let columns = self.catalog_columns(table).await?;
        let clause = self.where_clause(table, &columns, window, None)?;
        let sql = format!("SELECT CAST(COUNT(*) AS SIGNED) FROM {}{clause}", quote(table));
        let row =
            sqlx::query(AssertSqlSafe(sql)).fetch_one(&self.pool).await.map_err(self.query_err(table, "COUNT(*)"))?;
        Ok(row.get::<i64, _>(0) as u64)
    }

    async fn max_cursor(&self, table: &str, cursor: &str) -> Result<Option<String>> {
        let columns = self.catalog_columns(table).await?;
        let c = self.column(table, &columns, cursor)?;
        let sql = format!("SELECT CAST(MAX({}) AS CHAR) FROM {}", quote(&c.name), quote(table));
        let row = sqlx::query(AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await
            .map_err(self.query_err(table, "MAX(cursor)"))?;
        let max: Option<String> = row.try_get_unchecked(0).map_err(self.query_err(table, "MAX(cursor)"))?;
        Ok(max)
    }

    async fn key_bounds(&self, table: &str, column: &str) -> Result<Option<(i64, i64)>> {
        let columns = self.catalog_columns(table).await?;
        let c = self.column(table, &columns, column)?;
        if !is_integer(&c.data_type) {
            return Ok(None);
        }
        let q = quote(&c.name);
        let sql = format!("SELECT CAST(MIN({q}) AS SIGNED), CAST(MAX({q}) AS SIGNED) FROM {}", quote(table));
        let row =
            sqlx::query(AssertSqlSafe(sql)).fetch_one(&self.pool).await.map_err(self.query_err(table, "key bounds"))?;
        Ok(match (row.get::<Option<i64>, _>(0), row.get::<Option<i64>, _>(1)) {
            (Some(lo), Some(hi)) => Some((lo, hi)),
            _ => None,
        })
    }

    async fn extract_columns(
        &self,
        table: &str,
        only: Option<&[String]>,
        window: Option<&Window>,
        range: Option<&KeyRange>,
    ) -> Result<Extract> {
        let mut columns = self.catalog_columns(table).await?;
        crate::keep_only(&mut columns, only, |c| &c.name, &self.name, table)?;
        let clause = self.where_clause(table, &columns, window, range)?;
        let mapped: Vec<(DataType, Read)> =
            columns.iter().map(|c| column_mapping(&c.data_type, &c.column_type, self.tinyint1_as_boolean)).collect();
        let schema = schema_of(&columns, &mapped);
        let reads: Vec<Read> = mapped.iter().map(|(_, r)| *r).collect();
        let pk: Vec<usize> = columns.iter().enumerate().filter(|(_, c)| c.key).map(|(i, _)| i).collect();
        let list = columns
            .iter()
            .zip(&mapped)
            .map(|(c, (_, read))| match read {
                Read::Cast => format!("CAST({} AS CHAR)", quote(&c.name)),
                _ => quote(&c.name),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("SELECT {list} FROM {}{clause}", quote(table));

        let (tx, extract, zero_dates) = crate::batch::channel(schema.clone());
        let batch = Batcher::new(schema, &self.name, table, zero_dates);
        let pool = self.pool.clone();
        tokio::spawn(async move {
            // A prepared statement's rows stream in the binary protocol as the server sends them.
            crate::batch::pump(sqlx::query(AssertSqlSafe(sql)).fetch(&pool), batch, tx, |b, row| {
                push(b, &reads, &pk, row)
            })
            .await;
        });
        Ok(extract)
    }
}

/// The Arrow schema of `columns` read as `mapped`.
fn schema_of(columns: &[Column], mapped: &[(DataType, Read)]) -> SchemaRef {
    let fields = columns.iter().zip(mapped).map(|(c, (t, _))| Field::new(&c.name, t.clone(), true));
    Arc::new(Schema::new(fields.collect::<Vec<_>>()))
}

/// Append one row; true when the batch is full.
fn push(batch: &mut Batcher, reads: &[Read], pk: &[usize], row: &MySqlRow) -> Result<bool> {
    for (i, read) in reads.iter().enumerate() {
        let result = match value(row, i, *read) {
            Ok(Some(v)) => batch.append(i, v),
            Ok(None) => {
                batch.zero_date(i);
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        };
        if let Err(problem) = result {
            let names: Vec<&str> = pk.iter().map(|&k| batch.schema.field(k).name().as_str()).collect();
            let values = pk.iter().map(|&k| shown(row, k, reads[k]));
            return Err(batch.value_error(i, row_key(&names, values), problem));
        }
    }
    Ok(batch.end_row())
}

/// A value as text, for naming a row in an error.
fn shown(row: &MySqlRow, i: usize, read: Read) -> Option<String> {
    Some(match value(row, i, read).ok()?? {
        Value::Null => return None,
        Value::Int(v) => v.to_string(),
        Value::Decimal(v, _) => v.to_string(),
        Value::Float(v) => v.to_string(),
        Value::Text(t) => t.to_string(),
        Value::String(t) => t,
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Days(d) => d.to_string(),
        Value::Micros(m) => m.to_string(),
    })
}

/// The value of column `i`; `None` for a zero date (`0000-00-00`, or a month or day 00).
#[inline]
fn value(row: &MySqlRow, i: usize, read: Read) -> Result<Option<Value<'_>>, sqlx::Error> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        // sqlx calls a zero date NULL; its bytes (a zero length) say which it is.
        let zero_date = matches!(read, Read::Date | Read::DateTime) && row.try_get_unchecked::<&[u8], _>(i).is_ok();
        return Ok(if zero_date { None } else { Some(Value::Null) });
    }
    // One lookup of the column per value: the bytes of the value already found.
    let bytes = <&[u8] as sqlx::Decode<sqlx::MySql>>::decode(raw).map_err(sqlx::Error::Decode)?;
    let bad = |what: &str| sqlx::Error::Decode(format!("{} bytes are not a binary {what}", bytes.len()).into());
    Ok(Some(match read {
        Read::Bytes => Value::Bytes(bytes),
        Read::Text | Read::Cast => match std::str::from_utf8(bytes) {
            Ok(t) => Value::Text(t),
            Err(_) => Value::Bytes(bytes),
        },
        Read::Bit => unsigned(bytes.iter().fold(0u128, |acc, b| (acc << 8) | *b as u128)),
        Read::Int => Value::Int(match *bytes {
            [a] => a as i8 as i64,
            [a, b] => i16::from_le_bytes([a, b]) as i64,
            [a, b, c, d] => i32::from_le_bytes([a, b, c, d]) as i64,
            [a, b, c, d, e, f, g, h] => i64::from_le_bytes([a, b, c, d, e, f, g, h]),
            _ => return Err(bad("integer")),
        }),
        Read::UInt => unsigned(match *bytes {
            [a] => a as u128,
            [a, b] => u16::from_le_bytes([a, b]) as u128,
            [a, b, c, d] => u32::from_le_bytes([a, b, c, d]) as u128,
            [a, b, c, d, e, f, g, h] => u64::from_le_bytes([a, b, c, d, e, f, g, h]) as u128,
            _ => return Err(bad("integer")),
        }),
        Read::Float => match *bytes {
            [a, b, c, d] => Value::Float(f32::from_le_bytes([a, b, c, d]) as f64),
            _ => return Err(bad("FLOAT")),
        },
        Read::Double => match *bytes {
            [a, b, c, d, e, f, g, h] => Value::Float(f64::from_le_bytes([a, b, c, d, e, f, g, h])),
            _ => return Err(bad("DOUBLE")),
        },
        Read::Date | Read::DateTime => {
            let Some((days, micros)) = binary_datetime(bytes).map_err(|()| bad("date"))? else { return Ok(None) };
            match read {
                Read::Date => Value::Days(days),
                _ => Value::Micros(days as i64 * MICROS_PER_DAY + micros),
            }
        }
    }))
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// A binary DATE/DATETIME/TIMESTAMP as days since 1970-01-01 and microseconds into the day;
/// `None` for a zero date. Computed without building a calendar date, as it runs once per
/// value of every date column extracted.
fn binary_datetime(bytes: &[u8]) -> Result<Option<(i32, i64)>, ()> {
    let (&len, rest) = bytes.split_first().ok_or(())?;
    if rest.len() != len as usize || !matches!(len, 0 | 4 | 7 | 11) {
        return Err(());
    }
    if len == 0 {
        return Ok(None);
    }
    let year = u16::from_le_bytes([rest[0], rest[1]]) as i32;
    let (month, day) = (rest[2] as u32, rest[3] as u32);
    if month == 0 || day == 0 {
        return Ok(None);
    }
    let (h, m, s) = if len >= 7 { (rest[4] as i64, rest[5] as i64, rest[6] as i64) } else { (0, 0, 0) };
    let micros = if len == 11 { u32::from_le_bytes([rest[7], rest[8], rest[9], rest[10]]) as i64 } else { 0 };
    if month > 12 || day > days_in_month(year, month) || h > 23 || m > 59 || s > 59 || micros > 999_999 {
        return Err(());
    }
    Ok(Some((days_from_civil(year, month, day), ((h * 60 + m) * 60 + s) * 1_000_000 + micros)))
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let year_of_era = (y - era * 400) as u32;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era as i32 - 719_468
}

/// An unsigned value: an integer, or past `i64` an exact DECIMAL(20,0) (BIGINT UNSIGNED, BIT(64)).
fn unsigned(v: u128) -> Value<'static> {
    match i64::try_from(v) {
        Ok(v) => Value::Int(v),
        Err(_) => Value::Decimal(v as i128, 0),
    }
}

/// The Arrow type of a MySQL column, and how its binary-protocol bytes are read.
pub(crate) fn column_mapping(data_type: &str, column_type: &str, tinyint1_as_boolean: bool) -> (DataType, Read) {
    let unsigned = column_type.contains("unsigned");
    let read = match data_type {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" if unsigned => Read::UInt,
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" => Read::Int,
        "float" => Read::Float,
        "double" | "real" => Read::Double,
        "date" => Read::Date,
        "datetime" | "timestamp" => Read::DateTime,
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set" | "json" | "decimal"
        | "numeric" => Read::Text,
        _ => Read::Cast,
    };
    let t = match data_type {
        "tinyint" if column_type.starts_with("tinyint(1)") && !unsigned && tinyint1_as_boolean => DataType::Boolean,
        "tinyint" if unsigned => DataType::Int16,
        "tinyint" => DataType::Int8,
        "smallint" if unsigned => DataType::Int32,
        "smallint" => DataType::Int16,
        "mediumint" => DataType::Int32,
        "int" | "integer" if unsigned => DataType::Int64,
        "int" | "integer" => DataType::Int32,
        "bigint" if unsigned => DataType::Decimal128(20, 0),
        "bigint" => DataType::Int64,
        "year" => DataType::Int16,
        "decimal" | "numeric" => match precision_scale(column_type) {
            Some((p, s)) if p <= 38 => DataType::Decimal128(p, s),
            _ => DataType::Utf8,
        },
        "float" => DataType::Float32,
        "double" | "real" => DataType::Float64,
        "date" => DataType::Date32,
        "datetime" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        "bit" => {
            return match precision_scale(column_type).map(|(p, _)| p).unwrap_or(1) {
                1 => (DataType::Boolean, Read::Bit),
                n if n < 64 => (DataType::Int64, Read::Bit),
                _ => (DataType::Decimal128(20, 0), Read::Bit),
            };
        }
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" | "geometry" | "point"
        | "linestring" | "polygon" | "multipoint" | "multilinestring" | "multipolygon" | "geometrycollection" => {
            return (DataType::Binary, Read::Bytes);
        }
        // char, varchar, *text, enum, set, json, time, uuid, inet4/6 and anything newer: text.
        _ => DataType::Utf8,
    };
    (t, read)
}

fn precision_scale(column_type: &str) -> Option<(u8, i8)> {
    let inner = column_type.split_once('(')?.1.split_once(')')?.0;
    let mut parts = inner.split(',').map(|p| p.trim().parse::<u8>());
    let p = parts.next()?.ok()?;
    let s = parts.next().map(|s| s.ok()).unwrap_or(Some(0))?;
    Some((p, s as i8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_cannot_carry_sql() {
        let int = Column { name: "id".into(), data_type: "bigint".into(), column_type: "bigint(20)".into(), key: true };
        let dt = Column { name: "u".into(), data_type: "datetime".into(), column_type: "datetime".into(), key: false };
        assert_eq!(literal(&int, "42").unwrap(), "42");
        assert!(literal(&int, "1; DROP TABLE x").is_err());
        assert_eq!(literal(&dt, "2024-01-02 03:04:05.5").unwrap(), "'2024-01-02 03:04:05.500000'");
        assert_eq!(
            literal(&dt, "2024-01-02' OR '1'='1").unwrap(),
            "CONVERT(X'323032342D30312D303227204F52202731273D2731' USING utf8mb4)"
        );
        assert_eq!(literal(&dt, "'--").unwrap(), "CONVERT(X'272D2D' USING utf8mb4)");
    }

    /// The binary protocol's date bytes: `len, year (2, LE), month, day[, h, m, s[, micros (4, LE)]]`.
    fn binary(y: u16, mo: u8, d: u8, hms: Option<(u8, u8, u8, u32)>) -> Vec<u8> {
        let mut b = vec![0, y.to_le_bytes()[0], y.to_le_bytes()[1], mo, d];
        if let Some((h, m, s, us)) = hms {
            b.extend([h, m, s]);
            b.extend(us.to_le_bytes());
        }
        b[0] = (b.len() - 1) as u8;
        b
    }

    #[test]
    fn binary_dates_agree_with_the_calendar() {
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        let mut date = chrono::NaiveDate::from_ymd_opt(0, 1, 1).unwrap();
        let last = chrono::NaiveDate::from_ymd_opt(9999, 12, 31).unwrap();
        while date <= last {
            use chrono::Datelike;
            let bytes = binary(date.year() as u16, date.month() as u8, date.day() as u8, None);
            let days = (date - epoch).num_days() as i32;
            assert_eq!(binary_datetime(&bytes), Ok(Some((days, 0))), "{date}");
            date = date + chrono::Days::new(1);
        }
        let t = binary(2024, 2, 29, Some((23, 59, 58, 999_999)));
        let expected = chrono::NaiveDate::from_ymd_opt(2024, 2, 29)
            .unwrap()
            .and_hms_micro_opt(23, 59, 58, 999_999)
            .unwrap()
            .and_utc()
            .timestamp_micros();
        let (days, micros) = binary_datetime(&t).unwrap().unwrap();
        assert_eq!(days as i64 * MICROS_PER_DAY + micros, expected);
        // Seven bytes: a DATETIME without a fraction.
        assert_eq!(binary_datetime(&[7, 0xb2, 0x07, 1, 1, 0, 0, 1]), Ok(Some((0, 1_000_000))));
        // Zero dates are NULL, not errors.
        assert_eq!(binary_datetime(&[0]), Ok(None));
        assert_eq!(binary_datetime(&binary(2024, 0, 0, None)), Ok(None));
        assert_eq!(binary_datetime(&binary(2024, 3, 0, None)), Ok(None));
        // Dates and times that do not exist are refused.
        for bad in [
            binary(2023, 2, 29, None),
            binary(2100, 2, 29, None),
            binary(2024, 4, 31, None),
            binary(2024, 13, 1, None),
            binary(2024, 1, 1, Some((24, 0, 0, 0))),
            binary(2024, 1, 1, Some((0, 60, 0, 0))),
            binary(2024, 1, 1, Some((0, 0, 60, 0))),
            binary(2024, 1, 1, Some((0, 0, 0, 1_000_000))),
            vec![4, 0xe8, 0x07, 1],
        ] {
            assert_eq!(binary_datetime(&bad), Err(()), "{bad:?}");
        }
    }
}
