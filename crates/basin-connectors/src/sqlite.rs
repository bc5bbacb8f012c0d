//! SQLite sources (the embedded default): read-only connections, catalog from
//! `sqlite_master`/`pragma_table_info`, rows streamed in Arrow batches. Table and column names
//! are checked against the catalog and quoted; values are bound as parameters, so neither can
//! inject SQL.

use std::str::FromStr;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema};
use basin_core::source::Source;
use futures::StreamExt;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{AssertSqlSafe, Row, TypeInfo, ValueRef};

use crate::error::{Error, Result};
use crate::types::{ColumnBuilder, Value, sqlite_type};
use crate::{BATCH_ROWS, Connector, Extract, Window};

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
            return Err(Error::Value {
                source_name: self.name.clone(),
                table: table.to_string(),
                column: w.cursor.clone(),
                row_key: "-".into(),
                problem: "the cursor column does not exist".into(),
            });
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

    async fn extract(&self, table: &str, window: Option<&Window>) -> Result<Extract> {
        let columns = self.catalog_columns(table).await?;
        let (clause, binds) = self.window_clause(table, &columns, window)?;
        let schema = Arc::new(Schema::new(
            columns.iter().map(|c| Field::new(&c.name, sqlite_type(&c.declared), true)).collect::<Vec<_>>(),
        ));
        let list = columns.iter().map(|c| quote(&c.name)).collect::<Vec<_>>().join(", ");
        let sql = format!("SELECT {list} FROM {}{clause}", quote(table));
        let pk: Vec<usize> = {
            let mut pk: Vec<(i64, usize)> =
                columns.iter().enumerate().filter(|(_, c)| c.pk > 0).map(|(i, c)| (c.pk, i)).collect();
            pk.sort();
            pk.into_iter().map(|(_, i)| i).collect()
        };

        // A reader task fills batches; the bounded channel keeps at most two in flight.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(2);
        let (pool, source_name, table_name, schema_for_task) =
            (self.pool.clone(), self.name.clone(), table.to_string(), schema.clone());
        let zero_dates = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let zero_dates_in_task = zero_dates.clone();
        tokio::spawn(async move {
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for b in binds {
                q = q.bind(b);
            }
            let mut rows = q.fetch(&pool);
            let mut batch = BatchBuilder::new(schema_for_task, &source_name, &table_name, pk, zero_dates_in_task);
            while let Some(row) = rows.next().await {
                let result = match row {
                    Ok(row) => batch.push(&row),
                    Err(e) => Err(Error::Query {
                        source_name: source_name.clone(),
                        table: table_name.clone(),
                        what: "reading rows",
                        source: e,
                    }),
                };
                if let Err(e) = result {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                if batch.rows == BATCH_ROWS && tx.send(batch.finish()).await.is_err() {
                    return;
                }
            }
            if batch.rows > 0 {
                let _ = tx.send(batch.finish()).await;
            }
        });
        let batches = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
        Ok(Extract { schema, batches: Box::pin(batches), zero_dates })
    }
}

struct BatchBuilder<'a> {
    schema: Arc<Schema>,
    source: &'a str,
    table: &'a str,
    pk: Vec<usize>,
    columns: Vec<ColumnBuilder>,
    rows: usize,
    zero_dates: Arc<std::sync::atomic::AtomicU64>,
}

impl<'a> BatchBuilder<'a> {
    fn new(
        schema: Arc<Schema>,
        source: &'a str,
        table: &'a str,
        pk: Vec<usize>,
        zero_dates: Arc<std::sync::atomic::AtomicU64>,
    ) -> Self {
        let columns = schema.fields().iter().map(|f| ColumnBuilder::new(f.data_type())).collect();
        BatchBuilder { schema, source, table, pk, columns, rows: 0, zero_dates }
    }

    fn push(&mut self, row: &SqliteRow) -> Result<()> {
        let BatchBuilder { schema, source, table, pk, columns, zero_dates, .. } = self;
        let err = |i: usize, problem: String| value_error(schema, source, table, pk, row, i, problem);
        for (i, builder) in columns.iter_mut().enumerate() {
            let raw = row.try_get_raw(i).map_err(|e| err(i, e.to_string()))?;
            let zero_date = if raw.is_null() {
                builder.append(Value::Null)
            } else {
                match raw.type_info().name() {
                    "INTEGER" => builder
                        .append(Value::Int(row.try_get_unchecked::<i64, _>(i).map_err(|e| err(i, e.to_string()))?)),
                    "REAL" => builder
                        .append(Value::Float(row.try_get_unchecked::<f64, _>(i).map_err(|e| err(i, e.to_string()))?)),
                    "BLOB" => builder
                        .append(Value::Bytes(row.try_get_unchecked::<&[u8], _>(i).map_err(|e| err(i, e.to_string()))?)),
                    _ => builder
                        .append(Value::Text(row.try_get_unchecked::<&str, _>(i).map_err(|e| err(i, e.to_string()))?)),
                }
            }
            .map_err(|p| err(i, p))?;
            if zero_date {
                zero_dates.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.rows += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<RecordBatch> {
        self.rows = 0;
        let arrays = self.columns.iter_mut().map(|c| c.finish()).collect();
        RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| Error::Arrow {
            source_name: self.source.to_string(),
            table: self.table.to_string(),
            source: e,
        })
    }
}

/// The error for a value that does not fit its column, naming the row by its primary key.
fn value_error(
    schema: &Schema,
    source: &str,
    table: &str,
    pk: &[usize],
    row: &SqliteRow,
    column: usize,
    problem: String,
) -> Error {
    let row_key = if pk.is_empty() {
        "(no primary key)".to_string()
    } else {
        pk.iter()
            .map(|&i| {
                let v: Option<String> = row
                    .try_get_unchecked::<i64, _>(i)
                    .map(|v| v.to_string())
                    .or_else(|_| row.try_get_unchecked(i))
                    .ok();
                format!("{}={}", schema.field(i).name(), v.unwrap_or_else(|| "?".into()))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    Error::Value {
        source_name: source.to_string(),
        table: table.to_string(),
        column: schema.field(column).name().clone(),
        row_key,
        problem,
    }
}
