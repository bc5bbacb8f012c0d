//! The tables a model reads, taken from its SQL: schema-qualified table references, without CTE
//! names, with identifiers normalised as DataFusion does (unquoted folded to lower case, quoted
//! kept as written). This is how dependencies are found: no `ref()` in Basin SQL.

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{ObjectName, ObjectNamePart, Query, Statement, TableFactor, Visit, Visitor};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

/// A table named in a query, normalised, with its 1-based position in the SQL text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRef {
    /// `[schema, name]`, or `[name]` when not qualified (`[catalog, schema, name]` reduced).
    pub parts: Vec<String>,
    pub line: usize,
    pub col: usize,
}

impl TableRef {
    pub fn display(&self) -> String {
        self.parts.join(".")
    }
}

/// Why a model's SQL is not a query Basin can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlProblem {
    pub message: String,
    pub line: usize,
    pub col: usize,
}

/// Parse `sql` (one query) and list the tables it reads.
pub fn table_refs(sql: &str) -> Result<Vec<TableRef>, SqlProblem> {
    let statements = Parser::parse_sql(&GenericDialect {}, sql).map_err(|e| {
        let text = e.to_string();
        // An error at the end of the input carries no position: point past the last character.
        let (line, col) =
            position_in_message(&text).unwrap_or_else(|| crate::diagnostic::line_col(sql, sql.trim_end().len()));
        let message =
            text.trim_start_matches("sql parser error: ").split(" at Line: ").next().unwrap_or(&text).to_string();
        SqlProblem { message: format!("SQL syntax error: {message}"), line, col }
    })?;
    let statement = match statements.as_slice() {
        [] => return Err(SqlProblem { message: "the model has no SQL query".into(), line: 1, col: 1 }),
        [s @ Statement::Query(_)] => s,
        [Statement::Query(_), second, ..] => {
            let (line, col) = start_of(second);
            return Err(SqlProblem {
                message: "a model holds exactly one query; found a second statement".into(),
                line,
                col,
            });
        }
        [other, ..] => {
            let (line, col) = start_of(other);
            return Err(SqlProblem {
                message: "a model is a SELECT query; Basin writes the table itself, so DDL and DML are not allowed"
                    .into(),
                line,
                col,
            });
        }
    };
    let mut collector = Collector::default();
    let _ = statement.visit(&mut collector);
    let ctes = collector.ctes;
    Ok(collector.refs.into_iter().filter(|r| !(r.parts.len() == 1 && ctes.contains(&r.parts[0]))).collect())
}

fn start_of(statement: &Statement) -> (usize, usize) {
    use sqlparser::ast::Spanned;
    let start = statement.span().start;
    (start.line.max(1) as usize, start.column.max(1) as usize)
}

fn position_in_message(text: &str) -> Option<(usize, usize)> {
    let rest = &text[text.find("Line: ")? + 6..];
    let line = rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?;
    let rest = &rest[rest.find("Column: ")? + 8..];
    let col = rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?;
    Some((line, col))
}

#[derive(Default)]
struct Collector {
    refs: Vec<TableRef>,
    ctes: HashSet<String>,
}

fn normalise(ident: &sqlparser::ast::Ident) -> String {
    if ident.quote_style.is_some() { ident.value.clone() } else { ident.value.to_lowercase() }
}

impl Visitor for Collector {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            self.ctes.extend(with.cte_tables.iter().map(|cte| normalise(&cte.alias.name)));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, args: None, .. } = factor {
            self.add(name);
        }
        ControlFlow::Continue(())
    }
}

impl Collector {
    fn add(&mut self, name: &ObjectName) {
        let idents: Vec<&sqlparser::ast::Ident> = name
            .0
            .iter()
            .filter_map(|p| match p {
                ObjectNamePart::Identifier(i) => Some(i),
                _ => None,
            })
            .collect();
        let Some(first) = idents.first() else { return };
        let start = first.span.start;
        let mut parts: Vec<String> = idents.iter().map(|i| normalise(i)).collect();
        if parts.len() > 2 {
            parts.drain(..parts.len() - 2);
        }
        self.refs.push(TableRef { parts, line: start.line.max(1) as usize, col: start.column.max(1) as usize });
    }
}

