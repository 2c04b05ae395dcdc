//! Row structs -> Arrow record batches, one function per table. Column names match the schema;
//! the writer inserts the bulk tables' batches by column name (`bulk_insert.rs`), so their column
//! order in the table is free; `seen` goes into the staging tables by position.

use std::sync::Arc;

use duckdb::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
    UInt64Builder,
};
use duckdb::arrow::error::ArrowError;
use duckdb::arrow::record_batch::RecordBatch;

use crate::model::records::{Context, LogRow, ModelCallRow, PointRow, Seen, SpanRow, ToolCallRow};

fn ts(cap: usize) -> TimestampMicrosecondBuilder {
    TimestampMicrosecondBuilder::with_capacity(cap)
}
fn s(cap: usize) -> StringBuilder {
    StringBuilder::with_capacity(cap, cap * 16)
}
/// A string column sized to the bytes it will hold (long columns would otherwise grow by
/// doubling, copying the batch's JSON several times).
fn sized<'a>(n: usize, values: impl Iterator<Item = Option<&'a str>>) -> StringBuilder {
    StringBuilder::with_capacity(n, values.map(|v| v.map_or(0, str::len)).sum())
}

/// Columns every row type shares (the agent context).
struct CtxCols {
    service_name: StringBuilder,
    session_id: StringBuilder,
    agent_id: StringBuilder,
    agent_name: StringBuilder,
    task_id: StringBuilder,
    run_id: StringBuilder,
}

impl CtxCols {
    fn new(n: usize) -> Self {
        Self { service_name: s(n), session_id: s(n), agent_id: s(n), agent_name: s(n), task_id: s(n), run_id: s(n) }
    }
    fn push(&mut self, c: &Context) {
        self.service_name.append_option(c.service_name.as_deref());
        self.session_id.append_option(c.session_id.as_deref());
        self.agent_id.append_option(c.agent_id.as_deref());
        self.agent_name.append_option(c.agent_name.as_deref());
        self.task_id.append_option(c.task_id.as_deref());
        self.run_id.append_option(c.run_id.as_deref());
    }
    fn finish(mut self, with_name_and_run: bool) -> Vec<(&'static str, ArrayRef)> {
        let mut v: Vec<(&'static str, ArrayRef)> = vec![
            ("service_name", Arc::new(self.service_name.finish())),
            ("session_id", Arc::new(self.session_id.finish())),
            ("agent_id", Arc::new(self.agent_id.finish())),
            ("task_id", Arc::new(self.task_id.finish())),
        ];
        if with_name_and_run {
            v.push(("agent_name", Arc::new(self.agent_name.finish())));
            v.push(("run_id", Arc::new(self.run_id.finish())));
        }
        v
    }
}

