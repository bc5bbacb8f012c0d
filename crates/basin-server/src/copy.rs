//! `COPY (query) TO STDOUT` and `COPY table TO STDOUT` over the wire endpoint: the query's rows
//! streamed to the client as COPY data, in text (the default), CSV (with an optional header)
//! or binary format, batch by batch. This is how `psql`'s `\copy … to 'file'` and drivers'
//! copy APIs export a result; the file, if any, is the client's, never the server's.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, Ident, ObjectName, Statement,
};
use datafusion_postgres::arrow_pg::datatypes::arrow_schema_to_pg_fields;
use datafusion_postgres::arrow_pg::encoder::encode_value;
use datafusion_postgres::pgwire;
use futures::StreamExt;
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyCsvOptions, CopyEncoder, CopyResponse, CopyTextOptions, FieldInfo};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::CopyData;

use crate::statement::Refused;

/// How the rows are written.
#[derive(Debug, Clone, PartialEq)]
enum Layout {
    Text { delimiter: char, null: String },
    Csv { delimiter: char, null: String, header: bool },
    Binary,
}

/// The query a `COPY … TO STDOUT` statement exports, and how.
pub struct CopyOut {
    pub query: Statement,
    layout: Layout,
}

impl CopyOut {
    /// Read an admitted `COPY … TO STDOUT` statement.
    pub fn of(statement: Statement) -> Result<CopyOut, Refused> {
        let Statement::Copy { source, options, legacy_options, .. } = statement else {
            return Err(Refused::unsupported("not a COPY statement"));
        };
        let query = match source {
            CopySource::Query(q) => Statement::Query(q),
            CopySource::Table { table_name, columns } => select(table_name, columns)?,
        };
        Ok(CopyOut { query, layout: layout(&options, &legacy_options)? })
    }

    /// The response streaming `batches` as COPY data.
    pub fn response(&self, batches: SendableRecordBatchStream) -> PgWireResult<CopyResponse> {
        let format = match self.layout {
            Layout::Binary => Format::UnifiedBinary,
            _ => Format::UnifiedText,
        };
        let fields = Arc::new(arrow_schema_to_pg_fields(batches.schema().as_ref(), &format, None)?);
        let columns = fields.len();
        // The CSV header goes with the first row, so that each message is one row; alone at
        // the end of an empty answer.
        let header = match &self.layout {
            Layout::Csv { header: true, delimiter, .. } => {
                let names: Vec<String> = fields.iter().map(|f| csv_quote(f.name(), *delimiter)).collect();
                Some(format!("{}\n", names.join(&delimiter.to_string())).into_bytes())
            }
            _ => None,
        };
        let unsent = Arc::new(std::sync::Mutex::new(header));
        let mut encoder = match &self.layout {
            Layout::Text { delimiter, null } => CopyEncoder::new_text(
                fields.clone(),
                CopyTextOptions { delimiter: delimiter.to_string().into(), null_string: null.as_str().into() },
            ),
            Layout::Csv { delimiter, null, .. } => CopyEncoder::new_csv(
                fields.clone(),
                CopyCsvOptions {
                    delimiter: delimiter.to_string().into(),
                    null_string: null.as_str().into(),
                    ..Default::default()
                },
            ),
            Layout::Binary => CopyEncoder::new_binary(fields.clone()),
        };
        // One encoder for the whole stream: the binary format's header comes once.
        let first = unsent.clone();
        let rows = batches
            .map(move |batch| {
                let mut copies = match batch {
                    Ok(b) => encode(&b, &fields, &mut encoder),
                    Err(e) => vec![Err(PgWireError::ApiError(Box::new(e)))],
                };
                if let Some(Ok(row)) = copies.first_mut()
                    && let Some(mut header) = first.lock().expect("lock").take()
                {
                    header.extend_from_slice(&row.data);
                    *row = CopyData::new(header.into());
                }
                futures::stream::iter(copies)
            })
            .flatten();
        let last = futures::stream::once(async move { unsent.lock().expect("lock").take() })
            .filter_map(|h| async move { h.map(|h| Ok(CopyData::new(h.into()))) });
        let data = rows.chain(last);
        let code = if self.layout == Layout::Binary { 1 } else { 0 };
        Ok(CopyResponse::new(code, columns, data))
    }
}

/// One COPY data message per row of `batch`.
fn encode(batch: &RecordBatch, fields: &[FieldInfo], encoder: &mut CopyEncoder) -> Vec<PgWireResult<CopyData>> {
    let schema = batch.schema();
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        for (i, column) in batch.columns().iter().enumerate() {
            if let Err(e) = encode_value(encoder, column, row, schema.field(i), &fields[i]) {
                out.push(Err(e));
                return out;
            }
        }
        out.push(Ok(encoder.take_copy()));
    }
    out
}

fn csv_quote(name: &str, delimiter: char) -> String {
    if name.contains([delimiter, '"', '\n', '\r']) { format!("\"{}\"", name.replace('"', "\"\"")) } else { name.into() }
}

/// `SELECT columns FROM table` (every column when `columns` is empty), parsed as a client's
/// query would be.
fn select(table: ObjectName, columns: Vec<Ident>) -> Result<Statement, Refused> {
    let columns = if columns.is_empty() {
        "*".to_string()
    } else {
        columns.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    };
    let mut parsed = crate::statement::parse(&format!("SELECT {columns} FROM {table}"))?;
    match (parsed.pop(), parsed.is_empty()) {
        (Some(q @ Statement::Query(_)), true) => Ok(q),
        _ => Err(Refused { code: "42601", message: format!("COPY {table}: not a table name") }),
    }
}

fn layout(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<Layout, Refused> {
    let mut format = "text".to_string();
    let (mut delimiter, mut null, mut header) = (None, None, false);
    for o in options {
        match o {
            CopyOption::Format(f) => format = f.value.to_ascii_lowercase(),
            CopyOption::Delimiter(d) => delimiter = Some(*d),
            CopyOption::Null(n) => null = Some(n.clone()),
            CopyOption::Header(h) => header = *h,
            CopyOption::Encoding(e) if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
            other => return Err(Refused::unsupported(format!("COPY option {other} is not supported"))),
        }
    }
    for o in legacy {
        match o {
            CopyLegacyOption::Binary => format = "binary".into(),
            CopyLegacyOption::Delimiter(d) => delimiter = Some(*d),
            CopyLegacyOption::Null(n) => null = Some(n.clone()),
            CopyLegacyOption::Csv(csv) => {
                format = "csv".into();
                for c in csv {
                    match c {
                        CopyLegacyCsvOption::Header => header = true,
                        other => return Err(Refused::unsupported(format!("COPY option {other} is not supported"))),
                    }
                }
            }
            other => return Err(Refused::unsupported(format!("COPY option {other} is not supported"))),
        }
    }
    match format.as_str() {
        "text" => Ok(Layout::Text { delimiter: delimiter.unwrap_or('\t'), null: null.unwrap_or_else(|| "\\N".into()) }),
        "csv" => Ok(Layout::Csv { delimiter: delimiter.unwrap_or(','), null: null.unwrap_or_default(), header }),
        "binary" => Ok(Layout::Binary),
        other => Err(Refused::unsupported(format!("COPY format {other} is not supported"))),
    }
}
