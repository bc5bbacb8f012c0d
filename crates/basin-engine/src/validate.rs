//! Column-level validation (`basin validate`): every model is planned, in dependency order,
//! against the schemas Basin can know without running anything: the lake's tables as they
//! are, the source tables' schemas read from their catalogs (`--connect`) for tables not landed
//! yet, and the schema each upstream model's SQL plans to now. DataFusion's planner gives
//! unknown columns, ambiguous references and type errors a position in the query, which is a
//! position in the model's file (the header is an SQL comment), so each is reported at
//! `file:line:col`; it reports several per query where it can (the items of a SELECT list,
//! the branches of a UNION).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use basin_core::AssetKey;
use basin_core::diagnostic::{Diagnostic, Location, did_you_mean};
use basin_core::model::Model;
use basin_core::project::{Project, asset_of};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::datasource::empty::EmptyTable;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;

use crate::error::Result;
use crate::lake::Lake;

/// What planning every model found.
#[derive(Debug, Default)]
pub struct ColumnCheck {
    /// Unknown columns, ambiguous references, type errors, each at its place in its file.
    pub diagnostics: Vec<Diagnostic>,
    /// Models not planned because a table they read has no known schema (a source table not
    /// landed yet, without `--connect`), with that table.
    pub unchecked: Vec<(AssetKey, AssetKey)>,
    /// The lake's tables, as the check listed them (for what nothing in the project defines).
    pub tables: Vec<AssetKey>,
}

/// Plan every model of `project` not already in `skip` (models whose files have errors),
/// in dependency order, against the lake and `sources` (landing schemas of source tables, by
/// bronze key, for tables the lake does not have yet). A model that reads a model which did
/// not plan is left out silently: its upstream's error is the one to fix.
pub async fn check_columns(
    lake: &Lake,
    project: &Project,
    sources: &BTreeMap<AssetKey, SchemaRef>,
    skip: &BTreeSet<String>,
) -> Result<ColumnCheck> {
    let session = lake.session(&[], None).await?;
    let mut tables: Vec<AssetKey> = session.tables.iter().map(|(k, _)| k.clone()).collect();
    tables.extend(session.unavailable_tables.iter().map(|(k, _)| k.clone()));
    tables.sort();
    let ctx = session.ctx;
    for (key, schema) in sources {
        if !registered(&ctx, key) {
            register_schema(&ctx, key, crate::bronze::landing_schema(schema))?;
            let current = AssetKey::new(crate::current::CURRENT_SCHEMA, &key.name);
            register_schema(&ctx, &current, schema.clone())?;
        }
    }
    let mut check = ColumnCheck { tables, ..ColumnCheck::default() };
    let mut broken: BTreeSet<AssetKey> = BTreeSet::new();
    for model in project.ordered(project.graph.keys()) {
        if skip.contains(&model.file) {
            broken.insert(model.key.clone());
            continue;
        }
        let reads: Vec<AssetKey> = model.refs.iter().filter_map(|r| asset_of(&r.parts)).collect();
        if reads.iter().any(|k| broken.contains(k)) {
            broken.insert(model.key.clone());
            continue;
        }
        let mut unknown = None;
        for r in &model.refs {
            if let [schema, name] = &r.parts[..]
                && !registered(&ctx, &AssetKey::new(schema, name))
                && model.key != AssetKey::new(schema, name)
            {
                unknown = asset_of(&r.parts);
                break;
            }
        }
        if let Some(table) = unknown {
            check.unchecked.push((model.key.clone(), table));
            broken.insert(model.key.clone());
            continue;
        }
        match plan(&ctx, model).await {
            Ok(schema) => register_schema(&ctx, &model.key, schema)?,
            Err(problems) => {
                check.diagnostics.extend(problems);
                broken.insert(model.key.clone());
            }
        }
    }
    Ok(check)
}

