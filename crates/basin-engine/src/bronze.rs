//! The bronze writer: the immutability contract enforced in code.
//! - every row lands in partition `_ingestion_date` (the run's date), with `_run_id`,
//!   `_extracted_at` and `_source` columns;
//! - a write for a date earlier than the table's latest partition is refused;
//! - a full snapshot replaces exactly today's partition in one commit, so a retry on the same
//!   day leaves one complete snapshot;
//! - an incremental batch is appended without the (primary key, cursor) pairs already landed,
//!   and its watermark is stored in the same commit as its rows;
//! - schema drift: each commit records the source's column types (`basin.source_types`); an
//!   added column or a widened type is accepted and recorded (`basin.schema_changes`), a
//!   removed column, an incompatible type or (unless allowed) a narrowed one stops the write.
//!   New columns are stored at the widest type of their family ([`crate::schema::widest`]),
//!   so that a widened source type fits the Delta column it already has.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use basin_core::AssetKey;
use chrono::{DateTime, NaiveDate, Utc};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{JoinType, cast, col, lit};
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::{DataFrame, SessionContext};
use deltalake::DeltaTable;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{Error, Result};
use crate::lake::{Lake, new_context};
use crate::schema::{TypeChange, fits, type_change, widest};

pub use crate::current::{CURRENT_SCHEMA, DELETED, EXTRACTED_AT, INGESTION_DATE, METADATA_COLUMNS, RUN_ID, SOURCE};

/// The schema a source table of schema `source` lands as on its first ingest: each column as
/// the widest type of its family, then the metadata columns. (A table whose deletes are
/// tracked gains `_tombstone` with its first tombstone.)
pub fn landing_schema(source: &datafusion::arrow::datatypes::Schema) -> SchemaRef {
    use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};
    let mut fields: Vec<Field> =
        source.fields().iter().map(|f| f.as_ref().clone().with_data_type(widest(f.data_type()))).collect();
    fields.extend([
        Field::new(INGESTION_DATE, DataType::Date32, true),
        Field::new(RUN_ID, DataType::Utf8, true),
        Field::new(EXTRACTED_AT, DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
        Field::new(SOURCE, DataType::Utf8, true),
    ]);
    Arc::new(Schema::new(fields))
}

/// How far an incremental table has been read: the cursor column's greatest value landed,
/// as SQL literal text, with the column's type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    pub column: String,
    pub value: String,
    pub data_type: String,
}

/// Progress of an interrupted first load of an incremental table: every key below
/// `done_below` is landed, reading towards cursor value `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backfill {
    /// The key column the load is chunked by.
    pub column: String,
    pub to: String,
    pub done_below: i64,
    /// Rows landed by the load so far (stored: before the commit it is stored in; read back by
    /// [`last_backfill`]: including that commit's rows).
    pub landed: u64,
}

/// What a bronze write committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BronzeCommit {
    pub version: Option<u64>,
    pub rows: u64,
    pub ingestion_date: NaiveDate,
    pub watermark: Option<Watermark>,
}

/// Writes one source table's rows into `bronze.<source>__<table>` for one run.
pub struct BronzeWriter<'a> {
    lake: &'a Lake,
    key: AssetKey,
    source: String,
    run_id: String,
    extracted_at: DateTime<Utc>,
    overlap: Overlap,
    backfill: Option<Backfill>,
    source_rows: Option<u64>,
    allow_narrowing: bool,
    accept_schema_change: bool,
    /// `source.table`, as the user names it on the command line.
    table_name: Option<String>,
    deletes: serde_json::Value,
}

/// The rows to write, conformed to the table, and what the commit records about their schema.
struct Conformed {
    df: DataFrame,
    metadata: Vec<(String, serde_json::Value)>,
}

/// What a table's commits recorded about its source's columns.
#[derive(Debug, Default)]
struct RecordedSchema {
    /// The source's column types, by source column.
    types: BTreeMap<String, DataType>,
    /// Source columns whose values land in another column since a type change was accepted.
    renamed: BTreeMap<String, String>,
    /// Columns of the table the source no longer feeds (accepted removals and replaced columns).
    retired: std::collections::BTreeSet<String>,
}

