//! `files` sources: CSV (header, types inferred or declared per column), JSON lines and Parquet
//! files, on the local filesystem or an object store (`s3://`, `gs://`, `az://`, `file://`…),
//! one table per glob pattern. A `full` table reads every matching file, in path order, as one
//! snapshot; an `incremental` one reads only files not ingested before. Each row carries the
//! file it came from in `_file`. A malformed line fails the table naming the file and the line.
//! A file on an object store is downloaded to a temporary file, so memory does not grow with
//! its size, once per run: the copy made to infer the schema or count the rows is the one read,
//! and it is removed once read. A Parquet object is counted from its footer, read by range.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType};
use basin_core::source::{FileFormat, Source, SourceTable};
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::ParquetMetaData;

use crate::error::{Error, Result};
use crate::{BATCH_ROWS, Connector, Extract, KeyRange, Window};

/// The column naming each row's file.
pub const FILE_COLUMN: &str = "_file";

pub struct FilesConnector {
    name: String,
    tables: BTreeMap<String, FileTable>,
}

#[derive(Debug, Clone)]
struct FileTable {
    pattern: String,
    format: FileFormat,
    delimiter: u8,
    header: bool,
    /// Columns with a declared type (`[tables.columns.x] type = …`), replacing the inferred one.
    declared: Vec<(String, DataType)>,
    place: Place,
    /// Objects downloaded before they are read (to infer the schema, to count rows), by URL;
    /// reading takes the copy out, so it is removed once read.
    downloads: Arc<std::sync::Mutex<HashMap<String, Arc<tempfile::TempPath>>>>,
}

/// A downloaded copy of an object, removed when the last holder drops it.
type Copy = Option<Arc<tempfile::TempPath>>;

/// Where a table's files are.
#[derive(Debug, Clone)]
enum Place {
    Local,
    /// An object store: `root` is the URL up to the key (`s3://bucket/`), `base` the key's part
    /// before the first wildcard's folder, `keys` the pattern on whole keys.
    Store {
        store: Arc<dyn ObjectStore>,
        root: String,
        base: String,
        keys: glob::Pattern,
    },
}

impl FileTable {
    fn of(t: &SourceTable, options: &[(String, String)]) -> Result<Option<FileTable>, String> {
        let Some(pattern) = t.path.clone() else { return Ok(None) };
        let Some(format) = t.format.or_else(|| FileFormat::from_path(&pattern)) else { return Ok(None) };
        let delimiter = t.delimiter.as_deref().and_then(|d| d.bytes().next()).unwrap_or(b',');
        let declared = t
            .columns
            .iter()
            .filter_map(|(name, c)| {
                let ty = basin_core::source::ColumnType::parse(c.data_type.as_deref()?).ok()?;
                Some((name.clone(), crate::types::declared_type(ty)))
            })
            .collect();
        let place = match pattern.split_once("://") {
            None => Place::Local,
            Some((scheme, rest)) => {
                // The key pattern is not parsed as a URL: `?` and `[` are wildcards here.
                let (authority, key) = rest.split_once('/').unwrap_or((rest, ""));
                let root = format!("{scheme}://{authority}/");
                let url = url::Url::parse(&root).map_err(|e| format!("`{root}` is not a valid URL: {e}"))?;
                let (store, _) = object_store::parse_url_opts(&url, options.iter().cloned())
                    .map_err(|e| format!("cannot open `{root}`: {e}"))?;
                let keys = glob::Pattern::new(key).map_err(|e| format!("invalid pattern `{key}`: {e}"))?;
                let base = base_dir(key).to_string_lossy().into_owned();
                Place::Store { store: Arc::from(store), root, base, keys }
            }
        };
        Ok(Some(FileTable {
            pattern,
            format,
            delimiter,
            header: t.header.unwrap_or(true),
            declared,
            place,
            downloads: Arc::default(),
        }))
    }

    /// The folder (local) or key prefix (object store) the pattern's wildcards start below.
    fn base(&self) -> String {
        match &self.place {
            Place::Local => base_dir(&self.pattern).to_string_lossy().into_owned(),
            Place::Store { root, base, .. } => format!("{root}{base}"),
        }
    }

