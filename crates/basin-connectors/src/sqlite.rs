//! SQLite sources (the embedded default): read-only connections, catalog from
//! `sqlite_master`/`pragma_table_info`, rows streamed in Arrow batches. Table and column names
//! are checked against the catalog and quoted; values are bound as parameters, so neither can
//! inject SQL.

use std::str::FromStr;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use basin_core::source::Source;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{AssertSqlSafe, Row, TypeInfo, ValueRef};

use crate::batch::{Batcher, row_key};
use crate::error::{Error, Result};
use crate::types::{Value, sqlite_type};
use crate::{Connector, Extract, KeyRange, Window};

pub struct SqliteConnector {
    name: String,
    pool: SqlitePool,
}

struct Column {
    name: String,
    declared: String,
    pk: i64,
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl SqliteConnector {
    pub async fn connect(source: &Source) -> Result<Self> {
        let url = source.config.url.as_ref().map(|u| u.expose().to_string()).unwrap_or_default();
        let connect_err = |e| Error::Connect { source_name: source.name.clone(), source: e };
        let options =
            SqliteConnectOptions::from_str(&url).map_err(connect_err)?.read_only(true).create_if_missing(false);
        let pool = SqlitePoolOptions::new()
            .max_connections(source.max_connections() as u32)
            .connect_with(options)
            .await
            .map_err(connect_err)?;
        Ok(SqliteConnector { name: source.name.clone(), pool })
    }

    fn query_err(&self, table: &str, what: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
        let (source_name, table) = (self.name.clone(), table.to_string());
        move |source| Error::Query { source_name, table, what, source }
    }

    /// The table's columns, in order; `NoSuchTable` if the catalog does not have it.
    async fn catalog_columns(&self, table: &str) -> Result<Vec<Column>> {
        let rows = sqlx::query("SELECT name, type, pk FROM pragma_table_info(?1) ORDER BY cid")
            .bind(table)
            .fetch_all(&self.pool)
            .await
            .map_err(self.query_err(table, "reading the catalog"))?;
        if rows.is_empty() {
            return Err(Error::NoSuchTable { source_name: self.name.clone(), table: table.to_string() });
        }
        Ok(rows.iter().map(|r| Column { name: r.get(0), declared: r.get(1), pk: r.get(2) }).collect())
    }

    /// `WHERE` clause and bind values for a window, after checking the cursor column exists.
    fn window_clause(&self, table: &str, columns: &[Column], window: Option<&Window>) -> Result<(String, Vec<String>)> {
        let Some(w) = window else { return Ok((String::new(), Vec::new())) };
        if !columns.iter().any(|c| c.name == w.cursor) {
            return Err(Error::column(&self.name, table, &w.cursor, "the cursor column does not exist"));
        }
        let c = quote(&w.cursor);
        Ok(match &w.from {
            Some(from) => (format!(" WHERE {c} >= ?1 AND {c} <= ?2"), vec![from.clone(), w.to.clone()]),
            None => (format!(" WHERE {c} <= ?1"), vec![w.to.clone()]),
        })
    }
}

#[async_trait::async_trait]
impl Connector for SqliteConnector {
    async fn tables(&self) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
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
        Ok(Some(schema_of(&self.catalog_columns(table).await?)))
    }

    async fn primary_key(&self, table: &str) -> Result<Vec<String>> {
        let mut cols: Vec<Column> = self.catalog_columns(table).await?.into_iter().filter(|c| c.pk > 0).collect();
        cols.sort_by_key(|c| c.pk);
        Ok(cols.into_iter().map(|c| c.name).collect())
    }

    async fn count(&self, table: &str, window: Option<&Window>) -> Result<u64> {
        let columns = self.catalog_columns(table).await?;
        let (clause, binds) = self.window_clause(table, &columns, window)?;
        let mut q = sqlx::query(AssertSqlSafe(format!("SELECT COUNT(*) FROM {}{clause}", quote(table))));
        for b in binds {
            q = q.bind(b);
        }
        let row = q.fetch_one(&self.pool).await.map_err(self.query_err(table, "COUNT(*)"))?;
        Ok(row.get::<i64, _>(0) as u64)
    }

