//! The admin HTTP API: `/metrics` (Prometheus text), `/health/live`,
//! `/health/ready`, `/v1/histograms` (every latency series with its
//! percentiles), `PUT /v1/log-level`, and the routing policy
//! (`GET`/`PUT /v1/policy`, `POST /v1/reload`).
//!
//! It reads the proxy's state and changes the log filter and the policy
//! (through `PolicyStore`, which validates); it never touches the request
//! path. When a token is configured every call needs
//! `Authorization: Bearer <token>`.

pub mod client;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::{messages, Problem};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::{OpClass, Outcome, Snapshot};
use crate::proxy::Proxy;

/// Changes the log filter; an invalid filter is refused with a reason.
pub type SetLogFilter = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

pub struct AdminOptions {
    pub addr: SocketAddr,
    pub token: Option<String>,
    /// How `PUT /v1/log-level` changes the filter (none: answered 501).
    pub set_log_filter: Option<SetLogFilter>,
}

#[derive(Clone)]
struct AdminState {
    proxy: Arc<Proxy>,
    token: Option<Arc<str>>,
    set_log_filter: Option<SetLogFilter>,
}

/// A running admin server; it stops when `stop` is cancelled.
pub struct RunningAdmin {
    pub addr: SocketAddr,
}

pub async fn serve(
    proxy: Arc<Proxy>,
    opts: AdminOptions,
    stop: CancellationToken,
) -> std::io::Result<RunningAdmin> {
    let listener = TcpListener::bind(opts.addr).await?;
    let addr = listener.local_addr()?;
    let tls = proxy.admin_tls().cloned();
    let state = AdminState {
        proxy,
        token: opts.token.filter(|t| !t.is_empty()).map(Arc::from),
        set_log_filter: opts.set_log_filter,
    };
    let app = Router::new()
        .route("/", get(dashboard))
        .route("/dashboard", get(dashboard))
        .route("/metrics", get(metrics))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/v1/histograms", get(histograms))
        .route("/v1/log-level", put(log_level))
        .route("/v1/policy", get(get_policy).put(put_policy))
        .route("/v1/reload", axum::routing::post(reload))
        .route("/v1/shadow", get(shadow))
        .route("/v1/tenant-key", get(tenant_key))
        .route("/v1/directory-table", get(directory_table))
        .route("/v1/journal", get(journal))
        .route("/v1/tenants", get(list_tenants))
        .route(
            "/v1/tenants/{tenant}",
            get(get_tenant).put(put_tenant).delete(delete_tenant),
        )
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state);
    match tls {
        None => {
            tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
            });
        }
        Some(tls) => {
            let listener = TlsListener::start(listener, tls, stop.clone());
            tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
            });
        }
    }
    Ok(RunningAdmin { addr })
}

/// The admin API's listener over TLS: connections are accepted and their
/// handshakes done on tasks of their own (a slow one holds up no other),
/// and handed to the HTTP server once done.
struct TlsListener {
    done: tokio::sync::mpsc::Receiver<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        SocketAddr,
    )>,
    addr: SocketAddr,
}