    /// A file's name below [`FileTable::base`], as incremental runs record it.
    fn relative(&self, file: &str) -> String {
        match &self.place {
            Place::Local => {
                let base = base_dir(&self.pattern);
                Path::new(file).strip_prefix(&base).unwrap_or(Path::new(file)).to_string_lossy().into_owned()
            }
            Place::Store { .. } => {
                let base = self.base();
                file.strip_prefix(&base).map(|r| r.trim_start_matches('/')).unwrap_or(file).to_string()
            }
        }
    }

    fn absolute(&self, relative: &str) -> String {
        match &self.place {
            Place::Local => base_dir(&self.pattern).join(relative).to_string_lossy().into_owned(),
            Place::Store { .. } => {
                let base = self.base();
                if base.ends_with('/') { format!("{base}{relative}") } else { format!("{base}/{relative}") }
            }
        }
    }

    /// A local path to read `file` from: the file itself, or a download of the object, kept for
    /// the read that follows (see [`FileTable::local_to_read`]).
    async fn local(&self, file: &str) -> std::result::Result<(PathBuf, Copy), String> {
        let kept = self.downloads.lock().expect("not poisoned").get(file).cloned();
        if let Some(copy) = kept {
            return Ok((copy.to_path_buf(), Some(copy)));
        }
        let (path, copy) = self.download(file).await?;
        if let Some(copy) = &copy {
            self.downloads.lock().expect("not poisoned").insert(file.to_string(), copy.clone());
        }
        Ok((path, copy))
    }

    /// As [`FileTable::local`], for the read: a kept download is handed over, to be removed
    /// once the read drops it.
    async fn local_to_read(&self, file: &str) -> std::result::Result<(PathBuf, Copy), String> {
        let kept = self.downloads.lock().expect("not poisoned").remove(file);
        match kept {
            Some(copy) => Ok((copy.to_path_buf(), Some(copy))),
            None => self.download(file).await,
        }
    }

    /// The object's key in its store, if the table is on one.
    fn key(&self, file: &str) -> Option<(Arc<dyn ObjectStore>, StorePath)> {
        let Place::Store { store, root, .. } = &self.place else { return None };
        Some((store.clone(), StorePath::from(file.strip_prefix(root.as_str()).unwrap_or(file))))
    }

    /// A Parquet object's footer, read by range without downloading the object; `None` for a
    /// local file.
    async fn parquet_footer(&self, file: &str) -> std::result::Result<Option<Arc<ParquetMetaData>>, String> {
        use parquet::file::metadata::{FooterTail, ParquetMetaDataReader};
        let Some((store, key)) = self.key(file) else { return Ok(None) };
        let size = store.head(&key).await.map_err(|e| e.to_string())?.size;
        let not_parquet = || "not a Parquet file (too short for its footer)".to_string();
        let tail_start = size.checked_sub(8).ok_or_else(not_parquet)?;
        let tail = store.get_range(&key, tail_start..size).await.map_err(|e| e.to_string())?;
        let tail: [u8; 8] = tail.as_ref().try_into().map_err(|_| not_parquet())?;
        let length = FooterTail::try_new(&tail).map_err(|e| e.to_string())?.metadata_length() as u64;
        let start = tail_start.checked_sub(length).ok_or_else(not_parquet)?;
        let footer = store.get_range(&key, start..tail_start).await.map_err(|e| e.to_string())?;
        Ok(Some(Arc::new(ParquetMetaDataReader::decode_metadata(&footer).map_err(|e| e.to_string())?)))
    }

    async fn download(&self, file: &str) -> std::result::Result<(PathBuf, Copy), String> {
        let Some((store, key)) = self.key(file) else { return Ok((PathBuf::from(file), None)) };
        let mut stream = store.get(&key).await.map_err(|e| e.to_string())?.into_stream();
        let suffix = file.rsplit_once('.').map(|(_, ext)| format!(".{ext}")).unwrap_or_default();
        let mut copy =
            tempfile::Builder::new().prefix("basin-").suffix(&suffix).tempfile().map_err(|e| e.to_string())?;
        while let Some(chunk) = stream.try_next().await.map_err(|e| e.to_string())? {
            copy.write_all(&chunk).map_err(|e| format!("cannot keep a local copy: {e}"))?;
        }
        copy.flush().map_err(|e| format!("cannot keep a local copy: {e}"))?;
        let path = copy.into_temp_path();
        Ok((path.to_path_buf(), Some(Arc::new(path))))
    }
}