/// The schema `model` builds, or what stops it from planning.
async fn plan(ctx: &SessionContext, model: &Model) -> std::result::Result<SchemaRef, Vec<Diagnostic>> {
    // A daily-partitioned model is planned with its placeholders bound to a day: positions
    // after a placeholder on its line move by the difference in length.
    let sql = match model.config.partitions {
        Some(_) => {
            let day = basin_core::partition::DayRange::yesterday(chrono::Utc::now());
            basin_core::partition::bind(model.sql(), &day)
                .map_err(|e| vec![Diagnostic::error(Location::file(&model.file), e)])?
        }
        None => model.sql().to_string(),
    };
    // `$this` as an empty table of the model's table's columns (of those the query reads
    // before the first build), named as long as `$this` so that positions stay.
    let own = TableReference::partial(model.key.schema.as_str(), model.key.name.as_str());
    let columns = match ctx.table_provider(own).await {
        Ok(table) => Some(table.schema()),
        Err(_) => None,
    };
    let exists = columns.is_some();
    let (sql, this) = crate::materialize::bind_this(ctx, model, &sql, exists, Some(("_this", columns)))
        .await
        .map_err(|e| vec![Diagnostic::error(Location::file(&model.file), basin_core::error::chain(&e))])?;
    let planned = plan_bound(ctx, model, &sql).await;
    if let Some(name) = &this {
        let _ = ctx.deregister_table(name.as_str());
    }
    planned
}

/// [`plan`] of `sql`, the model's query with its placeholders and variables bound.
async fn plan_bound(ctx: &SessionContext, model: &Model, sql: &str) -> std::result::Result<SchemaRef, Vec<Diagnostic>> {
    let planned = async {
        let df = ctx.sql(sql).await?;
        // The analyzer's type coercion finds what the SQL planner lets through.
        df.clone().into_optimized_plan()?;
        Ok::<_, DataFusionError>(df)
    };
    let df = planned.await.map_err(|e| problems(model, &e))?;
    let key_columns = df.schema().fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>();
    let mut missing = Vec::new();
    for (setting, columns) in [
        ("unique_key", &model.config.unique_key.0),
        ("partition_by", &model.config.partition_by.0),
        ("cluster_by", &model.config.cluster_by.0),
    ] {
        for c in columns.iter().filter(|c| !key_columns.contains(c)) {
            let mut d = Diagnostic::error(
                Location::file(&model.file),
                format!("`{setting}` names `{c}`, which the query does not return"),
            );
            d = match did_you_mean(c, key_columns.iter().map(String::as_str)) {
                Some(near) => d.with_hint(format!("did you mean `{near}`?")),
                None => d.with_hint(format!("the query returns: {}", key_columns.join(", "))),
            };
            missing.push(d);
        }
    }
    if !missing.is_empty() {
        return Err(missing);
    }
    if model.flags.is_empty() {
        return Ok(crate::materialize::table_schema(model, df.schema().as_arrow()));
    }
    // With `dq_flags`, the table also has the flag columns the checks become.
    let flagged = crate::checks::flagged_sql(sql, &model.flags);
    match ctx.sql(&flagged).await {
        Ok(df) => Ok(crate::materialize::table_schema(model, df.schema().as_arrow())),
        Err(e) => Err(vec![
            Diagnostic::error(Location::file(&model.file), format!("its checks do not plan: {}", message_of(&e)))
                .with_hint("check the columns the `checks` of the header name"),
        ]),
    }
}

/// One diagnostic per error the planner collected.
fn problems(model: &Model, error: &DataFusionError) -> Vec<Diagnostic> {
    error.iter().map(|e| diagnostic(model, e)).collect()
}