/// Admin TLS handshakes under way at once; more wait to be accepted.
const ADMIN_HANDSHAKES: usize = 64;
const ADMIN_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl TlsListener {
    fn start(
        tcp: TcpListener,
        tls: Arc<crate::tls::Reloading<rustls::ServerConfig>>,
        stop: CancellationToken,
    ) -> TlsListener {
        let addr = tcp
            .local_addr()
            .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
        let (tx, done) = tokio::sync::mpsc::channel(ADMIN_HANDSHAKES);
        let room = Arc::new(tokio::sync::Semaphore::new(ADMIN_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = room.clone().acquire_owned().await else {
                    return;
                };
                let (sock, peer) = tokio::select! {
                    _ = stop.cancelled() => return,
                    a = tcp.accept() => match a {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "admin API: accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let (tx, acceptor) = (tx.clone(), tokio_rustls::TlsAcceptor::from(tls.current()));
                tokio::spawn(async move {
                    match tokio::time::timeout(ADMIN_HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await
                    {
                        Ok(Ok(s)) => {
                            let _ = tx.send((s, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "admin API: a TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "admin API: no TLS handshake within 10 s"),
                    }
                    drop(permit);
                });
            }
        });
        TlsListener { done, addr }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.done.recv().await {
            Some(c) => c,
            // Stopped: the server's graceful shutdown ends it.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

/// Whether `given` is `secret`, in time that depends on neither: both are
/// hashed first (so their lengths do not show either), and the digests
/// compared without an early exit.
fn same_secret(given: &[u8], secret: &[u8]) -> bool {
    use md5::{Digest, Md5};
    let (a, b) = (Md5::digest(given), Md5::digest(secret));
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    // Equal digests: the bytes are compared too (no collision passes).
    std::hint::black_box(diff) == 0 && given == secret
}

async fn require_token(
    State(s): State<AdminState>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    // The live page holds no data (it asks for it with the token).
    let page = matches!(req.uri().path(), "/" | "/dashboard");
    if let Some(token) = s.token.as_ref().filter(|_| !page) {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| same_secret(g.as_bytes(), token.as_bytes())) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(json!({"errors": ["the admin API needs `Authorization: Bearer <admin_token>`"]})),
            )
                .into_response();
        }
    }
    next.run(req).await
}

/// The live page: HTML and script served from the binary, no external
/// assets; it polls this API every 2 s.
async fn dashboard() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        include_str!("dashboard.html"),
    )
}

async fn not_found() -> (StatusCode, Json<Value>) {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"errors": ["no such endpoint; see the README's admin API table"]})),
    )
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    let m = s.proxy.metrics().clone();
    // Rendering merges and walks every series: off the async workers.
    let text = tokio::task::spawn_blocking(move || m.render())
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

async fn live(State(s): State<AdminState>) -> Json<Value> {
    Json(json!({
        "status": "live",
        "uptime_seconds": s.proxy.metrics().uptime().as_secs_f64(),
    }))
}

async fn ready(State(s): State<AdminState>) -> (StatusCode, Json<crate::proxy::Readiness>) {
    let r = s.proxy.readiness();
    let code = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(r))
}

/// Percentiles of one snapshot, in µs.
#[derive(Serialize)]
struct Summary {
    count: u64,
    min: u64,
    max: u64,
    mean: f64,
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    p9999: u64,
    p99999: u64,
}

impl Summary {
    fn of(s: &Snapshot) -> Summary {
        let h = &s.histogram;
        let empty = h.is_empty();
        let q = |q: f64| if empty { 0 } else { h.value_at_quantile(q) };
        Summary {
            count: h.len(),
            min: if empty { 0 } else { h.min() },
            max: if empty { 0 } else { h.max() },
            mean: if empty {
                0.0
            } else {
                s.sum_micros as f64 / h.len() as f64
            },
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            p9999: q(0.9999),
            p99999: q(0.99999),
        }
    }
}

#[derive(Serialize)]
struct SeriesReport {
    /// The Prometheus family this series belongs to.
    family: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    op: &'static str,
    outcome: &'static str,
    cumulative: Summary,
    recent: Summary,
}

#[derive(Serialize)]
struct HistogramsReport {
    unit: &'static str,
    window_seconds: f64,
    uptime_seconds: f64,
    series: Vec<SeriesReport>,
}

