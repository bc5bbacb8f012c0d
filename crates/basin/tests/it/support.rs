//! Running the `basin` binary against a temporary project.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Basin {
    pub dir: tempfile::TempDir,
}

pub struct Ran {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    fn from(output: Output) -> Self {
        Ran {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Panic with both streams unless the command succeeded.
    pub fn success(self) -> Self {
        assert!(self.ok, "command failed\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
        self
    }
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_basin"))
}

impl Basin {
    /// A new project made by `basin init`.
    pub fn init() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let basin = Basin { dir };
        basin.cmd(&["init", "."]).success();
        basin
    }

    /// An empty project with just a `basin.toml`.
    pub fn empty() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("basin.toml"), "[project]\nname = \"t\"\n").unwrap();
        Basin { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) -> &Self {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.args(args).current_dir(self.path()).env("NO_COLOR", "1").env_remove("BASIN_PROJECT");
        cmd
    }

    pub fn cmd(&self, args: &[&str]) -> Ran {
        Ran::from(self.command(args).output().unwrap())
    }

    /// `basin sql --format csv`, as lines (header first).
    pub fn sql(&self, query: &str) -> Vec<String> {
        self.cmd(&["sql", "--format", "csv", query]).success().stdout.lines().map(str::to_string).collect()
    }

    /// Every file under the project, relative, sorted: to prove a command wrote nothing.
    pub fn files(&self) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, base, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap().display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        walk(self.path(), self.path(), &mut out);
        out.sort();
        out
    }
}
