//! PostgreSQL sources. The catalog comes from `pg_catalog` (with each column's type OID and
//! modifier); rows are read with `COPY (SELECT …) TO STDOUT (FORMAT binary)`, the fastest way
//! out of the server, and the binary tuples are decoded straight into Arrow builders.
//! Types without a binary decoder here are selected as `::text`, so every column arrives.
//! Names are checked against the catalog and quoted; window bounds are embedded as parsed
//! integers or as quoted literals cast to the cursor's catalog type, with
//! `standard_conforming_strings` on, so neither can inject SQL. Sessions run in UTC.

use std::str::FromStr;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use basin_core::source::{Infinity, Source};
use bytes::{Buf, BytesMut};
use futures::StreamExt;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, Row};

use crate::batch::{Batcher, range_conditions, row_key};
use crate::error::{Error, Result};
use crate::types::{ColumnBuilder, Value};
use crate::{Connector, Extract, KeyRange, Window};

pub struct PostgresConnector {
    name: String,
    pool: PgPool,
    infinity: Infinity,
}

/// A column as `pg_attribute` describes it.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub oid: u32,
    pub typmod: i32,
    /// Element type of an array column (0 otherwise).
    pub element: u32,
    /// `format_type(oid, typmod)`: the type as SQL spells it.
    pub sql_type: String,
    pub key: bool,
}

/// How a binary value is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decode {
    Bool,
    Int2,
    Int4,
    Int8,
    /// oid: an unsigned 32-bit integer.
    Oid,
    Float4,
    Float8,
    /// NUMERIC(p,s) to Decimal128 at scale s.
    Numeric(i8),
    /// UTF-8 text (text, varchar, char, name, json, and everything selected as `::text`).
    Text,
    Jsonb,
    Bytea,
    Date,
    Timestamp,
    Uuid,
}

const PG_EPOCH_DAYS: i32 = 10_957;
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn is_integer(oid: u32) -> bool {
    matches!(oid, 20 | 21 | 23 | 26)
}

/// A scalar type's Arrow type and decoder; `None` for types read as text.
fn scalar(oid: u32, typmod: i32) -> Option<(DataType, Decode)> {
    Some(match oid {
        16 => (DataType::Boolean, Decode::Bool),
        21 => (DataType::Int16, Decode::Int2),
        23 => (DataType::Int32, Decode::Int4),
        20 => (DataType::Int64, Decode::Int8),
        26 => (DataType::Int64, Decode::Oid),
        700 => (DataType::Float32, Decode::Float4),
        701 => (DataType::Float64, Decode::Float8),
        1700 if typmod >= 4 => {
            let (p, s) = (((typmod - 4) >> 16) & 0xffff, (typmod - 4) & 0xffff);
            if !(1..=38).contains(&p) || s > p {
                return None;
            }
            (DataType::Decimal128(p as u8, s as i8), Decode::Numeric(s as i8))
        }
        25 | 1043 | 1042 | 19 | 18 | 114 => (DataType::Utf8, Decode::Text),
        3802 => (DataType::Utf8, Decode::Jsonb),
        17 => (DataType::Binary, Decode::Bytea),
        1082 => (DataType::Date32, Decode::Date),
        1114 => (DataType::Timestamp(TimeUnit::Microsecond, None), Decode::Timestamp),
        1184 => (DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), Decode::Timestamp),
        2950 => (DataType::Utf8, Decode::Uuid),
        _ => return None,
    })
}

/// The Arrow schema of `columns` read as `mapped`.
fn schema_of(columns: &[Column], mapped: &[(DataType, Decode, bool)]) -> SchemaRef {
    let fields = columns.iter().zip(mapped).map(|(c, (t, ..))| Field::new(&c.name, t.clone(), true));
    Arc::new(Schema::new(fields.collect::<Vec<_>>()))
}

/// The Arrow type of a column, its decoder, and whether it is selected as `::text`.
pub fn column_mapping(c: &Column) -> (DataType, Decode, bool) {
    if c.element != 0 {
        return match scalar(c.element, c.typmod) {
            Some((t, d)) => (DataType::List(Arc::new(Field::new("item", t, true))), d, false),
            None => (DataType::Utf8, Decode::Text, true),
        };
    }
    match scalar(c.oid, c.typmod) {
        Some((t, d)) => (t, d, false),
        None => (DataType::Utf8, Decode::Text, true),
    }
}