/// Which landed rows an increment may repeat, and so is compared with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Overlap {
    /// Any landed row (the safe default).
    #[default]
    All,
    /// Landed rows whose cursor is at least this (the watermark minus the lag).
    From(String),
    /// None: a first load, whose key ranges no landed row shares.
    Nothing,
}

impl<'a> BronzeWriter<'a> {
    /// `extracted_at` comes from the caller's clock; its date is the partition written.
    pub fn new(lake: &'a Lake, key: AssetKey, source: &str, run_id: &str, extracted_at: DateTime<Utc>) -> Self {
        BronzeWriter {
            lake,
            key,
            source: source.to_string(),
            run_id: run_id.to_string(),
            extracted_at,
            overlap: Overlap::All,
            backfill: None,
            source_rows: None,
            allow_narrowing: false,
            accept_schema_change: false,
            table_name: None,
            deletes: serde_json::Value::Null,
        }
    }

    /// How the table notices rows deleted in the source, recorded with each commit for the
    /// current-state view (which leaves deleted keys out).
    pub fn with_deletes(mut self, deletes: Option<&basin_core::source::Deletes>) -> Self {
        use basin_core::source::Deletes;
        self.deletes = match deletes {
            None => serde_json::Value::Null,
            Some(Deletes::KeySnapshot { every }) => json!({ "key_snapshot": every }),
            Some(Deletes::Soft { column }) => json!({ "soft": column }),
        };
        self
    }

    /// Accept a source column whose type narrowed (`BIGINT` → `INT`): its values still land in
    /// the column's wider type. Refused by default, since a narrowing often means the source
    /// truncated values (`--allow-shrink`).
    pub fn allow_narrowing(mut self, allow: bool) -> Self {
        self.allow_narrowing = allow;
        self
    }

    /// Land past a removed column or a type that no longer fits (`--accept-schema-change`);
    /// `table_name` (`shop.customers`) is how error messages name the table.
    pub fn accept_schema_change(mut self, accept: bool, table_name: &str) -> Self {
        self.accept_schema_change = accept;
        self.table_name = Some(table_name.to_string());
        self
    }

    /// The source's `COUNT(*)` over the rows this commit reads, stored with it (as
    /// `basin.reconciliation`) so the commit says what it was checked against. An increment
    /// past a watermark counts while it reads, so its count is in the run's `reconcile` check
    /// result, not in its commit.
    pub fn with_source_rows(mut self, rows: u64) -> Self {
        self.source_rows = Some(rows);
        self
    }

    /// Commit an increment as a step of a first load: its progress instead of the watermark,
    /// which only the load's last step stores.
    pub fn with_backfill(mut self, backfill: Option<Backfill>) -> Self {
        self.backfill = backfill;
        self
    }

    /// What an increment can repeat: with the watermark minus the lag, only landed rows from
    /// there on are compared, and Delta's file statistics skip the rest of the table.
    pub fn with_overlap(mut self, overlap: Overlap) -> Self {
        self.overlap = overlap;
        self
    }

    pub fn ingestion_date(&self) -> NaiveDate {
        self.extracted_at.date_naive()
    }

    /// The value of metadata column `name` (one of [`METADATA_COLUMNS`]) in this write's rows,
    /// or in its tombstones when `tombstone`, aliased to the column.
    fn metadata_value(&self, name: &str, tombstone: bool) -> datafusion::logical_expr::Expr {
        use datafusion::common::ScalarValue;
        let value = match name {
            INGESTION_DATE => date_literal(self.ingestion_date()),
            RUN_ID => lit(self.run_id.clone()),
            EXTRACTED_AT => {
                lit(ScalarValue::TimestampMicrosecond(Some(self.extracted_at.timestamp_micros()), Some("UTC".into())))
            }
            SOURCE => lit(self.source.clone()),
            _ => lit(ScalarValue::Boolean(tombstone.then_some(true))),
        };
        value.alias(name)
    }

    /// Replace today's partition with a complete snapshot, atomically.
    pub async fn replace_today(&self, input: SendableRecordBatchStream) -> Result<BronzeCommit> {
        let (ctx, table) = self.prepare().await?;
        let rows = self.with_metadata(&ctx, input, table.as_ref(), &[]).await?;
        let props = self.commit_properties("full", &[], None, rows.metadata);
        self.write(&ctx, table, rows.df, SaveMode::Overwrite, props, None).await
    }

