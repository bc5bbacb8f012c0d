//! The HTTP API, with the wire endpoint's users, grants, masks, statement gate and query log:
//! - `POST /api/sql`, the SQL as the body (`Content-Type: application/sql`) or as
//!   `{"sql": "…"}` (`application/json`): one query, its rows streamed batch by batch as a
//!   JSON array, JSON lines (`Accept: application/x-ndjson`), CSV (`Accept: text/csv`) or an
//!   Arrow IPC stream (`Accept: application/vnd.apache.arrow.stream`);
//! - `GET /api/assets`: every asset the caller may read, with owner, tags, columns and its
//!   latest materialisation;
//! - `POST /api/token`: a bearer token (valid one hour) for the basic-authenticated caller;
//! - `GET /metrics`: Prometheus's text format (see [`crate::metrics`]).
//!
//! Authentication is `Authorization: Basic` (user and password) or `Bearer` (a token).
//!
//! Browsers are clients too: a request whose `Host` is a name the server was not configured
//! with (DNS rebinding), or whose `Origin` is another site's, is refused before anything else;
//! a statement needs a content type no HTML form or simple `fetch` can send, and no CORS
//! header is ever sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use basin_core::{AssetKey, Project};
use datafusion_postgres::pgwire::error::ErrorInfo;
use serde::Serialize;

use crate::Server;
use crate::answer::Encoding;
use crate::log::Pending;
use crate::policy::Role;
use crate::statement::{self, Admitted, Refused};

const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

#[derive(Default)]
pub struct Tokens(Mutex<HashMap<String, (String, Instant)>>);

/// An asset as `GET /api/assets` describes it.
#[derive(Debug, Clone, Serialize)]
pub struct AssetInfo {
    pub asset: String,
    pub kind: &'static str,
    pub owner: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub columns: Vec<ColumnInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ColumnInfo {
    pub name: String,
    pub description: Option<String>,
    pub tags: Vec<String>,
}

impl AssetInfo {
    pub fn of(project: &Project) -> Vec<AssetInfo> {
        let columns = |c: &std::collections::BTreeMap<String, basin_core::model::ColumnConfig>| {
            c.iter()
                .map(|(name, c)| ColumnInfo {
                    name: name.clone(),
                    description: c.description.clone(),
                    tags: c.tags.clone(),
                })
                .collect()
        };
        let mut out: Vec<AssetInfo> = project
            .bronze
            .iter()
            .map(|(key, t)| {
                let source = project.sources.get(&t.source);
                AssetInfo {
                    asset: key.to_string(),
                    kind: "source_table",
                    owner: source.and_then(|s| s.config.owner.clone()),
                    description: t.description.clone(),
                    tags: source.map(|s| s.config.tags.clone()).unwrap_or_default(),
                    columns: columns(&t.columns),
                }
            })
            .collect();
        out.extend(project.models.iter().map(|(key, m)| AssetInfo {
            asset: key.to_string(),
            kind: "model",
            owner: m.config.owner.clone(),
            description: m.config.description.clone(),
            tags: m.config.tags.clone(),
            columns: columns(&m.config.columns),
        }));
        out
    }
}

pub fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/api/sql", post(sql))
        .route("/api/assets", get(assets))
        .route("/api/token", post(token))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(server.clone(), only_expected_browsers))
        .with_state(server)
}

/// Only `GET /metrics` (for `basin daemon --metrics-listen`), with the same users and checks.
pub fn metrics_router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(server.clone(), only_expected_browsers))
        .with_state(server)
}

/// Which `Host` and `Origin` headers the API accepts.
pub struct Browsers {
    /// Host names (lower case) besides IP addresses and `localhost`.
    hosts: Vec<String>,
    /// Origins (`scheme://host[:port]`, lower case) besides the API's own.
    origins: Vec<String>,
}

impl Browsers {
    pub fn new(serve: &basin_core::serve::ServeSection) -> Browsers {
        Browsers {
            hosts: serve.allowed_hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            origins: serve.allowed_origins.iter().map(|o| o.trim_end_matches('/').to_ascii_lowercase()).collect(),
        }
    }