fn batch(cols: Vec<(&'static str, ArrayRef)>) -> Result<RecordBatch, ArrowError> {
    RecordBatch::try_from_iter(cols)
}

pub fn spans(rows: &[SpanRow]) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let (mut time, mut start, mut end) = (ts(n), ts(n), ts(n));
    let (mut trace, mut span, mut parent, mut name, mut kind) = (s(n), s(n), s(n), s(n), s(n));
    let mut duration = Float64Builder::with_capacity(n);
    let (mut status, mut status_msg, mut scope, mut stype, mut model) = (s(n), s(n), s(n), s(n), s(n));
    let mut error = BooleanBuilder::with_capacity(n);
    let mut attrs = sized(n, rows.iter().map(|r| Some(r.attributes.as_str())));
    let mut res = sized(n, rows.iter().map(|r| Some(&*r.resource_attributes)));
    let mut events = sized(n, rows.iter().map(|r| r.events.as_deref()));
    let mut links = sized(n, rows.iter().map(|r| r.links.as_deref()));
    let mut ctx = CtxCols::new(n);
    let mut fallback = Int32Builder::with_capacity(n);
    for r in rows {
        fallback.append_value(fallback_bits(&r.ctx));
        time.append_value(r.time_us);
        start.append_value(r.start_us);
        end.append_value(r.end_us);
        trace.append_value(&r.trace_id);
        span.append_value(&r.span_id);
        parent.append_option(r.parent_span_id.as_deref());
        name.append_value(&r.name);
        kind.append_value(r.kind);
        duration.append_value(r.duration_ms);
        status.append_value(r.status_code);
        status_msg.append_option(r.status_message.as_deref());
        scope.append_option(r.scope_name.as_deref());
        stype.append_value(r.span_type.as_str());
        model.append_option(r.model.as_deref());
        error.append_value(r.error);
        attrs.append_value(&r.attributes);
        res.append_value(&*r.resource_attributes);
        events.append_option(r.events.as_deref());
        links.append_option(r.links.as_deref());
        ctx.push(&r.ctx);
    }
    let mut cols: Vec<(&'static str, ArrayRef)> = vec![
        ("time", Arc::new(time.finish())),
        ("trace_id", Arc::new(trace.finish())),
        ("span_id", Arc::new(span.finish())),
        ("parent_span_id", Arc::new(parent.finish())),
        ("name", Arc::new(name.finish())),
        ("kind", Arc::new(kind.finish())),
        ("start_time", Arc::new(start.finish())),
        ("end_time", Arc::new(end.finish())),
        ("duration_ms", Arc::new(duration.finish())),
        ("status_code", Arc::new(status.finish())),
        ("status_message", Arc::new(status_msg.finish())),
        ("scope_name", Arc::new(scope.finish())),
        ("span_type", Arc::new(stype.finish())),
        ("model", Arc::new(model.finish())),
        ("error", Arc::new(error.finish())),
        ("attributes", Arc::new(attrs.finish())),
        ("resource_attributes", Arc::new(res.finish())),
        ("events", Arc::new(events.finish())),
        ("links", Arc::new(links.finish())),
    ];
    cols.extend(ctx.finish(true));
    cols.push(("fallback", Arc::new(fallback.finish())));
    batch(cols)
}

/// The `spans.fallback` bits: 1 agent only `service.name`, 2 session only the trace id, 4 no task.
pub fn fallback_bits(c: &crate::model::records::Context) -> i32 {
    i32::from(c.agent_fallback) | (i32::from(c.session_fallback) << 1) | (i32::from(c.task_id.is_none()) << 2)
}

pub fn logs(rows: &[LogRow]) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let (mut time, mut observed) = (ts(n), ts(n));
    let (mut trace, mut span) = (s(n), s(n));
    let mut sev = Int32Builder::with_capacity(n);
    let (mut sev_text, mut event, mut body, mut scope) = (s(n), s(n), s(n), s(n));
    let mut attrs = sized(n, rows.iter().map(|r| Some(r.attributes.as_str())));
    let mut res = sized(n, rows.iter().map(|r| Some(&*r.resource_attributes)));
    let mut ctx = CtxCols::new(n);
    for r in rows {
        time.append_value(r.time_us);
        observed.append_value(r.observed_us);
        trace.append_option(r.trace_id.as_deref());
        span.append_option(r.span_id.as_deref());
        sev.append_value(r.severity_number);
        sev_text.append_option(r.severity_text.as_deref());
        event.append_option(r.event_name.as_deref());
        body.append_option(r.body.as_deref());
        scope.append_option(r.scope_name.as_deref());
        attrs.append_value(&r.attributes);
        res.append_value(&*r.resource_attributes);
        ctx.push(&r.ctx);
    }
    let mut cols: Vec<(&'static str, ArrayRef)> = vec![
        ("time", Arc::new(time.finish())),
        ("observed_time", Arc::new(observed.finish())),
        ("trace_id", Arc::new(trace.finish())),
        ("span_id", Arc::new(span.finish())),
        ("severity_number", Arc::new(sev.finish())),
        ("severity_text", Arc::new(sev_text.finish())),
        ("event_name", Arc::new(event.finish())),
        ("body", Arc::new(body.finish())),
        ("scope_name", Arc::new(scope.finish())),
        ("attributes", Arc::new(attrs.finish())),
        ("resource_attributes", Arc::new(res.finish())),
    ];
    cols.extend(ctx.finish(true));
    batch(cols)
}