    /// Append an incremental batch, leaving out rows whose (primary key, cursor) already
    /// landed, and store `watermark` in the same commit.
    pub async fn append_increment(
        &self,
        input: SendableRecordBatchStream,
        primary_key: &[String],
        watermark: Watermark,
    ) -> Result<BronzeCommit> {
        let (ctx, table) = self.prepare().await?;
        let mut keys = primary_key.to_vec();
        keys.push(watermark.column.clone());
        let Conformed { mut df, metadata } = self.with_metadata(&ctx, input, table.as_ref(), &keys).await?;
        if let Some(existing) = table.as_ref().filter(|_| self.overlap != Overlap::Nothing) {
            // Rows re-read in the lag window that are already in bronze are not landed twice.
            let mut key_cols: Vec<String> = primary_key.to_vec();
            if !key_cols.contains(&watermark.column) {
                key_cols.push(watermark.column.clone());
            }
            let provider = existing.table_provider().await.map_err(Error::query("cannot read bronze"))?;
            let cursor_type = provider.schema().field_with_name(&watermark.column).map(|f| f.data_type().clone()).ok();
            let landed = ctx
                .read_table(provider)
                .and_then(|d| match (&self.overlap, cursor_type) {
                    (Overlap::From(from), Some(t)) => {
                        d.filter(col(quote(&watermark.column)).gt_eq(cast(lit(from.clone()), t)))
                    }
                    _ => Ok(d),
                })
                .and_then(|d| {
                    d.select(key_cols.iter().map(|c| col(quote(c)).alias(format!("__landed_{c}"))).collect::<Vec<_>>())
                })
                .map_err(Error::query(format!("cannot read {}", self.key)))?;
            let new: Vec<String> = key_cols.iter().map(|c| quote(c)).collect();
            let old: Vec<String> = key_cols.iter().map(|c| quote(&format!("__landed_{c}"))).collect();
            // The landed rows are the join's build side (few, after the overlap filter); the new
            // rows stream through as the probe side, so the increment is never held in memory.
            df = landed
                .join(
                    df,
                    JoinType::RightAnti,
                    &old.iter().map(String::as_str).collect::<Vec<_>>(),
                    &new.iter().map(String::as_str).collect::<Vec<_>>(),
                    None,
                )
                .map_err(Error::query(format!("cannot compare new rows with {}", self.key)))?;
        }
        let props = self.commit_properties("incremental", primary_key, Some(&watermark), metadata);
        self.write(&ctx, table, df, SaveMode::Append, props, Some(watermark)).await
    }

    /// Append the rows of newly arrived files, recording the files in the same commit, so each
    /// file lands once.
    pub async fn append_files(&self, input: SendableRecordBatchStream, files: &[String]) -> Result<BronzeCommit> {
        let (ctx, table) = self.prepare().await?;
        let mut rows = self.with_metadata(&ctx, input, table.as_ref(), &[]).await?;
        rows.metadata.push(("basin.files".to_string(), json!(files)));
        let props = self.commit_properties("files", &[], None, rows.metadata);
        self.write(&ctx, table, rows.df, SaveMode::Append, props, None).await
    }

