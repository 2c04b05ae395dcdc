//! `agent-console serve`: parse configuration, start the collector, stop cleanly on
//! SIGINT/SIGTERM.

use agent_console::{app, config, telemetry};
use anyhow::Context as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config::Command::Serve(args) = config::parse().context("configuration")?;
    telemetry::init_tracing(&args.log, args.log_json);
    let running = app::start(args).await.context("starting agent-console")?;
    let cancel = running.cancel_token();
    tokio::select! {
        _ = shutdown_signal() => {}
        _ = cancel.cancelled() => {}
    }
    running.shutdown().await;
    Ok(())
}

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
