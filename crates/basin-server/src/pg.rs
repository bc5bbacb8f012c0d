//! The PostgreSQL wire endpoint: SCRAM-SHA-256 at startup, then each statement through the
//! connecting role's session (datafusion-postgres does the protocol and the catalog
//! emulation), with SQLSTATEs on errors, cancel requests and statement timeouts honoured
//! while rows stream, and every statement in the query log.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use datafusion_postgres::DfSessionService;
use datafusion_postgres::arrow_pg::datatypes::df::encode_dataframe;
use datafusion_postgres::pgwire;
use futures::future::{BoxFuture, FutureExt};
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::auth::{DefaultServerParameterProvider, StartupHandler};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, Response, Tag};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionHandle, ConnectionManager, DEFAULT_NAME, ErrorHandler,
    PgWireConnectionState, PgWireServerHandlers, PidSecretKeyGenerator, RandomPidSecretKeyGenerator, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::extendedquery::{Bind, BindComplete, Describe, Execute, Parse, ParseComplete};
use pgwire::messages::startup::{Authentication, SecretKey};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::types::format::FormatOptions;

use crate::auth::{Exchange, ScramError};
use crate::coalesce::Unflushed;
use crate::copy::CopyOut;
use crate::errors::error_info;
use crate::policy::Role;
use crate::prepared::Statement;
use crate::statement::{self, Admitted, Refused};
use crate::{Server, log::Pending};

/// Metadata key holding the authenticated connection's role.
const ROLE: &str = "basin.role";
/// Metadata key holding who the connection is: the authenticated user, or the role for a
/// client let in without a password (whatever user name it sent).
const USER: &str = "basin.user";
/// Metadata key holding the connection's statement timeout in milliseconds: datafusion-postgres'
/// own, so that its `SHOW statement_timeout` answers it.
const STATEMENT_TIMEOUT_MS: &str = "statement_timeout_ms";

pub struct PgHandlers {
    server: Arc<Server>,
    manager: Arc<ConnectionManager>,
    queries: Arc<Queries>,
    cancels: Arc<Cancels>,
    keys: Arc<RandomPidSecretKeyGenerator>,
}

/// Each connection's cancel signal, by its process id and secret key. pgwire's own handle
/// stops a statement while it is planned; this one also while its rows stream.
#[derive(Default)]
struct Cancels(std::sync::Mutex<HashMap<CancelKey, tokio::sync::watch::Sender<u64>>>);

/// A connection's process id and secret key.
type CancelKey = (i32, Vec<u8>);

/// A secret key as bytes: a cancel request of protocol 3.0 carries it as a number.
fn key_bytes(key: &SecretKey) -> Vec<u8> {
    match key {
        SecretKey::I32(n) => n.to_be_bytes().to_vec(),
        SecretKey::Bytes(b) => b.to_vec(),
    }
}

/// Unregisters a connection's cancel signal when the connection ends.
struct CancelRegistration {
    cancels: Arc<Cancels>,
    key: CancelKey,
}

impl Drop for CancelRegistration {
    fn drop(&mut self) {
        self.cancels.0.lock().expect("lock").remove(&self.key);
    }
}

/// The receiving end of a connection's cancel signal.
struct CancelSignal(tokio::sync::watch::Receiver<u64>);

struct CancelRequests {
    manager: Arc<ConnectionManager>,
    cancels: Arc<Cancels>,
}

#[async_trait]
impl pgwire::api::cancel::CancelHandler for CancelRequests {
    async fn on_cancel_request(&self, request: pgwire::messages::cancel::CancelRequest) {
        let key = (request.pid, key_bytes(&request.secret_key));
        if let Some(signal) = self.cancels.0.lock().expect("lock").get(&key) {
            signal.send_modify(|n| *n += 1);
        }
        self.manager.cancel(request.pid, &request.secret_key).await;
    }
}

impl PgHandlers {
    pub fn new(server: Arc<Server>) -> PgHandlers {
        let neutral = Arc::new(DfSessionService::new(Arc::new(datafusion::prelude::SessionContext::new())));
        PgHandlers {
            queries: Arc::new(Queries {
                server: server.clone(),
                parser: Arc::new(RoleParser { server: server.clone(), neutral }),
            }),
            server,
            manager: Arc::new(ConnectionManager::new()),
            cancels: Default::default(),
            keys: Arc::new(RandomPidSecretKeyGenerator::default()),
        }
    }
}

