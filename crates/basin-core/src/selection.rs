//! Selection syntax: which assets a command acts on. Terms separated by spaces or commas form
//! a union: `silver.x` (one asset), `+silver.x` (with everything upstream), `silver.x+` (with
//! everything downstream), `tag:nightly`, `schema:gold`, `source:v3`, `*` (all), and globs
//! such as `silver.fact_*`.

use std::collections::BTreeSet;

use crate::asset::AssetKey;
use crate::diagnostic::did_you_mean;
use crate::error::{Error, Result};
use crate::graph::AssetGraph;
use crate::source::glob;

/// Resolve a selection to the set of selected asset keys.
pub fn select<'g>(graph: &'g AssetGraph, selection: &str) -> Result<BTreeSet<&'g AssetKey>> {
    let terms: Vec<&str> = selection.split(|c: char| c == ',' || c.is_whitespace()).filter(|t| !t.is_empty()).collect();
    if terms.is_empty() {
        return Err(invalid(selection, "empty selection; use `*` for every asset"));
    }
    let mut out = BTreeSet::new();
    for term in terms {
        let (upstream, rest) = match term.strip_prefix('+') {
            Some(r) => (true, r),
            None => (false, term),
        };
        let (downstream, body) = match rest.strip_suffix('+') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let matched = matching(graph, body).map_err(|reason| invalid(term, &reason))?;
        for key in matched {
            out.insert(key);
            if upstream {
                out.extend(graph.with_ancestors(key));
            }
            if downstream {
                out.extend(graph.with_descendants(key));
            }
        }
    }
    Ok(out)
}

fn invalid(selection: &str, reason: &str) -> Error {
    Error::InvalidSelection { selection: selection.to_string(), reason: reason.to_string() }
}

fn matching<'g>(graph: &'g AssetGraph, body: &str) -> std::result::Result<Vec<&'g AssetKey>, String> {
    let found: Vec<&AssetKey> = if let Some(tag) = body.strip_prefix("tag:") {
        graph.nodes().filter(|n| n.tags.iter().any(|t| t == tag)).map(|n| &n.key).collect()
    } else if let Some(schema) = body.strip_prefix("schema:") {
        graph.keys().filter(|k| k.schema == schema).collect()
    } else if let Some(source) = body.strip_prefix("source:") {
        graph.nodes().filter(|n| n.source.as_deref() == Some(source)).map(|n| &n.key).collect()
    } else if body.contains('*') {
        graph.keys().filter(|k| glob(body, &k.to_string())).collect()
    } else if let Some((kind, _)) = body.split_once(':') {
        return Err(format!("unknown selector `{kind}:`; use `tag:`, `schema:` or `source:`"));
    } else {
        let key = AssetKey::parse(&body.to_lowercase())
            .or_else(|| AssetKey::parse(body))
            .ok_or_else(|| format!("`{body}` is not an asset key; write `<schema>.<name>`"))?;
        match graph.node(&key).or_else(|| AssetKey::parse(body).and_then(|k| graph.node(&k))) {
            Some(n) => vec![&n.key],
            None => {
                let names: Vec<String> = graph.keys().map(|k| k.to_string()).collect();
                let hint = did_you_mean(body, names.iter().map(String::as_str))
                    .map(|n| format!("; did you mean `{n}`?"))
                    .unwrap_or_default();
                return Err(format!("no asset `{body}`{hint}"));
            }
        }
    };
    if found.is_empty() {
        return Err(format!("`{body}` matches no asset"));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::AssetNode;

    fn graph() -> AssetGraph {
        let node = |s: &str, tags: &[&str]| AssetNode {
            key: AssetKey::parse(s).unwrap(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            source: s.starts_with("bronze").then(|| "v3".to_string()),
        };
        let k = |s: &str| AssetKey::parse(s).unwrap();
        AssetGraph::new(
            [
                node("bronze.v3__inv", &[]),
                node("silver.fact_inv", &["nightly"]),
                node("silver.dim_c", &[]),
                node("gold.rev", &["nightly", "finance"]),
            ],
            [
                (k("bronze.v3__inv"), k("silver.fact_inv")),
                (k("silver.fact_inv"), k("gold.rev")),
                (k("silver.dim_c"), k("gold.rev")),
            ],
        )
    }

    fn sel(s: &str) -> Vec<String> {
        let g = graph();
        select(&g, s).unwrap().into_iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn every_form() {
        assert_eq!(sel("silver.fact_inv"), vec!["silver.fact_inv"]);
        assert_eq!(sel("+silver.fact_inv"), vec!["bronze.v3__inv", "silver.fact_inv"]);
        assert_eq!(sel("silver.fact_inv+"), vec!["gold.rev", "silver.fact_inv"]);
        assert_eq!(sel("tag:finance"), vec!["gold.rev"]);
        assert_eq!(sel("schema:silver"), vec!["silver.dim_c", "silver.fact_inv"]);
        assert_eq!(sel("source:v3"), vec!["bronze.v3__inv"]);
        assert_eq!(sel("*").len(), 4);
        assert_eq!(sel("silver.*"), vec!["silver.dim_c", "silver.fact_inv"]);
        assert_eq!(sel("tag:finance, silver.dim_c schema:bronze"), vec!["bronze.v3__inv", "gold.rev", "silver.dim_c"]);
        assert_eq!(sel("SILVER.DIM_C"), vec!["silver.dim_c"]);
    }

    #[test]
    fn bad_selections_explain_themselves() {
        let g = graph();
        let e = select(&g, "silver.fact_in").unwrap_err().to_string();
        assert!(e.contains("did you mean `silver.fact_inv`"), "{e}");
        assert!(select(&g, "owner:x").unwrap_err().to_string().contains("unknown selector"));
        assert!(select(&g, "tag:none").unwrap_err().to_string().contains("matches no asset"));
        assert!(select(&g, " ").is_err());
    }
}