impl FilesConnector {
    pub fn connect(source: &Source) -> Result<Self> {
        let options: Vec<(String, String)> =
            source.config.options.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.expose().to_string())).collect();
        let mut tables = BTreeMap::new();
        for t in &source.tables {
            let table = FileTable::of(t, &options).map_err(|problem| Error::File {
                source_name: source.name.clone(),
                table: t.name.clone(),
                file: t.path.clone().unwrap_or_default(),
                problem,
            })?;
            if let Some(table) = table {
                tables.insert(t.name.clone(), table);
            }
        }
        Ok(FilesConnector { name: source.name.clone(), tables })
    }

    fn table(&self, table: &str) -> Result<&FileTable> {
        self.tables
            .get(table)
            .ok_or_else(|| Error::NoSuchTable { source_name: self.name.clone(), table: table.to_string() })
    }

    fn file_err(&self, table: &str, file: &str) -> impl Fn(String) -> Error + use<> {
        let (source_name, table, file) = (self.name.clone(), table.to_string(), file.to_string());
        move |problem| Error::File {
            source_name: source_name.clone(),
            table: table.clone(),
            file: file.clone(),
            problem,
        }
    }

    /// The files a table's pattern matches (local paths or object URLs), in path order;
    /// `NoSuchTable` when none do.
    async fn files(&self, table: &str) -> Result<Vec<String>> {
        let t = self.table(table)?;
        let bad = self.file_err(table, &t.pattern);
        let mut files: Vec<String> = match &t.place {
            Place::Local => {
                let mut paths: Vec<PathBuf> = glob::glob(&t.pattern)
                    .map_err(|e| bad(format!("invalid pattern: {e}")))?
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| bad(e.to_string()))?;
                paths.retain(|f| f.is_file());
                paths.into_iter().map(|p| p.to_string_lossy().into_owned()).collect()
            }
            Place::Store { store, root, base, keys } => {
                let prefix = (!base.is_empty()).then(|| StorePath::from(base.as_str()));
                let listed: Vec<object_store::ObjectMeta> =
                    store.list(prefix.as_ref()).try_collect().await.map_err(|e| bad(format!("cannot list: {e}")))?;
                // `*` stays within one folder, as on a filesystem; `**` crosses folders.
                let within = glob::MatchOptions { require_literal_separator: true, ..Default::default() };
                listed
                    .into_iter()
                    .filter(|o| keys.matches_with(o.location.as_ref(), within))
                    .map(|o| format!("{root}{}", o.location))
                    .collect()
            }
        };
        files.sort();
        if files.is_empty() {
            return Err(Error::NoSuchTable {
                source_name: self.name.clone(),
                table: format!("{table} ({})", t.pattern),
            });
        }
        Ok(files)
    }

    /// The schema of the table's first file, with `_file` added.
    async fn schema(&self, table: &str, first: &str) -> Result<SchemaRef> {
        let t = self.table(table)?;
        let bad = self.file_err(table, first);
        let footer = match t.format {
            FileFormat::Parquet => t.parquet_footer(first).await.map_err(&bad)?,
            _ => None,
        };
        let inferred = match footer {
            Some(footer) => {
                let parquet = footer.file_metadata().schema_descr();
                parquet::arrow::parquet_to_arrow_schema(parquet, footer.file_metadata().key_value_metadata())
                    .map_err(|e| bad(e.to_string()))?
            }
            None => self.infer_schema(t, &bad, first).await?,
        };
        let mut fields: Vec<Field> = inferred.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
        for (name, data_type) in &t.declared {
            let field = fields.iter_mut().find(|f| f.name() == name).ok_or_else(|| {
                let names: Vec<&str> = inferred.fields().iter().map(|f| f.name().as_str()).collect();
                bad(format!(
                    "column `{name}` has a declared type but the file has no such column (it has {})",
                    names.join(", ")
                ))
            })?;
            *field = Field::new(name, data_type.clone(), true);
        }
        fields.push(Field::new(FILE_COLUMN, DataType::Utf8, false));
        Ok(Arc::new(Schema::new(fields)))
    }

    /// A file's schema as its format infers it (CSV, JSON lines) or states it (Parquet).
    async fn infer_schema(&self, t: &FileTable, bad: &impl Fn(String) -> Error, file: &str) -> Result<Schema> {
        let (path, _copy) = t.local(file).await.map_err(bad)?;
        let mut file = File::open(&path).map_err(|e| bad(e.to_string()))?;
        Ok(match t.format {
            FileFormat::Csv => {
                let format = arrow::csv::reader::Format::default().with_header(t.header).with_delimiter(t.delimiter);
                format.infer_schema(&mut file, Some(10_000)).map_err(|e| bad(e.to_string()))?.0
            }
            FileFormat::Jsonl => {
                let mut reader = BufReader::new(&mut file);
                let schema = arrow::json::reader::infer_json_schema(&mut reader, Some(10_000))
                    .map_err(|e| bad(e.to_string()))?
                    .0;
                reader.rewind().map_err(|e| bad(e.to_string()))?;
                schema
            }
            FileFormat::Parquet => ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| bad(e.to_string()))?
                .schema()
                .as_ref()
                .clone(),
        })
    }
}

