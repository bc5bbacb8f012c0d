//! `basin serve`'s settings in `basin.toml`: where it listens (`[serve]`), who may connect
//! (`[users.<name>]`) and what each role may read and sees masked (`[roles.<name>]`).
//!
//! ```toml
//! [serve]
//! listen = "127.0.0.1:5433"        # PostgreSQL wire protocol
//! http_listen = "127.0.0.1:8080"   # HTTP API
//!
//! [users.ana]
//! role = "analyst"
//! password = "SCRAM-SHA-256$4096:…$…:…"   # `basin serve --hash-password` prints one
//!
//! [roles.analyst]
//! select = ["gold", "silver.dim_customer"]   # schemas, schema.table, or "*"
//! mask = { "pii:email" = "mask_email", "pii" = "redact" }
//! statement_timeout = "30s"
//! memory_limit = "2GiB"
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::diagnostic::{Diagnostic, Location};
use crate::values::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ServeSection {
    /// Address of the PostgreSQL wire endpoint.
    pub listen: String,
    /// Address of the HTTP API.
    pub http_listen: String,
    /// PEM certificate and PKCS#8 key (relative to the project): TLS on both endpoints.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Let clients in without a password, as `unauthenticated_role`. Only when both endpoints
    /// listen on a loopback address.
    pub allow_unauthenticated: bool,
    pub unauthenticated_role: Option<String>,
    /// Connections served at once; more are refused (0: no limit).
    pub max_connections: usize,
    /// The catalog follows every materialisation the metadata store records; it is also
    /// re-read this often, for writes made without Basin.
    pub refresh_interval: String,
    /// Host names the HTTP API answers to besides IP addresses and `localhost`: a request
    /// naming another host in its `Host` header is refused (a DNS-rebinding page's would).
    pub allowed_hosts: Vec<String>,
    /// Web origins (`https://bi.example.com`) whose pages may call the HTTP API, besides the
    /// API's own; any other cross-origin request is refused.
    pub allowed_origins: Vec<String>,
}