    /// Land a tombstone for every current key of the table (as `bronze_current` has it) that
    /// `keys`, every primary key the source has now, lacks: a row with the key, the cursor of
    /// the key's latest row, `_tombstone = true` and NULL elsewhere, in one commit (none when
    /// no key went) that keeps `watermark`, the table's latest. Returns the commit, how many
    /// keys it deleted and how many keys the current state has after it.
    pub async fn land_tombstones(
        &self,
        keys: SendableRecordBatchStream,
        primary_key: &[String],
        watermark: &Watermark,
    ) -> Result<(Option<BronzeCommit>, u64, u64)> {
        let cursor = watermark.column.as_str();
        let (ctx, table) = self.prepare().await?;
        let Some(table) = table else { return Ok((None, 0, 0)) };
        let failed = || Error::query(format!("cannot compare the source's keys with {}", self.key));
        let provider = table.table_provider().await.map_err(Error::query("cannot read bronze"))?;
        let schema = provider.schema();
        ctx.register_table("__basin_bronze", provider).map_err(failed())?;
        let mut wanted: Vec<String> = primary_key.to_vec();
        if !wanted.iter().any(|c| c == cursor) {
            wanted.push(cursor.to_string());
        }
        let Some(current) = crate::current::current_state_of(&table, &self.key, &wanted, "__basin_bronze").await?
        else {
            return Ok((None, 0, 0));
        };
        let source = read_stream(&ctx, keys).map_err(failed())?;
        ctx.register_table("__basin_source_keys", source.into_view()).map_err(failed())?;
        // One pass over the current keys: each joined with the source's (the source's keys are
        // its primary key, so at most one matches), counted, and kept when none matched.
        let key_list = primary_key.iter().map(|k| quote(k)).collect::<Vec<_>>().join(", ");
        let same: Vec<String> = primary_key.iter().map(|k| format!("s.{k} = cur.{k}", k = quote(k))).collect();
        let mut joined = ctx
            .sql(&format!(
                "SELECT cur.*, s.__basin_present FROM ({current}) AS cur \
                 LEFT JOIN (SELECT {key_list}, true AS __basin_present FROM __basin_source_keys) AS s ON {}",
                same.join(" AND ")
            ))
            .await
            .map_err(failed())?
            .execute_stream()
            .await
            .map_err(failed())?;
        let (mut gone, mut before) = (Vec::new(), 0u64);
        while let Some(batch) = joined.next().await {
            let batch = batch.map_err(failed())?;
            before += batch.num_rows() as u64;
            let present = batch.num_columns() - 1;
            let absent = || {
                use datafusion::arrow::compute::{filter_record_batch, is_null};
                filter_record_batch(&batch, &is_null(batch.column(present))?)?
                    .project(&(0..present).collect::<Vec<_>>())
            };
            let absent = absent().map_err(|e| failed()(e.into()))?;
            if absent.num_rows() > 0 {
                gone.push(absent);
            }
        }
        let deleted: usize = gone.iter().map(|b| b.num_rows()).sum();
        let current_keys = before - deleted as u64;
        if deleted == 0 {
            return Ok((None, 0, current_keys));
        }
        let gone = ctx.read_batches(gone).map_err(failed())?;
        let mut exprs = Vec::new();
        for field in schema.fields() {
            let (name, data_type) = (field.name().as_str(), field.data_type());
            exprs.push(if wanted.iter().any(|w| w == name) {
                cast(col(quote(name)), data_type.clone()).alias(name)
            } else if METADATA_COLUMNS.contains(&name) {
                self.metadata_value(name, true)
            } else {
                cast(lit(datafusion::common::ScalarValue::Null), data_type.clone()).alias(name)
            });
        }
        if schema.field_with_name(DELETED).is_err() {
            exprs.push(self.metadata_value(DELETED, true));
        }
        let rows = gone.select(exprs).map_err(failed())?;
        let props = self.commit_properties(
            "incremental",
            primary_key,
            Some(watermark),
            vec![("basin.tombstones".to_string(), json!(deleted))],
        );
        let commit = self.write(&ctx, Some(table), rows, SaveMode::Append, props, Some(watermark.clone())).await?;
        Ok((Some(commit), deleted as u64, current_keys))
    }

    /// One commit into today's partition: an overwrite replaces exactly that partition.
    async fn write(
        &self,
        ctx: &SessionContext,
        table: Option<DeltaTable>,
        df: DataFrame,
        mode: SaveMode,
        props: CommitProperties,
        watermark: Option<Watermark>,
    ) -> Result<BronzeCommit> {
        let today = self.ingestion_date();
        let table = match table {
            Some(t) => t,
            None => self.lake.table_or_new(&self.key).await?,
        };
        let mut write = table
            .write(Vec::new())
            .with_input_plan(df.into_unoptimized_plan())
            .with_session_state(Arc::new(ctx.state()))
            .with_partition_columns([INGESTION_DATE])
            .with_save_mode(mode)
            .with_schema_mode(deltalake::operations::write::SchemaMode::Merge)
            .with_commit_properties(props)
            .with_writer_properties(writer_properties());
        if mode == SaveMode::Overwrite {
            write = write.with_replace_where(col(INGESTION_DATE).eq(date_literal(today)));
        }
        let table = write.await.map_err(Error::delta(&self.key, "write"))?;
        let rows = crate::delta::last_commit_rows(&table).await;
        Ok(BronzeCommit { version: table.version(), rows, ingestion_date: today, watermark })
    }