pub fn points(rows: &[PointRow]) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let (mut time, mut start) = (ts(n), ts(n));
    let (mut name, mut desc, mut unit, mut kind, mut temp) = (s(n), s(n), s(n), s(n), s(n));
    let mut mono = BooleanBuilder::with_capacity(n);
    let mut count = UInt64Builder::with_capacity(n);
    let mut f: [Float64Builder; 4] = std::array::from_fn(|_| Float64Builder::with_capacity(n));
    let (mut dist, mut series) = (s(n), s(n));
    let mut attrs = sized(n, rows.iter().map(|r| Some(r.attributes.as_str())));
    let mut res = sized(n, rows.iter().map(|r| Some(&*r.resource_attributes)));
    let mut ctx = CtxCols::new(n);
    for r in rows {
        time.append_value(r.time_us);
        start.append_option(r.start_us);
        name.append_value(&*r.name);
        desc.append_option(r.description.as_deref());
        unit.append_option(r.unit.as_deref());
        kind.append_value(r.kind);
        temp.append_value(r.temporality);
        mono.append_option(r.is_monotonic);
        count.append_option(r.count);
        for (b, v) in f.iter_mut().zip([r.value, r.sum, r.min, r.max]) {
            b.append_option(v);
        }
        dist.append_option(r.distribution.as_deref());
        series.append_value(&r.series_id);
        attrs.append_value(&r.attributes);
        res.append_value(&*r.resource_attributes);
        ctx.push(&r.ctx);
    }
    let [mut value, mut sum, mut min, mut max] = f;
    let mut cols: Vec<(&'static str, ArrayRef)> = vec![
        ("time", Arc::new(time.finish())),
        ("start_time", Arc::new(start.finish())),
        ("name", Arc::new(name.finish())),
        ("description", Arc::new(desc.finish())),
        ("unit", Arc::new(unit.finish())),
        ("kind", Arc::new(kind.finish())),
        ("temporality", Arc::new(temp.finish())),
        ("is_monotonic", Arc::new(mono.finish())),
        ("value", Arc::new(value.finish())),
        ("count", Arc::new(count.finish())),
        ("sum", Arc::new(sum.finish())),
        ("min", Arc::new(min.finish())),
        ("max", Arc::new(max.finish())),
        ("distribution", Arc::new(dist.finish())),
        ("series_id", Arc::new(series.finish())),
        ("attributes", Arc::new(attrs.finish())),
        ("resource_attributes", Arc::new(res.finish())),
    ];
    cols.extend(ctx.finish(false));
    batch(cols)
}