/// The schema a file is parsed with: the table's without `_file`, and UTC timestamps parsed as
/// plain ones (arrow's parsers know offsets, not zone names; a value with an offset is
/// converted to UTC, one without is taken as UTC) and labelled UTC by [`with_file`].
fn reading_schema(schema: &SchemaRef) -> SchemaRef {
    let fields = schema.fields()[..schema.fields().len() - 1].iter().map(|f| match f.data_type() {
        DataType::Timestamp(unit, Some(_)) => f.as_ref().clone().with_data_type(DataType::Timestamp(*unit, None)),
        _ => f.as_ref().clone(),
    });
    Arc::new(Schema::new(fields.collect::<Vec<_>>()))
}

/// The folder a glob pattern's wildcards start below.
fn base_dir(pattern: &str) -> PathBuf {
    let mut base = PathBuf::new();
    let path = std::path::Path::new(pattern);
    let parts: Vec<_> = path.components().collect();
    for (i, part) in parts.iter().enumerate() {
        let text = part.as_os_str().to_string_lossy();
        if i + 1 == parts.len() || text.contains(['*', '?', '[']) {
            break;
        }
        base.push(part);
    }
    base
}

/// Read one file's batches (without `_file`), calling `each` on every batch.
fn read_file(
    t: &FileTable,
    path: &PathBuf,
    schema: SchemaRef,
    mut each: impl FnMut(RecordBatch) -> bool,
) -> std::result::Result<(), String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    // Line numbers in errors count from the file's first line, header included.
    let batches: Box<dyn Iterator<Item = std::result::Result<RecordBatch, arrow::error::ArrowError>>> = match t.format {
        FileFormat::Csv => Box::new(
            arrow::csv::ReaderBuilder::new(schema.clone())
                .with_header(t.header)
                .with_delimiter(t.delimiter)
                .with_batch_size(BATCH_ROWS)
                .build(file)
                .map_err(|e| e.to_string())?,
        ),
        FileFormat::Jsonl => Box::new(
            arrow::json::ReaderBuilder::new(schema.clone())
                .with_batch_size(BATCH_ROWS)
                .build(BufReader::new(file))
                .map_err(|e| e.to_string())?,
        ),
        FileFormat::Parquet => Box::new(
            ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| e.to_string())?
                .with_batch_size(BATCH_ROWS)
                .build()
                .map_err(|e| e.to_string())?,
        ),
    };
    for batch in batches {
        let batch = match batch {
            Ok(batch) => batch,
            // Some of arrow's parsers (decimals, dates) do not say where the value was.
            Err(e) if t.format == FileFormat::Csv && !e.to_string().contains("line") => {
                return Err(bad_csv_value(t, path, &schema).unwrap_or_else(|| e.to_string()));
            }
            Err(e) => return Err(e.to_string()),
        };
        if !each(batch) {
            break;
        }
    }
    Ok(())
}