    /// Whether a request naming `host` (the `Host` header: a name or address, maybe a port) is
    /// for this server. An IP address cannot be rebound to another site; a name must be known.
    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let name = match host.strip_prefix('[') {
            Some(v6) => return v6.split(']').next().is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok()),
            None => host.rsplit_once(':').map_or(host.as_str(), |(n, port)| {
                if port.chars().all(|c| c.is_ascii_digit()) { n } else { host.as_str() }
            }),
        };
        name.parse::<std::net::Ipv4Addr>().is_ok()
            || name == "localhost"
            || name.ends_with(".localhost")
            || self.hosts.iter().any(|h| h == name)
    }

    /// Whether a request from a page of `origin` may be served: the API's own origin (same
    /// host and port as the request's `Host`), or one configured.
    fn origin_allowed(&self, origin: &str, host: &str) -> bool {
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        let own =
            ["http://", "https://"].iter().any(|scheme| origin == format!("{scheme}{}", host.to_ascii_lowercase()));
        own || self.origins.contains(&origin)
    }
}

/// Refuse a request another site's page made: a `Host` this server does not go by, or an
/// `Origin` that is neither the API's own nor allowed. Nothing of the request runs.
async fn only_expected_browsers(
    State(server): State<Arc<Server>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    if !server.browsers.host_allowed(&host) {
        tracing::warn!(host, "HTTP request refused: its Host is not a name this server goes by");
        return ApiError(
            StatusCode::MISDIRECTED_REQUEST,
            "this server does not answer to that host name; add it to `serve.allowed_hosts`".into(),
            Some("42501".into()),
        )
        .into_response();
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("null");
        if !server.browsers.origin_allowed(origin, &host) {
            tracing::warn!(origin, "HTTP request refused: cross-origin");
            return ApiError(
                StatusCode::FORBIDDEN,
                "cross-origin requests are refused; add the page's origin to `serve.allowed_origins`".into(),
                Some("42501".into()),
            )
            .into_response();
        }
    }
    next.run(request).await
}

struct ApiError(StatusCode, String, Option<String>);

impl IntoResponse for ApiError {
    /// The answer carries an error id that is also in the server's log, so that a user's report
    /// of a failed request finds its log line.
    fn into_response(self) -> Response {
        let id = uuid::Uuid::now_v7().to_string();
        let (status, sqlstate) = (self.0.as_u16(), self.2.as_deref().unwrap_or(""));
        if self.0.is_server_error() {
            tracing::error!(error_id = %id, status, sqlstate, "HTTP API request failed: {}", self.1);
        } else {
            tracing::warn!(error_id = %id, status, sqlstate, "HTTP API request refused: {}", self.1);
        }
        let body = serde_json::json!({ "error": self.1, "sqlstate": self.2, "error_id": id });
        let mut r = (self.0, axum::Json(body)).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, "Basic realm=\"basin\"".parse().expect("valid header"));
        }
        r
    }
}

fn unauthorized() -> ApiError {
    ApiError(StatusCode::UNAUTHORIZED, "authentication failed".into(), Some("28P01".into()))
}