/// `error` as a diagnostic at its place in `model`'s file, with DataFusion's notes turned into
/// a hint.
fn diagnostic(model: &Model, error: &DataFusionError) -> Diagnostic {
    let Some(d) = error.diagnostic() else {
        return Diagnostic::error(Location::file(&model.file), message_of(error));
    };
    let at = |span: Option<datafusion::common::Span>| match span {
        Some(s) if s.start.line > 0 => Location::at(&model.file, s.start.line as usize, s.start.column as usize),
        _ => Location::file(&model.file),
    };
    let possible: Vec<&str> = d.notes.iter().filter_map(|n| n.message.strip_prefix("possible column ")).collect();
    if let Some(rest) = d.message.strip_prefix("column '")
        && let Some((column, tail)) = rest.split_once('\'')
    {
        if tail.starts_with(" is ambiguous") {
            let shown: Vec<String> = possible.iter().map(|p| format!("`{p}`")).collect();
            return Diagnostic::error(at(d.span), format!("ambiguous column `{column}`"))
                .with_hint(format!("it is in more than one table read here; qualify it: {}", shown.join(" or ")));
        }
        if tail.starts_with(" not found") {
            // As written: `f.order_totl` (qualified by `f`) or `order_totl`.
            let qualifier = tail.strip_prefix(" not found in '").and_then(|t| t.strip_suffix('\''));
            let shown = |name: &str| match qualifier {
                Some(q) => format!("{q}.{name}"),
                None => name.to_string(),
            };
            let found = Diagnostic::error(at(d.span), format!("unknown column `{}`", shown(column)));
            // DataFusion's candidates are `relation.name`; those of the same relation first.
            let candidates: Vec<(&str, &str)> =
                possible.iter().map(|p| p.rsplit_once('.').unwrap_or(("", p))).collect();
            let same = |relation: &str| qualifier.is_none_or(|q| relation == q || relation.ends_with(&format!(".{q}")));
            let names = candidates.iter().filter(|(r, _)| same(r)).map(|(_, n)| *n);
            let nearest =
                did_you_mean(column, names).or_else(|| candidates.iter().find(|(r, _)| same(r)).map(|(_, n)| *n));
            return match nearest {
                Some(near) => found.with_hint(format!("did you mean `{}`?", shown(near))),
                None => found,
            };
        }
    }
    // Type errors and the rest: DataFusion's message, its notes as the hint, each with the
    // text it points at.
    let notes: Vec<String> = d
        .notes
        .iter()
        .map(|n| (n.message.as_str(), n.span))
        .chain(d.helps.iter().map(|h| (h.message.as_str(), h.span)))
        .map(|(message, span)| {
            if let Some(name) = message.strip_prefix("Possible function '").and_then(|m| m.strip_suffix('\'')) {
                return format!("did you mean `{name}`?");
            }
            match span.and_then(|s| Some((s, span_text(model.sql(), s)?))) {
                Some((s, text)) => format!("`{text}` {message} ({}:{})", s.start.line, s.start.column),
                None => message.to_string(),
            }
        })
        .collect();
    let out = Diagnostic::error(at(d.span), d.message.clone());
    if notes.is_empty() { out } else { out.with_hint(notes.join("; ")) }
}

/// The text `span` covers in `sql` (1-based lines and columns in characters, end inclusive),
/// when it is on one line.
fn span_text(sql: &str, span: datafusion::common::Span) -> Option<String> {
    let (start, end) = (span.start, span.end);
    if start.line == 0 || start.line != end.line || end.column < start.column {
        return None;
    }
    let line = sql.lines().nth(start.line as usize - 1)?;
    let text: String =
        line.chars().skip(start.column as usize - 1).take((end.column - start.column) as usize).collect();
    (!text.trim().is_empty()).then_some(text)
}

/// The first line of the innermost message of `error`, without DataFusion's prefixes.
pub fn message_of(error: &DataFusionError) -> String {
    let text = error.find_root().to_string();
    let text = text.lines().next().unwrap_or_default();
    ["Error during planning: ", "Schema error: ", "type_coercion\ncaused by\n", "Optimizer rule "]
        .iter()
        .fold(text.to_string(), |t, p| t.trim_start_matches(p).to_string())
}

/// Whether `key` is a table of `ctx`.
fn registered(ctx: &SessionContext, key: &AssetKey) -> bool {
    ctx.table_exist(TableReference::partial(key.schema.as_str(), key.name.as_str())).unwrap_or(false)
}

/// Put an empty table of `schema` in `ctx` as `key`, replacing any.
fn register_schema(ctx: &SessionContext, key: &AssetKey, schema: SchemaRef) -> Result<()> {
    let table: Arc<dyn TableProvider> = Arc::new(EmptyTable::new(schema));
    crate::lake::register_provider(ctx, key, table)
}
