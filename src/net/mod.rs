//! The network edge of the HTTP port and who may reach it (issue 10, rows 4, 10, 11 and 13):
//! - `serve.rs`: our own accept loop over hyper-util instead of `axum::serve`: a header read
//!   timeout (slowloris), a per-connection body idle timeout (a stalled streamed upload), a
//!   connection cap (the next connection gets 503 + Retry-After and is closed), and a shutdown
//!   that is bounded: connections are asked to finish, and whatever is still open at the deadline
//!   is dropped.
//! - `guard.rs`: `Host` is checked against loopback names, IP literals and `--allowed-hosts`
//!   (DNS rebinding), and `Origin` on WebSocket upgrades and on every state-changing request
//!   (a foreign web page acting through the user's browser).
//! - `grpc_edge.rs`: the same for the OTLP/gRPC port: connection cap, handshake and idle
//!   timeouts, HTTP/2 keepalive, request timeout, stream and header limits, connection age.
//! - `exposure`: refusing to start on a non-loopback address without tokens.

pub mod grpc_edge;
pub mod guard;
pub mod serve;

use std::net::SocketAddr;

/// Errors of the network edge.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(
        "refusing to start: {addr} is not a loopback address and {missing} not set (set the tokens, or pass \
         --insecure-no-auth to accept anyone who can reach it)"
    )]
    Exposed { addr: SocketAddr, missing: String },
}

/// The surfaces one listener exposes and whether each has a token.
pub struct Surface {
    pub addr: SocketAddr,
    /// (flag name, configured) of every token that guards something on this listener.
    pub tokens: Vec<(&'static str, bool)>,
}

/// Refuse a non-loopback listener whose surfaces are not all guarded by a token, unless
/// `insecure_no_auth`. A listener on 127.0.0.1 / ::1 is reachable from this machine only.
pub fn check_exposure(surfaces: &[Surface], insecure_no_auth: bool) -> Result<(), NetError> {
    if insecure_no_auth {
        for s in surfaces.iter().filter(|s| !s.addr.ip().is_loopback()) {
            if s.tokens.iter().any(|(_, set)| !set) {
                tracing::warn!(addr = %s.addr, "--insecure-no-auth: listening on a non-loopback address without tokens");
            }
        }
        return Ok(());
    }
    for s in surfaces {
        if s.addr.ip().is_loopback() {
            continue;
        }
        let missing: Vec<&str> = s.tokens.iter().filter(|(_, set)| !set).map(|(n, _)| *n).collect();
        if !missing.is_empty() {
            let missing = match missing.len() {
                1 => format!("{} is", missing[0]),
                _ => format!("{} are", missing.join(", ")),
            };
            return Err(NetError::Exposed { addr: s.addr, missing });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn surface(addr: &str, tokens: &[(&'static str, bool)]) -> Surface {
        Surface { addr: addr.parse().expect("addr"), tokens: tokens.to_vec() }
    }

    #[test]
    fn row13_non_loopback_needs_every_token() {
        type Case<'a> = (&'a str, &'a [(&'static str, bool)], bool, bool);
        let cases: &[Case] = &[
            ("127.0.0.1:4318", &[("--read-token", false)], false, true),
            ("[::1]:4318", &[("--read-token", false)], false, true),
            ("0.0.0.0:4318", &[("--read-token", false)], false, false),
            ("0.0.0.0:4318", &[("--read-token", true), ("--control-token", false)], false, false),
            ("0.0.0.0:4318", &[("--read-token", true), ("--control-token", true)], false, true),
            ("10.0.0.5:5433", &[("--read-token", false)], true, true),
        ];
        for (addr, tokens, insecure, ok) in cases {
            let r = check_exposure(&[surface(addr, tokens)], *insecure);
            assert_eq!(r.is_ok(), *ok, "{addr} {tokens:?} insecure={insecure}: {r:?}");
        }
        let e = check_exposure(&[surface("0.0.0.0:1", &[("--a", false), ("--b", false)])], false).expect_err("refused");
        let line = e.to_string();
        assert!(line.contains("--a, --b are not set") && line.contains("--insecure-no-auth") && !line.contains('\n'));
    }
}