/// The first value of a CSV file that does not parse as its column's type, with its line: the
/// file read again as text, each column cast leniently, the first value that became NULL.
fn bad_csv_value(t: &FileTable, path: &PathBuf, schema: &SchemaRef) -> Option<String> {
    let text = Arc::new(Schema::new(
        schema.fields().iter().map(|f| Field::new(f.name(), DataType::Utf8, true)).collect::<Vec<_>>(),
    ));
    let reader = arrow::csv::ReaderBuilder::new(text)
        .with_header(t.header)
        .with_delimiter(t.delimiter)
        .with_batch_size(BATCH_ROWS)
        .build(File::open(path).ok()?)
        .ok()?;
    let mut line = if t.header { 1 } else { 0 };
    for batch in reader {
        let batch = batch.ok()?;
        let mut first: Option<(usize, String)> = None;
        for (i, f) in schema.fields().iter().enumerate() {
            let raw = batch.column(i);
            let Ok(parsed) = arrow::compute::cast(raw, f.data_type()) else { continue };
            let bad = (0..batch.num_rows())
                .find(|&r| parsed.is_null(r) && !raw.is_null(r) && !raw.as_string::<i32>().value(r).is_empty());
            if let Some(r) = bad.filter(|r| first.as_ref().is_none_or(|(at, _)| r < at)) {
                let value = raw.as_string::<i32>().value(r);
                first = Some((r, format!("`{value}` in column `{}` is not a {}", f.name(), f.data_type())));
            }
        }
        if let Some((r, problem)) = first {
            return Some(format!("{problem}, at line {}", line + r + 1));
        }
        line += batch.num_rows();
    }
    None
}

/// A file's batch with the `_file` column added and columns matched to the table's schema.
fn with_file(batch: RecordBatch, schema: &SchemaRef, file: &str) -> std::result::Result<RecordBatch, String> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for f in schema.fields().iter().take(schema.fields().len() - 1) {
        let c = batch
            .column_by_name(f.name())
            .ok_or_else(|| format!("column `{}` of the table's first file is missing", f.name()))?;
        columns.push(if c.data_type() == f.data_type() {
            c.clone()
        } else if let (DataType::Timestamp(TimeUnit::Microsecond, None), DataType::Timestamp(_, Some(tz))) =
            (c.data_type(), f.data_type())
        {
            let utc = c.as_primitive::<TimestampMicrosecondType>().clone().with_timezone(tz.clone());
            Arc::new(utc)
        } else {
            arrow::compute::cast(c, f.data_type()).map_err(|e| format!("column `{}`: {e}", f.name()))?
        });
    }
    columns.push(Arc::new(StringArray::from(vec![file; batch.num_rows()])));
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

#[async_trait::async_trait]
impl Connector for FilesConnector {
    async fn tables(&self) -> Result<Vec<String>> {
        Ok(self.tables.keys().cloned().collect())
    }

    async fn columns(&self, table: &str) -> Result<Vec<String>> {
        let (_, schema) = self.table_schema(table).await?;
        Ok(schema.fields().iter().map(|f| f.name().clone()).collect())
    }

    async fn primary_key(&self, _table: &str) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// Rows in every matching file (Parquet from its footer; CSV and JSON lines by reading).
    async fn count(&self, table: &str, _window: Option<&Window>) -> Result<u64> {
        let (files, schema) = self.table_schema(table).await?;
        self.count_files(table, &files, &schema).await
    }

    async fn max_cursor(&self, table: &str, _cursor: &str) -> Result<Option<String>> {
        Err(Error::Unsupported { source_name: format!("{}.{table}", self.name), kind: "cursor on files" })
    }

    async fn extract_range(&self, table: &str, _window: Option<&Window>, _range: Option<&KeyRange>) -> Result<Extract> {
        let (files, schema) = self.table_schema(table).await?;
        self.read_files(table, files, schema)
    }