impl PostgresConnector {
    pub async fn connect(source: &Source) -> Result<Self> {
        let url = source.config.url.as_ref().map(|u| u.expose().to_string()).unwrap_or_default();
        let connect_err = |e| Error::Connect { source_name: source.name.clone(), source: e };
        let options = PgConnectOptions::from_str(&url).map_err(connect_err)?.application_name("basin").options([
            ("TimeZone", "UTC"),
            ("standard_conforming_strings", "on"),
            ("DateStyle", "ISO"),
        ]);
        // One connection first, so that a wrong password or an unreachable host fails at once
        // with the server's own message, instead of after the pool's acquire timeout.
        PgConnection::connect_with(&options).await.map_err(connect_err)?.close().await.map_err(connect_err)?;
        let pool = PgPoolOptions::new()
            .max_connections(source.max_connections() as u32)
            // Chunks and tables queue for a connection; the limit is the source's, not a timeout.
            .acquire_timeout(std::time::Duration::from_secs(600))
            .connect_lazy_with(options);
        Ok(PostgresConnector { name: source.name.clone(), pool, infinity: source.config.infinity.unwrap_or_default() })
    }

    fn query_err(&self, table: &str, what: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
        let (source_name, table) = (self.name.clone(), table.to_string());
        move |source| Error::Query { source_name, table, what, source }
    }

    /// The table's columns, in order; `NoSuchTable` if the catalog does not have it.
    pub async fn catalog_columns(&self, table: &str) -> Result<Vec<Column>> {
        let rows = sqlx::query(
            "SELECT a.attname::text, a.atttypid::int8, a.atttypmod, \
                    CASE WHEN t.typcategory = 'A' THEN t.typelem::int8 ELSE 0 END, \
                    format_type(a.atttypid, a.atttypmod), \
                    EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary \
                            AND a.attnum = ANY(i.indkey)) \
             FROM pg_attribute a \
             JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_type t ON t.oid = a.atttypid \
             WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = $1 \
               AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
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
                oid: r.get::<i64, _>(1) as u32,
                typmod: r.get(2),
                element: r.get::<i64, _>(3) as u32,
                sql_type: r.get(4),
                key: r.get(5),
            })
            .collect())
    }

    fn column<'c>(&self, table: &str, columns: &'c [Column], name: &str) -> Result<&'c Column> {
        columns.iter().find(|c| c.name == name).ok_or_else(|| self.bad(table, name, "the column does not exist".into()))
    }

    fn bad(&self, table: &str, column: &str, problem: String) -> Error {
        Error::column(&self.name, table, column, problem)
    }

    /// A window bound as a literal of the cursor's type.
    fn literal(&self, table: &str, c: &Column, value: &str) -> Result<String> {
        if is_integer(c.oid) {
            return value
                .trim()
                .parse::<i128>()
                .map(|v| v.to_string())
                .map_err(|_| self.bad(table, &c.name, format!("`{value}` is not an integer")));
        }
        if value.contains('\0') {
            return Err(self.bad(table, &c.name, "a cursor value contains a NUL byte".into()));
        }
        Ok(format!("CAST('{}' AS {})", value.replace('\'', "''"), c.sql_type))
    }

    fn where_clause(
        &self,
        table: &str,
        columns: &[Column],
        window: Option<&Window>,
        range: Option<&KeyRange>,
    ) -> Result<String> {
        let mut conditions = Vec::new();
        if let Some(w) = window {
            let c = self.column(table, columns, &w.cursor)?;
            let q = quote(&c.name);
            if let Some(from) = &w.from {
                conditions.push(format!("{q} >= {}", self.literal(table, c, from)?));
            }
            conditions.push(format!("{q} <= {}", self.literal(table, c, &w.to)?));
        }
        if let Some(r) = range {
            conditions.extend(range_conditions(&quote(&self.column(table, columns, &r.column)?.name), r));
        }
        Ok(if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) })
    }
}