    /// A session over the existing table, after checking the write is not into the past.
    async fn prepare(&self) -> Result<(SessionContext, Option<DeltaTable>)> {
        let ctx = new_context();
        // Every row of a bronze write lands in one partition (today's). With one stream,
        // deltalake writes it as it comes; with more, the plan would be split round-robin and
        // then hash-repartitioned by `_ingestion_date` (two copies of every row) only to meet
        // again in a single writer.
        ctx.state_ref().write().config_mut().options_mut().execution.target_partitions = 1;
        let table = self.lake.table(&self.key).await?;
        if let Some(t) = &table {
            t.update_datafusion_session(&ctx.state()).map_err(Error::delta(&self.key, "register"))?;
            let provider = t.table_provider().await.map_err(Error::query("cannot read bronze"))?;
            let latest = ctx
                .read_table(provider)
                .and_then(|d| {
                    d.aggregate(vec![], vec![datafusion::functions_aggregate::expr_fn::max(col(INGESTION_DATE))])
                })
                .map_err(Error::query("cannot read bronze partitions"))?
                .collect()
                .await
                .map_err(Error::query(format!("cannot read the partitions of {}", self.key)))?;
            let latest = latest
                .first()
                .filter(|b| b.num_rows() > 0 && !b.column(0).is_null(0))
                .and_then(|b| datafusion::common::ScalarValue::try_from_array(b.column(0), 0).ok());
            if let Some(datafusion::common::ScalarValue::Date32(Some(days))) = latest {
                let latest = NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch") + chrono::Days::new(days as u64);
                if self.ingestion_date() < latest {
                    return Err(Error::BronzeImmutable {
                        table: self.key.clone(),
                        date: self.ingestion_date(),
                        latest,
                    });
                }
            }
        }
        Ok((ctx, table))
    }