impl PgWireServerHandlers for PgHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.queries.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.queries.clone()
    }

    /// Called once per connection: each gets its own exchange state.
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(Startup {
            server: self.server.clone(),
            manager: self.manager.clone(),
            cancels: self.cancels.clone(),
            keys: self.keys.clone(),
            exchange: Default::default(),
        })
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(Errors)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::new(CancelRequests { manager: self.manager.clone(), cancels: self.cancels.clone() })
    }
}

/// Turns any error left without a SQLSTATE into one with it, before it is sent.
struct Errors;

impl ErrorHandler for Errors {
    fn on_error<C: ClientInfo>(&self, _client: &C, error: &mut PgWireError) {
        if let PgWireError::ApiError(_) = error {
            let info = error_info(error);
            *error = PgWireError::UserError(Box::new(info));
        }
    }
}

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("FATAL".into(), code.into(), message)))
}

struct Startup {
    server: Arc<Server>,
    manager: Arc<ConnectionManager>,
    cancels: Arc<Cancels>,
    /// One generator for the server, so every connection has its own process id.
    keys: Arc<RandomPidSecretKeyGenerator>,
    exchange: tokio::sync::Mutex<Option<Exchange>>,
}

impl Startup {
    async fn admit<C>(&self, client: &mut C, user: &str, role: &str) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        client.metadata_mut().insert(ROLE.into(), role.to_string());
        client.metadata_mut().insert(USER.into(), user.to_string());
        let (pid, secret) = self.keys.generate(client);
        client.set_pid_and_secret_key(pid, secret.clone());
        let (handle, guard) = self.manager.register(pid, secret.clone());
        client.session_extensions().insert::<Arc<ConnectionHandle>>(handle);
        client.session_extensions().insert(guard);
        let (signal, receiver) = tokio::sync::watch::channel(0u64);
        let key = (pid, key_bytes(&secret));
        self.cancels.0.lock().expect("lock").insert(key.clone(), signal);
        client.session_extensions().insert(CancelRegistration { cancels: self.cancels.clone(), key });
        client.session_extensions().insert(CancelSignal(receiver));
        if let Some(timeout) = self.server.roles.get(role).and_then(|r| r.statement_timeout) {
            client.metadata_mut().insert(STATEMENT_TIMEOUT_MS.into(), timeout.as_millis().to_string());
        }
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.server_version = "16.0 (Basin)".into();
        pgwire::api::auth::finish_authentication(client, &parameters).await
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let user = |c: &C| c.metadata().get(pgwire::api::METADATA_USER).cloned().unwrap_or_default();
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                pgwire::api::auth::protocol_negotiation(client, startup).await?;
                pgwire::api::auth::save_startup_parameters_to_metadata(client, startup);
                let name = user(client);
                if self.server.users.get(&name).is_none()
                    && let Some(role) = self.server.unauthenticated_role(client.socket_addr())
                {
                    return self.admit(client, &role.clone(), &role).await;
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(Authentication::SASL(vec!["SCRAM-SHA-256".into()])))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(msg) => {
                let name = user(client);
                let failed = || fatal("28P01", format!("password authentication failed for user \"{name}\""));
                let protocol = |m: String| fatal("08P01", m);
                let mut exchange = self.exchange.lock().await;
                match exchange.take() {
                    None => {
                        let initial = msg.into_sasl_initial_response()?;
                        if initial.auth_method != "SCRAM-SHA-256" {
                            return Err(protocol(format!("unsupported SASL mechanism {}", initial.auth_method)));
                        }
                        let data = initial.data.as_deref().unwrap_or_default();
                        let text =
                            std::str::from_utf8(data).map_err(|_| protocol("SCRAM message is not UTF-8".into()))?;
                        let verifier = self.server.users.get(&name).map(|(v, _)| v.clone());
                        let (ex, server_first) =
                            Exchange::start(verifier, self.server.users.decoy(), text).map_err(|e| match e {
                                ScramError::Protocol(m) => protocol(m),
                                ScramError::Failed => failed(),
                            })?;
                        *exchange = Some(ex);
                        client
                            .send(PgWireBackendMessage::Authentication(Authentication::SASLContinue(
                                server_first.into_bytes().into(),
                            )))
                            .await?;
                    }
                    Some(ex) => {
                        let response = msg.into_sasl_response()?;
                        let text = std::str::from_utf8(&response.data)
                            .map_err(|_| protocol("SCRAM message is not UTF-8".into()))?;
                        let server_final = ex.finish(text).map_err(|e| match e {
                            ScramError::Protocol(m) => protocol(m),
                            ScramError::Failed => failed(),
                        })?;
                        let role = self.server.users.get(&name).map(|(_, r)| r.clone()).ok_or_else(failed)?;
                        client
                            .feed(PgWireBackendMessage::Authentication(Authentication::SASLFinal(
                                server_final.into_bytes().into(),
                            )))
                            .await?;
                        self.admit(client, &name, &role).await?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

pub struct Queries {
    server: Arc<Server>,
    parser: Arc<RoleParser>,
}

/// Why a running statement stops early.
#[derive(Clone)]
struct Stop {
    /// Changes when the client cancels (a cancel request naming this connection).
    cancel: Option<tokio::sync::watch::Receiver<u64>>,
    deadline: Option<tokio::time::Instant>,
}

impl Stop {
    fn new<C: ClientInfo>(client: &C) -> Stop {
        let cancel = client.session_extensions().get::<CancelSignal>().map(|s| {
            let mut rx = s.0.clone();
            rx.mark_unchanged();
            rx
        });
        let deadline = statement_timeout(client).map(|d| tokio::time::Instant::now() + d);
        Stop { cancel, deadline }
    }

    /// Wait until the statement must stop; the error to send then.
    async fn wait(self) -> ErrorInfo {
        let cancel = async {
            let canceled = match self.cancel {
                Some(mut rx) => rx.changed().await.is_ok(),
                None => false,
            };
            if !canceled {
                futures::future::pending::<()>().await;
            }
        };
        let timeout = async {
            match self.deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => futures::future::pending().await,
            }
        };
        tokio::select! {
            _ = cancel => ErrorInfo::new("ERROR".into(), "57014".into(), "canceling statement due to user request".into()),
            _ = timeout => ErrorInfo::new("ERROR".into(), "57014".into(), "canceling statement due to statement timeout".into()),
        }
    }

    /// Run `work` unless the statement is stopped first.
    async fn run<T>(&self, work: impl Future<Output = PgWireResult<T>>) -> PgWireResult<T> {
        tokio::select! {
            r = work => r,
            info = self.clone().wait() => Err(PgWireError::UserError(Box::new(info))),
        }
    }

    /// `rows`, stopping with an error when the statement is stopped, counting rows into
    /// `pending` and recording the first error there.
    fn guard<T: Send + 'static>(self, rows: Guarded<T>, pending: Arc<Pending>) -> Guarded<T> {
        let stop: BoxFuture<'static, ErrorInfo> = self.wait().boxed();
        let state = (rows, stop, pending, false);
        Box::pin(futures::stream::unfold(state, |(mut rows, mut stop, pending, done)| async move {
            if done {
                return None;
            }
            tokio::select! {
                row = rows.next() => match row {
                    Some(Ok(row)) => {
                        pending.rows.fetch_add(1, Ordering::Relaxed);
                        Some((Ok(row), (rows, stop, pending, false)))
                    }
                    Some(Err(e)) => {
                        let info = error_info(&e);
                        pending.fail(&info);
                        Some((Err(PgWireError::UserError(Box::new(info))), (rows, stop, pending, true)))
                    }
                    None => None,
                },
                info = &mut stop => {
                    pending.fail(&info);
                    Some((Err(PgWireError::UserError(Box::new(info))), (rows, stop, pending, true)))
                }
            }
        }))
    }
}

/// A statement's rows (or COPY data, a row per message) as they are sent.
type Guarded<T> = std::pin::Pin<Box<dyn futures::Stream<Item = PgWireResult<T>> + Send>>;

/// The statement timeout of the connection (its role's, or what it `SET`).
fn statement_timeout<C: ClientInfo>(client: &C) -> Option<std::time::Duration> {
    client
        .metadata()
        .get(STATEMENT_TIMEOUT_MS)
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(std::time::Duration::from_millis)
}

/// The connection's user and the role it authenticated as.
fn identity<C: ClientInfo>(server: &Server, client: &C) -> PgWireResult<(String, Arc<Role>)> {
    let user = client.metadata().get(USER).cloned().unwrap_or_default();
    let role = client
        .metadata()
        .get(ROLE)
        .and_then(|r| server.roles.get(r))
        .cloned()
        .ok_or_else(|| fatal("28000", "the connection has no role".into()))?;
    Ok((user, role))
}

impl Queries {
    fn pending(&self, user: &str, role: &Role, query: &str) -> Arc<Pending> {
        Arc::new(Pending::new(self.server.log.clone(), user, &role.name, "postgres", query))
    }
}

fn guard_response(response: Response, stop: &Stop, pending: &Arc<Pending>) -> Response {
    match response {
        Response::Query(mut q) => {
            let rows = std::mem::replace(&mut q.data_rows, Box::pin(futures::stream::empty()));
            q.data_rows = stop.clone().guard(rows, pending.clone());
            Response::Query(q)
        }
        Response::CopyOut(mut c) => {
            let data = std::mem::replace(&mut c.data_stream, Box::pin(futures::stream::empty()));
            c.data_stream = stop.clone().guard(data, pending.clone());
            Response::CopyOut(c)
        }
        other => other,
    }
}

fn failed(pending: &Pending, e: PgWireError) -> PgWireError {
    let info = error_info(&e);
    pending.fail(&info);
    PgWireError::UserError(Box::new(info))
}

fn api(e: impl std::error::Error + Send + Sync + 'static) -> PgWireError {
    PgWireError::ApiError(Box::new(e))
}

/// The error sent for a refused statement, recorded in the query log as refused.
fn refused(pending: &Pending, r: Refused) -> PgWireError {
    let info = ErrorInfo::new("ERROR".into(), r.code.into(), r.message);
    pending.refuse(&info);
    PgWireError::UserError(Box::new(info))
}

/// A plan that returns nothing, for statements answered without DataFusion.
fn empty_plan() -> LogicalPlan {
    LogicalPlan::EmptyRelation(datafusion::logical_expr::EmptyRelation {
        produce_one_row: false,
        schema: Arc::new(datafusion::common::DFSchema::empty()),
    })
}

/// Parse `sql` and admit every statement, before any runs: a string hiding a write after a
/// query is refused whole.
fn admitted(sql: &str, user: &str, role: &Role, pending: &Pending) -> PgWireResult<Vec<(SqlStatement, Admitted)>> {
    let statements = statement::parse(sql).map_err(|r| refused(pending, r))?;
    let mut out = Vec::with_capacity(statements.len());
    for mut s in statements {
        let admitted = statement::admit(&s, role).map_err(|r| refused(pending, r))?;
        statement::identify(&mut s, user);
        out.push((s, admitted));
    }
    Ok(out)
}

/// `SET statement_timeout`: the connection's timeout from now on (`None`: its role's).
fn set_statement_timeout<C: ClientInfo>(client: &mut C, role: &Role, timeout: Option<std::time::Duration>) -> Response {
    match timeout.or(role.statement_timeout) {
        Some(t) => client.metadata_mut().insert(STATEMENT_TIMEOUT_MS.into(), t.as_millis().to_string()),
        None => client.metadata_mut().remove(STATEMENT_TIMEOUT_MS),
    };
    Response::Execution(Tag::new("SET"))
}

#[async_trait]
impl SimpleQueryHandler for Queries {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (user, role) = identity(&self.server, client)?;
        let pending = self.pending(&user, &role, query);
        let statements = admitted(query, &user, &role, &pending)?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let session = self.server.lakehouse.session(&role).await.map_err(|e| failed(&pending, e.into()))?;
        let stop = Stop::new(client);
        let mut responses = Vec::with_capacity(statements.len());
        for (s, admitted) in statements {
            let response = match admitted {
                Admitted::Query => {
                    let work = async {
                        let plan = session.plan(s).await.map_err(api)?;
                        let df = session.ctx.execute_logical_plan(plan).await.map_err(api)?;
                        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
                        let rows = encode_dataframe(df, &Format::UnifiedText, Some(options)).await?;
                        Ok(Response::Query(rows))
                    };
                    stop.run(crate::meter::scope(pending.bytes.clone(), work)).await
                }
                Admitted::CopyOut => {
                    let work = async {
                        let copy = CopyOut::of(s).map_err(api)?;
                        let plan = session.plan(copy.query.clone()).await.map_err(api)?;
                        let batches = session.ctx.execute_logical_plan(plan).await.map_err(api)?.execute_stream();
                        Ok(Response::CopyOut(copy.response(batches.await.map_err(api)?)?))
                    };
                    stop.run(crate::meter::scope(pending.bytes.clone(), work)).await
                }
                Admitted::StatementTimeout(t) => Ok(set_statement_timeout(client, &role, t)),
                Admitted::NoOp(tag) => Ok(Response::Execution(Tag::new(tag))),
                // SET, SHOW of a variable, transactions and cursors, as datafusion-postgres keeps
                // them for the connection; the text is the admitted statement's.
                Admitted::Session => stop
                    .run(SimpleQueryHandler::do_query(session.service.as_ref(), client, &statement::session_text(&s)))
                    .await
                    .map(|mut r| r.pop().unwrap_or(Response::EmptyQuery)),
            };
            match response {
                Ok(r) => responses.push(guard_response(r, &stop, &pending)),
                // The statements before this one have run; PostgreSQL sends their results, then
                // the error, and runs nothing after it.
                Err(e) => {
                    let e = failed(&pending, e);
                    if responses.is_empty() {
                        return Err(e);
                    }
                    let info = error_info(&e);
                    responses.push(Response::Error(Box::new(info)));
                    break;
                }
            }
        }
        Ok(responses)
    }
}

/// Plans prepared statements in the connecting role's session.
pub struct RoleParser {
    server: Arc<Server>,
    /// Reads parameter and result types off a planned statement (no session needed).
    neutral: Arc<DfSessionService>,
}

#[async_trait]
impl QueryParser for RoleParser {
    type Statement = Statement;

