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
//!
//! A lookup by one column's value ([`FilesTable::lookup`]) reads only the pages whose
//! page-index statistics admit the value, without planning a scan: what the endpoint's point
//! lookups by a table's clustering key read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions, new_empty_array};
use datafusion::arrow::compute::kernels::cmp::{gt_eq, lt_eq};
use datafusion::arrow::compute::{can_cast_types, cast, concat};
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::{DataFusionError, Result, Statistics};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::parquet;
use datafusion::parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use datafusion::parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, RowSelection, RowSelector};
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::scalar::ScalarValue;
use deltalake::DeltaTable;
use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt};
use object_store::ObjectMeta;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use url::Url;

/// The key of the Parquet file at `url` of `size` bytes in DataFusion's file metadata cache,
/// as the Delta scan and [`FilesTable`] read it: its location and size, with no modification
/// time (a Delta table's files never change). Footers and page indexes cached under it are
/// found by both.
pub fn cache_key(url: &Url, size: u64) -> Result<ObjectMeta> {
    let location = Path::from_url_path(url.path()).map_err(|e| DataFusionError::External(e.into()))?;
    Ok(ObjectMeta { location, size, last_modified: chrono::DateTime::UNIX_EPOCH, e_tag: None, version: None })
}

/// The footer of the Parquet file `meta` (keyed as [`cache_key`]) with its page index, from
/// `cache` or read from `store` into it.
pub async fn page_indexed_metadata(
    store: &dyn ObjectStore,
    meta: &ObjectMeta,
    cache: &Arc<FileMetadataCache>,
) -> Result<Arc<ParquetMetaData>> {
    DFParquetMetadata::new(store, meta)
        .with_file_metadata_cache(Some(cache.clone()))
        .with_page_index_policy(Some(PageIndexPolicy::Optional))
        .fetch_metadata()
        .await
}