fn report(proxy: &Proxy) -> HistogramsReport {
    let m = &proxy.metrics();
    let mut series = Vec::new();
    for f in m.latency_families() {
        for (scope, table) in &f.tables {
            for (op, outcome, s) in table.series() {
                let (op, outcome): (OpClass, Outcome) = (op, outcome);
                series.push(SeriesReport {
                    family: f.name,
                    cluster: (f.scope_label == Some("cluster")).then(|| scope.to_string()),
                    tenant: (f.scope_label == Some("tenant")).then(|| scope.to_string()),
                    op: op.name(),
                    outcome: outcome.name(),
                    cumulative: Summary::of(&s.cumulative()),
                    recent: Summary::of(&s.recent()),
                });
            }
        }
    }
    HistogramsReport {
        unit: "microseconds",
        window_seconds: m.options().window.as_secs_f64(),
        uptime_seconds: m.uptime().as_secs_f64(),
        series,
    }
}

async fn histograms(State(s): State<AdminState>) -> Json<HistogramsReport> {
    let p = s.proxy.clone();
    let r = tokio::task::spawn_blocking(move || report(&p))
        .await
        .expect("building the histogram report does not panic");
    Json(r)
}

/// The policy in force, and where each field of its route comes from.
async fn get_policy(State(s): State<AdminState>) -> Json<Value> {
    let mut body = json!(*s.proxy.policy());
    let sources = s.proxy.routing().store().sources();
    body["route_file"] = json!(sources.route_file);
    body["sources"] = json!(sources);
    if let Some(o) = body["sources"].as_object_mut() {
        o.remove("route_file");
    }
    Json(body)
}

async fn put_policy(
    State(s): State<AdminState>,
    axum::extract::Query(q): axum::extract::Query<FleetQuery>,
    body: String,
) -> (StatusCode, Json<Value>) {
    let patch = match patch_of::<crate::routing::PolicyPatch>(&body) {
        Ok(p) => p,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(
                    json!({"errors": [format!("{e} (expected e.g. {{\"route\": {{\"phase\": \"target-primary\"}}}})")]}),
                ),
            )
        }
    };
    if q.fleet {
        if let Some(refused) = without_a_fleet(&s) {
            return refused;
        }
    }
    let by = if q.fleet {
        "PUT /v1/policy?fleet=true"
    } else {
        "PUT /v1/policy"
    };
    let p = s.proxy.clone();
    let r = tokio::task::spawn_blocking(move || p.routing().store().apply(patch, by))
        .await
        .map_err(|e| vec![Problem::new(format!("changing the policy failed: {e}"))])
        .and_then(|r| r);
    let local = match r {
        Ok(a) => {
            let mut body = json!({"version": a.policy.version, "persisted": a.persisted});
            if a.persisted.is_none() {
                body["note"] = json!("this proxy started from flags, without a config file: the change lasts until it stops");
            }
            (StatusCode::OK, Json(body))
        }
        Err(problems) => refused(&problems),
    };
    if !q.fleet {
        return local;
    }
    on_the_fleet(&s, "PUT", "/v1/policy", Some(body), local).await
}

#[derive(Serialize)]
struct TenantView {
    tenant: String,
    shard: String,
    phase: crate::config::Phase,
    status: crate::config::TenantStatus,
    write_mode: crate::config::WriteMode,
}

fn tenant_views(p: &crate::routing::RoutePolicy) -> Vec<TenantView> {
    let mut v: Vec<TenantView> = p
        .tenants
        .iter()
        .map(|(name, r)| TenantView {
            tenant: name.clone(),
            shard: r.shard.clone().unwrap_or_else(|| p.route.shard.clone()),
            phase: p.for_tenant(Some(name)).phase,
            status: r.status,
            write_mode: p.for_tenant(Some(name)).write_mode,
        })
        .collect();
    v.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    v
}

/// How tenants are found, and with a column key which tables are keyed
/// by it (partition key) or shared, as learned so far.
async fn tenant_key(State(s): State<AdminState>) -> Json<Value> {
    let (keyed, shared) = s.proxy.routing().tenants().keyed.listing();
    Json(json!({
        "key": s.proxy.config().tenants.key,
        "keyed_tables": keyed,
        "shared_tables": shared,
    }))
}