    async fn parse_sql<C>(&self, client: &C, sql: &str, types: &[Option<Type>]) -> PgWireResult<Option<Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let (user, role) = identity(&self.server, client)?;
        // A statement that does not plan never executes: it is logged here, and only then.
        let pending = Pending::unlogged(self.server.log.clone(), &user, &role.name, "postgres", sql);
        let mut statements = admitted(sql, &user, &role, &pending)?;
        let (statement, admitted) = match (statements.pop(), statements.is_empty()) {
            (None, _) => return Ok(None),
            (Some(s), true) => s,
            (Some(_), false) => {
                return Err(refused(
                    &pending,
                    Refused {
                        code: "42601",
                        message: "cannot insert multiple commands into a prepared statement".into(),
                    },
                ));
            }
        };
        let session = self.server.lakehouse.session(&role).await.map_err(|e| failed(&pending, e.into()))?;
        let text = statement::session_text(&statement);
        match admitted {
            Admitted::Query => {
                let plan = session.plan(statement.clone()).await.map_err(|e| failed(&pending, api(e)))?;
                Ok(Some((text, Some((statement, plan)))))
            }
            Admitted::StatementTimeout(_) | Admitted::NoOp(_) => Ok(Some((text, Some((statement, empty_plan()))))),
            Admitted::CopyOut => Err(refused(
                &pending,
                Refused::unsupported("COPY … TO STDOUT is supported in a simple query, not a prepared statement"),
            )),
            Admitted::Session => {
                let parser = <DfSessionService as ExtendedQueryHandler>::query_parser(&session.service);
                parser.parse_sql(client, &text, types).await.map_err(|e| failed(&pending, e))
            }
        }
    }

