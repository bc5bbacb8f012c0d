//! SQLSTATEs for what goes wrong in a statement, so clients and BI tools can tell a typo from
//! a missing table from a refusal. A statement's error never closes the connection.

use datafusion::common::DataFusionError;
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError};

use crate::catalog::PermissionDenied;
use crate::statement::Refused;

/// The SQLSTATE and message of `e`.
pub fn error_info(e: &PgWireError) -> ErrorInfo {
    let (code, message) = match e {
        PgWireError::UserError(info) => {
            return ErrorInfo::new(info.severity.clone(), info.code.clone(), info.message.clone());
        }
        PgWireError::ApiError(inner) => classify(inner.as_ref()),
        other => ("XX000", other.to_string()),
    };
    ErrorInfo::new("ERROR".into(), code.into(), message)
}

/// SQLSTATE of an error from planning or running a statement.
pub fn classify(e: &(dyn std::error::Error + 'static)) -> (&'static str, String) {
    if let Some(df) = e.downcast_ref::<DataFusionError>() {
        return classify_datafusion(df);
    }
    if e.downcast_ref::<datafusion::sql::sqlparser::parser::ParserError>().is_some() {
        return ("42601", format!("syntax error: {e}"));
    }
    if let Some(p) = e.downcast_ref::<PermissionDenied>() {
        return ("42501", p.to_string());
    }
    if let Some(r) = e.downcast_ref::<Refused>() {
        return (r.code, r.message.clone());
    }
    ("XX000", e.to_string())
}

fn classify_datafusion(e: &DataFusionError) -> (&'static str, String) {
    let root = e.find_root();
    let message = root.to_string();
    let code = match root {
        DataFusionError::External(inner) => return classify(inner.as_ref()),
        DataFusionError::SQL(..) => "42601",
        DataFusionError::NotImplemented(_) => "0A000",
        DataFusionError::ResourcesExhausted(_) => "53200",
        DataFusionError::SchemaError(..) if message.contains("No field named") => "42703",
        DataFusionError::Plan(m) if m.contains("not found") && m.contains("table") => "42P01",
        DataFusionError::Plan(m) if m.contains("Unsupported") || m.contains("not supported") => "0A000",
        DataFusionError::Plan(_) | DataFusionError::SchemaError(..) => "42000",
        DataFusionError::ArrowError(..) => "22000",
        DataFusionError::Execution(m) if m.contains("Cast") || m.contains("cast") => "22000",
        _ => "XX000",
    };
    (code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_get_their_sqlstate() {
        let api = |e: DataFusionError| PgWireError::ApiError(Box::new(e));
        let code = |e: PgWireError| error_info(&e).code;
        assert_eq!(code(api(DataFusionError::Plan("table 'basin.public.nope' not found".into()))), "42P01");
        assert_eq!(code(api(DataFusionError::NotImplemented("COPY".into()))), "0A000");
        let denied = DataFusionError::External(Box::new(PermissionDenied("silver.x".into())));
        assert_eq!(code(api(denied.context("while planning"))), "42501");
        let parse = datafusion::sql::sqlparser::parser::ParserError::ParserError("Expected: an SQL statement".into());
        assert_eq!(code(PgWireError::ApiError(Box::new(parse))), "42601");
    }
}
