//! Wiring only: open the store (ingest log, pipeline, DuckDB writer), bind the listeners (before
//! serving, so port 0 works), serve OTLP/gRPC on one, OTLP/HTTP + the query API on another and
//! the Postgres wire protocol on a third, and shut down in order:
//! stop accepting -> finish in-flight exports (acknowledged at the log) -> the log's last sync
//! -> the pipeline takes everything durable -> the writer commits and checkpoints -> exit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiState};
use crate::auth::Token;
use crate::config::ServeArgs;
use crate::cost::pricing::{Pricing, PricingError};
use crate::live::{Hub, HubConfig};
use crate::pgwire::{self, PgError, PgServer};
use crate::receiver::grpc::{self, GrpcReceiver};
use crate::receiver::http::{self as http_rx, HttpReceiver};
use crate::receiver::ingest::Ingest;
use crate::store::{Store, StoreError, WriterHandle};
use crate::telemetry::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("prices: {0}")]
    Pricing(#[from] PricingError),
    #[error(transparent)]
    Pg(#[from] PgError),
    #[error("control: {0}")]
    Control(#[from] crate::control::ControlError),
    #[error(transparent)]
    Policy(#[from] crate::control::policy::PolicyError),
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
    #[error("alerts: {0}")]
    Alerts(#[from] crate::alerts::AlertError),
    #[error("cannot start the ingest threads: {0}")]
    Threads(std::io::Error),
}

/// A running collector.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub pg_addr: SocketAddr,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// The alert evaluator (rules, firing gauges; its seed).
    pub alerts: crate::alerts::runner::Alerts,
    cancel: CancellationToken,
    servers: Vec<JoinHandle<()>>,
    writer: WriterHandle,
    shutdown_timeout: Duration,
}

/// Largest HTTP/2 frame the gRPC server accepts (advertised in its SETTINGS).
const GRPC_MAX_FRAME: u32 = 1 << 20;

/// Open everything and start serving. Returns once the servers serve and the alert evaluator is
/// seeded from the store (the servers answer during the seed).
pub async fn start(args: ServeArgs) -> Result<Running, AppError> {
    check_exposure(&args)?;
    let metrics = Arc::new(Metrics::default());
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", args.data_dir.display())))?;
    let pricing = Arc::new(Pricing::load(args.prices.clone(), &args.data_dir)?);
    let cancel = CancellationToken::new();
    let live = Hub::new(
        HubConfig {
            retention: args.live_retention,
            retention_bytes: args.live_retention_mib.saturating_mul(1 << 20),
            buffer: args.live_buffer,
            heartbeat: Duration::from_secs(args.live_heartbeat_secs.max(1)),
            // Set once the store says where the log is (`set_id_base` below).
            id_base: 0,
            ..HubConfig::default()
        },
        cancel.clone(),
    );
    let hook = live.start_publisher();
    let task_watch = crate::tasks::live::TaskWatch::default();
    let clock = crate::sessions::tokio_clock();
    let alerts = crate::alerts::runner::Alerts::new(
        &crate::alerts::AlertConfig {
            file_rules: match &args.alerts_file {
                Some(p) => crate::alerts::load_file(p)?,
                None => Vec::new(),
            },
            webhook_secret: args.alert_webhook_secret.clone().filter(|s| !s.is_empty()),
        },
        clock.clone(),
    );
    let (store, writer) = Store::open_with_clock(
        &args.store_config(),
        pricing.current()?,
        metrics.clone(),
        vec![hook, task_watch.hook(), alerts.hook()],
        clock.clone(),
    )?;
    // Live ids follow log positions: this run's ids start after the last record DuckDB held, and
    // records replayed from the log keep the ids they had.
    let committed = *store.shared.committed_pos.borrow();
    live.set_id_base((committed << crate::live::hub::ID_BITS) | (1 << (crate::live::hub::ID_BITS - 1)));
    let durable = store.log_state().durable_pos.load(std::sync::atomic::Ordering::Acquire);
    live.set_replay_until(((durable + 1) << crate::live::hub::ID_BITS) - 1);
    let grpc_listener =
        TcpListener::bind(args.grpc_addr).await.map_err(|source| AppError::Bind { addr: args.grpc_addr, source })?;
    let http_listener =
        TcpListener::bind(args.http_addr).await.map_err(|source| AppError::Bind { addr: args.http_addr, source })?;
    let grpc_addr = grpc_listener.local_addr().map_err(|source| AppError::Bind { addr: args.grpc_addr, source })?;
    let http_addr = http_listener.local_addr().map_err(|source| AppError::Bind { addr: args.http_addr, source })?;
    let pg_listener =
        TcpListener::bind(args.pg_addr).await.map_err(|source| AppError::Bind { addr: args.pg_addr, source })?;
    let pg_addr = pg_listener.local_addr().map_err(|source| AppError::Bind { addr: args.pg_addr, source })?;
    let pg_tls = match (&args.pg_tls_cert, &args.pg_tls_key) {
        (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
        _ => None,
    };
    let pg = PgServer::new(store.reader.clone(), args.read_token.clone(), pg_tls)?;
    tracing::info!(%grpc_addr, "OTLP/gRPC listening");
    tracing::info!(%http_addr, "OTLP/HTTP and query API listening");
    tracing::info!(%pg_addr, tls = pg.tls_enabled(), "Postgres wire protocol listening");

    let heavy = crate::receiver::heavy::HeavyPool::per_core(args.ingest_nice).map_err(AppError::Threads)?;
    let ingest = Ingest::new(store.clone(), metrics.clone(), clock, args.ingest_limits(), heavy);
    let ingest_token = Arc::new(Token::new(args.ingest_token.clone()));
    let read_token = Arc::new(Token::new(args.read_token.clone()));
    let control_token = Arc::new(Token::named(
        "control",
        args.control_token.clone(),
        args.control.control_tokens.clone().unwrap_or_default().0,
    ));
    let control = crate::control::Control::start(
        store.clone(),
        live.clone(),
        args.control.config(ingest_token.secret())?,
        cancel.clone(),
    )
    .await?;
    let billing = crate::billing::Marks::load(&store).await?;
    {
        // Weak: the hub outlives the writer's drain at shutdown; it must not keep the store open.
        let c = control.downgrade();
        let marks = billing.clone();
        live.set_session_extra(Arc::new(move |u| {
            let mut extra = marks.fields(Some(&u.session_id), u.agent_id.as_deref(), Some(u.cost_usd));
            if let Some(c) = c.upgrade() {
                let (ctl, caps) = c.session_view(&u.session_id, u.service_name.as_deref());
                extra.extend([("control".to_string(), ctl), ("capabilities".to_string(), caps)]);
            }
            extra
        }));
        let marks = billing.clone();
        live.set_call_extra(Arc::new(move |c| {
            marks.fields(c.ctx.session_id.as_deref(), c.ctx.agent_id.as_deref(), c.cost_usd)
        }));
    }

    alerts.load(&store).await?;

    let svcs = grpc::services(GrpcReceiver::new(ingest.clone()), args.max_request_bytes, ingest_token.clone());
    let grpc_cancel = cancel.clone();
    let grpc_limits = crate::net::grpc_edge::GrpcLimits::from_args(&args);
    let grpc_server = tokio::spawn(async move {
        // Connection cap, handshake/idle timeouts, keepalive, request timeout (src/net/grpc_edge.rs).
        let incoming = crate::net::grpc_edge::incoming(grpc_listener, grpc_limits);
        // Receive windows sized for OTLP's large messages (SDKs send up to 4 MiB): with h2's
        // default 64 KiB a 400 KB export waits on several WINDOW_UPDATE round trips. Frames of
        // up to 1 MiB (h2's default is 16 KiB): a client may send a 400 KB export in one DATA
        // frame instead of ~27, each handled on both sides.
        let result = grpc_limits
            .builder()
            .initial_stream_window_size(Some(4 << 20))
            .initial_connection_window_size(Some(16 << 20))
            .max_frame_size(Some(GRPC_MAX_FRAME))
            .layer(tower::util::MapResponseLayer::new(grpc::size_limit_status))
            .add_service(svcs.traces)
            .add_service(svcs.logs)
            .add_service(svcs.metrics)
            .serve_with_incoming_shutdown(incoming, grpc_cancel.cancelled_owned())
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "gRPC server stopped with an error");
        }
    });

    let http_rx = HttpReceiver { ingest, max_request_bytes: args.max_request_bytes, token: ingest_token.clone() };
    // Claude Code's hooks (http hooks and the hook binary), next to the OTLP routes (same token
    // and body cap), decided by the control plane.
    let hooks = crate::receiver::hooks::HookReceiver::new(http_rx.clone(), Some(control.clone()));
    // OpenClaw shims' long-poll for their gateways' commands (same token and body cap).
    let openclaw_inbox = crate::receiver::openclaw_inbox::routes(http_rx.clone(), control.clone());
    let router = http_rx::routes(http_rx)
        .merge(crate::receiver::hooks::routes(hooks))
        .merge(openclaw_inbox)
        .merge(api::routes(ApiState {
            store: store.clone(),
            metrics: metrics.clone(),
            read_token,
            control_token,
            ingest_token: ingest_token.clone(),
            pricing,
            live: live.clone(),
            control: control.clone(),
            tasks: task_watch.clone(),
            alerts: alerts.clone(),
            billing,
        }))
        .merge(crate::console::routes(args.console_dir.clone()))
        .layer(axum::extract::DefaultBodyLimit::max(args.max_request_bytes))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(crate::net::guard::HostPolicy::new(&args.allowed_hosts)),
            crate::net::guard::check,
        ));
    let http_limits = crate::net::serve::HttpLimits {
        header_read_timeout: Duration::from_secs(args.http_header_timeout_secs.max(1)),
        body_idle_timeout: Duration::from_secs(args.http_body_idle_timeout_secs.max(1)),
        max_connections: args.http_max_connections.max(1),
    };
    let http_grace = Duration::from_secs(args.shutdown_timeout_secs);
    let http_server =
        tokio::spawn(crate::net::serve::serve(http_listener, router, http_limits, cancel.clone(), http_grace));

    let pg_server = tokio::spawn(pgwire::serve(pg_listener, pg, cancel.clone()));

    // The alert evaluator starts from what the store holds. Its seed waits until what the
    // pipeline replayed so far is committed (seconds, with a backlog in the log), so it runs
    // after the servers are up: `/healthz`, exports and queries answer meanwhile, nothing is
    // evaluated until it is done, and `start` still returns seeded.
    alerts.seed(&store).await;
    let alert_runner = alerts.start(store.clone(), live.clone(), control, cancel.clone());

    // Checkpoints keep DuckDB's WAL short and let the ingest log delete covered segments.
    let ck_store = store.clone();
    let ck_cancel = cancel.clone();
    let checkpointer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = ck_cancel.cancelled() => break,
                _ = tick.tick() => ck_store.checkpoint_when_idle(),
            }
        }
    });

    // Session states that change with time alone (idle, stuck, finished by inactivity).
    let st_store = store.clone();
    let st_cancel = cancel.clone();
    let session_clock = tokio::spawn(async move {
        let period = Duration::from_secs(1);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = st_cancel.cancelled() => break,
                _ = tick.tick() => st_store.tick(),
            }
        }
    });

    let task_messages = task_watch.start(store.clone(), live, cancel.clone());

    Ok(Running {
        grpc_addr,
        http_addr,
        pg_addr,
        store,
        metrics,
        alerts,
        cancel,
        servers: vec![grpc_server, http_server, pg_server, checkpointer, session_clock, task_messages, alert_runner],
        writer,
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout_secs),
    })
}

