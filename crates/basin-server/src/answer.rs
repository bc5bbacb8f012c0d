//! An HTTP answer streamed batch by batch: each record batch is encoded and sent before the
//! next is computed, so the server holds one batch at a time whatever the result's size, a
//! client that goes away stops the query, and the role's statement timeout holds for the
//! whole answer. Formats: a JSON array, JSON lines, CSV with a header, an Arrow IPC stream.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::{csv, ipc, json};
use datafusion::execution::SendableRecordBatchStream;
use datafusion_postgres::pgwire::error::ErrorInfo;
use futures::StreamExt;

use crate::log::Pending;

/// The encodings an answer comes in, by the request's `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    JsonArray,
    JsonLines,
    Csv,
    ArrowStream,
}

impl Encoding {
    pub fn for_accept(accept: &str) -> Encoding {
        if accept.contains("application/vnd.apache.arrow.stream") {
            Encoding::ArrowStream
        } else if accept.contains("text/csv") {
            Encoding::Csv
        } else if accept.contains("application/x-ndjson") || accept.contains("application/jsonl") {
            Encoding::JsonLines
        } else {
            Encoding::JsonArray
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::JsonArray => "application/json",
            Encoding::JsonLines => "application/x-ndjson",
            Encoding::Csv => "text/csv",
            Encoding::ArrowStream => "application/vnd.apache.arrow.stream",
        }
    }
}

/// Whether `plan` only reads rows and filters, projects or limits them: an export, whose cost
/// is in sending the rows rather than in computing them.
pub fn is_export(plan: &datafusion::logical_expr::LogicalPlan) -> bool {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::LogicalPlan as P;
    let mut export = true;
    let _ = plan.apply(|node| {
        export &= matches!(
            node,
            P::Projection(_) | P::Filter(_) | P::TableScan(_) | P::Limit(_) | P::SubqueryAlias(_) | P::EmptyRelation(_)
        );
        Ok(if export { TreeNodeRecursion::Continue } else { TreeNodeRecursion::Stop })
    });
    export
}

/// Encodes one answer's batches, in order.
enum Encoder {
    JsonArray { started: bool },
    JsonLines,
    Csv { header: bool },
    Arrow(Box<ipc::writer::StreamWriter<Vec<u8>>>),
}

impl Encoder {
    fn new(encoding: Encoding, schema: &SchemaRef) -> Result<Encoder, ArrowError> {
        Ok(match encoding {
            Encoding::JsonArray => Encoder::JsonArray { started: false },
            Encoding::JsonLines => Encoder::JsonLines,
            Encoding::Csv => Encoder::Csv { header: true },
            Encoding::ArrowStream => Encoder::Arrow(Box::new(ipc::writer::StreamWriter::try_new(Vec::new(), schema)?)),
        })
    }

    /// The bytes of `batch` (with whatever the answer starts with, before the first).
    fn batch(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
        match self {
            Encoder::JsonArray { started } => {
                let lines = json_lines(batch)?;
                let mut out = Vec::with_capacity(lines.len() + 1);
                for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    out.push(if *started { b',' } else { b'[' });
                    *started = true;
                    out.extend_from_slice(line);
                }
                Ok(out)
            }
            Encoder::JsonLines => json_lines(batch),
            Encoder::Csv { header } => {
                let mut w = csv::WriterBuilder::new().with_header(*header).build(Vec::new());
                w.write(batch)?;
                *header = false;
                Ok(w.into_inner())
            }
            Encoder::Arrow(w) => {
                w.write(batch)?;
                Ok(std::mem::take(w.get_mut()))
            }
        }
    }

    /// The bytes that end the answer.
    fn finish(&mut self, schema: &SchemaRef) -> Result<Vec<u8>, ArrowError> {
        match self {
            Encoder::JsonArray { started: true } => Ok(b"]".to_vec()),
            Encoder::JsonArray { started: false } => Ok(b"[]".to_vec()),
            Encoder::JsonLines => Ok(Vec::new()),
            // An empty answer still names its columns.
            Encoder::Csv { header: true } => self.batch(&RecordBatch::new_empty(schema.clone())),
            Encoder::Csv { header: false } => Ok(Vec::new()),
            Encoder::Arrow(w) => {
                w.finish()?;
                Ok(std::mem::take(w.get_mut()))
            }
        }
    }
}

fn json_lines(batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let mut w = json::LineDelimitedWriter::new(Vec::new());
    w.write(batch)?;
    w.finish()?;
    Ok(w.into_inner())
}

/// Where the answer is.
struct State {
    batches: SendableRecordBatchStream,
    schema: SchemaRef,
    encoder: Encoder,
    pending: Arc<Pending>,
    deadline: Option<tokio::time::Instant>,
    done: bool,
}

