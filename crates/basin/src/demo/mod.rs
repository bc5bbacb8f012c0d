//! `basin demo`: the telecom reference project, end to end, with no server. It writes the
//! project (shipped inside the binary), generates the billing database it reads into an
//! embedded SQLite file (or a MySQL/PostgreSQL URL), then runs several simulated nights:
//! the source changes, Basin ingests it into bronze and builds silver and gold.

pub mod generate;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use basin_core::AssetKey;
use basin_core::source::SourceKind;

use generate::{Generator, Target, Written};

/// The reference project: path inside the project, content.
pub const PROJECT: &[(&str, &str)] = &[
    ("basin.toml", include_str!("../../demo/basin.toml")),
    ("sources/v3.toml", include_str!("../../demo/sources/v3.toml")),
    ("models/silver/dim_partner.sql", include_str!("../../demo/models/silver/dim_partner.sql")),
    ("models/silver/dim_customer.sql", include_str!("../../demo/models/silver/dim_customer.sql")),
    ("models/silver/dim_service.sql", include_str!("../../demo/models/silver/dim_service.sql")),
    ("models/silver/dim_charge_type.sql", include_str!("../../demo/models/silver/dim_charge_type.sql")),
    ("models/silver/dim_usage_type.sql", include_str!("../../demo/models/silver/dim_usage_type.sql")),
    ("models/silver/dim_usage_type_group.sql", include_str!("../../demo/models/silver/dim_usage_type_group.sql")),
    ("models/silver/dim_usage_unit.sql", include_str!("../../demo/models/silver/dim_usage_unit.sql")),
    ("models/silver/dim_module_type.sql", include_str!("../../demo/models/silver/dim_module_type.sql")),
    ("models/silver/fact_invoice.sql", include_str!("../../demo/models/silver/fact_invoice.sql")),
    ("models/silver/fact_invoice_item.sql", include_str!("../../demo/models/silver/fact_invoice_item.sql")),
    ("models/silver/fact_invoice_service.sql", include_str!("../../demo/models/silver/fact_invoice_service.sql")),
    ("models/gold/revenue_by_month_partner.sql", include_str!("../../demo/models/gold/revenue_by_month_partner.sql")),
    ("models/gold/arpu_by_month.sql", include_str!("../../demo/models/gold/arpu_by_month.sql")),
    ("models/gold/churn_by_month.sql", include_str!("../../demo/models/gold/churn_by_month.sql")),
    ("models/gold/cohort_retention.sql", include_str!("../../demo/models/gold/cohort_retention.sql")),
];

/// Marks a directory as written by `basin demo`, so a later demo may replace it.
const MARKER: &str = ".basin/demo";

pub struct Options {
    pub dir: PathBuf,
    pub scale: f64,
    pub days: u32,
    pub seed: u64,
    /// A MySQL/MariaDB or PostgreSQL URL to generate the source into, instead of SQLite.
    pub source: Option<String>,
    pub concurrency: Option<usize>,
    /// Plant a defect before the last night's run.
    pub inject_fault: bool,
}

/// Write the reference project into `dir`, which must not hold a project yet. The source URL
/// replaces the embedded SQLite file when given.
pub fn write_project(dir: &Path, source: Option<&str>) -> anyhow::Result<Vec<String>> {
    if dir.join("basin.toml").exists() {
        bail!("{} already holds a project (basin.toml); choose another directory", dir.display());
    }
    let mut written = Vec::new();
    for (path, content) in PROJECT {
        let mut content = content.to_string();
        if *path == "sources/v3.toml"
            && let Some(url) = source
        {
            content = source_file(&content, url)?;
        }
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().expect("files are in a directory"))
            .with_context(|| format!("cannot create {}", file.parent().unwrap_or(dir).display()))?;
        std::fs::write(&file, content).with_context(|| format!("cannot write {}", file.display()))?;
        written.push(path.to_string());
    }
    Ok(written)
}

/// `sources/v3.toml` pointing at `url`. A password is not written into the file: the URL then
/// comes from `V3_URL` in the environment.
fn source_file(template: &str, url: &str) -> anyhow::Result<String> {
    let kind = match SourceKind::of_url(url) {
        Some(kind) => kind.as_str(),
        None => bail!("--source must be a mysql://, mariadb://, postgres:// or sqlite:// URL"),
    };
    let has_password = url::Url::parse(url).is_ok_and(|u| u.password().is_some());
    let url_line = if has_password { "url = \"${V3_URL}\"".to_string() } else { format!("url = \"{url}\"") };
    Ok(template
        .replace("kind = \"sqlite\"", &format!("kind = \"{kind}\""))
        .replace("url = \"sqlite://source/v3.db\"", &url_line))
}

