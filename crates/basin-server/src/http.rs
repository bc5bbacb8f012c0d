//! The HTTP API, with the wire endpoint's users, grants, masks and query log:
//! - `POST /api/sql` (the body is the SQL): JSON rows, CSV (`Accept: text/csv`) or an Arrow
//!   IPC stream (`Accept: application/vnd.apache.arrow.stream`);
//! - `GET /api/assets`: every asset the caller may read, with owner, tags, columns and its
//!   latest materialisation;
//! - `POST /api/token`: a bearer token (valid one hour) for the basic-authenticated caller.
//!
//! Authentication is `Authorization: Basic` (user and password) or `Bearer` (a token).

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
use datafusion::arrow::array::RecordBatch;
use serde::Serialize;

use crate::Server;
use crate::log::Pending;
use crate::policy::Role;

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
        .with_state(server)
}

struct ApiError(StatusCode, String, Option<String>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.1, "sqlstate": self.2 });
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
            Some(r) => role(String::new(), &r),
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

async fn sql(
    State(server): State<Arc<Server>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (user, role) = authenticate(&server, &headers, Some(peer))?;
    let query = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError(StatusCode::BAD_REQUEST, "the body is not UTF-8 SQL".into(), Some("22021".into())))?;
    let pending = Arc::new(Pending::new(server.log.clone(), &user, &role.name, "http", &query));
    let fail = |e: datafusion::error::DataFusionError| {
        let (code, message) = crate::errors::classify(&e);
        pending.fail(&datafusion_postgres::pgwire::error::ErrorInfo::new("ERROR".into(), code.into(), message.clone()));
        let status = match code {
            "42501" => StatusCode::FORBIDDEN,
            "57014" => StatusCode::REQUEST_TIMEOUT,
            c if c.starts_with("42") || c.starts_with("22") || c == "0A000" => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, message, Some(code.to_string()))
    };
    let session = server.lakehouse.session(&role).await.map_err(|e| match e {
        crate::Error::Query(q) => fail(q),
        other => fail(datafusion::error::DataFusionError::External(Box::new(other))),
    })?;
    let work = crate::meter::scope(pending.bytes.clone(), async {
        let df = session.ctx.sql(&query).await?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await?;
        Ok::<_, datafusion::error::DataFusionError>((schema, batches))
    });
    let (schema, batches) = match role.statement_timeout {
        Some(t) => tokio::time::timeout(t, work).await.map_err(|_| {
            let info = datafusion_postgres::pgwire::error::ErrorInfo::new(
                "ERROR".into(),
                "57014".into(),
                "canceling statement due to statement timeout".into(),
            );
            pending.fail(&info);
            ApiError(StatusCode::REQUEST_TIMEOUT, info.message, Some(info.code))
        })?,
        None => work.await,
    }
    .map_err(fail)?;
    pending.rows.store(batches.iter().map(|b| b.num_rows() as i64).sum(), std::sync::atomic::Ordering::Relaxed);
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    encode(accept, schema, &batches).map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None))
}

fn encode(
    accept: &str,
    schema: datafusion::arrow::datatypes::SchemaRef,
    batches: &[RecordBatch],
) -> Result<Response, datafusion::arrow::error::ArrowError> {
    use datafusion::arrow::{csv, ipc, json};
    if accept.contains("application/vnd.apache.arrow.stream") {
        let mut w = ipc::writer::StreamWriter::try_new(Vec::new(), &schema)?;
        for b in batches {
            w.write(b)?;
        }
        let body = w.into_inner()?;
        return Ok(([(header::CONTENT_TYPE, "application/vnd.apache.arrow.stream")], body).into_response());
    }
    if accept.contains("text/csv") {
        let mut w = csv::WriterBuilder::new().with_header(true).build(Vec::new());
        for b in batches {
            w.write(b)?;
        }
        return Ok(([(header::CONTENT_TYPE, "text/csv")], w.into_inner()).into_response());
    }
    let mut w = json::ArrayWriter::new(Vec::new());
    for b in batches {
        w.write(b)?;
    }
    w.finish()?;
    let mut body = w.into_inner();
    if body.is_empty() {
        body = b"[]".to_vec();
    }
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
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