impl Running {
    /// Orderly shutdown; every export acknowledged before this returns is committed.
    pub async fn shutdown(self) {
        let Running { store, cancel, servers, writer, shutdown_timeout, metrics, .. } = self;
        tracing::info!("shutting down: no new connections");
        cancel.cancel();
        // One deadline for every server (issue 10, row 4): whatever still runs then (a stalled
        // request, an open gRPC stream, a Postgres session) is aborted; the drain below still runs.
        let deadline = tokio::time::Instant::now() + shutdown_timeout + Duration::from_millis(500);
        for mut s in servers {
            if tokio::time::timeout_at(deadline, &mut s).await.is_err() {
                tracing::warn!("a server did not stop in time: aborted");
                s.abort();
                let _ = s.await;
            }
        }
        drop(store);
        drop(metrics);
        tracing::info!("draining the writer");
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        tracing::info!("shutdown complete");
    }

    /// A token that, when cancelled, starts the same shutdown (for signal handlers).
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Cancelled when DuckDB invalidated the database: shut down and `start` again on the same
    /// directory and addresses (`restart_args`); the ingest log replays what was not checkpointed.
    pub fn restart_token(&self) -> CancellationToken {
        self.store.shared.restart.clone()
    }

    /// `args` for starting again where this one runs (its bound addresses, port 0 resolved; the
    /// records a failed streamed transaction held are committed whole, `careful_through`).
    pub fn restart_args(&self, mut args: ServeArgs) -> ServeArgs {
        args.grpc_addr = self.grpc_addr;
        args.http_addr = self.http_addr;
        args.pg_addr = self.pg_addr;
        let careful = self.store.shared.careful_through.load(std::sync::atomic::Ordering::Acquire);
        if careful > 0 {
            args.careful_through = Some(careful.max(args.careful_through.unwrap_or(0)));
        }
        args
    }
}