    async fn max_cursor(&self, table: &str, cursor: &str) -> Result<Option<String>> {
        let columns = self.catalog_columns(table).await?;
        let window = Window { cursor: cursor.to_string(), from: None, to: String::new() };
        self.window_clause(table, &columns, Some(&window))?;
        let sql = format!("SELECT CAST(MAX({c}) AS TEXT) FROM {t}", c = quote(cursor), t = quote(table));
        let row = sqlx::query(AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await
            .map_err(self.query_err(table, "MAX(cursor)"))?;
        Ok(row.get::<Option<String>, _>(0))
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
        let (mut clause, binds) = self.window_clause(table, &columns, window)?;
        if let Some(r) = range {
            let c = columns
                .iter()
                .find(|c| c.name == r.column)
                .ok_or_else(|| Error::column(&self.name, table, &r.column, "the key column does not exist"))?;
            for (op, bound) in [(">=", r.from), ("<", r.to)] {
                if let Some(b) = bound {
                    let joiner = if clause.is_empty() { " WHERE" } else { " AND" };
                    clause.push_str(&format!("{joiner} {} {op} {b}", quote(&c.name)));
                }
            }
        }
        let schema = schema_of(&columns);
        let list = columns.iter().map(|c| quote(&c.name)).collect::<Vec<_>>().join(", ");
        let sql = format!("SELECT {list} FROM {}{clause}", quote(table));
        let pk: Vec<usize> = {
            let mut pk: Vec<(i64, usize)> =
                columns.iter().enumerate().filter(|(_, c)| c.pk > 0).map(|(i, c)| (c.pk, i)).collect();
            pk.sort();
            pk.into_iter().map(|(_, i)| i).collect()
        };

        // A reader task fills batches; the bounded channel keeps few in flight.
        let (tx, extract, zero_dates) = crate::batch::channel(schema.clone());
        let batch = Batcher::new(schema, &self.name, table, zero_dates);
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for b in binds {
                q = q.bind(b);
            }
            crate::batch::pump(q.fetch(&pool), batch, tx, |b, row| push(b, &pk, row)).await;
        });
        Ok(extract)
    }
}

/// The Arrow schema of `columns`, from their declared types.
fn schema_of(columns: &[Column]) -> SchemaRef {
    Arc::new(Schema::new(
        columns.iter().map(|c| Field::new(&c.name, sqlite_type(&c.declared), true)).collect::<Vec<_>>(),
    ))
}

/// Append one row; true when the batch is full.
fn push(batch: &mut Batcher, pk: &[usize], row: &SqliteRow) -> Result<bool> {
    for i in 0..batch.schema.fields().len() {
        let value = read(row, i);
        let result = match value {
            Ok(v) => batch.append(i, v),
            Err(e) => Err(e.to_string()),
        };
        if let Err(problem) = result {
            let names: Vec<&str> = pk.iter().map(|&k| batch.schema.field(k).name().as_str()).collect();
            let values = pk.iter().map(|&k| {
                row.try_get_unchecked::<i64, _>(k).map(|v| v.to_string()).or_else(|_| row.try_get_unchecked(k)).ok()
            });
            return Err(batch.value_error(i, row_key(&names, values), problem));
        }
    }
    Ok(batch.end_row())
}

fn read(row: &SqliteRow, i: usize) -> Result<Value<'_>, sqlx::Error> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    Ok(match raw.type_info().name() {
        "INTEGER" => Value::Int(row.try_get_unchecked(i)?),
        "REAL" => Value::Float(row.try_get_unchecked(i)?),
        "BLOB" => Value::Bytes(row.try_get_unchecked(i)?),
        _ => Value::Text(row.try_get_unchecked(i)?),
    })
}