impl Default for ServeSection {
    fn default() -> Self {
        ServeSection {
            listen: "127.0.0.1:5433".into(),
            http_listen: "127.0.0.1:8080".into(),
            tls_cert: None,
            tls_key: None,
            allow_unauthenticated: false,
            unauthenticated_role: None,
            max_connections: 256,
            refresh_interval: "30s".into(),
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct UserConfig {
    pub role: String,
    /// A SCRAM-SHA-256 verifier (`SCRAM-SHA-256$<iterations>:<salt>$<stored key>:<server key>`,
    /// as PostgreSQL stores them), never the password itself.
    pub password: Option<Secret>,
    /// Or: the environment variable holding the password, read when the server starts.
    pub password_env: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RoleConfig {
    /// What the role may read: `"*"`, a schema (`"gold"`), or a table (`"silver.dim_customer"`).
    pub select: Vec<String>,
    /// Column tag → masking function. A tag also matches the tags it prefixes (`pii` matches
    /// `pii:email`); the longest match wins.
    pub mask: BTreeMap<String, String>,
    /// Longest a statement may run (`"30s"`).
    pub statement_timeout: Option<String>,
    /// Memory the role's running queries may hold together (`"2GiB"`); past it they spill
    /// or fail with "resources exhausted".
    pub memory_limit: Option<String>,
    /// Most rows one HTTP answer carries: a longer result is cut there, and the answer's
    /// `Basin-Row-Limit` header says so.
    pub max_rows: Option<u64>,
}

/// The masking functions a role's `mask` may name.
pub const MASK_FUNCTIONS: &[(&str, &str)] = &[
    ("mask_email", "`****@example.com`: the domain kept, the local part hidden"),
    ("redact", "`****` for text, NULL for other types"),
    ("last4", "`****1234`: only the last four characters kept"),
    ("hash", "hex SHA-256 of the value: joinable, not readable"),
    ("null", "NULL"),
];

/// What is wrong with the serving settings, users and roles.
pub fn check(
    serve: &ServeSection,
    users: &BTreeMap<String, UserConfig>,
    roles: &BTreeMap<String, RoleConfig>,
    find: impl Fn(&str) -> Location,
    out: &mut Vec<Diagnostic>,
) {
    for (what, addr) in [("serve.listen", &serve.listen), ("serve.http_listen", &serve.http_listen)] {
        if addr.parse::<std::net::SocketAddr>().is_err() {
            out.push(
                Diagnostic::error(find(addr), format!("`{what}` is not an address: `{addr}`"))
                    .with_hint("e.g. \"127.0.0.1:5433\", or \"0.0.0.0:5433\" to listen on every interface"),
            );
        }
    }
    if serve.tls_cert.is_some() != serve.tls_key.is_some() {
        out.push(
            Diagnostic::error(find("tls_"), "`serve.tls_cert` and `serve.tls_key` go together")
                .with_hint("give both the PEM certificate and its private key, or neither"),
        );
    }
    if let Err(e) = crate::values::parse_duration(&serve.refresh_interval) {
        out.push(Diagnostic::error(find("refresh_interval"), format!("invalid `serve.refresh_interval`: {e}")));
    }
    for origin in &serve.allowed_origins {
        let valid = url::Url::parse(origin).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https") && u.host_str().is_some() && u.path() == "/" && u.query().is_none()
        }) && !origin.contains('*');
        if !valid {
            out.push(
                Diagnostic::error(
                    find(origin),
                    format!("`serve.allowed_origins` has `{origin}`, which is not an origin"),
                )
                .with_hint("a scheme, host and optional port, e.g. \"https://bi.example.com\"; no path, no wildcard"),
            );
        }
    }
    if serve.allow_unauthenticated {
        let loopback = [&serve.listen, &serve.http_listen]
            .iter()
            .all(|a| a.parse::<std::net::SocketAddr>().is_ok_and(|a| a.ip().is_loopback()));
        if !loopback {
            out.push(
                Diagnostic::error(
                    find("allow_unauthenticated"),
                    "`serve.allow_unauthenticated` is only allowed when both endpoints listen on a loopback address",
                )
                .with_hint("listen on 127.0.0.1, or give users passwords"),
            );
        }
        match &serve.unauthenticated_role {
            None => out.push(
                Diagnostic::error(
                    find("allow_unauthenticated"),
                    "`serve.allow_unauthenticated` needs an `unauthenticated_role`",
                )
                .with_hint("the role whose grants and masking apply to clients without a password"),
            ),
            Some(r) if !roles.contains_key(r) => {
                out.push(unknown_role(find(r), "serve.unauthenticated_role", r, roles));
            }
            Some(_) => {}
        }
    }
    for (name, user) in users {
        let at = find(&format!("[users.{name}]"));
        if !roles.contains_key(&user.role) {
            out.push(unknown_role(at.clone(), &format!("users.{name}.role"), &user.role, roles));
        }
        match (&user.password, &user.password_env) {
            (Some(_), Some(_)) => out.push(Diagnostic::error(
                at.clone(),
                format!("user `{name}` has both `password` and `password_env`; keep one"),
            )),
            (None, None) => out.push(
                Diagnostic::error(at.clone(), format!("user `{name}` has no `password` or `password_env`"))
                    .with_hint("`basin serve --hash-password` prints a SCRAM-SHA-256 verifier to put in `password`"),
            ),
            (Some(p), None) if !looks_like_verifier(p.expose()) => out.push(
                Diagnostic::error(
                    at.clone(),
                    format!("`users.{name}.password` is not a SCRAM-SHA-256 verifier; Basin never stores passwords"),
                )
                .with_hint(
                    "run `basin serve --hash-password` and paste what it prints, or use `password_env = \"VAR\"`",
                ),
            ),
            _ => {}
        }
    }
    for (name, role) in roles {
        let at = find(&format!("[roles.{name}]"));
        for grant in &role.select {
            if !valid_grant(grant) {
                out.push(
                    Diagnostic::error(at.clone(), format!("role `{name}` grants `{grant}`, which is not a grant"))
                        .with_hint("\"*\", a schema (\"gold\") or a table (\"silver.dim_customer\")"),
                );
            }
        }
        for (tag, function) in &role.mask {
            if !MASK_FUNCTIONS.iter().any(|(f, _)| f == function) {
                out.push(
                    Diagnostic::error(
                        at.clone(),
                        format!("role `{name}` masks `{tag}` with `{function}`, which is not a masking function"),
                    )
                    .with_hint(format!(
                        "one of: {}",
                        MASK_FUNCTIONS.iter().map(|(f, _)| *f).collect::<Vec<_>>().join(", ")
                    )),
                );
            }
        }
        if let Some(t) = &role.statement_timeout
            && let Err(e) = crate::values::parse_duration(t)
        {
            out.push(Diagnostic::error(at.clone(), format!("invalid `roles.{name}.statement_timeout`: {e}")));
        }
        if let Some(m) = &role.memory_limit
            && let Err(e) = crate::values::parse_size(m)
        {
            out.push(Diagnostic::error(at.clone(), format!("invalid `roles.{name}.memory_limit`: {e}")));
        }
    }
}

fn unknown_role(at: Location, key: &str, role: &str, roles: &BTreeMap<String, RoleConfig>) -> Diagnostic {
    let known: Vec<&str> = roles.keys().map(String::as_str).collect();
    Diagnostic::error(at, format!("`{key}` names role `{role}`, which no `[roles.{role}]` defines")).with_hint(
        if known.is_empty() {
            "define it, e.g. `[roles.analyst]` with `select = [\"gold\"]`".to_string()
        } else {
            format!("roles: {}", known.join(", "))
        },
    )
}

/// `*`, `schema` or `schema.table`, each part a plain identifier.
fn valid_grant(grant: &str) -> bool {
    let ident = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match grant.split_once('.') {
        _ if grant == "*" => true,
        Some((schema, table)) => ident(schema) && (table == "*" || ident(table)),
        None => ident(grant),
    }
}

/// The shape of a SCRAM-SHA-256 verifier; the server decodes it when it starts.
fn looks_like_verifier(v: &str) -> bool {
    let Some(rest) = v.strip_prefix("SCRAM-SHA-256$") else { return false };
    let Some((params, keys)) = rest.split_once('$') else { return false };
    let Some((iterations, salt)) = params.split_once(':') else { return false };
    iterations.parse::<u32>().is_ok()
        && !salt.is_empty()
        && keys.split_once(':').is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_are_schemas_tables_or_everything() {
        for ok in ["*", "gold", "silver.dim_customer", "silver.*", "basin.query_log"] {
            assert!(valid_grant(ok), "{ok}");
        }
        for bad in ["", "gold.", ".x", "a.b.c", "gold; DROP", "sil ver"] {
            assert!(!valid_grant(bad), "{bad}");
        }
    }

    #[test]
    fn verifiers_are_told_from_passwords() {
        assert!(looks_like_verifier("SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy"));
        for bad in ["hunter2", "SCRAM-SHA-256$x:salt$a:b", "SCRAM-SHA-256$4096:salt$ab", "md5abc"] {
            assert!(!looks_like_verifier(bad), "{bad}");
        }
    }
}