/// The caller's user name and role.
fn authenticate(
    server: &Server,
    headers: &HeaderMap,
    peer: Option<std::net::SocketAddr>,
) -> Result<(String, Arc<Role>), ApiError> {
    let role = |user: String, role: &str| server.roles.get(role).cloned().map(|r| (user, r)).ok_or_else(unauthorized);
    let Some(auth) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return match peer.and_then(|p| server.unauthenticated_role(p)) {
            // Without a password the client is known by its role.
            Some(r) => role(r.clone(), &r),
            None => Err(unauthorized()),
        };
    };
    if let Some(b) = auth.strip_prefix("Basic ") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(b.trim()).map_err(|_| unauthorized())?;
        let text = String::from_utf8(decoded).map_err(|_| unauthorized())?;
        let (user, password) = text.split_once(':').ok_or_else(unauthorized)?;
        let r = server.users.check_password(user, password).ok_or_else(unauthorized)?.to_string();
        return role(user.to_string(), &r);
    }
    if let Some(t) = auth.strip_prefix("Bearer ") {
        let mut tokens = server.tokens.0.lock().expect("lock");
        tokens.retain(|_, (_, issued)| issued.elapsed() < TOKEN_LIFETIME);
        let user = tokens.get(t.trim()).map(|(u, _)| u.clone()).ok_or_else(unauthorized)?;
        drop(tokens);
        let r = server.users.get(&user).map(|(_, r)| r.clone()).ok_or_else(unauthorized)?;
        return role(user, &r);
    }
    Err(unauthorized())
}

async fn token(
    State(server): State<Arc<Server>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).is_some_and(|a| a.starts_with("Basic ")) {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "a token is issued for a user and password (Basic)".into(),
            None,
        ));
    }
    let (user, _) = authenticate(&server, &headers, Some(peer))?;
    let mut bytes = [0u8; 24];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).expect("random");
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    server.tokens.0.lock().expect("lock").insert(token.clone(), (user, Instant::now()));
    Ok(axum::Json(serde_json::json!({ "token": token, "expires_in": TOKEN_LIFETIME.as_secs() })).into_response())
}

/// The SQL of a `POST /api/sql` body. Only content types a page cannot send without a CORS
/// preflight are accepted, so that no web page can make a browser run a statement.
fn request_sql(headers: &HeaderMap, body: &Bytes) -> Result<String, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let mime = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let text = || {
        String::from_utf8(body.to_vec())
            .map_err(|_| ApiError(StatusCode::BAD_REQUEST, "the body is not UTF-8".into(), Some("22021".into())))
    };
    match mime.as_str() {
        "application/sql" => text(),
        "application/json" => {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Body {
                sql: String,
            }
            serde_json::from_slice::<Body>(body).map(|b| b.sql).map_err(|e| {
                ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("the body is not {{\"sql\": \"…\"}}: {e}"),
                    Some("22P02".into()),
                )
            })
        }
        _ => Err(ApiError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the SQL with `Content-Type: application/sql`, or as {\"sql\": \"…\"} with \
             `Content-Type: application/json`"
                .into(),
            None,
        )),
    }
}