    /// The extracted rows plus the metadata columns, conformed to the existing table: added
    /// columns and widened types are accepted (and recorded), a removed column, an
    /// incompatible type or a narrowed one (unless allowed) stops the write. Accepting schema
    /// changes, a removed column stays in the table, NULL from now on, and a column whose type
    /// no longer fits lands in a new column alongside (`amount__v2`), which later runs go on
    /// filling (both recorded with the source's types, `basin.columns`).
    async fn with_metadata(
        &self,
        ctx: &SessionContext,
        input: SendableRecordBatchStream,
        table: Option<&DeltaTable>,
        keys: &[String],
    ) -> Result<Conformed> {
        let schema = input.schema();
        for m in METADATA_COLUMNS {
            if schema.field_with_name(m).is_ok() {
                return Err(Error::SchemaDrift {
                    table: self.key.clone(),
                    detail: format!("the source has a column named `{m}`, which Basin reserves"),
                });
            }
        }
        let df = read_stream(ctx, input).map_err(Error::query("cannot stream the extracted rows"))?;
        let mut exprs = Vec::new();
        let existing = match table {
            Some(t) => Some(t.snapshot().map_err(Error::delta(&self.key, "load"))?.snapshot().arrow_schema()),
            None => None,
        };
        let recorded = match table {
            Some(t) => self.recorded_schema(t).await?,
            None => RecordedSchema::default(),
        };
        let mut renamed = recorded.renamed.clone();
        let mut taken: std::collections::BTreeSet<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        taken.extend(existing.iter().flat_map(|s| s.fields().iter().map(|f| f.name().clone())));
        let mut fed = std::collections::BTreeSet::new();
        let (mut added, mut widened, mut narrowed, mut replaced) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for field in schema.fields() {
            let (name, new) = (field.name(), field.data_type());
            let target = renamed.get(name).cloned().unwrap_or_else(|| name.clone());
            let c = col(quote(name));
            let change = recorded.types.get(name).and_then(|t| Some((t, type_change(t, new)?)));
            let drift = |detail: String| Err(Error::SchemaDrift { table: self.key.clone(), detail });
            match existing.as_ref().and_then(|s| s.field_with_name(&target).ok()).map(|f| f.data_type()) {
                Some(old) if old == new => exprs.push(c.alias(&target)),
                Some(old) if fits(new, old) => exprs.push(cast(c, old.clone()).alias(&target)),
                Some(old) if self.accept_schema_change && !keys.contains(name) => {
                    // The old column keeps its values; the new ones go alongside.
                    let into =
                        (2..).map(|n| format!("{name}__v{n}")).find(|c| !taken.contains(c)).expect("a free name");
                    taken.insert(into.clone());
                    let stored = widest(new);
                    exprs.push(if &stored == new { c.alias(&into) } else { cast(c, stored).alias(&into) });
                    replaced.push(
                        json!({ "column": target, "from": old.to_string(), "to": new.to_string(), "into": into }),
                    );
                    renamed.insert(name.clone(), into.clone());
                    fed.insert(into);
                    continue;
                }
                Some(old) if keys.contains(name) => {
                    return drift(format!(
                        "column `{name}`, a key or the cursor of the table, changed type from {old} to {new}; \
                         nothing landed. Rows are matched and ordered by it, so it cannot be moved aside: \
                         change it back in the source, or land the table afresh under a new name (`as`)"
                    ));
                }
                Some(old) => {
                    let way_out = format!(
                        "To land the new values in a new column `{name}__v2` alongside (`{target}` keeps \
                         what it has), run again with {}",
                        self.accept_hint()
                    );
                    return drift(match change {
                        Some((from, TypeChange::Widened)) => format!(
                            "column `{name}` widened in the source from {from} to {new}, beyond the {old} \
                             this table stores it as (a table created before Basin stored the widest type \
                             of each family); nothing landed. {way_out}"
                        ),
                        _ => format!("column `{name}` changed type from {old} to {new}; nothing landed. {way_out}"),
                    });
                }
                None => {
                    let stored = widest(new);
                    exprs.push(if &stored == new { c.alias(&target) } else { cast(c, stored).alias(&target) });
                    if existing.is_some() {
                        added.push(json!({ "column": target, "type": new.to_string() }));
                    }
                }
            }
            fed.insert(target);
            match change {
                Some((from, TypeChange::Widened)) => {
                    widened.push(json!({ "column": name, "from": from.to_string(), "to": new.to_string() }))
                }
                Some((from, TypeChange::Narrowed)) if self.allow_narrowing => {
                    narrowed.push(json!({ "column": name, "from": from.to_string(), "to": new.to_string() }))
                }
                Some((from, TypeChange::Narrowed)) => {
                    return drift(format!(
                        "column `{name}` narrowed in the source from {from} to {new}: values may have been \
                         truncated there. Nothing landed; once checked, run again with --allow-shrink to \
                         land it (bronze keeps the wider type)"
                    ));
                }
                _ => {}
            }
        }
        // Columns of the table the source no longer feeds: refused, unless accepted now or by
        // an earlier run; accepted, they stay in the table, NULL in the rows landed from now on.
        let (mut removed, mut retired) = (Vec::new(), Vec::new());
        for old in existing.iter().flat_map(|s| s.fields().iter()) {
            let name = old.name();
            if METADATA_COLUMNS.contains(&name.as_str()) || fed.contains(name) {
                continue;
            }
            let earlier = recorded.retired.contains(name);
            if !earlier && !self.accept_schema_change {
                return Err(Error::SchemaDrift {
                    table: self.key.clone(),
                    detail: format!(
                        "column `{name}` was removed from the source. To land the table without it (`{name}` \
                         stays, NULL in the rows landed from now on), run again with {}",
                        self.accept_hint()
                    ),
                });
            }
            exprs.push(cast(lit(datafusion::common::ScalarValue::Null), old.data_type().clone()).alias(name));
            if !earlier && !replaced.iter().any(|r| r["column"] == json!(name)) {
                removed.push(json!({ "column": name }));
            }
            retired.push(name.clone());
        }
        exprs.extend([INGESTION_DATE, RUN_ID, EXTRACTED_AT, SOURCE].map(|m| self.metadata_value(m, false)));
        if existing.as_ref().is_some_and(|s| s.field_with_name(DELETED).is_ok()) {
            exprs.push(self.metadata_value(DELETED, false));
        }
        let df = df.select(exprs).map_err(Error::query("cannot add bronze metadata columns"))?;
        let types: BTreeMap<&String, String> =
            schema.fields().iter().map(|f| (f.name(), f.data_type().to_string())).collect();
        let mut metadata = vec![("basin.source_types".to_string(), json!(types))];
        renamed.retain(|source, _| schema.field_with_name(source).is_ok());
        if !(renamed.is_empty() && retired.is_empty()) {
            metadata.push(("basin.columns".to_string(), json!({ "renamed": renamed, "retired": retired })));
        }
        let accepted = !(removed.is_empty() && replaced.is_empty());
        if accepted || !(added.is_empty() && widened.is_empty() && narrowed.is_empty()) {
            let mut changes = json!({ "added": added, "widened": widened, "narrowed": narrowed });
            if accepted {
                changes["removed"] = json!(removed);
                changes["replaced"] = json!(replaced);
                changes["accepted"] = json!(true);
            }
            metadata.push(("basin.schema_changes".to_string(), changes));
        }
        Ok(Conformed { df, metadata })
    }

