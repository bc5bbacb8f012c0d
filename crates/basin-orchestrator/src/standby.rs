//! Standby workers for the subprocess launcher: `basin worker --standby` processes started
//! ahead of their runs, each waiting on its stdin for the id of one run. Handing a claimed run
//! to one skips the process start, the runtime and the store connection, which is most of a
//! launch when many runs are released at once. Each still does exactly one run and exits, so a
//! run keeps its own process, memory and failure domain; the project itself is read after the
//! run is taken, so a standby never runs stale models.
//!
//! A standby's output goes to `standby-<daemon pid>-<n>.log` until it is given a run; the file
//! is then renamed to the run's log (the process keeps writing to the same file). A standby
//! whose stdin closes (its daemon stopped or died) exits without doing anything.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, Command};

struct Standby {
    child: Child,
    stdin: ChildStdin,
    log: PathBuf,
}

pub(crate) struct Pool {
    target: usize,
    idle: Vec<Standby>,
    started: u64,
}

/// Standby workers started per tick while the pool is short: a burst of runs is not slowed by
/// the processes replacing them.
const REFILL_PER_TICK: usize = 4;

impl Pool {
    pub(crate) fn new(target: usize, logs: &Path) -> Pool {
        remove_orphaned_logs(logs);
        Pool { target, idle: Vec::new(), started: 0 }
    }

    /// Hand `run_id` to an idle standby worker: its process, or `None` when no live one is
    /// idle.
    pub(crate) async fn hand(&mut self, run_id: &str, logs: &Path) -> Option<Child> {
        while let Some(mut s) = self.idle.pop() {
            if !matches!(s.child.try_wait(), Ok(None)) {
                let _ = std::fs::remove_file(&s.log);
                continue;
            }
            let log = logs.join(format!("{run_id}.log"));
            let handed = std::fs::rename(&s.log, &log).is_ok()
                && s.stdin.write_all(format!("{run_id}\n").as_bytes()).await.is_ok()
                && s.stdin.flush().await.is_ok();
            if handed {
                return Some(s.child);
            }
            let _ = s.child.start_kill();
        }
        None
    }

    /// Drop idle standbys that died, and start a few toward the target.
    pub(crate) fn refill(&mut self, program: &Path, project: &Path, logs: &Path) -> std::io::Result<()> {
        self.idle.retain_mut(|s| {
            let alive = matches!(s.child.try_wait(), Ok(None));
            if !alive {
                let _ = std::fs::remove_file(&s.log);
            }
            alive
        });
        let missing = self.target.saturating_sub(self.idle.len()).min(REFILL_PER_TICK);
        for _ in 0..missing {
            self.started += 1;
            std::fs::create_dir_all(logs)?;
            let log = logs.join(format!("standby-{}-{}.log", std::process::id(), self.started));
            let file = std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
            let mut child = Command::new(program)
                .arg("worker")
                .arg("--standby")
                .arg("-C")
                .arg(project)
                .stdin(Stdio::piped())
                .stdout(Stdio::from(file.try_clone()?))
                .stderr(Stdio::from(file))
                // Like every worker: a Ctrl-C meant for the daemon does not reach it.
                .process_group(0)
                .spawn()?;
            let stdin = child.stdin.take().expect("stdin is piped");
            self.idle.push(Standby { child, stdin, log });
        }
        Ok(())
    }

    pub(crate) fn idle(&self) -> usize {
        self.idle.len()
    }
}

impl Drop for Pool {
    /// Idle standbys hold no run: they go with their daemon.
    fn drop(&mut self) {
        for s in &mut self.idle {
            let _ = s.child.start_kill();
            let _ = std::fs::remove_file(&s.log);
        }
    }
}

/// Standby logs left by a daemon that was killed: empty, and their daemon is gone.
fn remove_orphaned_logs(logs: &Path) {
    let Ok(entries) = std::fs::read_dir(logs) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("standby-").and_then(|r| r.split('-').next()) else { continue };
        let gone = Path::new("/proc").is_dir() && !Path::new("/proc").join(pid).exists();
        if gone && e.metadata().is_ok_and(|m| m.len() == 0) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
