//! The query log: one entry per statement, written to the metadata store in batches by a
//! background task so that logging never waits on the store while a client waits.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use basin_meta::{MetaStore, QueryLogEntry};
use datafusion_postgres::pgwire::error::ErrorInfo;
use tokio::sync::mpsc;

pub type Sender = mpsc::UnboundedSender<QueryLogEntry>;

/// Entries written to the store at most at once.
const BATCH: usize = 512;

/// How long the writer gathers entries after the first of a batch arrives: an entry reaches
/// the store (and `basin.query_log`) this long after its statement ends, at most.
const GATHER: std::time::Duration = std::time::Duration::from_millis(100);

/// Start the task writing entries; it ends when every sender is gone.
pub fn start(store: Arc<dyn MetaStore>) -> (Sender, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<QueryLogEntry>();
    let task = tokio::spawn(async move {
        let mut batch = Vec::new();
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            // Under load statements end one after another: the entries of the next moment go
            // into the same write, so the store takes one transaction per moment, not per
            // statement.
            let until = tokio::time::Instant::now() + GATHER;
            while batch.len() < BATCH {
                let room = BATCH - batch.len();
                match tokio::time::timeout_at(until, rx.recv_many(&mut batch, room)).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            if let Err(e) = store.add_query_log(&batch).await {
                tracing::warn!(error = %e, entries = batch.len(), "could not record the query log");
            }
            batch.clear();
        }
    });
    (tx, task)
}

/// A statement being served: logged when the last reference to it goes (its rows sent, or
/// its error returned).
pub struct Pending {
    sender: Sender,
    started: Instant,
    at: chrono::DateTime<chrono::Utc>,
    user: String,
    role: String,
    protocol: &'static str,
    query: String,
    pub rows: AtomicI64,
    /// Logged only if it fails (a statement parsed, to be logged when it executes).
    only_failure: bool,
    /// Bytes the statement's scans read.
    pub bytes: Arc<crate::meter::Meter>,
    error: Mutex<Option<(String, String)>>,
}

impl Pending {
    pub fn new(sender: Sender, user: &str, role: &str, protocol: &'static str, query: &str) -> Pending {
        Pending {
            sender,
            started: Instant::now(),
            at: chrono::Utc::now(),
            user: user.to_string(),
            role: role.to_string(),
            protocol,
            query: query.to_string(),
            rows: AtomicI64::new(0),
            only_failure: false,
            bytes: Default::default(),
            error: Mutex::new(None),
        }
    }

    /// A statement logged only if it fails.
    pub fn unlogged(sender: Sender, user: &str, role: &str, protocol: &'static str, query: &str) -> Pending {
        let mut p = Pending::new(sender, user, role, protocol, query);
        p.only_failure = true;
        p
    }

    /// Record that the statement was refused before it was planned.
    pub fn refuse(&self, info: &ErrorInfo) {
        let message = format!("refused: {}", info.message);
        self.error.lock().expect("lock").get_or_insert_with(|| (info.code.clone(), message));
    }

    /// Record the statement's (first) error.
    pub fn fail(&self, info: &ErrorInfo) {
        self.error.lock().expect("lock").get_or_insert_with(|| (info.code.clone(), info.message.clone()));
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let error = self.error.lock().expect("lock").take();
        if self.only_failure && error.is_none() {
            return;
        }
        let outcome = match &error {
            None => "ok",
            // Not the role's to read (SQLSTATE insufficient_privilege).
            Some((code, _)) if code == "42501" => "denied",
            // Not a statement the endpoint serves (a write, a setting, a file).
            Some((_, message)) if message.starts_with("refused: ") => "refused",
            Some(_) => "error",
        };
        crate::metrics::statement(self.protocol, outcome, self.started.elapsed().as_secs_f64());
        let _ = self.sender.send(QueryLogEntry {
            at: self.at,
            user: std::mem::take(&mut self.user),
            role: std::mem::take(&mut self.role),
            protocol: self.protocol.to_string(),
            query: std::mem::take(&mut self.query),
            duration_ms: self.started.elapsed().as_millis() as i64,
            rows: self.rows.load(Ordering::Relaxed),
            bytes_scanned: Some(self.bytes.0.load(Ordering::Relaxed)),
            sqlstate: error.as_ref().map(|e| e.0.clone()),
            error: error.map(|e| e.1),
        });
    }
}
