//! OTLP/gRPC front door: the `TraceService`, `LogsService` and `MetricsService` `Export` methods,
//! gzip accepted, a max decoded message size, optional bearer token.
//!
//! The services are tonic's (framing, compression, size limit, status codes) with a pass-through
//! codec: a request arrives as its protobuf bytes, and then goes the HTTP/protobuf way: count
//! the records, reserve memory, decode, and hand `Ingest::export` the decoded request *and* its
//! bytes, which the ingest log stores as they came (no re-encoding of tonic's decoded message).

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes};
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, Body, BoxFuture, StdError};
use tonic::server::{NamedService, UnaryService};
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use super::ingest::{Ingest, IngestError};
use crate::auth::Token;
use crate::telemetry::Signal;

#[derive(Clone)]
pub struct GrpcReceiver {
    ingest: Ingest,
}

impl GrpcReceiver {
    pub fn new(ingest: Ingest) -> Self {
        Self { ingest }
    }

    /// One export's bytes (tonic has framed, decompressed and bounded them by the max message
    /// size): the same steps as HTTP/protobuf, then the response message, encoded.
    async fn export(&self, signal: Signal, bytes: Bytes) -> Result<Bytes, IngestError> {
        // Refusals before `export` are counted here, as on HTTP; `export` counts its own.
        let (export, _reserved) =
            self.ingest.prepare_protobuf(signal, bytes).await.inspect_err(|e| self.ingest.refused(signal, e))?;
        let o = self.ingest.export(export).await?;
        Ok(Bytes::from(o.response_pb()))
    }
}

/// A message as bytes both ways: requests are kept as received, responses are already encoded.
/// (The load generator and the tests use it as a client codec too: requests encoded once.)
#[derive(Clone, Copy, Debug, Default)]
pub struct RawCodec;

#[derive(Clone, Copy, Debug, Default)]
pub struct RawEncoder;

#[derive(Clone, Copy, Debug, Default)]
pub struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        // The buffer holds exactly one message; taking it is a split, not a copy.
        let n = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, n)))
    }
}

/// Which OTLP service a server is: its gRPC name and its signal.
pub trait OtlpService: Send + Sync + 'static {
    const NAME: &'static str;
    const EXPORT_PATH: &'static str;
    const SIGNAL: Signal;
}

pub struct TraceService;
pub struct LogsService;
pub struct MetricsService;

impl OtlpService for TraceService {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const EXPORT_PATH: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    const SIGNAL: Signal = Signal::Traces;
}

impl OtlpService for LogsService {
    const NAME: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const EXPORT_PATH: &'static str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
    const SIGNAL: Signal = Signal::Logs;
}

impl OtlpService for MetricsService {
    const NAME: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    const EXPORT_PATH: &'static str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
    const SIGNAL: Signal = Signal::Metrics;
}

/// One OTLP gRPC service (`Export` is its only method).
pub struct ExportServer<S> {
    receiver: GrpcReceiver,
    max_message_bytes: usize,
    service: PhantomData<fn() -> S>,
}

impl<S> Clone for ExportServer<S> {
    fn clone(&self) -> Self {
        Self { receiver: self.receiver.clone(), max_message_bytes: self.max_message_bytes, service: PhantomData }
    }
}

impl<S: OtlpService> NamedService for ExportServer<S> {
    const NAME: &'static str = S::NAME;
}

/// The `Export` method of service `S`.
struct ExportMethod<S> {
    receiver: GrpcReceiver,
    service: PhantomData<fn() -> S>,
}

impl<S: OtlpService> UnaryService<Bytes> for ExportMethod<S> {
    type Response = Bytes;
    type Future = BoxFuture<Response<Bytes>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let receiver = self.receiver.clone();
        Box::pin(async move {
            let bytes = request.into_inner();
            receiver.export(S::SIGNAL, bytes).await.map(Response::new).map_err(|e| e.to_grpc())
        })
    }
}

impl<S, B> tonic::codegen::Service<http::Request<B>> for ExportServer<S>
where
    S: OtlpService,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != S::EXPORT_PATH {
            return Box::pin(async { Ok(Status::unimplemented("only Export is served").into_http()) });
        }
        let method = ExportMethod::<S> { receiver: self.receiver.clone(), service: PhantomData };
        let max = self.max_message_bytes;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(max);
            Ok(grpc.unary(method, req).await)
        })
    }
}

/// Checks `authorization: Bearer …` metadata when an ingest token is configured.
#[derive(Clone)]
pub struct AuthInterceptor(Arc<Token>);

impl tonic::service::Interceptor for AuthInterceptor {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let header = req.metadata().get("authorization").and_then(|v| v.to_str().ok());
        if self.0.allows(header) {
            Ok(req)
        } else {
            Err(IngestError::Unauthorized.to_grpc())
        }
    }
}

type Svc<S> = InterceptedService<ExportServer<S>, AuthInterceptor>;

/// tonic reports a message over `max_decoding_message_size` as OUT_OF_RANGE; OTLP says
/// RESOURCE_EXHAUSTED. Our handlers never return OUT_OF_RANGE, so the rewrite is exact.
/// (Unary errors are trailers-only responses: the status is in the headers.)
pub fn size_limit_status<B>(mut res: http::Response<B>) -> http::Response<B> {
    let out_of_range = res.headers().get("grpc-status").is_some_and(|v| v.as_bytes() == b"11");
    if out_of_range {
        res.headers_mut().insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    res
}

/// The three OTLP services, configured and guarded.
pub struct Services {
    pub traces: Svc<TraceService>,
    pub logs: Svc<LogsService>,
    pub metrics: Svc<MetricsService>,
}

pub fn services(receiver: GrpcReceiver, max_message_bytes: usize, token: Arc<Token>) -> Services {
    let auth = AuthInterceptor(token);
    fn server<S>(receiver: &GrpcReceiver, max_message_bytes: usize) -> ExportServer<S> {
        ExportServer { receiver: receiver.clone(), max_message_bytes, service: PhantomData }
    }
    Services {
        traces: InterceptedService::new(server(&receiver, max_message_bytes), auth.clone()),
        logs: InterceptedService::new(server(&receiver, max_message_bytes), auth.clone()),
        metrics: InterceptedService::new(server(&receiver, max_message_bytes), auth),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_generated_services() {
        use opentelemetry_proto::tonic::collector::{logs, metrics, trace};
        assert_eq!(TraceService::NAME, trace::v1::trace_service_server::SERVICE_NAME);
        assert_eq!(LogsService::NAME, logs::v1::logs_service_server::SERVICE_NAME);
        assert_eq!(MetricsService::NAME, metrics::v1::metrics_service_server::SERVICE_NAME);
        for (name, path) in [
            (TraceService::NAME, TraceService::EXPORT_PATH),
            (LogsService::NAME, LogsService::EXPORT_PATH),
            (MetricsService::NAME, MetricsService::EXPORT_PATH),
        ] {
            assert_eq!(path, format!("/{name}/Export"));
        }
    }
}
