//! The commands: `init`, `demo`, `validate`, `plan`, `run`, `ingest`, `sql`, `restore`, `history`,
//! `runs`, `cancel`, `daemon`, `worker`. Every command but `init` and `validate` loads the project and refuses to act
//! on an invalid one.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use basin_core::{AssetKey, Project};

use crate::open::{load, open, print_diagnostics, select, serve};
use basin_engine::{AsOf, Lake};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "basin", version, about = "A lakehouse data platform in one binary.")]
pub struct Cli {
    /// The project directory (default: the nearest directory upward with a basin.toml).
    #[arg(long, short = 'C', global = true, env = "BASIN_PROJECT")]
    project: Option<PathBuf>,
    /// Diagnostics on stderr as `text`, or `json`: one JSON object per line, with the run id
    /// and asset of the span it happened in, for log shippers. `RUST_LOG` (or `BASIN_LOG`)
    /// filters them, e.g. `RUST_LOG=basin_engine=debug`.
    #[arg(long, global = true, value_enum, env = "BASIN_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Write a new project: basin.toml, sources/, models/ and a working example.
    Init {
        /// Where to create it (default: the current directory).
        dir: Option<PathBuf>,
        /// The project's name (default: the directory's name).
        #[arg(long)]
        name: Option<String>,
        /// `telecom`: the reference project of `basin demo` (a billing database to bronze,
        /// silver and gold) instead of the small example.
        #[arg(long, value_enum)]
        template: Option<Template>,
    },
    /// The whole platform on a generated telecom billing database, embedded, no server needed:
    /// writes the reference project, generates its source, and runs several nights.
    Demo {
        /// Where to write the project (an earlier demo there is replaced).
        #[arg(long, default_value = "basin-demo")]
        dir: PathBuf,
        /// Data size: 1 is about 1M invoice items, 28 the seed's 27.9M.
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Nightly cycles to run: the source changes between them.
        #[arg(long, default_value_t = 3)]
        days: u32,
        /// The generator's seed: the same seed and scale give the same data.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Generate the source into this MySQL/MariaDB or PostgreSQL database instead of an
        /// embedded SQLite file. Its tables are dropped and re-created.
        #[arg(long)]
        source: Option<String>,
        /// How many assets to build at once (default: one per CPU core).
        #[arg(long)]
        concurrency: Option<usize>,
        /// On the last night, plant a realistic defect in the source (invoice items pointing
        /// at a charge type that does not exist) to see a check catch it and stop gold.
        #[arg(long)]
        inject_fault: bool,
    },
    /// Check the whole project and report every problem with its file:line:col: configuration,
    /// SQL syntax, unknown tables, and (planning every model against the lake's tables and the
    /// schemas upstream models plan to) unknown columns, ambiguous references and type errors.
    Validate {
        /// Also connect to every source: check its tables and key columns exist, and check the
        /// models that read tables not landed yet against the sources' catalogs.
        #[arg(long)]
        connect: bool,
    },
    /// Show what `run` would do, in order, and why. Writes nothing.
    Plan {
        /// Which assets: `x`, `+x`, `x+`, `tag:t`, `schema:s`, `*`; several separated by spaces or commas.
        #[arg(default_value = "*")]
        selection: Vec<String>,
        #[arg(long)]
        full_refresh: bool,
    },
    /// Materialise the selected assets in dependency order.
    Run {
        #[arg(default_value = "*")]
        selection: Vec<String>,
        /// Rebuild incremental models from scratch instead of merging.
        #[arg(long)]
        full_refresh: bool,
        /// How many assets to build at once (default: [run] concurrency in basin.toml).
        #[arg(long)]
        concurrency: Option<usize>,
        /// Do not run now: queue the run for `basin daemon` and print its id.
        #[arg(long)]
        queue: bool,
        /// With --queue: higher runs first.
        #[arg(long, default_value_t = 0, requires = "queue")]
        priority: i64,
        /// With --queue: a `key=value` tag the queue's limits see (repeatable).
        #[arg(long = "tag", requires = "queue")]
        tags: Vec<String>,
        /// The days daily-partitioned models build: `2024-03-01` or `2024-03-01..2024-03-31`
        /// (default: yesterday). Only daily-partitioned models may be selected with it.
        #[arg(long)]
        partition: Option<String>,
        /// Let a full replace shrink a table by more than `max_shrink`, or empty it, and a
        /// bronze table take a source column whose type narrowed (the guardrails refuse such
        /// writes otherwise, before they commit).
        #[arg(long)]
        allow_shrink: bool,
        /// Land a source table past a breaking schema change: a column removed in the source
        /// stays, NULL from now on; a column whose type no longer fits lands in a new column
        /// alongside (`amount__v2`). `SOURCE.TABLE` or its bronze key (repeatable).
        #[arg(long = "accept-schema-change", value_name = "SOURCE.TABLE")]
        accept_schema_change: Vec<String>,
        /// `text` (progress and a summary table) or `json` (one JSON object per run event on
        /// stdout, for scripts).
        #[arg(long, value_enum, default_value = "text")]
        format: RunFormat,
    },
    /// Evaluate the checks of the selected assets on their current data, without building
    /// anything. Results are stored (`basin.check_results`); exits non-zero if an `error`
    /// check fails.
    Check {
        #[arg(default_value = "*")]
        selection: Vec<String>,
    },
    /// Build daily-partitioned models over a range of days, in runs of at most --per-run days
    /// (each one query over its days). Progress is kept in the metadata store: `--status ID`
    /// shows it, `--resume ID` requeues what did not succeed and goes on.
    Backfill {
        /// The daily-partitioned models, as for `run`.
        #[arg(required_unless_present_any = ["resume", "status"])]
        selection: Vec<String>,
        /// First day (YYYY-MM-DD).
        #[arg(long, required_unless_present_any = ["resume", "status"])]
        from: Option<String>,
        /// Last day, included.
        #[arg(long, required_unless_present_any = ["resume", "status"])]
        to: Option<String>,
        #[arg(long, default_value_t = 31)]
        per_run: u64,
        /// Leave the runs to `basin daemon` instead of doing them in this process.
        #[arg(long)]
        queue: bool,
        #[arg(long, value_name = "ID", conflicts_with_all = ["selection", "from", "to", "status"])]
        resume: Option<String>,
        #[arg(long, value_name = "ID", conflicts_with_all = ["selection", "from", "to"])]
        status: Option<String>,
    },
    /// The scheduler: queues schedule ticks, launches queued runs within the queue's limits,
    /// watches their workers, retries and times them out. Runs until interrupted.
    Daemon {
        /// Also serve the lake (`basin serve`'s endpoints, `[serve]`) from the daemon's process.
        #[arg(long)]
        serve: bool,
        /// Also answer `GET /metrics` (Prometheus, to the users of `basin.toml`) on this address,
        /// e.g. `127.0.0.1:9464`, without serving the lake.
        #[arg(long)]
        metrics_listen: Option<String>,
    },
    /// Do one queued run (what the daemon launches; also for `launcher = "command"`).
    Worker {
        #[arg(long, required_unless_present = "standby")]
        run_id: Option<String>,
        /// Start ahead of the run and read its id from stdin (the daemon's standby workers).
        #[arg(long, hide = true, conflicts_with = "run_id")]
        standby: bool,
    },
    /// Land source tables in bronze: `SOURCE` (all its tables) or `SOURCE.TABLE`, several allowed.
    Ingest {
        #[arg(required = true)]
        tables: Vec<String>,
        /// Land a full snapshot of zero rows even when the previous one had rows, and rows of a
        /// source column whose type narrowed (both refused otherwise, before anything lands).
        #[arg(long)]
        allow_shrink: bool,
        /// Land past a breaking schema change of this table: a column removed in the source
        /// stays, NULL from now on; a column whose type no longer fits lands in a new column
        /// alongside (`amount__v2`). Recorded in the commit (`basin.schema_changes`, shown by
        /// `basin history`). `SOURCE.TABLE` or its bronze key (repeatable).
        #[arg(long = "accept-schema-change", value_name = "SOURCE.TABLE")]
        accept_schema_change: Vec<String>,
        /// `text` or `json` (one JSON object per run event on stdout).
        #[arg(long, value_enum, default_value = "text")]
        format: RunFormat,
    },
    /// Run a SQL query over the lake; the query is read from stdin when not given.
    Sql {
        query: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Read every table as of a version number or an RFC 3339 timestamp.
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Serve every asset over the PostgreSQL wire protocol and HTTP, to the users and roles
    /// of `basin.toml` (`[serve]`, `[users.*]`, `[roles.*]`). Read-only: clients may query,
    /// `EXPLAIN`, `SHOW`, `COPY (query) TO STDOUT` and set a few session variables; every
    /// write, definition, engine setting, file or URL is refused (SQLSTATE 42501). HTTP:
    /// `POST /api/sql` with `Content-Type: application/sql`, `GET /metrics` for Prometheus;
    /// other sites' pages are refused.
    Serve {
        /// Address of the PostgreSQL endpoint (overrides `serve.listen`).
        #[arg(long)]
        listen: Option<String>,
        /// Address of the HTTP API (overrides `serve.http_listen`).
        #[arg(long)]
        http_listen: Option<String>,
        /// Read a password from stdin and print its SCRAM-SHA-256 verifier, for a user's
        /// `password` in basin.toml; serves nothing.
        #[arg(long)]
        hash_password: bool,
    },
    /// Roll an asset back to an earlier version or time, as a new commit (history is kept).
    Restore {
        asset: String,
        #[arg(long, conflicts_with = "to_timestamp", required_unless_present = "to_timestamp")]
        to_version: Option<u64>,
        #[arg(long)]
        to_timestamp: Option<String>,
    },
    /// Take a table out of the lake that nothing in the project defines any more (a model
    /// file deleted or renamed, a source table no longer listed; `validate` and `plan` name
    /// them). Nothing is deleted: the table moves, history and all, to
    /// `<storage root>/_dropped/<schema>/<name>/<time>/`; move it back to undo, delete it to
    /// free the space.
    Drop { asset: String },
    /// Show an asset's commits: version, time, operation, run, rows.
    History {
        asset: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// List recorded runs, newest first (`basin runs show ID` for one run's events).
    #[command(args_conflicts_with_subcommands = true)]
    Runs {
        #[command(subcommand)]
        show: Option<RunsCommand>,
        /// Only runs that touched this asset.
        #[arg(long)]
        asset: Option<String>,
        /// queued, starting, started, success, failure or canceled.
        #[arg(long)]
        status: Option<String>,
        /// Only runs created since: a duration back from now (`2h`, `1d`) or a date/time.
        #[arg(long)]
        since: Option<String>,
        /// Only runs with this tag, `key=value`.
        #[arg(long)]
        tag: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// One screen for the morning: daemons alive, the queue, runs in flight, and every asset
    /// that is not healthy with its class and why (`zombie`, `hard_failure`, `failing_checks`,
    /// `retrying`, `stale_no_run`, `running_long`, `never_built`, `backfilling`,
    /// `running_ok`), the watchdog's last cycle and the alerts firing. Exit code 1 when
    /// something needs a person.
    Status {
        #[arg(long, value_enum, default_value = "text")]
        format: RunFormat,
    },
    /// Stop a run: a queued run is canceled at once, a running one is asked to stop.
    Cancel { run_id: String },
    /// Freshness SLOs (`slo = { ready_by = "07:30", … }` in models): each asset's promise, the
    /// days met, met late and missed over the last 7 and 30 days, and the error budget left
    /// against its target. Exit code 1 when an asset has spent its 30-day budget.
    Slo {
        #[arg(long, value_enum, default_value = "text")]
        format: RunFormat,
    },
    /// The watchdog's alert channels (`[[alerts]]` in basin.toml).
    Alert {
        #[command(subcommand)]
        command: AlertCommand,
    },
}

#[derive(Subcommand)]
pub enum AlertCommand {
    /// Send a test message on a channel and say whether it arrived (the delivery is recorded
    /// in `basin.alert_deliveries`).
    Test { channel: String },
    /// The channels, and the alerts firing now.
    List,
}

#[derive(Subcommand)]
pub enum RunsCommand {
    /// One run: its settings, outcome and every event.
    Show { run_id: String },
}

#[derive(Clone, Copy, ValueEnum)]
enum Template {
    Telecom,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
}

/// How `run` and `ingest` report.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum RunFormat {
    Text,
    Json,
}

impl RunFormat {
    fn output(self) -> crate::run::Output {
        match self {
            RunFormat::Text => crate::run::Output::Full,
            RunFormat::Json => crate::run::Output::Json,
        }
    }
}

/// `--partition` of `basin run`: checked, and only with daily-partitioned models.
/// The bronze keys `--accept-schema-change` names (`shop.customers` or
/// `bronze.shop__customers`), comma-separated as the run's tag holds them; `None` for none.
fn accepted_tables(project: &Project, named: &[String]) -> anyhow::Result<Option<String>> {
    let mut keys = Vec::new();
    for name in named {
        let key = match name.split_once('.') {
            Some((basin_core::source::BRONZE, _)) => AssetKey::parse(name),
            Some((source, table)) if project.sources.contains_key(source) => {
                Some(basin_core::source::Source::bronze_key(source, table))
            }
            _ => None,
        };
        let Some(key) = key else {
            let sources: Vec<&str> = project.sources.keys().map(String::as_str).collect();
            anyhow::bail!(
                "--accept-schema-change {name}: name a source table as SOURCE.TABLE (sources: {}) or by its \
                 bronze key (bronze.SOURCE__TABLE)",
                if sources.is_empty() { "none".to_string() } else { sources.join(", ") }
            );
        };
        keys.push(key.to_string());
    }
    Ok((!keys.is_empty()).then(|| keys.join(",")))
}

fn partition_of(project: &Project, keys: &[AssetKey], partition: Option<&str>) -> anyhow::Result<Option<String>> {
    let Some(text) = partition else { return Ok(None) };
    let range = basin_core::partition::DayRange::parse(text).map_err(|e| anyhow::anyhow!("--partition: {e}"))?;
    crate::backfill::partitioned_only(project, keys)?;
    Ok(Some(range.to_string()))
}

pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let start_dir = cli.project.clone().unwrap_or_else(|| PathBuf::from("."));
    match cli.command {
        Command::Init { dir, name, template } => {
            init(dir.or(cli.project).unwrap_or_else(|| PathBuf::from(".")), name, template)
        }
        Command::Demo { dir, scale, days, seed, source, concurrency, inject_fault } => {
            crate::demo::run(crate::demo::Options { dir, scale, days, seed, source, concurrency, inject_fault }).await
        }
        Command::Validate { connect } => validate(&start_dir, connect).await,
        Command::Plan { selection, full_refresh } => {
            let (project, lake) = open(&start_dir)?;
            let keys = select(&project, &selection)?;
            crate::run::plan(&project, &lake, &keys, full_refresh).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            selection,
            full_refresh,
            queue: true,
            priority,
            mut tags,
            partition,
            allow_shrink,
            accept_schema_change,
            ..
        } => {
            if allow_shrink {
                tags.push(format!("{}=true", crate::run::ALLOW_SHRINK_TAG));
            }
            let project = load(&start_dir)?;
            if let Some(accepted) = accepted_tables(&project, &accept_schema_change)? {
                tags.push(format!("{}={accepted}", basin_orchestrator::run::ACCEPT_SCHEMA_CHANGE_TAG));
            }
            let keys = select(&project, &selection)?;
            let partition = partition_of(&project, &keys, partition.as_deref())?;
            crate::daemon::enqueue(&project, selection, full_refresh, priority, &tags, partition).await
        }
        Command::Run {
            selection,
            full_refresh,
            concurrency,
            partition,
            allow_shrink,
            accept_schema_change,
            format,
            ..
        } => {
            let (project, lake) = open(&start_dir)?;
            let keys = select(&project, &selection)?;
            let partition = partition_of(&project, &keys, partition.as_deref())?;
            let concurrency = concurrency.unwrap_or_else(|| project.config.run.effective_concurrency()).max(1);
            let mut new =
                basin_meta::NewRun { full_refresh, partition, ..basin_meta::NewRun::new(selection, "in_process") };
            if allow_shrink {
                new.tags.insert(crate::run::ALLOW_SHRINK_TAG.into(), "true".into());
            }
            if let Some(accepted) = accepted_tables(&project, &accept_schema_change)? {
                new.tags.insert(basin_orchestrator::run::ACCEPT_SCHEMA_CHANGE_TAG.into(), accepted);
            }
            let recorder = basin_orchestrator::Recorder::begin(&project, new).await?;
            let report = crate::run::run(&project, &lake, &keys, recorder, concurrency, format.output()).await?;
            Ok(crate::exit::of_report(&report))
        }
        Command::Check { selection } => {
            let (project, lake) = open(&start_dir)?;
            let keys = select(&project, &selection)?;
            let ok = crate::checks::check(&project, &lake, &keys).await?;
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Backfill { status: Some(id), .. } => crate::backfill::status(&load(&start_dir)?, &id).await,
        Command::Backfill { resume: Some(id), .. } => {
            let (project, lake) = open(&start_dir)?;
            let n = crate::backfill::requeue(&project, &id).await?;
            println!("backfill {id}: {n} range(s) requeued");
            let ok = crate::backfill::work(&project, &lake, &id).await?;
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Backfill { selection, from, to, per_run, queue, .. } => {
            let (project, lake) = open(&start_dir)?;
            let keys = select(&project, &selection)?;
            crate::backfill::partitioned_only(&project, &keys)?;
            let day = |d: Option<String>| basin_core::partition::DayRange::parse(&d.unwrap_or_default());
            let (from, to) = (day(from).map_err(anyhow::Error::msg)?, day(to).map_err(anyhow::Error::msg)?);
            let range = basin_core::partition::DayRange::new(from.first, to.last).map_err(anyhow::Error::msg)?;
            let launcher = if queue { project.config.daemon.launcher.clone() } else { "in_process".to_string() };
            let (id, runs) = crate::backfill::create(&project, selection, range, per_run, &launcher).await?;
            println!(
                "backfill {id}: {range} ({} days) in {} run(s) of at most {per_run} day(s)",
                range.days(),
                runs.len()
            );
            if queue {
                println!("queued for `basin daemon`; `basin backfill --status {id}` shows its progress");
                return Ok(ExitCode::SUCCESS);
            }
            let ok = crate::backfill::work(&project, &lake, &id).await?;
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Daemon { serve, metrics_listen } => {
            crate::daemon::run(load(&start_dir)?, serve, metrics_listen.as_deref()).await
        }
        Command::Worker { standby: true, .. } => crate::daemon::standby(&start_dir).await,
        Command::Worker { run_id, .. } => crate::daemon::worker(&start_dir, &run_id.unwrap_or_default()).await,
        Command::Ingest { tables, allow_shrink, accept_schema_change, format } => {
            let (project, lake) = open(&start_dir)?;
            let accepted = accepted_tables(&project, &accept_schema_change)?;
            let flags = crate::ingest::Flags { allow_shrink, accept_schema_change: accepted };
            crate::ingest::run(&project, &lake, &tables, flags, format.output()).await
        }
        Command::Serve { hash_password: true, .. } => {
            let mut password = String::new();
            std::io::stdin().read_to_string(&mut password).context("cannot read the password from stdin")?;
            let password = password.strip_suffix('\n').unwrap_or(&password);
            let password = password.strip_suffix('\r').unwrap_or(password);
            if password.is_empty() {
                bail!("no password on stdin");
            }
            println!("{}", basin_server::auth::Verifier::new(password));
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { listen, http_listen, .. } => {
            let (mut project, lake) = open(&start_dir)?;
            if let Some(l) = listen {
                project.config.serve.listen = l;
            }
            if let Some(l) = http_listen {
                project.config.serve.http_listen = l;
            }
            let store = basin_orchestrator::record::open_store(&project).await?;
            serve(&project, lake, store).await?.await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sql { query, format, as_of } => {
            let (project, lake) = open(&start_dir)?;
            let query = match query {
                Some(q) => q,
                None => {
                    let mut q = String::new();
                    std::io::stdin().read_to_string(&mut q).context("cannot read the query from stdin")?;
                    q
                }
            };
            let as_of = as_of.map(|s| s.parse::<AsOf>()).transpose()?;
            sql(&project, &lake, &query, format, as_of.as_ref()).await
        }
        Command::Restore { asset, to_version, to_timestamp } => {
            let (project, lake) = open(&start_dir)?;
            let key = asset_key(&project, &lake, &asset).await?;
            let target = match (to_version, to_timestamp) {
                (Some(v), _) => AsOf::Version(v),
                (None, Some(t)) => t.parse::<AsOf>()?,
                (None, None) => unreachable!("clap requires one of them"),
            };
            let run_id = crate::run::new_run_id();
            let version = basin_engine::history::restore(&lake, &key, &target, &run_id).await?;
            println!("restored {key} to {} as version {version}", describe(&target));
            Ok(ExitCode::SUCCESS)
        }
        Command::Runs { show: Some(RunsCommand::Show { run_id }), .. } => {
            crate::runs::show(&load(&start_dir)?, &run_id).await
        }
        Command::Runs { show: None, asset, status, since, tag, limit } => {
            let filter = crate::runs::filter(asset, status, since, tag, limit)?;
            crate::runs::list(&load(&start_dir)?, &filter).await
        }
        Command::Cancel { run_id } => crate::runs::cancel(&load(&start_dir)?, &run_id).await,
        Command::Status { format } => crate::runs::status(&load(&start_dir)?, matches!(format, RunFormat::Json)).await,
        Command::Slo { format } => crate::slo::show(&load(&start_dir)?, matches!(format, RunFormat::Json)).await,
        Command::Alert { command: AlertCommand::Test { channel } } => {
            crate::runs::alert_test(&load(&start_dir)?, &channel).await
        }
        Command::Alert { command: AlertCommand::List } => crate::runs::alert_list(&load(&start_dir)?).await,
        Command::Drop { asset } => drop_table(&start_dir, &asset).await,
        Command::History { asset, limit } => {
            let (project, lake) = open(&start_dir)?;
            let key = asset_key(&project, &lake, &asset).await?;
            let commits = basin_engine::history::history(&lake, &key, Some(limit)).await?;
            // Times as `--as-of` and `--to-timestamp` take them, to the millisecond: a time
            // rounded down to the second would fall before its own commit.
            println!("{:>7}  {:<24}  {:<10}  {:>10}  run", "version", "time (RFC 3339)", "operation", "rows");
            for c in commits {
                println!(
                    "{:>7}  {:<24}  {:<10}  {:>10}  {}",
                    c.version,
                    c.timestamp.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)).unwrap_or_default(),
                    c.operation,
                    c.rows.map(|r| r.to_string()).unwrap_or_default(),
                    c.run_id.unwrap_or_default()
                );
                if let Some(changes) = c.schema_changes {
                    println!("{:>7}  schema: {changes}", "");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn describe(target: &AsOf) -> String {
    match target {
        AsOf::Version(v) => format!("version {v}"),
        AsOf::Timestamp(t) => format!("its state at {}", t.to_rfc3339()),
    }
}

fn init(dir: PathBuf, name: Option<String>, template: Option<Template>) -> anyhow::Result<ExitCode> {
    if let Some(Template::Telecom) = template {
        let written = crate::demo::write_project(&dir, None)?;
        eprintln!("created the telecom reference project in {}:", dir.display());
        for f in written {
            eprintln!("  {f}");
        }
        eprintln!(
            "its source is sources/v3.toml: point `url` at your billing database, or run `basin demo` \
             for the same project on generated data"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let name = name.unwrap_or_else(|| basin_core::scaffold::name_for(&dir));
    let written = basin_core::scaffold::init(&dir, &name)?;
    eprintln!("created project `{name}` in {}:", dir.display());
    for f in written {
        eprintln!("  {f}");
    }
    eprintln!(
        "next: cd {} && basin run && basin sql \"SELECT * FROM gold.top_customers ORDER BY rank\"",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn validate(start: &Path, connect: bool) -> anyhow::Result<ExitCode> {
    let dir = Project::find(start)?;
    let (project, mut diagnostics) = Project::load(&dir)?;
    let mut sources = std::collections::BTreeMap::new();
    if connect {
        let (found, schemas) = crate::ingest::check_sources(&project).await;
        diagnostics.extend(found);
        sources = schemas;
    }
    // Every model planned against the schemas of what it reads: the lake's tables, the
    // sources' catalogs with --connect, the schemas upstream models plan to. A model whose
    // file already has an error is not planned again.
    let skip: std::collections::BTreeSet<String> = diagnostics.errors().map(|d| d.location.file.clone()).collect();
    let mut unchecked = Vec::new();
    let checked = async {
        let lake = Lake::open(&project.storage_root(), &project.config.storage.options)?;
        basin_engine::validate::check_columns(&lake, &project, &sources, &skip).await
    };
    match checked.await {
        Ok(check) => {
            diagnostics.extend(check.diagnostics);
            unchecked = check.unchecked;
            diagnostics.extend(orphan_warnings(&project, &check.tables));
        }
        Err(e) => diagnostics.push(basin_core::Diagnostic::warning(
            basin_core::diagnostic::Location::file("basin.toml"),
            format!("columns not checked: the lake cannot be read: {}", basin_core::error::chain(&e)),
        )),
    }
    diagnostics.sort();
    print_diagnostics(&diagnostics);
    if !unchecked.is_empty() {
        let tables: std::collections::BTreeSet<String> = unchecked.iter().map(|(_, t)| t.to_string()).collect();
        let shown: Vec<&str> = tables.iter().map(String::as_str).take(5).collect();
        eprintln!(
            "note: columns not checked in {} model(s): they read {} not landed yet{} (`basin ingest` lands them; \
             `basin validate --connect` reads their columns from the sources)",
            unchecked.len(),
            shown.join(", "),
            if tables.len() > shown.len() {
                format!(" and {} more", tables.len() - shown.len())
            } else {
                String::new()
            },
        );
    }
    let errors = diagnostics.errors().count();
    let warnings = diagnostics.len() - errors;
    if errors > 0 {
        eprintln!("{errors} error(s), {warnings} warning(s) in {}", dir.display());
        return Ok(ExitCode::from(crate::exit::INVALID));
    }
    eprintln!("ok: {} model(s), {warnings} warning(s)", project.models.len());
    Ok(ExitCode::SUCCESS)
}

/// `basin drop`: refused for what the project still defines (a run would build it again).
async fn drop_table(start: &Path, name: &str) -> anyhow::Result<ExitCode> {
    let (project, lake) = open(start)?;
    let key = AssetKey::parse(&name.to_lowercase())
        .with_context(|| format!("`{name}` is not an asset key; write <schema>.<name>"))?;
    if key.schema == basin_engine::current::CURRENT_SCHEMA {
        bail!("{key} is the current state of bronze.{}, not a table of its own", key.name);
    }
    if let Some(model) = project.models.get(&key) {
        bail!("{key} is defined by {}, so a run would build it again; delete the file first", model.file);
    }
    if project.defines(&key) {
        let source = key.name.split_once("__").map(|(s, _)| s).unwrap_or(&key.name);
        let file = project.sources.get(source).map(|s| s.file.as_str()).unwrap_or("its source file");
        bail!("{key} is a table of {file}, so an ingest would land it again; take it out of the source first");
    }
    match lake.drop_table(&key, chrono::Utc::now()).await? {
        Some(moved) => {
            println!("dropped {key}: moved to {moved} (move it back to undo; delete it to free the space)");
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let tables: Vec<String> = lake.list_tables().await?.iter().map(ToString::to_string).collect();
            let hint = basin_core::diagnostic::did_you_mean(&key.to_string(), tables.iter().map(String::as_str))
                .map(|near| format!("; did you mean `{near}`?"))
                .unwrap_or_default();
            bail!("no table {key} in the lake at {}{hint}", lake.root_display())
        }
    }
}

/// Of the lake's `tables`, those nothing in the project defines, as warnings: they stay
/// queryable, and no run updates them.
fn orphan_warnings(project: &Project, tables: &[AssetKey]) -> Vec<basin_core::Diagnostic> {
    project
        .orphans(tables)
        .into_iter()
        .map(|key| {
            basin_core::Diagnostic::warning(
                basin_core::diagnostic::Location::file(format!("lake table {key}")),
                "nothing in the project defines it (a model file deleted or renamed, or a source table no longer \
                 listed); it is still queryable, and no run updates it",
            )
            .with_hint(format!("`basin drop {key}` takes it out of the lake"))
        })
        .collect()
}

/// An asset named on the command line: a project asset, or any table in the lake.
async fn asset_key(project: &Project, lake: &Lake, name: &str) -> anyhow::Result<AssetKey> {
    let key = AssetKey::parse(&name.to_lowercase())
        .with_context(|| format!("`{name}` is not an asset key; write <schema>.<name>"))?;
    if project.graph.contains(&key) || lake.table(&key).await?.is_some() {
        return Ok(key);
    }
    bail!("no asset `{key}` in the project or the lake")
}

/// CSV has no lists: list columns (PostgreSQL arrays, check samples) as their text, `[a, b]`.
fn nested_as_text(batch: &arrow::array::RecordBatch) -> anyhow::Result<arrow::array::RecordBatch> {
    use arrow::datatypes::{DataType, Field, Schema};
    let nested = |t: &DataType| matches!(t, DataType::List(_) | DataType::LargeList(_) | DataType::ListView(_));
    if !batch.schema().fields().iter().any(|f| nested(f.data_type())) {
        return Ok(batch.clone());
    }
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        if nested(f.data_type()) {
            fields.push(Field::new(f.name(), DataType::Utf8, f.is_nullable()));
            columns.push(arrow::compute::cast(c, &DataType::Utf8)?);
        } else {
            fields.push(f.as_ref().clone());
            columns.push(c.clone());
        }
    }
    Ok(arrow::array::RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns)?)
}

async fn sql(
    project: &Project,
    lake: &Lake,
    query: &str,
    format: Format,
    as_of: Option<&AsOf>,
) -> anyhow::Result<ExitCode> {
    let views = basin_engine::materialize::view_definitions(project);
    let session = lake.session(&views, as_of).await?;
    for (key, reason) in &session.unavailable_views {
        tracing::debug!(%key, reason, "view not available");
    }
    // The metadata store's tables (`basin.runs`, `basin.check_results`, …), read when named.
    if query.to_ascii_lowercase().contains("basin.") {
        let store = basin_orchestrator::record::open_store(project).await?;
        let catalog = session.ctx.catalog("basin").expect("the lake's catalog");
        catalog.register_schema(
            basin_server::system::SCHEMA,
            std::sync::Arc::new(basin_server::system::SystemSchema::new(store)),
        )?;
    }
    let df = match session.ctx.sql(query).await {
        Ok(df) => df,
        Err(e) => {
            let missing: Vec<String> = session.unavailable_views.iter().map(|(k, _)| k.to_string()).collect();
            let mut hint = if missing.is_empty() {
                String::new()
            } else {
                format!(" (views not available: {})", missing.join(", "))
            };
            // A table the query names that has no version at `--as-of`: say which it has.
            let named = query.to_ascii_lowercase();
            for (key, reason) in &session.out_of_range {
                if named.contains(&key.to_string().to_ascii_lowercase()) {
                    hint.push_str(&format!("\n  {reason}"));
                }
            }
            bail!("query failed: {e}{hint}");
        }
    };
    let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
    let mut batches = df.collect().await.context("query failed")?;
    if batches.is_empty() {
        // An empty result still has columns: print its header.
        batches.push(arrow::array::RecordBatch::new_empty(schema.clone()));
    }
    let written = (|| -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        match format {
            Format::Table => {
                let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
                writeln!(out, "{}", arrow::util::pretty::pretty_format_batches_with_schema(schema, &batches)?)?;
                if std::io::stdout().is_terminal() {
                    eprintln!("({rows} row{})", if rows == 1 { "" } else { "s" });
                }
            }
            Format::Csv => {
                let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(&mut out);
                for b in &batches {
                    w.write(&nested_as_text(b)?)?;
                }
            }
            Format::Json => {
                let mut w = arrow::json::ArrayWriter::new(&mut out);
                for b in &batches {
                    w.write(b)?;
                }
                w.finish()?;
                writeln!(out)?;
            }
        }
        Ok(())
    })();
    match written {
        // The reader closed its end (`basin sql … | head`): what it wanted was written.
        Err(e) if e.chain().any(|c| c.to_string().contains("Broken pipe")) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e),
        Ok(()) => Ok(ExitCode::SUCCESS),
    }
}