    /// How to accept this table's schema change on the command line.
    fn accept_hint(&self) -> String {
        format!(
            "--accept-schema-change {} (or, for every run, `accept_schema_change = true` on the table in its source \
             file)",
            self.table_name.as_deref().unwrap_or(&self.key.to_string())
        )
    }

    /// What the table's latest ingest recorded about the source's columns: their types (empty
    /// for a table written before Basin recorded them), and the columns accepted schema
    /// changes moved or retired.
    async fn recorded_schema(&self, table: &DeltaTable) -> Result<RecordedSchema> {
        let info = crate::delta::latest_with(table, &self.key, "basin.source_types").await?.unwrap_or_default();
        let types = info.get("basin.source_types").and_then(|t| t.as_object());
        let types = types
            .iter()
            .flat_map(|t| t.iter())
            .filter_map(|(c, t)| Some((c.clone(), DataType::from_str(t.as_str()?).ok()?)))
            .collect();
        let columns = info.get("basin.columns");
        let renamed = columns
            .and_then(|c| c.get("renamed"))
            .and_then(|r| serde_json::from_value(r.clone()).ok())
            .unwrap_or_default();
        let retired = columns
            .and_then(|c| c.get("retired"))
            .and_then(|r| serde_json::from_value(r.clone()).ok())
            .unwrap_or_default();
        Ok(RecordedSchema { types, renamed, retired })
    }

    fn commit_properties(
        &self,
        mode: &str,
        primary_key: &[String],
        watermark: Option<&Watermark>,
        extra: Vec<(String, serde_json::Value)>,
    ) -> CommitProperties {
        let mut metadata = vec![
            ("basin.run_id".to_string(), json!(self.run_id)),
            ("basin.operation".to_string(), json!(format!("ingest_{mode}"))),
            // What the current-state view of the table needs to know.
            (
                "basin.bronze".to_string(),
                json!({
                    "mode": mode,
                    "primary_key": primary_key,
                    "cursor": watermark.map(|w| &w.column),
                    "deletes": self.deletes,
                }),
            ),
            ("basin.source".to_string(), json!(self.source)),
            ("basin.ingestion_date".to_string(), json!(self.ingestion_date().to_string())),
        ];
        match (&self.backfill, watermark) {
            (Some(b), _) => {
                metadata.push(("basin.backfill".to_string(), serde_json::to_value(b).expect("serialisable")))
            }
            (None, Some(w)) => {
                metadata.push(("basin.watermark".to_string(), serde_json::to_value(w).expect("serialisable")))
            }
            (None, None) => {}
        }
        metadata.extend(extra);
        if let Some(rows) = self.source_rows {
            metadata.push(("basin.reconciliation".to_string(), json!({ "source_rows": rows })));
        }
        crate::delta::commit_properties(metadata)
    }
}

/// Parquet settings of bronze files. Bronze is written on every run and kept for ever, so its
/// files are compressed with zstd at level 1: on the ingest benchmark's table (keys, amounts,
/// text, dates and timestamps) 82 MB for 10M rows against Snappy's 274 MB, for the same
/// ingest time within the run-to-run noise. A column's dictionary is capped as for model
/// tables, so a unique column (the key, the cursor) falls back to plain encoding after a few
/// thousand values instead of hashing a megabyte of them in every row group.
fn writer_properties() -> deltalake::parquet::file::properties::WriterProperties {
    use deltalake::parquet::basic::{Compression, ZstdLevel};
    deltalake::parquet::file::properties::WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("zstd level 1 is valid")))
        .set_dictionary_page_size_limit(crate::delta::DICTIONARY_PAGE_LIMIT)
        .build()
}