async fn sql(
    State(server): State<Arc<Server>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let query = request_sql(&headers, &body)?;
    let (user, role) = authenticate(&server, &headers, Some(peer))?;
    let pending = Arc::new(Pending::new(server.log.clone(), &user, &role.name, "http", &query));
    let status_of = |code: &str| match code {
        "42501" => StatusCode::FORBIDDEN,
        "57014" => StatusCode::REQUEST_TIMEOUT,
        c if c.starts_with("42") || c.starts_with("22") || c == "0A000" => StatusCode::BAD_REQUEST,
        "53200" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let refuse = |r: Refused| {
        pending.refuse(&ErrorInfo::new("ERROR".into(), r.code.into(), r.message.clone()));
        ApiError(status_of(r.code), r.message, Some(r.code.to_string()))
    };
    let fail = |e: datafusion::error::DataFusionError| {
        let (code, message) = crate::errors::classify(&e);
        pending.fail(&ErrorInfo::new("ERROR".into(), code.into(), message.clone()));
        ApiError(status_of(code), message, Some(code.to_string()))
    };
    // One query per request, admitted as on the wire endpoint: every statement of the body is
    // admitted first, so a write hidden after a query is refused as a write.
    let statements = statement::parse(&query).map_err(refuse)?;
    let mut kinds = Vec::with_capacity(statements.len());
    for s in &statements {
        kinds.push(statement::admit(s, &role).map_err(refuse)?);
    }
    let mut statement = match (statements.len(), kinds.first()) {
        (0, _) => return Err(refuse(Refused { code: "42601", message: "the body holds no statement".into() })),
        (1, Some(Admitted::Query)) => statements.into_iter().next().expect("one"),
        (1, _) => {
            return Err(refuse(Refused::unsupported(
                "over HTTP a request is one query; SET, SHOW of a setting, transactions, cursors and COPY are for the \
                 PostgreSQL endpoint",
            )));
        }
        _ => return Err(refuse(Refused::unsupported("one statement per request: send each query on its own"))),
    };
    statement::identify(&mut statement, &user);
    let deadline = role.statement_timeout.map(|t| tokio::time::Instant::now() + t);
    let timed_out = || {
        let info =
            ErrorInfo::new("ERROR".into(), "57014".into(), "canceling statement due to statement timeout".into());
        pending.fail(&info);
        ApiError(StatusCode::REQUEST_TIMEOUT, info.message, Some(info.code))
    };
    let session = server.lakehouse.session(&role).await.map_err(|e| match e {
        crate::Error::Query(q) => fail(q),
        other => fail(datafusion::error::DataFusionError::External(Box::new(other))),
    })?;
    let start = crate::meter::scope(pending.bytes.clone(), async {
        let mut plan = session.plan(statement).await?;
        if let Some(limit) = role.max_rows {
            plan = datafusion::logical_expr::LogicalPlanBuilder::from(plan).limit(0, Some(limit as usize))?.build()?;
        }
        // An export (rows as they are stored, filtered and projected) is encoded on one thread
        // whatever the plan, so decoding it over every core buys little and holds a row group
        // per core: it runs in one partition. Queries that compute use every core.
        let mut state = session.ctx.state();
        if crate::answer::is_export(&plan) {
            state.config_mut().options_mut().execution.target_partitions = 1;
        }
        datafusion::dataframe::DataFrame::new(state, plan).execute_stream().await
    });
    let batches = match deadline {
        Some(d) => tokio::time::timeout_at(d, start).await.map_err(|_| timed_out())?,
        None => start.await,
    }
    .map_err(fail)?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let format = Encoding::for_accept(accept);
    let body = crate::answer::stream(batches, format, pending.clone(), deadline)
        .map_err(|e| fail(datafusion::error::DataFusionError::ArrowError(Box::new(e), None)))?;
    let mut response = Response::new(axum::body::Body::from_stream(body));
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(format.content_type()));
    if let Some(limit) = role.max_rows {
        response.headers_mut().insert("basin-row-limit", limit.into());
    }
    Ok(response)
}

/// `GET /metrics`: Prometheus's text format, as the caller's role may see it.
async fn metrics(
    State(server): State<Arc<Server>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (_, role) = authenticate(&server, &headers, Some(peer))?;
    let text = crate::metrics::render(&server, &role)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e, None))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response())
}

async fn assets(
    State(server): State<Arc<Server>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (_, role) = authenticate(&server, &headers, Some(peer))?;
    let latest = server
        .lakehouse
        .store
        .latest_materializations()
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None))?;
    let session = server
        .lakehouse
        .session(&role)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None))?;
    let mut out = Vec::new();
    for a in &server.assets {
        let Some(key) = AssetKey::parse(&a.asset) else { continue };
        if !role.may_read(&key.schema, &key.name) {
            continue;
        }
        // The schema as the role sees it (masked columns may change type).
        let schema = match session.ctx.table_provider(a.asset.as_str()).await {
            Ok(p) => Some(
                p.schema()
                    .fields()
                    .iter()
                    .map(|f| serde_json::json!({ "name": f.name(), "type": f.data_type().to_string(), "nullable": f.is_nullable() }))
                    .collect::<Vec<_>>(),
            ),
            Err(_) => None,
        };
        let mut v = serde_json::to_value(a).expect("serialisable");
        v["schema"] = serde_json::json!(schema);
        v["latest_materialization"] = serde_json::json!(latest.get(&a.asset).map(|t| t.to_rfc3339()));
        out.push(v);
    }
    Ok(axum::Json(out).into_response())
}