/// Prepare `dir`: create it, or clear an earlier demo; refuse anything else that is not empty.
fn prepare(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?.next().is_none();
        if !empty {
            if !dir.join(MARKER).exists() {
                bail!(
                    "{} exists and is not an earlier `basin demo` directory; pass --dir with a new or empty directory",
                    dir.display()
                );
            }
            for (path, _) in PROJECT {
                let _ = std::fs::remove_file(dir.join(path));
            }
            for sub in ["lake", "source", ".basin"] {
                let p = dir.join(sub);
                if p.exists() {
                    std::fs::remove_dir_all(&p).with_context(|| format!("cannot clear {}", p.display()))?;
                }
            }
        }
    }
    std::fs::create_dir_all(dir.join(".basin")).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(dir.join(MARKER), "written by `basin demo`; the next demo in this directory replaces it\n")
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    Ok(())
}

fn print_written(w: &Written, elapsed: f64) {
    let rows: Vec<String> = w.rows.iter().filter(|(_, n)| *n > 0).map(|(t, n)| format!("{t} {n}")).collect();
    println!("  source: {} rows in {elapsed:.1}s ({})", w.total(), rows.join(", "));
    for note in &w.notes {
        println!("  source: {note}");
    }
}

pub async fn run(options: Options) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let dir = &options.dir;
    if !(options.scale > 0.0 && options.scale <= 1_000.0) {
        bail!("--scale must be above 0 and at most 1000 (1 ≈ 1M invoice items), not {}", options.scale);
    }
    if options.days == 0 {
        bail!("--days must be at least 1");
    }
    if let Some(source) = &options.source
        && SourceKind::of_url(source).is_none()
    {
        bail!("--source must be a mysql://, mariadb://, postgres:// or sqlite:// URL");
    }
    if let Some(source) = &options.source
        && url::Url::parse(source).is_ok_and(|u| u.password().is_some())
        && std::env::var("V3_URL").ok().as_deref() != Some(source.as_str())
    {
        bail!(
            "the source URL has a password, which the project must not store: \
             export V3_URL='<url>' and run `basin demo --source \"$V3_URL\"`; sources/v3.toml then reads ${{V3_URL}}"
        );
    }
    prepare(dir)?;
    write_project(dir, options.source.as_deref())?;
    let url = match &options.source {
        Some(url) => url.clone(),
        None => {
            std::fs::create_dir_all(dir.join("source"))?;
            format!("sqlite://{}", dir.join("source/v3.db").display())
        }
    };
    let generator = Generator { seed: options.seed, scale: options.scale };
    println!(
        "basin demo: a telecom reseller's billing database, scale {} ({} customers), {} night(s), in {}",
        options.scale,
        generator.customers(),
        options.days,
        dir.display()
    );

    let mut target = Target::open(&url).await?;
    let t = Instant::now();
    println!("\n== generating the source: customers, lines, twelve months of invoices, December's calls");
    let written = generator.initial(&mut target).await?;
    print_written(&written, t.elapsed().as_secs_f64());

    for night in 1..=options.days {
        let date = generate::first_night() + chrono::Days::new(u64::from(night - 1));
        println!("\n== night {night} of {} ({date})", options.days);
        if night > 1 {
            let t = Instant::now();
            let written = generator.night(&mut target, night).await?;
            print_written(&written, t.elapsed().as_secs_f64());
        }
        if options.inject_fault && night == options.days {
            let items = generator.inject_fault(&mut target).await?;
            println!(
                "  planted a defect (--inject-fault): the {items} newest invoice items point at charge type {}, which \
                 does not exist",
                generate::UNKNOWN_CHARGE_TYPE
            );
        }
        let (project, lake) = crate::open::open(dir)?;
        let keys: Vec<AssetKey> = project.graph.keys().cloned().collect();
        let concurrency = options.concurrency.unwrap_or_else(|| project.config.run.effective_concurrency()).max(1);
        let t = Instant::now();
        let new = basin_meta::NewRun {
            tags: [("demo_night".to_string(), night.to_string())].into(),
            ..basin_meta::NewRun::new(vec!["*".into()], "in_process")
        };
        let recorder = basin_orchestrator::Recorder::begin(&project, new).await?;
        let report =
            crate::run::run(&project, &lake, &keys, recorder, concurrency, crate::run::Output::Problems).await?;
        print_night(&report, &lake, t.elapsed().as_secs_f64()).await;
        if options.inject_fault && report.check_failures().next().is_some() {
            println!("\n== the planted defect was caught; nothing downstream of it was built:");
            for (key, why) in report.check_failures() {
                println!("  check failed  {key}: {why}");
            }
            for (key, why) in report.skipped() {
                println!("  skipped       {key}: {why}");
            }
            println!("\n  The failing rows are in the run's check results:\n");
            for line in [
                format!("cd {}", dir.display()),
                format!("basin runs show {}", report.run_id()),
                "basin sql \"SELECT asset, check_name, observed, samples FROM basin.check_results WHERE NOT passed\""
                    .to_string(),
                "basin check silver.fact_invoice_item".to_string(),
                "basin status".to_string(),
            ] {
                println!("  {line}");
            }
            if report.failed_otherwise() {
                return Ok(ExitCode::FAILURE);
            }
            continue; // The last night: the summary follows.
        }
        if report.failed() {
            eprintln!("night {night} did not build everything; the project is in {}", dir.display());
            return Ok(ExitCode::FAILURE);
        }
    }

    let cd = dir.display();
    println!(
        "\n== done in {:.1}s. The project is in {cd}; explore it with:\n\n\
         \x20 cd {cd}\n\
         \x20 basin sql \"SELECT * FROM gold.revenue_by_month_partner ORDER BY revenue DESC LIMIT 10\"\n\
         \x20 basin sql \"SELECT month, billed_customers, arpu FROM gold.arpu_by_month ORDER BY month\"\n\
         \x20 basin sql \"SELECT * FROM gold.cohort_retention WHERE cohort = DATE '2025-01-01' ORDER BY months_since\"\n\
         \x20 basin sql \"SELECT _ingestion_date, _run_id, COUNT(*) FROM bronze.v3__invoice GROUP BY 1, 2 ORDER BY 1, 2\"\n\
         \x20 basin history silver.fact_invoice\n\
         \x20 basin plan\n\
         \x20 basin status\n\n\
         Or serve it to any PostgreSQL client (local clients connect as analysts, PII masked):\n\n\
         \x20 basin serve &\n\
         \x20 psql -h 127.0.0.1 -p 5433 -d basin -c \"SELECT name, email FROM silver.dim_customer LIMIT 5\"\n\n\
         Every model is a SQL file under {cd}/models; the source is described in {cd}/sources/v3.toml.",
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// One line per layer: what was landed and built, and how long the night took; for a model
/// that read only its inputs' changes, how many rows it read against how many its table holds.
async fn print_night(report: &basin_orchestrator::run::Report, lake: &basin_engine::Lake, secs: f64) {
    use basin_core::outcome::Action;
    for schema in ["bronze", "silver", "gold"] {
        let built: Vec<_> = report.built().filter(|m| m.key.schema == schema).collect();
        if built.is_empty() {
            continue;
        }
        let rows: u64 = built.iter().map(|m| m.rows).sum();
        let verb = if schema == "bronze" { "landed" } else { "written" };
        let mut line = format!("  {schema:<6} {} table(s), {rows} rows {verb}", built.len());
        if schema == "bronze" {
            let landed: Vec<String> = built
                .iter()
                .filter(|m| m.rows > 0)
                .map(|m| format!("{} {}", m.key.name.trim_start_matches("v3__"), m.rows))
                .collect();
            line.push_str(&format!(": {}", landed.join(", ")));
        }
        for m in &built {
            match (&m.action, m.read.as_slice()) {
                // An incremental model that read its line items' changes only.
                (Action::Merged { inserted, updated, .. }, read @ [_, ..]) => {
                    let read: Vec<String> = read.iter().map(|r| r.describe()).collect();
                    let held = match lake.row_count(&m.key).await {
                        Ok(Some(n)) => format!(", {n} rows in the table"),
                        _ => String::new(),
                    };
                    line.push_str(&format!(
                        "; {}: {inserted} inserted, {updated} updated, {}{held}",
                        m.key,
                        read.join(", ")
                    ));
                }
                (Action::Merged { inserted, updated, .. }, []) => {
                    line.push_str(&format!("; {}: {inserted} version(s) opened, {updated} closed", m.key));
                }
                _ => {}
            }
            if m.action == Action::NoNewData {
                line.push_str(&format!("; {}: unchanged, nothing written", m.key));
            }
        }
        println!("{line}");
    }
    println!("  night built in {secs:.1}s");
}
