//! A Delta table version read as the Parquet files it consists of, for serving queries.
//!
//! The Delta scan replays the table's file actions through the Delta kernel on every query to
//! find the files to read (and their partition values, deletion vectors and column mapping).
//! For a table version that has none of those — every table Basin's models write — the files
//! and their row counts are fixed once the version is loaded, so the endpoint lists them once
//! per snapshot and each query plans a plain Parquet scan of them. Row groups and pages are
//! pruned by the Parquet footers and page indexes as before (cached per process); a table
//! with partitions, deletion vectors, column mapping or a reader feature other than
//! `timestampNtz` is read through the Delta scan.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::{DataFusionError, Result, Statistics};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use deltalake::DeltaTable;
use object_store::ObjectMeta;
use object_store::path::Path;
use url::Url;

/// The key of the Parquet file at `url` of `size` bytes in DataFusion's file metadata cache,
/// as the Delta scan and [`FilesTable`] read it: its location and size, with no modification
/// time (a Delta table's files never change). Footers and page indexes cached under it are
/// found by both.
pub fn cache_key(url: &Url, size: u64) -> Result<ObjectMeta> {
    let location = Path::from_url_path(url.path()).map_err(|e| DataFusionError::External(e.into()))?;
    Ok(ObjectMeta { location, size, last_modified: chrono::DateTime::UNIX_EPOCH, e_tag: None, version: None })
}

/// The Parquet files of one Delta table version, as a table.
#[derive(Debug)]
pub struct FilesTable {
    schema: SchemaRef,
    store: ObjectStoreUrl,
    files: Vec<PartitionedFile>,
    statistics: Statistics,
}

impl FilesTable {
    /// The files of `table` (at its loaded version, under `root`, the table's URL) as a table
    /// of `schema` (the Delta scan's schema of it), or `None` when reading the files alone
    /// would not read the table: partition columns (their values are not in the files),
    /// deletion vectors (rows removed from files), column mapping (files name columns
    /// otherwise) or a reader feature not known here.
    pub fn try_new(table: &DeltaTable, root: &Url, schema: SchemaRef) -> Option<FilesTable> {
        let state = table.snapshot().ok()?;
        let protocol = state.protocol();
        let readable = match protocol.min_reader_version() {
            1 => true,
            // 2 is column mapping; 3 lists the reader's features.
            3 => protocol.reader_features().is_none_or(|f| f.iter().all(|f| f.to_string() == "timestampNtz")),
            _ => false,
        };
        if !readable || !state.metadata().partition_columns().is_empty() {
            return None;
        }
        let store = ObjectStoreUrl::parse(&root[..url::Position::BeforePath]).ok()?;
        let mut files = Vec::new();
        let mut rows = Some(0usize);
        for file in state.snapshot().log_data().iter() {
            if file.deletion_vector_descriptor().is_some() {
                return None;
            }
            let url = root.join(&file.path()).ok()?;
            let size = u64::try_from(file.size()).ok()?;
            let n = file.num_records();
            rows = rows.zip(n).map(|(a, b)| a + b);
            let mut partitioned = PartitionedFile::new_from_meta(cache_key(&url, size).ok()?);
            if let Some(n) = n {
                let mut stats = Statistics::new_unknown(&schema);
                stats.num_rows = Precision::Exact(n);
                stats.total_byte_size = Precision::Inexact(size as usize);
                partitioned = partitioned.with_statistics(Arc::new(stats));
            }
            files.push(partitioned);
        }
        let mut statistics = Statistics::new_unknown(&schema);
        if let Some(rows) = rows {
            statistics.num_rows = Precision::Exact(rows);
        }
        statistics.total_byte_size =
            Precision::Inexact(files.iter().map(|f| f.object_meta.size as usize).sum::<usize>());
        Some(FilesTable { schema, store, files, statistics })
    }
}

#[async_trait::async_trait]
impl TableProvider for FilesTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Filters prune row groups and pages (the physical planner pushes them into the Parquet
    /// scan); the rows of a page are still filtered above it.
    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if self.files.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        // Files spread over the scan's partitions by size, largest first; the physical
        // optimiser splits large files into byte ranges on top of that.
        let partitions = state.config().target_partitions().clamp(1, self.files.len());
        let mut groups: Vec<(u64, Vec<PartitionedFile>)> = vec![(0, Vec::new()); partitions];
        let mut by_size: Vec<&PartitionedFile> = self.files.iter().collect();
        by_size.sort_by_key(|f| std::cmp::Reverse(f.object_meta.size));
        for file in by_size {
            let smallest = groups.iter_mut().min_by_key(|(bytes, _)| *bytes).expect("at least one group");
            smallest.0 += file.object_meta.size;
            smallest.1.push(file.clone());
        }
        let groups = groups.into_iter().filter(|(_, f)| !f.is_empty()).map(|(_, f)| FileGroup::new(f)).collect();
        // Footers and page indexes through the runtime's metadata cache, where the endpoint
        // preloads those of clustered tables.
        let runtime = state.runtime_env();
        let readers = CachedParquetFileReaderFactory::new(
            runtime.object_store(&self.store)?,
            runtime.cache_manager.get_file_metadata_cache(),
        );
        let source = ParquetSource::new(self.schema.clone())
            .with_table_parquet_options(state.table_options().parquet.clone())
            .with_parquet_file_reader_factory(Arc::new(readers));
        let config = FileScanConfigBuilder::new(self.store.clone(), Arc::new(source))
            .with_file_groups(groups)
            .with_statistics(self.statistics.clone())
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}