impl Drop for State {
    /// An answer dropped before its end: the client went away (or the connection broke), and
    /// the query stopped with it.
    fn drop(&mut self) {
        if !self.done {
            self.pending.fail(&ErrorInfo::new(
                "ERROR".into(),
                "08006".into(),
                "the client closed the connection before the answer ended".into(),
            ));
        }
    }
}

/// The body of an answer: `batches` encoded as `encoding`, rows counted into `pending`, the
/// query stopped at `deadline`. An error after the first bytes ends the body abruptly, which
/// the client sees as a broken answer (HTTP has no way to say more once the status is sent).
pub fn stream(
    batches: SendableRecordBatchStream,
    encoding: Encoding,
    pending: Arc<Pending>,
    deadline: Option<tokio::time::Instant>,
) -> Result<impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static, ArrowError> {
    let schema = batches.schema();
    let encoder = Encoder::new(encoding, &schema)?;
    let state = State { batches, schema, encoder, pending, deadline, done: false };
    Ok(futures::stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        let next = match state.deadline {
            Some(d) => match tokio::time::timeout_at(d, state.batches.next()).await {
                Ok(next) => next,
                Err(_) => {
                    let message = "canceling statement due to statement timeout".to_string();
                    return Some((Err(state.error("57014", message)), state));
                }
            },
            None => state.batches.next().await,
        };
        let bytes = match next {
            Some(Ok(batch)) => {
                state.pending.rows.fetch_add(batch.num_rows() as i64, Ordering::Relaxed);
                state.encoder.batch(&batch)
            }
            Some(Err(e)) => {
                let (code, message) = crate::errors::classify(&e);
                return Some((Err(state.error(code, message)), state));
            }
            None => {
                state.done = true;
                state.encoder.finish(&state.schema)
            }
        };
        match bytes {
            Ok(b) => Some((Ok(Bytes::from(b)), state)),
            Err(e) => Some((Err(state.error("XX000", e.to_string())), state)),
        }
    }))
}

impl State {
    /// Record the answer's error and end it.
    fn error(&mut self, code: &str, message: String) -> std::io::Error {
        self.pending.fail(&ErrorInfo::new("ERROR".into(), code.into(), message.clone()));
        self.done = true;
        std::io::Error::other(format!("{code}: {message}"))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

    async fn answer(sql: &str, encoding: Encoding) -> String {
        let ctx = SessionContext::new();
        let batches = ctx.sql(sql).await.unwrap().execute_stream().await.unwrap();
        let (log, _entries) = tokio::sync::mpsc::unbounded_channel();
        let pending = Arc::new(Pending::new(log, "ana", "analyst", "http", sql));
        let chunks: Vec<_> = stream(batches, encoding, pending.clone(), None).unwrap().collect().await;
        assert_eq!(pending.rows.load(Ordering::Relaxed), 3);
        String::from_utf8(chunks.into_iter().flat_map(|c| c.unwrap().to_vec()).collect()).unwrap()
    }

    const THREE: &str = "SELECT * FROM (VALUES (1, 'a'), (2, NULL), (3, 'c,d')) AS t(id, name) ORDER BY id";

    #[tokio::test]
    async fn exports_are_told_from_queries_that_compute() {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t (a INT, b VARCHAR) AS VALUES (1, 'x')").await.unwrap();
        let plan = |sql: &'static str| {
            let ctx = ctx.clone();
            async move { ctx.sql(sql).await.unwrap().into_unoptimized_plan() }
        };
        assert!(is_export(&plan("SELECT * FROM t").await));
        assert!(is_export(&plan("SELECT a + 1 AS c FROM t WHERE b = 'x' LIMIT 5").await));
        assert!(!is_export(&plan("SELECT b, count(*) FROM t GROUP BY b").await));
        assert!(!is_export(&plan("SELECT * FROM t ORDER BY a").await));
        assert!(!is_export(&plan("SELECT * FROM t x JOIN t y ON x.a = y.a").await));
    }

    #[tokio::test]
    async fn every_encoding_carries_every_row() {
        assert_eq!(answer(THREE, Encoding::JsonArray).await, r#"[{"id":1,"name":"a"},{"id":2},{"id":3,"name":"c,d"}]"#);
        assert_eq!(
            answer(THREE, Encoding::JsonLines).await,
            "{\"id\":1,\"name\":\"a\"}\n{\"id\":2}\n{\"id\":3,\"name\":\"c,d\"}\n"
        );
        assert_eq!(answer(THREE, Encoding::Csv).await, "id,name\n1,a\n2,\n3,\"c,d\"\n");
    }
}
