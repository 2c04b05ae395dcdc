//! OTLP/gRPC front door: the `TraceService`, `LogsService` and `MetricsService` `Export` methods
//! (tonic), gzip accepted, a max decoded message size, optional bearer token. Each method only
//! hands the decoded request to `Ingest::export` and maps the outcome.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use super::ingest::{memory_estimate, Export, Ingest, IngestError, Outcome, Payload};
use crate::auth::Token;

#[derive(Clone)]
pub struct GrpcReceiver {
    ingest: Ingest,
}

impl GrpcReceiver {
    pub fn new(ingest: Ingest) -> Self {
        Self { ingest }
    }

    async fn export(&self, payload: Payload, size: usize) -> Result<Outcome, Status> {
        // tonic has decoded already (bounded by the max message size); count and reserve before
        // mapping.
        let records = payload.record_count();
        self.ingest.check_records(records).map_err(|e| e.to_grpc())?;
        let _reserved = self.ingest.reserve(memory_estimate(size, records)).await.map_err(|e| e.to_grpc())?;
        self.ingest.export(Export::decoded(payload)).await.map_err(|e| e.to_grpc())
    }
}

fn partial(o: &Outcome) -> Option<(i64, String)> {
    (o.rejected > 0).then(|| (o.rejected as i64, o.message.clone().unwrap_or_default()))
}

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let req = request.into_inner();
        let size = req.encoded_len();
        let o = GrpcReceiver::export(self, Payload::Traces(req), size).await?;
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: partial(&o)
                .map(|(rejected_spans, error_message)| ExportTracePartialSuccess { rejected_spans, error_message }),
        }))
    }
}

#[tonic::async_trait]
impl LogsService for GrpcReceiver {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let req = request.into_inner();
        let size = req.encoded_len();
        let o = GrpcReceiver::export(self, Payload::Logs(req), size).await?;
        Ok(Response::new(ExportLogsServiceResponse {
            partial_success: partial(&o).map(|(rejected_log_records, error_message)| ExportLogsPartialSuccess {
                rejected_log_records,
                error_message,
            }),
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for GrpcReceiver {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let req = request.into_inner();
        let size = req.encoded_len();
        let o = GrpcReceiver::export(self, Payload::Metrics(req), size).await?;
        Ok(Response::new(ExportMetricsServiceResponse {
            partial_success: partial(&o).map(|(rejected_data_points, error_message)| ExportMetricsPartialSuccess {
                rejected_data_points,
                error_message,
            }),
        }))
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

type Svc<S> = InterceptedService<S, AuthInterceptor>;

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
    pub traces: Svc<TraceServiceServer<GrpcReceiver>>,
    pub logs: Svc<LogsServiceServer<GrpcReceiver>>,
    pub metrics: Svc<MetricsServiceServer<GrpcReceiver>>,
}

pub fn services(receiver: GrpcReceiver, max_message_bytes: usize, token: Arc<Token>) -> Services {
    let auth = AuthInterceptor(token);
    let traces = TraceServiceServer::new(receiver.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max_message_bytes);
    let logs = LogsServiceServer::new(receiver.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max_message_bytes);
    let metrics = MetricsServiceServer::new(receiver)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max_message_bytes);
    Services {
        traces: InterceptedService::new(traces, auth.clone()),
        logs: InterceptedService::new(logs, auth.clone()),
        metrics: InterceptedService::new(metrics, auth),
    }
}
