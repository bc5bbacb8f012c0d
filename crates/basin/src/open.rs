//! Opening the project a command works on: found upward from the start directory, loaded and
//! validated (its diagnostics printed), its lake opened; a selection resolved; the endpoints
//! bound. What every command shares, below the commands themselves.

use std::io::Write;
use std::path::Path;

use basin_core::{AssetKey, Diagnostics, Project, selection};
use basin_engine::Lake;

/// Load and validate the project (printing its diagnostics) and open its lake.
pub fn open(start: &Path) -> anyhow::Result<(Project, Lake)> {
    let project = load(start)?;
    let lake = Lake::open(&project.storage_root(), &project.config.storage.options)?;
    Ok((project, lake))
}

/// Bind `basin serve`'s endpoints for `project` and say where; the future that serves them.
pub async fn serve(
    project: &Project,
    lake: Lake,
    store: std::sync::Arc<dyn basin_meta::MetaStore>,
) -> anyhow::Result<impl Future<Output = Result<(), basin_server::Error>> + use<>> {
    let server = basin_server::Server::new(project, lake, store)?;
    let listening = basin_server::bind(&project.config.serve, &project.dir).await?;
    eprintln!(
        "serving {} over PostgreSQL at {} and HTTP at http://{}",
        project.config.project.name, listening.pg, listening.http
    );
    eprintln!("  psql -h {} -p {} -d basin -U <user>", listening.pg.ip(), listening.pg.port());
    Ok(listening.serve(server))
}

/// Load and validate the project, printing its diagnostics; refuse an invalid one.
pub fn load(start: &Path) -> anyhow::Result<Project> {
    let dir = Project::find(start)?;
    let (project, diagnostics) = Project::load(&dir)?;
    print_diagnostics(&diagnostics);
    if diagnostics.has_errors() {
        // Typed, so that the command exits as for an invalid project.
        return Err(anyhow::Error::new(basin_core::Error::InvalidProject(diagnostics))
            .context(format!("{} cannot be used as it is", dir.display())));
    }
    Ok(project)
}

pub fn select(project: &Project, selection: &[String]) -> anyhow::Result<Vec<AssetKey>> {
    let text = selection.join(" ");
    Ok(selection::select(&project.graph, &text)?.into_iter().cloned().collect())
}

pub fn print_diagnostics(diagnostics: &Diagnostics) {
    let mut err = std::io::stderr().lock();
    for d in diagnostics.iter() {
        let _ = writeln!(err, "{d}");
    }
}
