//! Bearer tokens. When configured, a token guards a surface (ingest, read, control); when not, the
//! surface is open (the default bind is 127.0.0.1). A surface may accept several named tokens (the
//! control surface: `--control-token`, named `control`, plus `control_tokens = { alice = "..." }`),
//! so the audit trail can say who acted. Comparison is constant-time.

/// Who made a request, by the name of the token it carried (`anonymous` on an open surface).
/// The control middleware puts it in the request's extensions.
#[derive(Debug, Clone, PartialEq)]
pub struct Actor(pub String);

/// The actor of requests to a surface without tokens.
pub const ANONYMOUS: &str = "anonymous";

/// The bearer tokens of one surface, each with a name.
#[derive(Clone, Default)]
pub struct Token(Vec<(String, String)>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_tuple("Token").field(&names).finish()
    }
}

impl Token {
    pub fn new(token: Option<String>) -> Self {
        Self::named("token", token, [])
    }

    /// `token` under `name`, plus more named tokens; empty secrets are ignored.
    pub fn named(name: &str, token: Option<String>, more: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut v: Vec<(String, String)> = token.map(|t| (name.to_string(), t)).into_iter().collect();
        v.extend(more);
        v.retain(|(_, t)| !t.is_empty());
        Self(v)
    }

    /// The first configured secret (the ingest token signs hook answers with it).
    pub fn secret(&self) -> Option<&str> {
        self.0.first().map(|(_, t)| t.as_str())
    }

    /// Does an `Authorization` header value satisfy this surface?
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        self.who(authorization).is_some()
    }

    /// The name of the token an `Authorization` header carries; `ANONYMOUS` on an open surface,
    /// `None` when refused.
    pub fn who(&self, authorization: Option<&str>) -> Option<&str> {
        if self.0.is_empty() {
            return Some(ANONYMOUS);
        }
        let given = authorization.and_then(|h| {
            let (scheme, rest) = h.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
        })?;
        let mut found = None;
        for (name, expected) in &self.0 {
            if constant_time_eq(given.as_bytes(), expected.as_bytes()) && found.is_none() {
                found = Some(name.as_str());
            }
        }
        found
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert!(Token::new(None).allows(None));
        let t = Token::new(Some("s3cret".into()));
        assert!(t.allows(Some("Bearer s3cret")));
        assert!(t.allows(Some("bearer  s3cret ")));
        assert!(!t.allows(Some("Bearer nope")));
        assert!(!t.allows(None));
        assert!(!t.allows(Some("s3cret")));
        let c = Token::named("control", Some("c1".into()), [("alice".to_string(), "a1".to_string())]);
        assert_eq!(c.who(Some("Bearer c1")), Some("control"));
        assert_eq!(c.who(Some("Bearer a1")), Some("alice"));
        assert_eq!(c.who(Some("Bearer x")), None);
        assert_eq!(Token::new(None).who(None), Some(ANONYMOUS));
        assert!(!format!("{c:?}").contains("a1"), "secrets never in Debug");
    }
}
