//! OTLP/HTTP front door: `POST /v1/traces|logs|metrics` (and `/`, routed by content) with
//! protobuf or JSON bodies, optionally gzip/deflate, chunked or sized. It reads the body under a
//! cap, decompresses under the same cap, decodes and hands over to `Ingest::export`. Responses
//! use the request's encoding; errors carry a `google.rpc.Status`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use http_body_util::BodyExt;
use prost::Message;

use super::decode::{self, Encoding};
use super::ingest::{memory_estimate, Export, Ingest, IngestError, Outcome};
use super::prescan;
use crate::auth::Token;
use crate::error::RETRY_AFTER_SECS;
use crate::telemetry::Signal;

#[derive(Clone)]
pub struct HttpReceiver {
    pub ingest: Ingest,
    /// Max request body, before and after decompression.
    pub max_request_bytes: usize,
    pub token: Arc<Token>,
}

/// The OTLP/HTTP routes.
pub fn routes(state: HttpReceiver) -> Router {
    Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/logs", post(logs))
        .route("/v1/metrics", post(metrics))
        .route("/", post(root))
        .with_state(state)
}

async fn traces(State(s): State<HttpReceiver>, req: Request) -> Response {
    handle(s, Some(Signal::Traces), req).await
}
async fn logs(State(s): State<HttpReceiver>, req: Request) -> Response {
    handle(s, Some(Signal::Logs), req).await
}
async fn metrics(State(s): State<HttpReceiver>, req: Request) -> Response {
    handle(s, Some(Signal::Metrics), req).await
}
/// Per-signal endpoints configured without a path post to `/`: route by what the body holds.
async fn root(State(s): State<HttpReceiver>, req: Request) -> Response {
    handle(s, None, req).await
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

pub(super) async fn read_body(body: Body, limit: usize) -> Result<Bytes, IngestError> {
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(IngestError::TooLarge { limit })
        }
        Err(e) => Err(IngestError::Decode(format!("cannot read request body: {e}"))),
    }
}

async fn handle(s: HttpReceiver, signal: Option<Signal>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let enc_hint = header_str(&parts.headers, header::CONTENT_TYPE)
        .and_then(|ct| decode::encoding_of(Some(ct)).ok())
        .unwrap_or(Encoding::Json);
    match prepare(&s, signal, &parts.headers, body).await {
        Err(e) => {
            s.ingest.refused(signal.unwrap_or(Signal::Traces), &e);
            error_response(enc_hint, &e)
        }
        // `export` counts its own outcome, refusals included; the memory reservation is held
        // until the rows are handed over.
        Ok((enc, export, _reserved)) => match s.ingest.export(export).await {
            Ok(outcome) => success_response(enc, &outcome),
            Err(e) => error_response(enc, &e),
        },
    }
}

/// Authorise, read, decompress, count, reserve memory for and decode one request.
async fn prepare(
    s: &HttpReceiver,
    signal: Option<Signal>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Encoding, Export, tokio::sync::OwnedSemaphorePermit), IngestError> {
    if !s.token.allows(header_str(headers, header::AUTHORIZATION)) {
        return Err(IngestError::Unauthorized);
    }
    let enc = decode::encoding_of(header_str(headers, header::CONTENT_TYPE))?;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|len| len > s.max_request_bytes) {
        return Err(IngestError::TooLarge { limit: s.max_request_bytes });
    }
    let raw = read_body(body, s.max_request_bytes).await?;
    let content_encoding = header_str(headers, header::CONTENT_ENCODING).map(str::to_owned);
    let max = s.max_request_bytes;
    // Compressed bodies weigh what they may become; identity ones cost nothing to "decompress".
    let weight = if content_encoding.is_some() { raw.len().saturating_mul(8) } else { 0 };
    let bytes = s.ingest.offload(weight, move || decode::decompress(raw, content_encoding.as_deref(), max)).await??;
    let signal = match signal {
        Some(sig) => sig,
        // An empty export is a valid (empty) request of any signal.
        None if bytes.is_empty() => Signal::Traces,
        None => decode::sniff(enc, &bytes).ok_or_else(|| {
            IngestError::Decode(
                "cannot tell which OTLP signal the body holds; post to /v1/traces, /v1/logs or /v1/metrics".into(),
            )
        })?,
    };
    if enc == Encoding::Protobuf {
        let (export, reserved) = s.ingest.prepare_protobuf(signal, bytes).await?;
        return Ok((enc, export, reserved));
    }
    // JSON: reserve memory for the decoded request and its rows (not just its wire size) from a
    // count of its objects.
    let objects = prescan::json_objects(&bytes);
    let estimate = memory_estimate(bytes.len(), objects / 4).saturating_add((objects as usize).saturating_mul(192));
    let reserved = s.ingest.reserve(estimate).await?;
    let payload = s.ingest.offload(bytes.len(), move || decode::decode(signal, enc, &bytes)).await??;
    Ok((enc, Export { payload, raw: None }, reserved))
}

fn encoded(enc: Encoding, status: StatusCode, pb: Vec<u8>, json: serde_json::Value) -> Response {
    let body = match enc {
        Encoding::Protobuf => Body::from(pb),
        Encoding::Json => Body::from(json.to_string()),
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(enc.content_type()));
    r
}

/// 200 with an `Export*ServiceResponse`; `partial_success` only when something was rejected.
pub fn success_response(enc: Encoding, o: &Outcome) -> Response {
    let partial = o.rejected > 0;
    let msg = o.message.clone().unwrap_or_default();
    let key = match o.signal {
        Signal::Traces => "rejectedSpans",
        Signal::Logs => "rejectedLogRecords",
        Signal::Metrics => "rejectedDataPoints",
    };
    let json = if partial {
        serde_json::json!({ "partialSuccess": { key: o.rejected.to_string(), "errorMessage": msg } })
    } else {
        serde_json::json!({})
    };
    encoded(enc, StatusCode::OK, o.response_pb(), json)
}

/// An error status with a `google.rpc.Status` body (and `Retry-After` when retryable).
pub fn error_response(enc: Encoding, e: &IngestError) -> Response {
    let st = e.rpc_status();
    let json = serde_json::json!({ "code": st.code, "message": st.message });
    let mut r = encoded(enc, e.http_status(), st.encode_to_vec(), json);
    if e.retryable() {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    if matches!(e, IngestError::Unauthorized) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        error_response(Encoding::Json, &self)
    }
}
