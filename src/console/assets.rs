//! The console's files, embedded byte for byte (`include_bytes!`), with their MIME types and
//! sha256 digests. Every file under `ui/` must be listed here: `tests/console_assets.rs` compares
//! this table with the directory both ways, so a new file that is not embedded fails the tests
//! instead of going missing in the binary.

use std::collections::HashMap;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

macro_rules! embed {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_bytes!(concat!("ui/", $path)) as &[u8])),*]
    };
}

/// `(path relative to ui/, bytes)` of every embedded file.
pub static ASSETS: &[(&str, &[u8])] = embed![
    "index.html",
    "favicon.svg",
    "style.css",
    "app.js",
    "lib/api.js",
    "lib/format.js",
    "lib/html.js",
    "lib/live.js",
    "lib/route.js",
    "lib/state.js",
    "components/chart.js",
    "components/common.js",
    "components/windowed.js",
    "pages/alerts.js",
    "pages/controls.js",
    "pages/cost.js",
    "pages/fleet.js",
    "pages/session.js",
    "pages/sessions.js",
    "pages/tasks.js",
    "vendor/htm.mjs",
    "vendor/preact-hooks.mjs",
    "vendor/preact.mjs",
    "vendor/uplot.iife.min.js",
    "vendor/uplot.min.css",
];

/// The shell every page is served from.
pub const INDEX: &str = "index.html";

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    pub path: &'static str,
    pub bytes: &'static [u8],
    /// Lowercase hex sha256 of `bytes`.
    pub sha256: &'static str,
}

fn table() -> &'static HashMap<&'static str, Asset> {
    static TABLE: OnceLock<HashMap<&'static str, Asset>> = OnceLock::new();
    TABLE.get_or_init(|| {
        ASSETS
            .iter()
            .map(|(path, bytes)| {
                let sha256: &'static str = Box::leak(sha256_hex(bytes).into_boxed_str());
                (*path, Asset { path, bytes, sha256 })
            })
            .collect()
    })
}

/// The embedded file at `path` (relative to `ui/`, no leading slash).
pub fn get(path: &str) -> Option<Asset> {
    table().get(path).copied()
}

/// Every embedded file, in table order.
pub fn all() -> impl Iterator<Item = Asset> {
    ASSETS.iter().filter_map(|(p, _)| get(p))
}

/// Lowercase hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Base64 sha256, as CSP hash sources want it.
pub fn sha256_base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
}

/// The `Content-Type` of a file, by extension.
pub fn mime(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// The text of every inline `<script>` in an HTML page (the import map), for CSP hashes.
pub fn inline_scripts(html: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        let after = &rest[start..];
        let Some(open_end) = after.find('>') else { break };
        let tag = &after[..open_end];
        let body = &after[open_end + 1..];
        let Some(close) = body.find("</script>") else { break };
        if !tag.contains(" src=") {
            out.push(&body[..close]);
        }
        rest = &body[close + "</script>".len()..];
    }
    out
}

/// The Content-Security-Policy for a page: only this origin, inline scripts only by hash.
pub fn csp_for(html: &str) -> String {
    let hashes: String =
        inline_scripts(html).into_iter().map(|s| format!(" 'sha256-{}'", sha256_base64(s.as_bytes()))).collect();
    format!(
        "default-src 'none'; script-src 'self'{hashes}; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

/// The CSP of the embedded shell (computed once).
pub fn embedded_csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let html = get(INDEX).map(|a| String::from_utf8_lossy(a.bytes).into_owned()).unwrap_or_default();
        csp_for(&html)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_inline_scripts_only() {
        let html = r#"<script type="importmap">{"a":1}</script><script type="module" src="/app.js"></script>"#;
        assert_eq!(inline_scripts(html), vec![r#"{"a":1}"#]);
        let csp = csp_for(html);
        assert!(csp.contains(&format!("'sha256-{}'", sha256_base64(br#"{"a":1}"#))), "{csp}");
        assert!(csp.starts_with("default-src 'none'; script-src 'self' 'sha256-"), "{csp}");
    }

    #[test]
    fn mime_types() {
        assert_eq!(mime("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(mime("vendor/preact.mjs"), "text/javascript; charset=utf-8");
        assert_eq!(mime("style.css"), "text/css; charset=utf-8");
        assert_eq!(mime("index.html"), "text/html; charset=utf-8");
        assert_eq!(mime("favicon.svg"), "image/svg+xml");
    }
}