/// The Parquet files of one Delta table version, as a table.
#[derive(Debug)]
pub struct FilesTable {
    schema: SchemaRef,
    store: ObjectStoreUrl,
    files: Vec<PartitionedFile>,
    statistics: Statistics,
    /// The pages of the files by column, for lookups (`None`: that column has no page index
    /// to look up by), built at the first lookup by that column.
    keys: Mutex<HashMap<String, Option<Arc<KeyPages>>>>,
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
        Some(FilesTable { schema, store, files, statistics, keys: Mutex::default() })
    }

    /// The rows of the pages that may hold rows whose `column` equals `value` (those whose
    /// page-index minimum and maximum admit it; every other row of the table is skipped),
    /// with the table's columns `projection`, in that order and of the table's types. The
    /// rows still need filtering by the value. `None` when that cannot be read so: a file
    /// without a page index for the column, a column whose type is not compared here or
    /// whose values the file holds as another type, a value of another type than the
    /// column's that does not convert exactly, a file lacking a projected column, or pages
    /// of more than [`LOOKUP_ROWS`] rows that may hold the value (a column the table is not
    /// clustered by: a scan reads that many in parallel, streaming, within the memory limit).
    pub async fn lookup(
        &self,
        runtime: &RuntimeEnv,
        column: &str,
        value: &ScalarValue,
        projection: &[usize],
    ) -> Result<Option<Lookup>> {
        let Some(pages) = self.key_pages(runtime, column).await? else { return Ok(None) };
        let Some(value) = exact_cast(value, &pages.data_type) else { return Ok(None) };
        let value = value.to_scalar()?;
        let min_fits = lt_eq(&pages.mins, &value)?;
        let max_fits = gt_eq(&pages.maxes, &value)?;
        // An unknown bound (null) admits the value.
        let admits =
            |i: usize| (min_fits.is_null(i) || min_fits.value(i)) && (max_fits.is_null(i) || max_fits.value(i));
        let mut by_file: Vec<(usize, Vec<&Page>)> = Vec::new();
        let mut rows = 0;
        for (_, page) in pages.pages.iter().enumerate().filter(|(i, _)| admits(*i)) {
            rows += page.rows;
            if rows > LOOKUP_ROWS {
                return Ok(None);
            }
            match by_file.last_mut() {
                Some((file, wanted)) if *file == page.file => wanted.push(page),
                _ => by_file.push((page.file, vec![page])),
            }
        }
        let fields: Vec<&Field> = projection.iter().map(|i| self.schema.field(*i)).collect();
        let schema = Arc::new(self.schema.project(projection)?);
        let store = runtime.object_store(&self.store)?;
        let read = Arc::new(AtomicU64::new(0));
        let mut batches = Vec::new();
        for (file, pages_of_file) in by_file {
            let file_pages = &pages.files[file];
            let reader_schema = file_pages.metadata.schema();
            // The projected columns in the file's order (the reader returns them so).
            let mut roots = Vec::with_capacity(fields.len());
            for field in &fields {
                let Some((i, found)) = reader_schema.column_with_name(field.name()) else { return Ok(None) };
                if found.data_type() != field.data_type() && !can_cast_types(found.data_type(), field.data_type()) {
                    return Ok(None);
                }
                roots.push(i);
            }
            let mut in_file_order = roots.clone();
            in_file_order.sort_unstable();
            in_file_order.dedup();
            // The row groups holding wanted pages, and within them the wanted pages' rows.
            let mut row_groups: Vec<usize> = Vec::new();
            let mut selectors = Vec::new();
            let mut at = 0usize; // row within the current row group
            for page in pages_of_file {
                if row_groups.last() != Some(&page.row_group) {
                    if let Some(last) = row_groups.last() {
                        let rows = file_pages.metadata.metadata().row_group(*last).num_rows() as usize;
                        selectors.push(RowSelector::skip(rows - at));
                    }
                    row_groups.push(page.row_group);
                    at = 0;
                }
                if page.first_row > at {
                    selectors.push(RowSelector::skip(page.first_row - at));
                }
                selectors.push(RowSelector::select(page.rows));
                at = page.first_row + page.rows;
            }
            let reader = StoreReader {
                store: store.clone(),
                location: file_pages.location.clone(),
                local: file_pages.local_file(&self.store)?,
                read: read.clone(),
            };
            let mask = ProjectionMask::roots(file_pages.metadata.parquet_schema(), in_file_order.iter().copied());
            let mut stream = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, file_pages.metadata.clone())
                .with_projection(mask)
                .with_row_groups(row_groups)
                .with_row_selection(RowSelection::from(selectors))
                .build()?;
            while let Some(batch) = stream.next().await.transpose()? {
                let mut columns = Vec::with_capacity(fields.len());
                for (root, field) in roots.iter().zip(&fields) {
                    let at = in_file_order.binary_search(root).expect("a projected column");
                    let column = batch.column(at);
                    columns.push(match column.data_type() == field.data_type() {
                        true => column.clone(),
                        false => cast(column, field.data_type())?,
                    });
                }
                let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
                batches.push(RecordBatch::try_new_with_options(schema.clone(), columns, &options)?);
            }
        }
        Ok(Some(Lookup { batches, bytes_read: read.load(Ordering::Relaxed) }))
    }

    /// The pages of every file by `column`, listed at the first lookup by it.
    async fn key_pages(&self, runtime: &RuntimeEnv, column: &str) -> Result<Option<Arc<KeyPages>>> {
        if let Some(pages) = self.keys.lock().expect("lock").get(column) {
            return Ok(pages.clone());
        }
        let pages = self.list_pages(runtime, column).await?.map(Arc::new);
        self.keys.lock().expect("lock").insert(column.to_string(), pages.clone());
        Ok(pages)
    }

    async fn list_pages(&self, runtime: &RuntimeEnv, column: &str) -> Result<Option<KeyPages>> {
        let Some((_, field)) = self.schema.column_with_name(column) else { return Ok(None) };
        if !comparable(field.data_type()) {
            return Ok(None);
        }
        let store = runtime.object_store(&self.store)?;
        let cache = runtime.cache_manager.get_file_metadata_cache();
        let (mut files, mut pages, mut mins, mut maxes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (n, file) in self.files.iter().enumerate() {
            let metadata = page_indexed_metadata(store.as_ref(), &file.object_meta, &cache).await?;
            let (Some(column_index), Some(offset_index)) = (metadata.column_index(), metadata.offset_index()) else {
                return Ok(None);
            };
            let (column_index, offset_index) = (column_index.clone(), offset_index.clone());
            let metadata = ArrowReaderMetadata::try_new(metadata, ArrowReaderOptions::new())?;
            if metadata.schema().column_with_name(column).is_none() {
                return Ok(None);
            }
            let converter = StatisticsConverter::try_new(column, metadata.schema(), metadata.parquet_schema())?;
            let Some(leaf) = converter.parquet_column_index() else { return Ok(None) };
            if converter.arrow_field().data_type() != field.data_type() {
                return Ok(None);
            }
            let row_groups: Vec<usize> = (0..metadata.metadata().num_row_groups()).collect();
            mins.push(converter.data_page_mins(&column_index, &offset_index, &row_groups)?);
            maxes.push(converter.data_page_maxes(&column_index, &offset_index, &row_groups)?);
            for &row_group in &row_groups {
                let locations = offset_index[row_group][leaf].page_locations();
                let rows = metadata.metadata().row_group(row_group).num_rows() as usize;
                for (i, location) in locations.iter().enumerate() {
                    let first_row = location.first_row_index as usize;
                    let end = locations.get(i + 1).map_or(rows, |next| next.first_row_index as usize);
                    pages.push(Page { file: n, row_group, first_row, rows: end - first_row });
                }
            }
            files.push(FilePages { location: file.object_meta.location.clone(), local: OnceLock::new(), metadata });
        }
        let data_type = field.data_type().clone();
        let concat_all = |arrays: &[ArrayRef]| -> Result<ArrayRef> {
            match arrays {
                [] => Ok(new_empty_array(&data_type)),
                _ => Ok(concat(&arrays.iter().map(|a| a.as_ref()).collect::<Vec<_>>())?),
            }
        };
        let (mins, maxes) = (concat_all(&mins)?, concat_all(&maxes)?);
        if mins.len() != pages.len() || maxes.len() != pages.len() {
            return Ok(None);
        }
        Ok(Some(KeyPages { data_type, files, pages, mins, maxes }))
    }
}