/// The journal of async-secondary writes: backlog, replay, dead letters.
async fn journal(State(s): State<AdminState>) -> Json<Value> {
    let p = s.proxy.clone();
    // Its oldest record is read from disk: off the runtime's threads.
    let report = tokio::task::spawn_blocking(move || p.journal().report())
        .await
        .unwrap_or_else(|e| json!({ "error": e.to_string() }));
    Json(report)
}

/// `[tenants.table]`: polls done and the last one's error.
async fn directory_table(State(s): State<AdminState>) -> (StatusCode, Json<Value>) {
    let Some(t) = &s.proxy.config().tenants.table else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"errors": ["`tenants.table` is not configured"]})),
        );
    };
    let status = s.proxy.routing().directory_table();
    (
        StatusCode::OK,
        Json(json!({
            "cluster": t.cluster,
            "table": t.name,
            "polls": status.polls.load(std::sync::atomic::Ordering::Relaxed),
            "error": *status.error.lock(),
        })),
    )
}

async fn list_tenants(State(s): State<AdminState>) -> Json<Vec<TenantView>> {
    Json(tenant_views(&s.proxy.policy()))
}

async fn get_tenant(
    State(s): State<AdminState>,
    axum::extract::Path(tenant): axum::extract::Path<String>,
) -> (StatusCode, Json<Value>) {
    match tenant_views(&s.proxy.policy())
        .into_iter()
        .find(|t| t.tenant == tenant)
    {
        Some(t) => (StatusCode::OK, Json(json!(t))),
        None => (
            StatusCode::NOT_FOUND,
            Json(
                json!({"errors": [format!("tenant \"{tenant}\" has no entry; it takes the default route")]}),
            ),
        ),
    }
}

/// A directory change, then the fence when it turned a tenant read-only.
async fn change_tenant(
    s: AdminState,
    tenant: String,
    patch: Option<crate::routing::TenantPatch>,
) -> (StatusCode, Json<Value>) {
    let before = s.proxy.policy();
    let p = s.proxy.clone();
    let t = tenant.clone();
    let r = tokio::task::spawn_blocking(move || p.routing().store().set_tenant(&t, patch))
        .await
        .expect("changing the directory does not panic");
    let policy = match r {
        Ok(p) => p,
        Err(problems) => return refused(&problems),
    };
    let (fenced, drained) = s.proxy.routing().fence_after(&before).await;
    let body = json!({"version": policy.version, "fenced": fenced});
    if drained {
        (StatusCode::OK, Json(body))
    } else {
        (StatusCode::GATEWAY_TIMEOUT, Json(body))
    }
}

#[derive(Deserialize, Default)]
struct FleetQuery {
    #[serde(default)]
    fleet: bool,
}

/// `?fleet=true` on an instance that does not know the others: refused
/// before anything changes.
fn without_a_fleet(s: &AdminState) -> Option<(StatusCode, Json<Value>)> {
    s.proxy.config().topology.admin_instances.is_empty().then(|| {
        (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"errors": ["?fleet=true needs `topology.admin_instances` (the admin address of each instance, in the order of `topology.instances`); nothing changed"]}),
            ),
        )
    })
}

