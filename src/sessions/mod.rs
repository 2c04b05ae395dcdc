//! Session state: `signals` reads what each committed batch says about its sessions, `tracker` is
//! the state machine (running / idle / paused / errored / finished, plus the stuck flag) that the
//! writer thread runs on every commit and on a timer tick; changes are stored by
//! `store::session_state` and streamed as `session` messages. `Clock` is the collector's clock
//! (tokio's, so tests can pause and advance it).

pub mod signals;
pub mod tracker;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use tracker::{Tracker, TrackerConfig};

/// Microseconds since the Unix epoch, on the collector's clock.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

fn wall_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(wall_us)
}

/// Wall time at creation plus tokio's monotonic time since then, readable from any thread. Under
/// `tokio::time::pause` it stands still and moves only with `advance`, so state timing is testable.
/// Must be called inside a tokio runtime.
pub fn tokio_clock() -> Clock {
    let handle = tokio::runtime::Handle::current();
    let t0 = tokio::time::Instant::now();
    let w0 = wall_us();
    Arc::new(move || {
        let _in_runtime = handle.enter();
        w0 + tokio::time::Instant::now().saturating_duration_since(t0).as_micros() as i64
    })
}
