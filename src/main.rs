//! `agent-console serve`: parse configuration, start the collector, stop cleanly on
//! SIGINT/SIGTERM. `agent-console export`: write a table to a file.

use agent_console::{app, config, export_cmd, heap, import, malloc_arenas, priority, telemetry};
use anyhow::Context as _;

/// mimalloc instead of glibc malloc (measured: BENCHMARKS.md, "CPU per span").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let command = config::parse().context("configuration")?;
    // Before any other thread starts: every one but the DuckDB writer (started by this thread,
    // which opens the store) runs at a lower priority (`priority.rs`).
    let background = match &command {
        // On one core the writer would leave the acknowledgements a tenth of it.
        config::Command::Serve(args) if std::thread::available_parallelism().is_ok_and(|n| n.get() > 1) => {
            priority::init(args.background_nice)
        }
        _ => Ok(None),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(priority::latency)
        .on_thread_unpark(priority::follow)
        .build()
        .context("tokio runtime")?;
    let result = rt.block_on(run(command, background));
    // Blocking work still running after the orderly shutdown (a query being interrupted) does not
    // hold the exit (issue 10, row 4): everything acknowledged is committed by now.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}

async fn run(command: config::Command, background: Result<Option<i32>, priority::PriorityError>) -> anyhow::Result<()> {
    let args = match command {
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
    match background {
        Ok(Some(nice)) => tracing::debug!(nice, "threads other than the DuckDB writer run at a lower priority"),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "every thread runs at the same priority"),
    }
    if !args.heap_huge_pages {
        match heap::disable_huge_pages() {
            Ok(true) => tracing::debug!("transparent huge pages off for the heap"),
            Ok(false) => tracing::debug!("MIMALLOC_ALLOW_THP decides about transparent huge pages"),
            Err(e) => tracing::warn!(error = %e, "cannot turn transparent huge pages off"),
        }
    }
    if heap::set_purge_delay(args.heap_purge_ms) {
        tracing::debug!(ms = args.heap_purge_ms, "freed heap pages go back to the system after this delay");
    } else {
        tracing::debug!(ms = heap::purge_delay(), "MIMALLOC_PURGE_DELAY sets the heap's purge delay");
    }
    // Before DuckDB opens (its allocations are glibc's).
    let arenas = malloc_arenas::arena_cap(args.malloc_arena_max);
    match malloc_arenas::limit(arenas) {
        Ok(()) => tracing::debug!(arenas, "glibc malloc arenas capped"),
        Err(e) => tracing::warn!(error = %e, "cannot cap glibc's malloc arenas"),
    }
    let threshold = args.malloc_mmap_threshold_kib.saturating_mul(1024);
    match malloc_arenas::mmap_threshold(threshold) {
        Ok(()) => tracing::debug!(bytes = threshold, "glibc's mmap threshold fixed (0: glibc's own)"),
        Err(e) => tracing::warn!(error = %e, "glibc's mmap threshold left as it is"),
    }
    app::serve(args, shutdown_signal(), |_, _| {}).await.context("starting agent-console")
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
