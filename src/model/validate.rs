//! Range checks on what a record maps to, so one absurd value can never poison a sum: a model
//! call with negative or impossibly large token counts, or a cost that is not a finite, plausible
//! number, rejects its whole record (OTLP partial success, with a message) instead of being
//! stored. The bounds are far beyond any real call (the largest context windows are a few
//! million tokens) and keep every rollup sum far from `i64` overflow.

use super::records::Batch;

/// Most tokens of one kind one call may report.
pub const MAX_TOKENS: i64 = 1_000_000_000;
/// Highest cost one call may report, in USD.
pub const MAX_COST_USD: f64 = 1_000_000.0;

/// How far each row list of a batch reached before a record was mapped.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    spans: usize,
    logs: usize,
    points: usize,
    model_calls: usize,
    tool_calls: usize,
}

impl Mark {
    pub fn of(b: &Batch) -> Self {
        Self {
            spans: b.spans.len(),
            logs: b.logs.len(),
            points: b.points.len(),
            model_calls: b.model_calls.len(),
            tool_calls: b.tool_calls.len(),
        }
    }

    /// Remove every row added since the mark.
    pub fn truncate(&self, b: &mut Batch) {
        b.spans.truncate(self.spans);
        b.logs.truncate(self.logs);
        b.points.truncate(self.points);
        b.model_calls.truncate(self.model_calls);
        b.tool_calls.truncate(self.tool_calls);
    }
}

/// Why the rows added since `mark` cannot be stored, if they cannot.
pub fn check_since(b: &Batch, mark: &Mark) -> Option<String> {
    for c in &b.model_calls[mark.model_calls.min(b.model_calls.len())..] {
        let tokens = [
            ("input", c.input_tokens),
            ("output", c.output_tokens),
            ("cache read", c.cache_read_tokens),
            ("cache write", c.cache_write_tokens),
        ];
        for (what, v) in tokens {
            if let Some(v) = v {
                if !(0..=MAX_TOKENS).contains(&v) {
                    return Some(format!("{what} token count {v} is out of range (0..={MAX_TOKENS})"));
                }
            }
        }
        if let Some(cost) = c.cost_usd {
            if !cost.is_finite() || !(0.0..=MAX_COST_USD).contains(&cost) {
                return Some(format!("cost {cost} USD is out of range (0..={MAX_COST_USD})"));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::records::{Context, ModelCallRow};

    fn call(input: Option<i64>, cost: Option<f64>) -> ModelCallRow {
        ModelCallRow {
            time_us: 0,
            source: "span",
            trace_id: None,
            span_id: None,
            parent_span_id: None,
            request_id: None,
            model: None,
            provider: None,
            operation: None,
            input_tokens: input,
            output_tokens: Some(1),
            cache_read_tokens: None,
            cache_write_tokens: None,
            cost_usd: cost,
            cost_source: None,
            duration_ms: None,
            error: false,
            token_rule: "otel",
            ctx: Context::default(),
        }
    }

    #[test]
    fn bounds() {
        let mut b = Batch::default();
        let m = Mark::of(&b);
        b.model_calls.push(call(Some(2_000_000), Some(12.5)));
        assert_eq!(check_since(&b, &m), None);
        let m = Mark::of(&b);
        b.model_calls.push(call(Some(i64::MAX), None));
        assert!(check_since(&b, &m).is_some_and(|w| w.contains("input token count")));
        m.truncate(&mut b);
        assert_eq!(b.model_calls.len(), 1);
        for bad in [Some(-1.0), Some(f64::NAN), Some(f64::INFINITY), Some(1e12)] {
            b.model_calls.push(call(Some(1), bad));
            assert!(check_since(&b, &m).is_some(), "{bad:?}");
            m.truncate(&mut b);
        }
        b.model_calls.push(call(Some(-5), None));
        assert!(check_since(&b, &m).is_some());
    }
}
