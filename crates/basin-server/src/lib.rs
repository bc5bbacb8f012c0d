//! `basin serve`: every asset of the lake over the PostgreSQL wire protocol and HTTP, to the
//! users of `basin.toml`, each through their role's grants and masks, every statement in
//! the query log.

mod answer;
pub mod auth;
pub mod catalog;
mod coalesce;
mod copy;
pub mod errors;
pub mod http;
mod log;
mod lookup;
mod meter;
pub mod metrics;
pub mod pg;
pub mod policy;
mod prepared;
pub mod session;
pub mod statement;
mod stores;
pub mod system;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use basin_core::Project;
use basin_core::serve::ServeSection;
use basin_engine::Lake;
use basin_meta::MetaStore;
use datafusion_postgres::pgwire;
use tokio::net::TcpListener;

use crate::auth::Users;
use crate::policy::Role;
use crate::session::Lakehouse;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {addr}")]
    Listen { addr: String, source: std::io::Error },
    #[error("TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    Engine(#[from] basin_engine::Error),
    #[error(transparent)]
    Meta(#[from] basin_meta::Error),
    /// A metadata-store error seen by several statements at once.
    #[error(transparent)]
    SharedMeta(Arc<basin_meta::Error>),
    #[error(transparent)]
    Query(#[from] datafusion::error::DataFusionError),
}

impl From<Error> for pgwire::error::PgWireError {
    fn from(e: Error) -> Self {
        match e {
            Error::Query(q) => pgwire::error::PgWireError::ApiError(Box::new(q)),
            other => pgwire::error::PgWireError::ApiError(Box::new(other)),
        }
    }
}

/// What the endpoint serves and to whom.
pub struct Server {
    pub lakehouse: Lakehouse,
    pub users: Users,
    pub roles: BTreeMap<String, Arc<Role>>,
    unauthenticated: Option<String>,
    log: log::Sender,
    pub assets: Vec<http::AssetInfo>,
    tokens: http::Tokens,
    /// Who may call the HTTP API from where (`Host` and `Origin` checks).
    browsers: http::Browsers,
}

impl Server {
    /// The server for `project`'s lake; users' passwords named by `password_env` are read now.
    pub fn new(project: &Project, lake: Lake, store: Arc<dyn MetaStore>) -> Result<Arc<Server>, Error> {
        let config = &project.config;
        let users = Users::from_config(&config.users, |v| std::env::var(v).ok())?;
        let mut roles = BTreeMap::new();
        for (name, r) in &config.roles {
            roles.insert(name.clone(), Arc::new(Role::from_config(name, r)?));
        }
        let refresh = basin_core::source::parse_duration(&config.serve.refresh_interval)
            .map_err(|e| Error::Config(format!("serve.refresh_interval: {e}")))?;
        let views = basin_engine::materialize::view_definitions(project);
        let clustered = project.models.values().filter(|m| !m.config.cluster_by.0.is_empty()).map(|m| m.key.clone());
        let lakehouse =
            Lakehouse::new(lake, views, clustered.collect(), policy::column_tags(project), store.clone(), refresh);
        let (log, _task) = log::start(store);
        let unauthenticated =
            config.serve.allow_unauthenticated.then(|| config.serve.unauthenticated_role.clone()).flatten();
        Ok(Arc::new(Server {
            lakehouse,
            users,
            roles,
            unauthenticated,
            log,
            assets: http::AssetInfo::of(project),
            tokens: Default::default(),
            browsers: http::Browsers::new(&config.serve),
        }))
    }

    /// The role of a client without a password from `addr`, when that is allowed.
    pub fn unauthenticated_role(&self, addr: SocketAddr) -> Option<String> {
        self.unauthenticated.clone().filter(|_| addr.ip().is_loopback())
    }
}

/// The endpoints, listening.
pub struct Listening {
    pub pg: SocketAddr,
    pub http: SocketAddr,
    pg_listener: TcpListener,
    http_listener: TcpListener,
    tls: Option<pgwire::tokio::TlsAcceptor>,
    max_connections: usize,
}

/// Bind both endpoints (port 0 picks a free port; the bound addresses are in the result).
pub async fn bind(config: &ServeSection, project_dir: &Path) -> Result<Listening, Error> {
    let listen =
        |addr: String| async move { TcpListener::bind(&addr).await.map_err(|source| Error::Listen { addr, source }) };
    let pg_listener = listen(config.listen.clone()).await?;
    let http_listener = listen(config.http_listen.clone()).await?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(&project_dir.join(cert), &project_dir.join(key))?),
        _ => None,
    };
    Ok(Listening {
        pg: pg_listener.local_addr().map_err(|source| Error::Listen { addr: config.listen.clone(), source })?,
        http: http_listener
            .local_addr()
            .map_err(|source| Error::Listen { addr: config.http_listen.clone(), source })?,
        pg_listener,
        http_listener,
        tls,
        max_connections: config.max_connections,
    })
}

fn tls_acceptor(cert: &Path, key: &Path) -> Result<pgwire::tokio::TlsAcceptor, Error> {
    use pgwire::tokio::tokio_rustls::rustls;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| Error::Tls(format!("cannot read certificate {}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::Tls(format!("cannot read private key {}: {e}", key.display())))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Tls(e.to_string()))?;
    Ok(pgwire::tokio::TlsAcceptor::from(Arc::new(config)))
}

/// Listen on `addr` for `GET /metrics` alone (`basin daemon --metrics-listen`): the address
/// bound, and the future that serves it.
pub async fn bind_metrics(
    server: Arc<Server>,
    addr: &str,
) -> Result<(SocketAddr, impl Future<Output = Result<(), Error>> + use<>), Error> {
    let listener = TcpListener::bind(addr).await.map_err(|source| Error::Listen { addr: addr.to_string(), source })?;
    let bound = listener.local_addr().map_err(|source| Error::Listen { addr: addr.to_string(), source })?;
    let addr = addr.to_string();
    let serving = async move {
        axum::serve(listener, http::metrics_router(server).into_make_service_with_connect_info::<SocketAddr>())
            .await
            .map_err(|source| Error::Listen { addr, source })
    };
    Ok((bound, serving))
}

impl Listening {
    /// Serve until the process ends.
    pub async fn serve(self, server: Arc<Server>) -> Result<(), Error> {
        let http = axum::serve(
            self.http_listener,
            http::router(server.clone()).into_make_service_with_connect_info::<SocketAddr>(),
        );
        let handlers = Arc::new(pg::PgHandlers::new(server));
        let limit = (self.max_connections > 0).then(|| Arc::new(tokio::sync::Semaphore::new(self.max_connections)));
        let tls = self.tls;
        let pg_listener = self.pg_listener;
        let pg = async move {
            loop {
                let (socket, addr) = match pg_listener.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot accept a connection");
                        continue;
                    }
                };
                let _ = socket.set_nodelay(true);
                let permit = match &limit {
                    Some(l) => match l.clone().try_acquire_owned() {
                        Ok(p) => Some(p),
                        Err(_) => {
                            tracing::warn!(%addr, "connection refused: `serve.max_connections` reached");
                            continue;
                        }
                    },
                    None => None,
                };
                let (handlers, tls) = (handlers.clone(), tls.clone());
                tokio::spawn(async move {
                    if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                        tracing::debug!(%addr, error = %e, "connection ended with an error");
                    }
                    drop(permit);
                });
            }
        };
        tokio::select! {
            r = http => r.map_err(|source| Error::Listen { addr: "http".into(), source }),
            _ = pg => Ok(()),
        }
    }
}