#[async_trait::async_trait]
impl Connector for PostgresConnector {
    async fn tables(&self) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT c.relname::text FROM pg_class c \
             WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p') ORDER BY 1",
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
        let mapped: Vec<(DataType, Decode, bool)> = columns.iter().map(column_mapping).collect();
        Ok(Some(schema_of(&columns, &mapped)))
    }

    async fn primary_key(&self, table: &str) -> Result<Vec<String>> {
        self.catalog_columns(table).await?;
        let rows = sqlx::query(
            "SELECT a.attname::text FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indrelid \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey) \
             WHERE i.indisprimary AND c.relnamespace = current_schema()::regnamespace AND c.relname = $1 \
             ORDER BY array_position(i.indkey::int2[], a.attnum)",
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
        let sql = format!("SELECT COUNT(*) FROM {}{clause}", quote(table));
        let row =
            sqlx::query(AssertSqlSafe(sql)).fetch_one(&self.pool).await.map_err(self.query_err(table, "COUNT(*)"))?;
        Ok(row.get::<i64, _>(0) as u64)
    }

    async fn max_cursor(&self, table: &str, cursor: &str) -> Result<Option<String>> {
        let columns = self.catalog_columns(table).await?;
        let c = self.column(table, &columns, cursor)?;
        // A zoned cursor as UTC wall-clock text, so the lag can be subtracted from it.
        let as_text = if c.oid == 1184 { "::timestamp::text" } else { "::text" };
        let sql = format!("SELECT MAX({}){as_text} FROM {}", quote(&c.name), quote(table));
        let row = sqlx::query(AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await
            .map_err(self.query_err(table, "MAX(cursor)"))?;
        Ok(row.get::<Option<String>, _>(0))
    }

    async fn key_bounds(&self, table: &str, column: &str) -> Result<Option<(i64, i64)>> {
        let columns = self.catalog_columns(table).await?;
        let c = self.column(table, &columns, column)?;
        if !is_integer(c.oid) {
            return Ok(None);
        }
        let q = quote(&c.name);
        let sql = format!("SELECT MIN({q})::int8, MAX({q})::int8 FROM {}", quote(table));
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
        let mapped: Vec<(DataType, Decode, bool)> = columns.iter().map(column_mapping).collect();
        let schema = schema_of(&columns, &mapped);
        let decoders: Vec<(Decode, bool)> =
            mapped.iter().map(|(t, d, _)| (*d, matches!(t, DataType::List(_)))).collect();
        let list = columns
            .iter()
            .zip(&mapped)
            .map(|(c, (.., as_text))| if *as_text { format!("{}::text", quote(&c.name)) } else { quote(&c.name) })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("COPY (SELECT {list} FROM {}{clause}) TO STDOUT (FORMAT binary)", quote(table));
        let pk: Vec<usize> = columns.iter().enumerate().filter(|(_, c)| c.key).map(|(i, _)| i).collect();

        // Start the COPY before handing over the stream, so a failing query fails here.
        let mut conn = self.pool.acquire().await.map_err(self.query_err(table, "connecting"))?;
        let (tx, extract, zero_dates) = crate::batch::channel(schema.clone());
        let mut batch = Batcher::new(schema, &self.name, table, zero_dates);
        let infinity = self.infinity;
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let read_err = |batch: &Batcher, e| Error::Query {
                source_name: batch.source.clone(),
                table: batch.table.clone(),
                what: "reading rows",
                source: e,
            };
            let mut chunks = match conn.copy_out_raw(&sql).await {
                Ok(chunks) => {
                    let _ = started_tx.send(Ok(()));
                    chunks
                }
                Err(e) => {
                    let _ = started_tx.send(Err(read_err(&batch, e)));
                    return;
                }
            };
            let mut parser = CopyParser { infinity, ..CopyParser::default() };
            while let Some(chunk) = chunks.next().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(read_err(&batch, e))).await;
                        return;
                    }
                };
                parser.buf.extend_from_slice(&chunk);
                loop {
                    match parser.next_row(&mut batch, &decoders, &pk) {
                        Ok(Some(true)) if tx.send(batch.finish()).await.is_err() => return,
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    }
                }
            }
            if !batch.is_empty() {
                let _ = tx.send(batch.finish()).await;
            }
        });
        match started_rx.await {
            Ok(Ok(())) => Ok(extract),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(self.bad(table, "-", "the reader stopped before the COPY started".into())),
        }
    }
}