/// The same change (`method` `path`, without `?fleet=true`) on every other
/// instance of `[topology] admin_instances`, each answering once fenced
/// there. The local change is already in force; `without_a_fleet` was
/// checked before it.
async fn on_the_fleet(
    s: &AdminState,
    method: &str,
    path: &str,
    body: Option<String>,
    local: (StatusCode, Json<Value>),
) -> (StatusCode, Json<Value>) {
    if local.0 != StatusCode::OK {
        return local;
    }
    let topology = &s.proxy.config().topology;
    // Each instance answers after its own fence, which may take this long.
    let timeout = s.proxy.routing().longest_request_timeout() + std::time::Duration::from_secs(5);
    let calls = topology
        .admin_instances
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != topology.index)
        .map(|(_, addr)| {
            let (path, body) = (path.to_string(), body.clone());
            let token = s.token.clone();
            // Over TLS when this instance's admin API speaks it (the others
            // share its `[admin_tls]`), verifying each one's IP address.
            let tls = s.proxy.config().admin_tls.as_ref().map(|t| {
                t.peer_config().map(|config| crate::client::TlsTo {
                    config,
                    name: rustls::pki_types::ServerName::IpAddress(addr.ip().into()),
                })
            });
            async move {
                let tls = match tls.transpose() {
                    Ok(t) => t,
                    Err(e) => return (*addr, Err(format!("admin_tls: {e}"))),
                };
                let r = client::request(
                    *addr,
                    tls.as_ref(),
                    method,
                    &path,
                    body.as_deref(),
                    token.as_deref(),
                    timeout,
                )
                .await;
                (*addr, r)
            }
        });
    let answers = futures::future::join_all(calls).await;
    let mut instances = serde_json::Map::new();
    let mut errors = Vec::new();
    instances.insert(
        topology
            .admin_instances
            .get(topology.index)
            .map(|a| a.to_string())
            .unwrap_or_default(),
        local.1 .0.clone(),
    );
    for (addr, r) in answers {
        match r {
            Ok((200, body)) => {
                instances.insert(
                    addr.to_string(),
                    serde_json::from_str(&body).unwrap_or(Value::Null),
                );
            }
            Ok((status, body)) => errors.push(format!("instance {addr} answered {status}: {body}")),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        (StatusCode::OK, Json(json!({ "instances": instances })))
    } else {
        (
            StatusCode::BAD_GATEWAY,
            Json(json!({ "instances": instances, "errors": errors })),
        )
    }
}

async fn put_tenant(
    State(s): State<AdminState>,
    axum::extract::Path(tenant): axum::extract::Path<String>,
    axum::extract::Query(q): axum::extract::Query<FleetQuery>,
    body: String,
) -> (StatusCode, Json<Value>) {
    let patch = match patch_of::<crate::routing::TenantPatch>(&body) {
        Ok(p) => p,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(
                    json!({"errors": [format!("{e} (expected e.g. {{\"status\": \"read-only\"}})")]}),
                ),
            )
        }
    };
    if q.fleet {
        if let Some(refused) = without_a_fleet(&s) {
            return refused;
        }
    }
    let local = change_tenant(s.clone(), tenant.clone(), Some(patch)).await;
    if !q.fleet {
        return local;
    }
    let path = format!("/v1/tenants/{tenant}");
    on_the_fleet(&s, "PUT", &path, Some(body), local).await
}

async fn delete_tenant(
    State(s): State<AdminState>,
    axum::extract::Path(tenant): axum::extract::Path<String>,
    axum::extract::Query(q): axum::extract::Query<FleetQuery>,
) -> (StatusCode, Json<Value>) {
    if q.fleet {
        if let Some(refused) = without_a_fleet(&s) {
            return refused;
        }
    }
    let local = change_tenant(s.clone(), tenant.clone(), None).await;
    if !q.fleet {
        return local;
    }
    let path = format!("/v1/tenants/{tenant}");
    on_the_fleet(&s, "DELETE", &path, None, local).await
}

/// A change refused, and why: `errors` holds the sentences (what a person
/// reads), `problems` the same with the setting each is about (what a
/// script reads), in the same order. Nothing changed.
fn refused(problems: &[Problem]) -> (StatusCode, Json<Value>) {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "errors": messages(problems), "problems": problems })),
    )
}

async fn shadow(State(s): State<AdminState>) -> Json<crate::pipeline::ShadowReport> {
    Json(s.proxy.statements().shadow().report())
}