    /// Names relative to the pattern's fixed part (`landing/` of `landing/*.csv`), so that
    /// moving the project or the landing folder does not make old files look new.
    async fn list_files(&self, table: &str) -> Result<Option<Vec<String>>> {
        let t = self.table(table)?;
        Ok(Some(self.files(table).await?.iter().map(|f| t.relative(f)).collect()))
    }

    async fn extract_files(&self, table: &str, files: &[String]) -> Result<(Extract, u64)> {
        let t = self.table(table)?;
        let files: Vec<String> = files.iter().map(|f| t.absolute(f)).collect();
        let (_, schema) = self.table_schema(table).await?;
        let rows = self.count_files(table, &files, &schema).await?;
        Ok((self.read_files(table, files, schema)?, rows))
    }
}

impl FilesConnector {
    /// The files the table's pattern matches now, and the table's schema: its first file's.
    async fn table_schema(&self, table: &str) -> Result<(Vec<String>, SchemaRef)> {
        let files = self.files(table).await?;
        let schema = self.schema(table, &files[0]).await?;
        Ok((files, schema))
    }

    async fn count_files(&self, table: &str, files: &[String], schema: &SchemaRef) -> Result<u64> {
        let data = reading_schema(schema);
        let t = self.table(table)?.clone();
        let mut rows = 0u64;
        for f in files {
            let bad = self.file_err(table, f);
            if t.format == FileFormat::Parquet
                && let Some(footer) = t.parquet_footer(f).await.map_err(&bad)?
            {
                rows += footer.file_metadata().num_rows() as u64;
                continue;
            }
            let (path, _copy) = t.local(f).await.map_err(&bad)?;
            let (t, data) = (t.clone(), data.clone());
            let counted = tokio::task::spawn_blocking(move || {
                if t.format == FileFormat::Parquet {
                    let file = File::open(&path).map_err(|e| e.to_string())?;
                    let reader = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?;
                    return Ok(reader.metadata().file_metadata().num_rows() as u64);
                }
                let mut rows = 0u64;
                read_file(&t, &path, data, |b| {
                    rows += b.num_rows() as u64;
                    true
                })?;
                Ok(rows)
            })
            .await
            .expect("the counting task does not panic");
            rows += counted.map_err(bad)?;
        }
        Ok(rows)
    }

    /// Stream `files` with the table's `schema`, one file at a time.
    fn read_files(&self, table: &str, files: Vec<String>, schema: SchemaRef) -> Result<Extract> {
        let data = reading_schema(&schema);
        let t = self.table(table)?.clone();
        let (tx, extract, _) = crate::batch::channel(schema.clone());
        let (name, table) = (self.name.clone(), table.to_string());
        tokio::spawn(async move {
            for f in files {
                let fail =
                    |problem| Error::File { source_name: name.clone(), table: table.clone(), file: f.clone(), problem };
                let (path, copy) = match t.local_to_read(&f).await {
                    Ok(local) => local,
                    Err(problem) => {
                        let _ = tx.send(Err(fail(problem))).await;
                        return;
                    }
                };
                // `_file` is the name below the pattern's folder, as incremental runs track it.
                let relative = t.relative(&f);
                let (t2, data, schema, tx2) = (t.clone(), data.clone(), schema.clone(), tx.clone());
                let (source_name, table_name, file) = (name.clone(), table.clone(), f.clone());
                let read = tokio::task::spawn_blocking(move || {
                    let _copy = copy;
                    let mut open = true;
                    let read = read_file(&t2, &path, data, |b| {
                        let batch = with_file(b, &schema, &relative);
                        let failed = batch.is_err();
                        let sent = tx2.blocking_send(batch.map_err(|problem| Error::File {
                            source_name: source_name.clone(),
                            table: table_name.clone(),
                            file: file.clone(),
                            problem,
                        }));
                        open = sent.is_ok() && !failed;
                        open
                    });
                    read.map(|()| open)
                })
                .await
                .expect("the reading task does not panic");
                match read {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(problem) => {
                        let _ = tx.send(Err(fail(problem))).await;
                        return;
                    }
                }
            }
        });
        Ok(extract)
    }
}
