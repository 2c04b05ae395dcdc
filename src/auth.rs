//! Bearer tokens. When configured, a token guards a surface (ingest, read); when not, the surface
//! is open (the default bind is 127.0.0.1). Comparison is constant-time.

/// An optional bearer token for one surface.
#[derive(Debug, Clone, Default)]
pub struct Token(Option<String>);

impl Token {
    pub fn new(token: Option<String>) -> Self {
        Self(token.filter(|t| !t.is_empty()))
    }

    /// Does an `Authorization` header value satisfy this token?
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        let Some(expected) = &self.0 else { return true };
        let Some(given) = authorization.and_then(|h| {
            let (scheme, rest) = h.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
        }) else {
            return false;
        };
        constant_time_eq(given.as_bytes(), expected.as_bytes())
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
    }
}