/// Binary COPY data in, rows out: a header, then per tuple a field count and per field a
/// length (-1 for NULL) and the value's binary form; a field count of -1 ends the data.
#[derive(Default)]
struct CopyParser {
    buf: BytesMut,
    header_done: bool,
    ended: bool,
    infinity: Infinity,
}

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

impl CopyParser {
    /// Decode one complete row from the buffer into `batch`. `Ok(None)` when more data is
    /// needed; `Ok(Some(full))` after a row.
    fn next_row(&mut self, batch: &mut Batcher, decoders: &[(Decode, bool)], pk: &[usize]) -> Result<Option<bool>> {
        if self.ended {
            self.buf.clear();
            return Ok(None);
        }
        if !self.header_done {
            if self.buf.len() < SIGNATURE.len() + 8 {
                return Ok(None);
            }
            let extension = u32::from_be_bytes(self.buf[15..19].try_into().expect("4 bytes")) as usize;
            if self.buf.len() < 19 + extension {
                return Ok(None);
            }
            if &self.buf[..SIGNATURE.len()] != SIGNATURE {
                return Err(batch.value_error(0, "-".into(), "the server sent no binary COPY header".into()));
            }
            self.buf.advance(19 + extension);
            self.header_done = true;
        }
        // Is a whole tuple here?
        if self.buf.len() < 2 {
            return Ok(None);
        }
        let fields = i16::from_be_bytes([self.buf[0], self.buf[1]]);
        if fields == -1 {
            self.ended = true;
            self.buf.clear();
            return Ok(None);
        }
        if fields as usize != decoders.len() {
            return Err(batch.value_error(
                0,
                "-".into(),
                format!("a row of {fields} fields, expected {}", decoders.len()),
            ));
        }
        let mut at = 2;
        let mut spans = Vec::with_capacity(decoders.len());
        for _ in 0..decoders.len() {
            if self.buf.len() < at + 4 {
                return Ok(None);
            }
            let len = i32::from_be_bytes(self.buf[at..at + 4].try_into().expect("4 bytes"));
            at += 4;
            if len < 0 {
                spans.push(None);
            } else {
                let len = len as usize;
                if self.buf.len() < at + len {
                    return Ok(None);
                }
                spans.push(Some(at..at + len));
                at += len;
            }
        }
        for (i, (span, (decode, is_list))) in spans.iter().zip(decoders).enumerate() {
            let result = match span {
                None => batch.append(i, Value::Null),
                Some(span) if *is_list => append_array(batch.column(i), *decode, &self.buf[span.clone()]),
                Some(span) => match (infinite(*decode, &self.buf[span.clone()]), self.infinity) {
                    (Some(_), Infinity::Null) => {
                        batch.zero_date(i);
                        Ok(())
                    }
                    (Some(later), Infinity::Clamp) => batch.append(i, clamped(*decode, later)),
                    _ => value(*decode, &self.buf[span.clone()]).and_then(|v| batch.append(i, v)),
                },
            };
            if let Err(problem) = result {
                let names: Vec<&str> = pk.iter().map(|&k| batch.schema.field(k).name().as_str()).collect();
                let values =
                    pk.iter().map(|&k| spans[k].as_ref().and_then(|s| key_text(decoders[k].0, &self.buf[s.clone()])));
                return Err(batch.value_error(i, row_key(&names, values), problem));
            }
        }
        self.buf.advance(at);
        Ok(Some(batch.end_row()))
    }
}

/// A key value as text, for error messages.
fn key_text(decode: Decode, bytes: &[u8]) -> Option<String> {
    match value(decode, bytes).ok()? {
        Value::Int(i) => Some(i.to_string()),
        Value::Text(t) => Some(t.to_string()),
        Value::String(t) => Some(t),
        Value::Decimal(v, s) => Some(format!("{v}e-{s}")),
        Value::Days(d) => Some(format!("day {d}")),
        Value::Micros(m) => Some(format!("{m}µs")),
        _ => None,
    }
}