async fn reload(State(s): State<AdminState>) -> (StatusCode, Json<Value>) {
    // Certificates and keys first: they do not depend on the config file
    // being valid.
    let tls_problems = s.proxy.reload_tls("POST /v1/reload");
    let (mut status, Json(mut body)) = reload_config(&s).await;
    body["tls_reloaded"] = json!(s.proxy.tls_sections());
    if !tls_problems.is_empty() {
        let mut errors = body["errors"].as_array().cloned().unwrap_or_default();
        errors.extend(
            tls_problems
                .into_iter()
                .map(|p| json!(format!("{p}; the certificates in force stay"))),
        );
        body["errors"] = json!(errors);
        if status == StatusCode::OK {
            status = StatusCode::UNPROCESSABLE_ENTITY;
        }
    }
    (status, Json(body))
}

async fn reload_config(s: &AdminState) -> (StatusCode, Json<Value>) {
    match s.proxy.routing().reload("POST /v1/reload").await {
        Err(problems) => refused(&problems),
        Ok((r, fenced, drained)) => {
            let mut body = json!(r);
            body["fenced"] = json!(fenced);
            if drained {
                (StatusCode::OK, Json(body))
            } else {
                body["errors"] = json!([format!(
                    "the new policy is in force, but writes admitted before it are still under way (tenants fenced: {})",
                    fenced.join(", ")
                )]);
                (StatusCode::GATEWAY_TIMEOUT, Json(body))
            }
        }
    }
}

#[derive(Deserialize)]
struct LogLevel {
    filter: String,
}

async fn log_level(
    State(s): State<AdminState>,
    body: Result<Json<LogLevel>, axum::extract::rejection::JsonRejection>,
) -> (StatusCode, Json<Value>) {
    let Ok(Json(LogLevel { filter })) = body else {
        return (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"errors": ["expected a JSON body like {\"filter\": \"info,cutover=debug\"}"]}),
            ),
        );
    };
    let Some(set) = &s.set_log_filter else {
        return (
            StatusCode::NOT_IMPLEMENTED,
            Json(json!({"errors": ["this process does not manage its own logging"]})),
        );
    };
    match set(&filter) {
        Ok(()) => {
            tracing::info!(%filter, "log filter changed through the admin API");
            (StatusCode::OK, Json(json!({ "filter": filter })))
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"errors": [format!("invalid filter {filter:?}: {e}")]})),
        ),
    }
}

/// A JSON body read as `T`; when it does not fit, the error names the
/// field that does not (`route.phase: unknown variant ...`), found by
/// reading each field of the body alone.
fn patch_of<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, String> {
    let e = match serde_json::from_str::<T>(body) {
        Ok(t) => return Ok(t),
        Err(e) => e,
    };
    // serde_json's position says little to someone who typed a flag.
    let text = e.to_string();
    let text = match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    let Ok(whole) = serde_json::from_str::<Value>(body) else {
        return Err(text);
    };
    let mut leaves = Vec::new();
    leaves_of(&whole, &mut Vec::new(), &mut leaves);
    for (path, value) in leaves {
        let alone = path
            .iter()
            .rev()
            .fold(value.clone(), |inner, key| json!({ key.as_str(): inner }));
        if serde_json::from_value::<T>(alone).is_err() {
            return Err(format!("{}: {text}", path.join(".")));
        }
    }
    Err(text)
}

/// Every leaf of `v` (a value that is not an object) with its path.
fn leaves_of(v: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, Value)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, inner) in m {
                path.push(k.clone());
                leaves_of(inner, path, out);
                path.pop();
            }
        }
        _ => out.push((path.clone(), v.clone())),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_token_matches_only_itself() {
        let t = b"s3cret-token";
        assert!(super::same_secret(t, t));
        for other in [
            &b""[..],
            b"s3cret-toke",
            b"s3cret-tokem",
            b"s3cret-token ",
            b"S3cret-token",
        ] {
            assert!(!super::same_secret(other, t), "{other:?}");
        }
    }
}
