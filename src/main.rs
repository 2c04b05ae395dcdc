//! `agent-console serve`: parse configuration, start the collector, stop cleanly on
//! SIGINT/SIGTERM. `agent-console export`: write a table to a file.

use agent_console::{app, config, export_cmd, import, telemetry};
use anyhow::Context as _;

/// mimalloc instead of glibc malloc (measured: BENCHMARKS.md, "CPU per span").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")?;
    let result = rt.block_on(run());
    // Blocking work still running after the orderly shutdown (a query being interrupted) does not
    // hold the exit (issue 10, row 4): everything acknowledged is committed by now.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}

async fn run() -> anyhow::Result<()> {
    let args = match config::parse().context("configuration")? {
        config::Command::Serve(args) => args,
        config::Command::Export(args) => {
            let done = export_cmd::run(args).await?;
            match done.rows {
                Some(rows) => println!("wrote {} ({rows} rows, {} bytes)", done.path.display(), done.bytes),
                None => println!("wrote {} ({} bytes)", done.path.display(), done.bytes),
            }
            return Ok(());
        }
        config::Command::Import(args) => {
            let done = import::run(args).await?;
            println!(
                "imported {} files ({} bytes): {} events sent, {} unreadable lines",
                done.files, done.bytes, done.events, done.bad_lines
            );
            return Ok(());
        }
    };
    telemetry::init_tracing(&args.log, args.log_json);
    let mut args = args;
    let mut restarts_failed = None::<u32>;
    loop {
        let running = match app::start(args.clone()).await {
            Ok(running) => running,
            // After an invalidation DuckDB hands back its invalidated instance while any handle
            // on it is still open (a reader finishing its query), and a full disk fails the
            // reopen too: try again for a while before giving up.
            Err(e) if restarts_failed.is_some_and(|n| n < RESTART_ATTEMPTS) => {
                let n = restarts_failed.map_or(1, |n| n + 1);
                restarts_failed = Some(n);
                tracing::warn!(error = %e, attempt = n, "restart failed; trying again in 1 s");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => return Err(anyhow::Error::from(e).context("starting agent-console")),
        };
        let (cancel, restart) = (running.cancel_token(), running.restart_token());
        let again = tokio::select! {
            _ = shutdown_signal() => false,
            _ = cancel.cancelled() => false,
            _ = restart.cancelled() => true,
        };
        // DuckDB invalidated the database: start again in this process, on the same directory
        // and addresses. Everything acknowledged is in the ingest log and replayed.
        args = running.restart_args(args);
        running.shutdown().await;
        if !again {
            return Ok(());
        }
        restarts_failed = Some(0);
        tracing::warn!("restarting: DuckDB invalidated the database; reopening it and replaying the ingest log");
    }
}

/// Attempts, one a second, to reopen after an invalidation before the process gives up.
const RESTART_ATTEMPTS: u32 = 60;

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}
