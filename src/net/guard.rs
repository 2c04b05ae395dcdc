//! `Host` and `Origin` checks for the HTTP port (issue 10, row 11).
//!
//! - DNS rebinding: a page on `evil.example` re-points its name at 127.0.0.1 and reads our API
//!   with the user's browser; the browser then sends `Host: evil.example`. So `Host` must be an IP
//!   literal (a page can only be *at* an IP literal if it is served by that address, i.e. us),
//!   `localhost` / `*.localhost`, or a name in `--allowed-hosts` (`*` turns the check off; a
//!   leading `*.` allows subdomains). Requests without `Host` (HTTP/1.0, some non-browser
//!   clients) carry no browser origin and pass.
//! - Cross-site requests: a foreign page can open a WebSocket to us (no CORS on WebSockets) or
//!   send a simple POST. WebSocket upgrades and state-changing methods (POST, PUT, PATCH, DELETE)
//!   that carry an `Origin` must come from our own origin (same host and port as `Host`) or from
//!   a host in `--allowed-hosts`; `Origin: null` is refused. Clients that are not browsers (OTLP
//!   exporters, the hook binary, curl) send no `Origin` and are not affected; the embedded web
//!   console is same-origin.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Which hosts and origins the HTTP port answers.
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    any: bool,
    /// Lowercased names without port; `*.x` entries are stored as `.x`.
    names: Vec<String>,
}

impl HostPolicy {
    /// From `--allowed-hosts` entries (names, `*.suffix`, or `*`).
    pub fn new(allowed: &[String]) -> Self {
        let mut p = HostPolicy::default();
        for a in allowed.iter().map(|a| a.trim().trim_end_matches('.').to_ascii_lowercase()).filter(|a| !a.is_empty()) {
            if a == "*" {
                p.any = true;
            } else if let Some(suffix) = a.strip_prefix('*') {
                p.names.push(suffix.to_string());
            } else {
                p.names.push(strip_port(&a).to_string());
            }
        }
        p
    }

    /// Is `host` (a `Host` header value: name or IP, optional port) one we answer to?
    pub fn host_allowed(&self, host: &str) -> bool {
        if self.any {
            return true;
        }
        let name = strip_port(host.trim()).trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty() {
            return false;
        }
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<IpAddr>().is_ok() {
            return true;
        }
        if name == "localhost" || name.ends_with(".localhost") {
            return true;
        }
        self.names.iter().any(|n| if n.starts_with('.') { name.ends_with(n.as_str()) } else { *n == name })
    }

    /// May a request with this `Origin` (and `Host`) change state or open a WebSocket?
    pub fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        if self.any {
            return true;
        }
        let Some((scheme, authority)) = origin.trim().split_once("://") else { return false };
        if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") || authority.contains('/') {
            return false;
        }
        let authority = authority.to_ascii_lowercase();
        if let Some(host) = host {
            if authority == host.trim().to_ascii_lowercase() {
                return true;
            }
        }
        let name = strip_port(&authority);
        self.names.iter().any(|n| if n.starts_with('.') { name.ends_with(n.as_str()) } else { n == name })
    }
}

/// `host[:port]` -> `host` (IPv6 literals keep their brackets).
fn strip_port(h: &str) -> &str {
    if h.starts_with('[') {
        return match h.find(']') {
            Some(i) => &h[..=i],
            None => h,
        };
    }
    match h.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => h,
    }
}

fn forbidden(msg: &str) -> Response {
    (StatusCode::FORBIDDEN, Json(serde_json::json!({ "error": msg }))).into_response()
}

/// Middleware over every HTTP route.
pub async fn check(State(policy): State<Arc<HostPolicy>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_string()));
    if let Some(h) = &host {
        if !policy.host_allowed(h) {
            tracing::warn!(host = %h, "request refused: Host not allowed (DNS rebinding?)");
            return forbidden("Host not allowed; add it to --allowed-hosts if this name should reach the collector");
        }
    }
    let upgrade =
        headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let changes_state = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH | Method::DELETE);
    if upgrade || changes_state {
        if let Some(origin) = headers.get(header::ORIGIN) {
            let ok = origin.to_str().is_ok_and(|o| policy.origin_allowed(o, host.as_deref()));
            if !ok {
                tracing::warn!(origin = ?origin, path = %req.uri().path(), "request refused: foreign Origin");
                return forbidden("cross-origin request refused (Origin is not this collector)");
            }
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row11_hosts() {
        let p = HostPolicy::new(&["console.example.com".into(), "*.corp.example".into()]);
        let cases = [
            ("127.0.0.1:4318", true),
            ("[::1]:4318", true),
            ("10.1.2.3", true),
            ("localhost:4318", true),
            ("LOCALHOST.", true),
            ("app.localhost:80", true),
            ("console.example.com", true),
            ("console.example.com:443", true),
            ("a.corp.example", true),
            ("rebind.attacker.example:4318", false),
            ("localhost.attacker.example", false),
            ("example.com", false),
            ("", false),
        ];
        for (h, ok) in cases {
            assert_eq!(p.host_allowed(h), ok, "{h}");
        }
        assert!(HostPolicy::new(&["*".into()]).host_allowed("anything.example"));
    }

    #[test]
    fn row11_origins() {
        let p = HostPolicy::new(&["grafana.example".into()]);
        let cases = [
            ("http://127.0.0.1:4318", Some("127.0.0.1:4318"), true),
            ("http://LOCALHOST:4318", Some("localhost:4318"), true),
            ("http://127.0.0.1:9999", Some("127.0.0.1:4318"), false),
            ("https://evil.example", Some("127.0.0.1:4318"), false),
            ("null", Some("127.0.0.1:4318"), false),
            ("file://", Some("127.0.0.1:4318"), false),
            ("https://grafana.example", Some("127.0.0.1:4318"), true),
            ("https://grafana.example:3000", None, true),
        ];
        for (o, h, ok) in cases {
            assert_eq!(p.origin_allowed(o, h), ok, "{o} {h:?}");
        }
    }
}