/// `sql` with every reference to the table `parts` (`[schema, name]`, normalised as
/// [`TableRef::parts`], optionally catalog-qualified) replaced by the unqualified name `to`,
/// which must be a plain identifier. Text, comments and positions elsewhere are kept; a column
/// qualified by the table's full name (`bronze_current.x.id`) follows it. Errors are the
/// tokenizer's.
pub fn rename_table(sql: &str, parts: &[String], to: &str) -> Result<String, String> {
    use sqlparser::tokenizer::{Token, Tokenizer};
    let tokens = Tokenizer::new(&GenericDialect {}, sql).tokenize().map_err(|e| e.to_string())?;
    let word = |t: &Token| match t {
        Token::Word(w) => Some(normalise(&sqlparser::ast::Ident {
            value: w.value.clone(),
            quote_style: w.quote_style,
            span: sqlparser::tokenizer::Span::empty(),
        })),
        _ => None,
    };
    // The indices of the tokens that are not whitespace or comments.
    let solid: Vec<usize> = (0..tokens.len()).filter(|&i| !matches!(tokens[i], Token::Whitespace(_))).collect();
    let mut replace: Vec<(usize, usize)> = Vec::new(); // token ranges, inclusive
    let n = parts.len();
    let mut k = 0;
    while k + 2 * n - 1 <= solid.len() && n > 0 {
        let matches = (0..n).all(|j| {
            word(&tokens[solid[k + 2 * j]]).as_deref() == Some(parts[j].as_str())
                && (j + 1 == n || tokens[solid[k + 2 * j + 1]] == Token::Period)
        });
        let after_period = k > 0 && tokens[solid[k - 1]] == Token::Period;
        if matches && !after_period {
            replace.push((solid[k], solid[k + 2 * n - 2]));
            k += 2 * n - 1;
        } else if matches && k >= 2 && word(&tokens[solid[k - 2]]).is_some() {
            // A catalog before the schema goes too: `basin.bronze_current.x`.
            let before_catalog = k >= 3 && tokens[solid[k - 3]] == Token::Period;
            if !before_catalog {
                replace.push((solid[k - 2], solid[k + 2 * n - 2]));
            }
            k += 2 * n - 1;
        } else {
            k += 1;
        }
    }
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    for (start, end) in replace {
        for t in &tokens[i..start] {
            out.push_str(&t.to_string());
        }
        out.push_str(to);
        i = end + 1;
    }
    for t in &tokens[i..] {
        out.push_str(&t.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_a_table_wherever_the_query_names_it() {
        let to = |sql: &str| rename_table(sql, &["bronze_current".into(), "orders".into()], "__changes").unwrap();
        assert_eq!(
            to("/* basin */\nSELECT o.id, Bronze_Current . Orders.amount FROM bronze_current.orders o \
                JOIN bronze_current.orders_x x ON true JOIN silver.orders s ON true"),
            "/* basin */\nSELECT o.id, __changes.amount FROM __changes o \
                JOIN bronze_current.orders_x x ON true JOIN silver.orders s ON true"
        );
        assert_eq!(to("SELECT * FROM basin.bronze_current.orders"), "SELECT * FROM __changes");
        assert_eq!(
            to("SELECT 'bronze_current.orders' FROM \"bronze_current\".\"orders\""),
            "SELECT 'bronze_current.orders' FROM __changes"
        );
        assert_eq!(to("SELECT * FROM \"Bronze_current\".orders"), "SELECT * FROM \"Bronze_current\".orders");
    }

    fn names(sql: &str) -> Vec<String> {
        table_refs(sql).unwrap().iter().map(TableRef::display).collect()
    }

    #[test]
    fn finds_qualified_tables_in_joins_and_subqueries() {
        let sql = "SELECT * FROM silver.a JOIN Silver.B b ON a.id = b.id \
                   WHERE a.x IN (SELECT x FROM gold.c) AND EXISTS (SELECT 1 FROM (SELECT * FROM bronze.d) sub)";
        assert_eq!(names(sql), vec!["silver.a", "silver.b", "gold.c", "bronze.d"]);
    }

    #[test]
    fn excludes_ctes_and_keeps_quoted_case() {
        let sql = "WITH recent AS (SELECT * FROM silver.orders), \"Big\" AS (SELECT * FROM recent) \
                   SELECT * FROM \"Big\" JOIN \"Silver\".\"Customers\" c ON true JOIN recent r ON true";
        assert_eq!(names(sql), vec!["silver.orders", "Silver.Customers"]);
    }

    #[test]
    fn unqualified_and_catalog_qualified() {
        assert_eq!(names("SELECT * FROM orders"), vec!["orders"]);
        assert_eq!(names("SELECT * FROM datafusion.silver.x"), vec!["silver.x"]);
        assert!(names("SELECT * FROM generate_series(1, 3)").is_empty());
    }

    #[test]
    fn positions_and_errors() {
        let refs = table_refs("SELECT 1\nFROM   silver.x").unwrap();
        assert_eq!((refs[0].line, refs[0].col), (2, 8));
        let e = table_refs("SELECT a,\nFROM (").unwrap_err();
        assert!(e.message.starts_with("SQL syntax error"), "{e:?}");
        assert_eq!((e.line, e.col), (2, 7));
        let e = table_refs("SELECT a\nFROM silver.x y z").unwrap_err();
        assert_eq!((e.line, e.col), (2, 17), "{e:?}");
        assert!(e.message.contains("found: z"), "{e:?}");
        assert!(table_refs("DROP TABLE silver.x").unwrap_err().message.contains("SELECT"));
        assert!(table_refs("SELECT 1; SELECT 2").unwrap_err().message.contains("exactly one"));
    }
}