    fn get_parameter_types(&self, stmt: &Statement) -> PgWireResult<Vec<Type>> {
        <DfSessionService as ExtendedQueryHandler>::query_parser(&self.neutral).get_parameter_types(stmt)
    }

    fn get_result_schema(&self, stmt: &Statement, column_format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        <DfSessionService as ExtendedQueryHandler>::query_parser(&self.neutral).get_result_schema(stmt, column_format)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Queries {
    type Statement = Statement;
    type QueryParser = RoleParser;

    fn query_parser(&self) -> Arc<RoleParser> {
        self.parser.clone()
    }

    // Parse, Bind, Describe and Execute queue their answers; `Sync` (or `Flush`) writes them, as
    // PostgreSQL does (`coalesce`).

    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // pgwire's own `on_parse`, with the answer queued rather than written.
        let name = message.name.clone().unwrap_or_else(|| DEFAULT_NAME.to_owned());
        match StoredStatement::parse(client, &message, self.query_parser()).await? {
            Some(statement) => client.portal_store().put_statement(Arc::new(statement)),
            None => client.portal_store().put_empty_statement(&name),
        }
        client.feed(PgWireBackendMessage::ParseComplete(ParseComplete::new())).await?;
        Ok(())
    }

    async fn on_bind<C>(&self, client: &mut C, message: Bind) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // pgwire's own `on_bind`, with the answer queued rather than written.
        let statement_name = message.statement_name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal_name = message.portal_name.as_deref().unwrap_or(DEFAULT_NAME);
        match client.portal_store().get_statement(statement_name) {
            Some(Entry::Value(statement)) => {
                let portal = Portal::try_new(&message, statement)?;
                client.portal_store().put_portal(Arc::new(portal));
            }
            Some(Entry::Empty) => {
                if !message.parameters.is_empty() {
                    return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                        "ERROR".to_owned(),
                        "08P01".to_owned(),
                        format!(
                            "bind message supplies {} parameters, but prepared statement {statement_name:?} requires 0",
                            message.parameters.len()
                        ),
                    ))));
                }
                client.portal_store().put_empty_portal(portal_name);
            }
            None => return Err(PgWireError::StatementNotFound(statement_name.to_owned())),
        }
        client.feed(PgWireBackendMessage::BindComplete(BindComplete::new())).await?;
        Ok(())
    }

    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self._on_describe(&mut Unflushed(client), message).await
    }

    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self._on_execute(&mut Unflushed(client), message).await
    }

    async fn do_query<C>(&self, client: &mut C, portal: &Portal<Statement>, max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (user, role) = identity(&self.server, client)?;
        let pending = self.pending(&user, &role, &portal.statement.statement.0);
        // The lake as it is now: a statement prepared before a table it reads was materialised
        // again is planned again (`prepared::execute`).
        let session = self.server.lakehouse.session(&role).await.map_err(|e| failed(&pending, e.into()))?;
        let stop = Stop::new(client);
        // Admitted when parsed; what it is says how it runs. A query (the lookups' hot path)
        // was inspected then; the other statements are small, and admitted again for their kind.
        let admitted = match &portal.statement.statement {
            (_, Some((SqlStatement::Query(_), _))) => Admitted::Query,
            (_, Some((s, _))) => statement::admit(s, &role).map_err(|r| refused(&pending, r))?,
            (_, None) => return Ok(Response::EmptyQuery),
        };
        match admitted {
            Admitted::StatementTimeout(t) => return Ok(set_statement_timeout(client, &role, t)),
            Admitted::NoOp(tag) => return Ok(Response::Execution(Tag::new(tag))),
            _ => {}
        }
        let work = async {
            match (&portal.statement.statement, admitted) {
                ((_, Some((stored, plan))), Admitted::Query) => {
                    let wire = || self.parser.get_parameter_types(&portal.statement.statement);
                    let replan = async || session.plan(stored.clone()).await.map_err(api);
                    crate::prepared::execute(&session, client, portal, plan, wire, replan).await
                }
                // SET, SHOW, transactions and cursors as datafusion-postgres keeps them.
                _ => {
                    <DfSessionService as ExtendedQueryHandler>::do_query(&session.service, client, portal, max_rows)
                        .await
                }
            }
        };
        let response =
            stop.run(crate::meter::scope(pending.bytes.clone(), work)).await.map_err(|e| failed(&pending, e))?;
        Ok(guard_response(response, &stop, &pending))
    }
}