/// Attempts, one every `RESTART_EVERY`, to start again after DuckDB invalidated the database,
/// before `serve` gives up.
pub const RESTART_ATTEMPTS: u32 = 60;
/// The pause between two such attempts.
pub const RESTART_EVERY: Duration = Duration::from_secs(1);

/// Serve until `stop` resolves or the collector stops itself, starting again in this process,
/// on the same directory and addresses, whenever DuckDB invalidates the database (everything
/// acknowledged is in the ingest log and replayed). `started` sees each instance once it serves,
/// with the number of attempts that failed before it.
///
/// A start right after an invalidation can fail: DuckDB hands back its invalidated instance
/// while any handle on it is still open (a reader finishing its query), and a full disk fails
/// the reopen too. So a failed restart is tried again, `RESTART_ATTEMPTS` times; the first start
/// is not (a bad flag or a busy port should fail at once).
pub async fn serve(
    args: ServeArgs,
    stop: impl std::future::Future<Output = ()>,
    started: impl FnMut(&Running, u32),
) -> Result<(), AppError> {
    serve_with(args, stop, started, start).await
}

/// `serve`, starting each instance with `start_one` (`start`; tests wrap it to make a restart
/// fail the way a full disk or a lingering handle does).
pub async fn serve_with<F: std::future::Future<Output = Result<Running, AppError>>>(
    mut args: ServeArgs,
    stop: impl std::future::Future<Output = ()>,
    mut started: impl FnMut(&Running, u32),
    mut start_one: impl FnMut(ServeArgs) -> F,
) -> Result<(), AppError> {
    tokio::pin!(stop);
    let mut restarts_failed = None::<u32>;
    loop {
        let running = match start_one(args.clone()).await {
            Ok(running) => running,
            Err(e) if restarts_failed.is_some_and(|n| n < RESTART_ATTEMPTS) => {
                let n = restarts_failed.map_or(1, |n| n + 1);
                restarts_failed = Some(n);
                tracing::warn!(error = %e, attempt = n, "restart failed; trying again");
                tokio::select! {
                    _ = &mut stop => return Err(e),
                    _ = tokio::time::sleep(RESTART_EVERY) => {}
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        started(&running, restarts_failed.unwrap_or(0));
        let (cancel, restart) = (running.cancel_token(), running.restart_token());
        let again = tokio::select! {
            _ = &mut stop => false,
            _ = cancel.cancelled() => false,
            _ = restart.cancelled() => true,
        };
        args = running.restart_args(args);
        running.shutdown().await;
        if !again {
            return Ok(());
        }
        restarts_failed = Some(0);
        tracing::warn!("restarting: the writer stopped (DuckDB invalidated the database, or a streamed transaction failed; its error is above); reopening the database and replaying the ingest log");
    }
}

/// Issue 10, row 13: a non-loopback listener needs a token for every surface on it.
fn check_exposure(args: &ServeArgs) -> Result<(), crate::net::NetError> {
    use crate::net::Surface;
    let set = |t: &Option<String>| t.as_deref().is_some_and(|t| !t.is_empty());
    let control = set(&args.control_token) || args.control.control_tokens.as_ref().is_some_and(|t| !t.0.is_empty());
    crate::net::check_exposure(
        &[
            Surface { addr: args.grpc_addr, tokens: vec![("--ingest-token", set(&args.ingest_token))] },
            Surface {
                addr: args.http_addr,
                tokens: vec![
                    ("--ingest-token", set(&args.ingest_token)),
                    ("--read-token", set(&args.read_token)),
                    ("--control-token", control),
                ],
            },
            Surface { addr: args.pg_addr, tokens: vec![("--read-token", set(&args.read_token))] },
        ],
        args.insecure_no_auth,
    )
}