/// Rows a [`FilesTable::lookup`] reads at most: a few pages of a table clustered by the
/// column, or about three of an unclustered table's pages (20,000 rows each).
pub const LOOKUP_ROWS: usize = 64 * 1024;

/// What a [`FilesTable::lookup`] read.
#[derive(Debug)]
pub struct Lookup {
    /// The rows of the pages read (to be filtered by the value looked up).
    pub batches: Vec<RecordBatch>,
    /// Bytes read from the files.
    pub bytes_read: u64,
}

/// The data pages of a table's files by one column, with that column's least and greatest
/// value in each (null where unknown), in file, row group and row order.
#[derive(Debug)]
struct KeyPages {
    data_type: DataType,
    files: Vec<FilePages>,
    pages: Vec<Page>,
    mins: ArrayRef,
    maxes: ArrayRef,
}

#[derive(Debug)]
struct FilePages {
    location: Path,
    /// The file opened, when the lake is on the local file system (opened at the first
    /// lookup reading it).
    local: OnceLock<Arc<std::fs::File>>,
    /// The file's footer with its page index, and its schema as Arrow.
    metadata: ArrowReaderMetadata,
}

impl FilePages {
    /// The file, opened, when the table's store (`store`) is the local file system: a lookup
    /// reads its pages in place rather than through the object store, which hands each read
    /// to a blocking thread and back (more than the read itself costs for a page the
    /// operating system has cached).
    fn local_file(&self, store: &ObjectStoreUrl) -> Result<Option<Arc<std::fs::File>>> {
        if store.as_str() != "file:///" {
            return Ok(None);
        }
        if let Some(file) = self.local.get() {
            return Ok(Some(file.clone()));
        }
        let path = object_store::local::LocalFileSystem::new()
            .path_to_filesystem(&self.location)
            .map_err(|e| DataFusionError::External(e.into()))?;
        let file = std::fs::File::open(&path)
            .map_err(|e| DataFusionError::Execution(format!("cannot open {}: {e}", path.display())))?;
        Ok(Some(self.local.get_or_init(|| Arc::new(file)).clone()))
    }
}

/// One data page of the key column: rows `first_row..first_row + rows` of a row group.
#[derive(Debug)]
struct Page {
    file: usize,
    row_group: usize,
    first_row: usize,
    rows: usize,
}

/// Types whose order the page statistics give as Arrow compares them (floating point is not:
/// NaN).
fn comparable(t: &DataType) -> bool {
    use DataType::*;
    t.is_integer()
        || matches!(t, Utf8 | LargeUtf8 | Utf8View | Date32 | Date64 | Timestamp(_, _) | Decimal128(_, _) | Boolean)
}

/// `value` as `to`, when it converts to it and back unchanged.
fn exact_cast(value: &ScalarValue, to: &DataType) -> Option<ScalarValue> {
    if value.is_null() {
        return None;
    }
    let cast = value.cast_to(to).ok()?;
    (cast.cast_to(&value.data_type()).ok()? == *value && !cast.is_null()).then_some(cast)
}

/// A file of the table's store read by byte ranges, counting the bytes it reads; its footer
/// is known before it is read ([`FilePages::metadata`]).
struct StoreReader {
    store: Arc<dyn ObjectStore>,
    location: Path,
    /// The file itself, on the local file system.
    local: Option<Arc<std::fs::File>>,
    read: Arc<AtomicU64>,
}

impl StoreReader {
    fn read_local(
        file: &std::fs::File,
        location: &Path,
        range: std::ops::Range<u64>,
    ) -> parquet::errors::Result<Bytes> {
        use std::os::unix::fs::FileExt;
        let mut buffer = vec![0; (range.end - range.start) as usize];
        file.read_exact_at(&mut buffer, range.start)
            .map_err(|e| ParquetError::General(format!("cannot read {location} at {range:?}: {e}")))?;
        Ok(buffer.into())
    }
}

fn store_error(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for StoreReader {
    fn get_bytes(&mut self, range: std::ops::Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.read.fetch_add(range.end - range.start, Ordering::Relaxed);
        if let Some(file) = &self.local {
            return futures::future::ready(Self::read_local(file, &self.location, range)).boxed();
        }
        async move { self.store.get_range(&self.location, range).await.map_err(store_error) }.boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        self.read.fetch_add(ranges.iter().map(|r| r.end - r.start).sum(), Ordering::Relaxed);
        if let Some(file) = &self.local {
            let read = ranges.into_iter().map(|r| Self::read_local(file, &self.location, r)).collect();
            return futures::future::ready(read).boxed();
        }
        async move { self.store.get_ranges(&self.location, &ranges).await.map_err(store_error) }.boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        let location = self.location.clone();
        async move { Err(ParquetError::General(format!("the footer of {location} is read before its pages"))) }.boxed()
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