/// The SQL of a bronze table's current state (see [`crate::current::current_state_sql`]).
pub async fn current_state_sql(lake: &Lake, key: &AssetKey, columns: &[String]) -> Result<Option<String>> {
    let Some(table) = lake.table(key).await? else { return Ok(None) };
    crate::current::current_state_sql(&table, key, columns).await
}

/// The progress of a first load that has not finished: the latest commit's, if it is a
/// backfill step (a later watermark or snapshot means there is nothing to resume).
pub async fn last_backfill(lake: &Lake, key: &AssetKey) -> Result<Option<Backfill>> {
    let Some(table) = lake.table(key).await? else { return Ok(None) };
    let mut history = table.history(None);
    while let Some(info) = history.next().await {
        let info = info.map_err(Error::delta(key, "history"))?;
        if let Some(b) = info.info.get("basin.backfill") {
            let rows = crate::delta::commit_rows(&info).unwrap_or(0);
            return Ok(serde_json::from_value::<Backfill>(b.clone())
                .ok()
                .map(|b| Backfill { landed: b.landed + rows, ..b }));
        }
        if info.info.contains_key("basin.watermark") || info.info.contains_key("basin.bronze") {
            return Ok(None);
        }
    }
    Ok(None)
}

/// Every file a `files` table has landed, from its commits.
pub async fn ingested_files(lake: &Lake, key: &AssetKey) -> Result<std::collections::BTreeSet<String>> {
    let mut out = std::collections::BTreeSet::new();
    let Some(table) = lake.table(key).await? else { return Ok(out) };
    let mut history = table.history(None);
    while let Some(info) = history.next().await {
        let info = info.map_err(Error::delta(key, "history"))?;
        if let Some(files) = info.info.get("basin.files").and_then(|f| f.as_array()) {
            out.extend(files.iter().filter_map(|f| f.as_str().map(str::to_string)));
        }
    }
    Ok(out)
}

/// The watermark of the latest commit that stored one: what the table's rows cover.
pub async fn last_watermark(lake: &Lake, key: &AssetKey) -> Result<Option<Watermark>> {
    let Some(table) = lake.table(key).await? else { return Ok(None) };
    let mut history = table.history(None);
    while let Some(info) = history.next().await {
        let info = info.map_err(Error::delta(key, "history"))?;
        if let Some(w) = info.info.get("basin.watermark") {
            return Ok(serde_json::from_value(w.clone()).ok());
        }
    }
    Ok(None)
}

fn date_literal(date: NaiveDate) -> datafusion::logical_expr::Expr {
    let days = (date - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32;
    lit(datafusion::common::ScalarValue::Date32(Some(days)))
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A one-partition frame over a stream of batches, read once, in its order.
pub(crate) fn read_stream(
    ctx: &SessionContext,
    stream: SendableRecordBatchStream,
) -> datafusion::error::Result<DataFrame> {
    let provider = StreamingTable::try_new(stream.schema(), vec![Arc::new(OneShot::new(stream))])?;
    ctx.read_table(Arc::new(provider))
}

/// A `PartitionStream` that hands out one record-batch stream, once.
struct OneShot {
    schema: SchemaRef,
    stream: std::sync::Mutex<Option<SendableRecordBatchStream>>,
}

impl OneShot {
    fn new(stream: SendableRecordBatchStream) -> Self {
        OneShot { schema: stream.schema(), stream: std::sync::Mutex::new(Some(stream)) }
    }
}

impl std::fmt::Debug for OneShot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OneShot")
    }
}

impl PartitionStream for OneShot {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        match self.stream.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(s) => s,
            None => {
                let schema = self.schema.clone();
                let err = futures::stream::once(async {
                    Err(datafusion::error::DataFusionError::Internal(
                        "an extraction stream can be read only once".into(),
                    ))
                });
                Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, err))
            }
        }
    }
}
