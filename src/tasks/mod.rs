//! Tasks: the operator's unit of work (issue 13). A task is a row of `tasks` (migration 0009),
//! created by hand through the API (idempotent on `source` + `external_id`, so a tracker sync is
//! a few lines) or the first time telemetry names it (`agent_console.task.id`, title = id).
//! Sessions belong to tasks through `task_sessions` links, in this order: the attribute, a hand
//! link, the configured pattern over git branch / working directory (off by default); a child
//! session without a link of its own belongs to its parent's task (view `session_tasks`).
//!
//! - `link.rs`: the pipeline's `tasks` stage (pure per batch: which task ids and links the
//!   batch introduces; bounded memory of what was already handed to the writer) and the pattern.
//! - `model.rs`: the API bodies, the derived board state and card flags (pure, table-tested).
//! - `store.rs`: the writer-side upsert (same transaction as the rows) and the `Store::apply`
//!   changes made by hand, plus the read SQL (one view, `task_model_calls`, for every cost, so a
//!   task's cost equals `GET /api/cost?group_by=task` to the micro-dollar).
//! - `api.rs`: `/api/tasks...` routes (reads under the read token, writes under the control token).
//! - `live.rs`: the coalesced `task` live message (at most one per task per second).

pub mod api;
pub mod link;
pub mod live;
pub mod model;
pub mod store;

use crate::store::StoreError;

/// Task errors.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("{0}")]
    Invalid(String),
    #[error("no task {0:?}")]
    NotFound(String),
    #[error("invalid task link pattern: {0}")]
    Pattern(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Settings (from `serve`'s flags / TOML).
#[derive(Debug, Clone, Default)]
pub struct TaskConfig {
    /// A regex over the git branch and working directory a session reports; its first capture
    /// group (or the whole match) is the task id. `None`: off.
    pub link_pattern: Option<String>,
}