fn be<const N: usize>(bytes: &[u8]) -> Result<[u8; N], String> {
    bytes.try_into().map_err(|_| format!("a binary value of {} bytes, expected {N}", bytes.len()))
}

fn text(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|_| "text that is not UTF-8".to_string())
}

/// One binary value as a [`Value`].
fn value(decode: Decode, bytes: &[u8]) -> Result<Value<'_>, String> {
    Ok(match decode {
        Decode::Bool => Value::Int(be::<1>(bytes)?[0] as i64),
        Decode::Int2 => Value::Int(i16::from_be_bytes(be(bytes)?) as i64),
        Decode::Int4 => Value::Int(i32::from_be_bytes(be(bytes)?) as i64),
        Decode::Int8 => Value::Int(i64::from_be_bytes(be(bytes)?)),
        Decode::Oid => Value::Int(u32::from_be_bytes(be(bytes)?) as i64),
        Decode::Float4 => Value::Float(f32::from_be_bytes(be(bytes)?) as f64),
        Decode::Float8 => Value::Float(f64::from_be_bytes(be(bytes)?)),
        Decode::Numeric(scale) => Value::Decimal(numeric(bytes, scale)?, scale),
        Decode::Text => Value::Text(text(bytes)?),
        Decode::Jsonb => match bytes.split_first() {
            Some((1, rest)) => Value::Text(text(rest)?),
            _ => return Err("a jsonb value of an unknown binary version".into()),
        },
        Decode::Bytea => Value::Bytes(bytes),
        Decode::Date => match i32::from_be_bytes(be(bytes)?) {
            i32::MAX | i32::MIN => {
                return Err("an infinite date (set `infinity = \"null\"` or `\"clamp\"` for the source)".into());
            }
            d => Value::Days(d + PG_EPOCH_DAYS),
        },
        Decode::Timestamp => match i64::from_be_bytes(be(bytes)?) {
            i64::MAX | i64::MIN => {
                return Err("an infinite timestamp (set `infinity = \"null\"` or `\"clamp\"` for the source)".into());
            }
            t => Value::Micros(t + PG_EPOCH_MICROS),
        },
        Decode::Uuid => Value::String(uuid_text(be::<16>(bytes)?)),
    })
}