pub fn model_calls(rows: &[ModelCallRow]) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let mut time = ts(n);
    let (mut source, mut trace, mut span, mut req, mut model, mut prov, mut op) =
        (s(n), s(n), s(n), s(n), s(n), s(n), s(n));
    let mut toks: [Int64Builder; 4] = std::array::from_fn(|_| Int64Builder::with_capacity(n));
    let (mut cost, mut dur) = (Float64Builder::with_capacity(n), Float64Builder::with_capacity(n));
    let (mut cost_src, mut rule) = (s(n), s(n));
    let mut error = BooleanBuilder::with_capacity(n);
    let mut ctx = CtxCols::new(n);
    for r in rows {
        time.append_value(r.time_us);
        source.append_value(r.source);
        trace.append_option(r.trace_id.as_deref());
        span.append_option(r.span_id.as_deref());
        req.append_option(r.request_id.as_deref());
        model.append_option(r.model.as_deref());
        prov.append_option(r.provider.as_deref());
        op.append_option(r.operation.as_deref());
        for (b, v) in toks.iter_mut().zip([r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens])
        {
            b.append_option(v);
        }
        cost.append_option(r.cost_usd);
        cost_src.append_option(r.cost_source);
        dur.append_option(r.duration_ms);
        error.append_value(r.error);
        rule.append_value(r.token_rule);
        ctx.push(&r.ctx);
    }
    let [mut input, mut output, mut cache_read, mut cache_write] = toks;
    let mut cols: Vec<(&'static str, ArrayRef)> = vec![
        ("time", Arc::new(time.finish())),
        ("source", Arc::new(source.finish())),
        ("trace_id", Arc::new(trace.finish())),
        ("span_id", Arc::new(span.finish())),
        ("request_id", Arc::new(req.finish())),
        ("model", Arc::new(model.finish())),
        ("provider", Arc::new(prov.finish())),
        ("operation", Arc::new(op.finish())),
        ("input_tokens", Arc::new(input.finish())),
        ("output_tokens", Arc::new(output.finish())),
        ("cache_read_tokens", Arc::new(cache_read.finish())),
        ("cache_write_tokens", Arc::new(cache_write.finish())),
        ("cost_usd", Arc::new(cost.finish())),
        ("cost_source", Arc::new(cost_src.finish())),
        ("duration_ms", Arc::new(dur.finish())),
        ("error", Arc::new(error.finish())),
        ("token_rule", Arc::new(rule.finish())),
    ];
    cols.extend(ctx.finish(true));
    batch(cols)
}

pub fn tool_calls(rows: &[ToolCallRow]) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let mut time = ts(n);
    let (mut source, mut trace, mut span, mut call, mut name, mut err) = (s(n), s(n), s(n), s(n), s(n), s(n));
    let mut dur = Float64Builder::with_capacity(n);
    let mut success = BooleanBuilder::with_capacity(n);
    let mut ctx = CtxCols::new(n);
    for r in rows {
        time.append_value(r.time_us);
        source.append_value(r.source);
        trace.append_option(r.trace_id.as_deref());
        span.append_option(r.span_id.as_deref());
        call.append_option(r.tool_call_id.as_deref());
        name.append_value(&r.tool_name);
        dur.append_option(r.duration_ms);
        success.append_option(r.success);
        err.append_option(r.error.as_deref());
        ctx.push(&r.ctx);
    }
    let mut cols: Vec<(&'static str, ArrayRef)> = vec![
        ("time", Arc::new(time.finish())),
        ("source", Arc::new(source.finish())),
        ("trace_id", Arc::new(trace.finish())),
        ("span_id", Arc::new(span.finish())),
        ("tool_call_id", Arc::new(call.finish())),
        ("tool_name", Arc::new(name.finish())),
        ("duration_ms", Arc::new(dur.finish())),
        ("success", Arc::new(success.finish())),
        ("error", Arc::new(err.finish())),
    ];
    cols.extend(ctx.finish(true));
    batch(cols)
}

/// Staging rows for the `sessions` / `agents` upsert.
pub fn seen(rows: &[Seen]) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let (mut first, mut last) = (ts(n), ts(n));
    let (mut id, mut agent, mut name, mut service, mut task) = (s(n), s(n), s(n), s(n), s(n));
    let mut parent = s(n);
    for r in rows {
        id.append_value(&r.id);
        first.append_value(r.first_us);
        last.append_value(r.last_us);
        agent.append_option(r.agent_id.as_deref());
        name.append_option(r.display_name.as_deref());
        service.append_option(r.service_name.as_deref());
        task.append_option(r.task_id.as_deref());
        parent.append_option(r.parent_id.as_deref());
    }
    batch(vec![
        ("id", Arc::new(id.finish()) as ArrayRef),
        ("first_seen", Arc::new(first.finish())),
        ("last_seen", Arc::new(last.finish())),
        ("agent_id", Arc::new(agent.finish())),
        ("display_name", Arc::new(name.finish())),
        ("service_name", Arc::new(service.finish())),
        ("task_id", Arc::new(task.finish())),
        ("parent_id", Arc::new(parent.finish())),
    ])
}
