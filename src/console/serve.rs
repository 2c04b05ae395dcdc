//! HTTP routes of the console: `GET /` and every deep link (`/sessions/abc`, `/cost?...`) answer
//! the shell `index.html` (`Cache-Control: no-cache`, the CSP); a known asset answers its bytes
//! with its MIME type and a sha256 ETag (`If-None-Match` -> 304); an unknown path with a file
//! extension, or under `/api/`, `/v1/`, `/hooks/`, answers 404 (never the shell, so a missing
//! script is a clear error rather than HTML parsed as JavaScript). Routes registered elsewhere
//! (`/api/*`, OTLP, `/healthz`, `/metrics`) match first; `POST /` stays OTLP.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::assets::{self, INDEX};
use super::ConsoleError;

/// Where the files come from.
#[derive(Debug, Clone, Default)]
pub struct ConsoleState {
    /// `--console-dir`: serve from this directory (development); `None`: the embedded copy.
    pub dir: Option<Arc<PathBuf>>,
}

/// The console's routes; merge them after every other router.
pub fn routes(dir: Option<PathBuf>) -> Router {
    if let Some(d) = &dir {
        tracing::warn!(dir = %d.display(), "serving the console from disk (--console-dir), not the embedded copy");
    }
    Router::new()
        .route("/", get(index))
        .route("/{*path}", get(path))
        .with_state(ConsoleState { dir: dir.map(Arc::new) })
}

/// Prefixes that belong to the API and receivers: never answered with the shell.
const RESERVED: &[&str] = &["api/", "v1/", "hooks/"];
/// The pages of the app: always the shell, whatever the id looks like (`/sessions/run.1`).
const PAGES: &[&str] = &["sessions", "tasks", "agents", "cost", "alerts", "fleet"];

async fn index(State(s): State<ConsoleState>, headers: HeaderMap) -> Response {
    serve_file(&s, INDEX, &headers).await
}

async fn path(State(s): State<ConsoleState>, UrlPath(path): UrlPath<String>, headers: HeaderMap) -> Response {
    let path = path.trim_start_matches('/');
    if RESERVED.iter().any(|p| path.starts_with(p)) {
        return not_found(path);
    }
    let exists = match &s.dir {
        None => assets::get(path).is_some(),
        Some(dir) => safe_join(dir, path).is_some_and(|p| p.is_file()),
    };
    if exists {
        return serve_file(&s, path, &headers).await;
    }
    let first = path.split('/').next().unwrap_or_default();
    let last = path.rsplit('/').next().unwrap_or_default();
    if last.contains('.') && !PAGES.contains(&first) {
        not_found(path)
    } else {
        // A deep link into the single-page app: the router in app.js reads the URL.
        serve_file(&s, INDEX, &headers).await
    }
}

fn not_found(path: &str) -> Response {
    (StatusCode::NOT_FOUND, Json(serde_json::json!({ "error": ConsoleError::NotFound(path.to_string()).to_string() })))
        .into_response()
}

/// `dir/rel` when `rel` is a plain relative path (no `..`, no root, no prefix).
fn safe_join(dir: &Path, rel: &str) -> Option<PathBuf> {
    let rel = Path::new(rel);
    if rel.components().all(|c| matches!(c, Component::Normal(_))) {
        Some(dir.join(rel))
    } else {
        None
    }
}

/// Bytes, sha256 hex and CSP (for HTML) of a file, from the embedded table or the disk.
async fn load(s: &ConsoleState, rel: &str) -> Result<(std::borrow::Cow<'static, [u8]>, String), ConsoleError> {
    match &s.dir {
        None => {
            let a = assets::get(rel).ok_or_else(|| ConsoleError::NotFound(rel.to_string()))?;
            Ok((std::borrow::Cow::Borrowed(a.bytes), a.sha256.to_string()))
        }
        Some(dir) => {
            let p = safe_join(dir, rel).ok_or_else(|| ConsoleError::NotFound(rel.to_string()))?;
            let bytes =
                tokio::fs::read(&p).await.map_err(|source| ConsoleError::Read { path: rel.to_string(), source })?;
            let digest = assets::sha256_hex(&bytes);
            Ok((std::borrow::Cow::Owned(bytes), digest))
        }
    }
}

async fn serve_file(s: &ConsoleState, rel: &str, headers: &HeaderMap) -> Response {
    let (bytes, digest) = match load(s, rel).await {
        Ok(v) => v,
        Err(ConsoleError::NotFound(p)) => return not_found(&p),
        Err(e) => {
            tracing::warn!(error = %e, "console asset");
            return (StatusCode::INTERNAL_SERVER_ERROR, Json(serde_json::json!({ "error": e.to_string() })))
                .into_response();
        }
    };
    let csp = if s.dir.is_none() {
        assets::embedded_csp().to_string()
    } else {
        assets::csp_for(&String::from_utf8_lossy(&bytes))
    };
    let etag = format!("\"{}\"", &digest[..32.min(digest.len())]);
    let mut out = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().trim_start_matches("W/") == etag))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, assets::mime(rel))], bytes.into_owned()).into_response()
    };
    let h = out.headers_mut();
    let mut set = |name: header::HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    set(header::ETAG, &etag);
    // Paths are not content-hashed: always revalidate (a 304 costs one round trip on loopback).
    set(header::CACHE_CONTROL, "no-cache");
    set(header::CONTENT_SECURITY_POLICY, &csp);
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::REFERRER_POLICY, "no-referrer");
    set(header::X_FRAME_OPTIONS, "DENY");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_only_plain_relative_paths() {
        let d = Path::new("/srv/ui");
        assert_eq!(safe_join(d, "lib/api.js"), Some(PathBuf::from("/srv/ui/lib/api.js")));
        assert_eq!(safe_join(d, "../secret"), None);
        assert_eq!(safe_join(d, "lib/../../x"), None);
        assert_eq!(safe_join(d, "/etc/passwd"), None);
    }
}