/// Whether a binary date or timestamp is PostgreSQL's `infinity` (`Some(true)`) or
/// `-infinity` (`Some(false)`).
fn infinite(decode: Decode, bytes: &[u8]) -> Option<bool> {
    match decode {
        Decode::Date => match i32::from_be_bytes(be(bytes).ok()?) {
            i32::MAX => Some(true),
            i32::MIN => Some(false),
            _ => None,
        },
        Decode::Timestamp => match i64::from_be_bytes(be(bytes).ok()?) {
            i64::MAX => Some(true),
            i64::MIN => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// `infinity` (`later`) or `-infinity` as the latest or earliest value of the column:
/// 9999-12-31 (23:59:59.999999) or 0001-01-01 (00:00:00).
fn clamped(decode: Decode, later: bool) -> Value<'static> {
    // Days from 1970-01-01 to 9999-12-31 and to 0001-01-01.
    const LAST_DAY: i32 = 2_932_896;
    const FIRST_DAY: i32 = -719_162;
    const DAY_MICROS: i64 = 86_400_000_000;
    match (decode, later) {
        (Decode::Date, true) => Value::Days(LAST_DAY),
        (Decode::Date, false) => Value::Days(FIRST_DAY),
        (_, true) => Value::Micros((LAST_DAY as i64 + 1) * DAY_MICROS - 1),
        (_, false) => Value::Micros(FIRST_DAY as i64 * DAY_MICROS),
    }
}

fn uuid_text(b: [u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// A binary NUMERIC as an unscaled integer at `scale`: base-10000 digits with a weight.
fn numeric(bytes: &[u8], scale: i8) -> Result<i128, String> {
    if bytes.len() < 8 {
        return Err("a truncated numeric".into());
    }
    let n = u16::from_be_bytes([bytes[0], bytes[1]]) as usize;
    let weight = i16::from_be_bytes([bytes[2], bytes[3]]) as i32;
    let sign = u16::from_be_bytes([bytes[4], bytes[5]]);
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Err("NaN has no decimal value".into()),
        _ => return Err("an infinite numeric has no decimal value".into()),
    }
    if bytes.len() < 8 + 2 * n {
        return Err("a truncated numeric".into());
    }
    let overflow = || "a numeric too large for DECIMAL(38)".to_string();
    let mut v: i128 = 0;
    for i in 0..n {
        let d = u16::from_be_bytes([bytes[8 + 2 * i], bytes[9 + 2 * i]]) as i128;
        v = v.checked_mul(10_000).and_then(|v| v.checked_add(d)).ok_or_else(overflow)?;
    }
    // v × 10000^(weight − n + 1), brought to `scale` decimal places.
    let exponent = 4 * (weight - n as i32 + 1) + scale as i32;
    if exponent >= 0 {
        v = v.checked_mul(10i128.checked_pow(exponent as u32).ok_or_else(overflow)?).ok_or_else(overflow)?;
    } else if v != 0 {
        let d = 10i128.checked_pow((-exponent) as u32).unwrap_or(i128::MAX);
        if v % d != 0 {
            return Err(format!("a numeric with more than {scale} decimal places"));
        }
        v /= d;
    }
    Ok(if sign == 0x4000 { -v } else { v })
}

/// A one-dimensional binary array into a list column.
fn append_array(column: &mut ColumnBuilder, decode: Decode, bytes: &[u8]) -> Result<(), String> {
    let ColumnBuilder::List(list) = column else { return Err("an array in a non-list column".into()) };
    if bytes.len() < 12 {
        return Err("a truncated array".into());
    }
    let dims = i32::from_be_bytes(be(&bytes[..4])?);
    if dims == 0 {
        list.close(0);
        return Ok(());
    }
    if dims != 1 {
        return Err(format!("a {dims}-dimensional array (only one dimension maps to a list)"));
    }
    if bytes.len() < 20 {
        return Err("a truncated array".into());
    }
    let count = i32::from_be_bytes(be(&bytes[12..16])?).max(0) as usize;
    let mut at = 20;
    for _ in 0..count {
        let len = i32::from_be_bytes(be(bytes.get(at..at + 4).ok_or("a truncated array")?)?);
        at += 4;
        if len < 0 {
            list.values.append(Value::Null)?;
            continue;
        }
        let element = bytes.get(at..at + len as usize).ok_or("a truncated array")?;
        at += len as usize;
        list.values.append(value(decode, element)?)?;
    }
    list.close(count);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_bytes(weight: i16, sign: u16, digits: &[u16]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend((digits.len() as u16).to_be_bytes());
        b.extend(weight.to_be_bytes());
        b.extend(sign.to_be_bytes());
        b.extend(0u16.to_be_bytes());
        for d in digits {
            b.extend(d.to_be_bytes());
        }
        b
    }

    #[test]
    fn numerics_are_exact() {
        // 12345.6789 = [1, 2345, 6789] with weight 1.
        assert_eq!(numeric(&numeric_bytes(1, 0, &[1, 2345, 6789]), 4), Ok(123_456_789));
        assert_eq!(numeric(&numeric_bytes(1, 0x4000, &[1, 2345, 6789]), 6), Ok(-12_345_678_900));
        // 0.0001 = [1] with weight −1.
        assert_eq!(numeric(&numeric_bytes(-1, 0, &[1]), 4), Ok(1));
        // 20000 = [2] with weight 1.
        assert_eq!(numeric(&numeric_bytes(1, 0, &[2]), 2), Ok(2_000_000));
        assert!(numeric(&numeric_bytes(-1, 0, &[1]), 2).is_err(), "digits may not be dropped");
        assert!(numeric(&numeric_bytes(0, 0xC000, &[]), 2).is_err(), "NaN");
    }

    #[test]
    fn uuids_print_canonically() {
        let b = [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0, 1, 2, 3, 4, 5, 6, 7];
        assert_eq!(uuid_text(b), "12345678-9abc-def0-0001-020304050607");
    }
}
