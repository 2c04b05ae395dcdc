//! Errors to status codes, in one place: ingest errors to HTTP statuses and gRPC codes (OTLP
//! rules: 400/INVALID_ARGUMENT, 413/RESOURCE_EXHAUSTED, 415, 503+Retry-After/UNAVAILABLE), store
//! errors of the query API to HTTP statuses.

use std::time::Duration;

use axum::http::StatusCode;
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

use crate::receiver::ingest::IngestError;
use crate::store::StoreError;

/// Seconds a client should wait after an overload refusal.
pub const RETRY_AFTER_SECS: u64 = 1;

/// `google.rpc.Status`, the body of OTLP/HTTP error responses.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

impl IngestError {
    pub fn http_status(&self) -> StatusCode {
        match self {
            IngestError::Decode(_) => StatusCode::BAD_REQUEST,
            IngestError::TooLarge { .. } | IngestError::TooManyRecords { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IngestError::Overloaded | IngestError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            IngestError::Unauthorized => StatusCode::UNAUTHORIZED,
        }
    }

    /// Whether the response carries `Retry-After`.
    pub fn retryable(&self) -> bool {
        matches!(self, IngestError::Overloaded | IngestError::Unavailable(_))
    }

    pub fn grpc_code(&self) -> Code {
        match self {
            IngestError::Decode(_) => Code::InvalidArgument,
            IngestError::TooLarge { .. } | IngestError::TooManyRecords { .. } => Code::ResourceExhausted,
            IngestError::UnsupportedMediaType(_) => Code::InvalidArgument,
            IngestError::Overloaded | IngestError::Unavailable(_) => Code::Unavailable,
            IngestError::Unauthorized => Code::Unauthenticated,
        }
    }

    pub fn rpc_status(&self) -> RpcStatus {
        RpcStatus { code: self.grpc_code() as i32, message: self.to_string() }
    }

    pub fn to_grpc(&self) -> tonic::Status {
        let msg = self.to_string();
        match self {
            IngestError::Overloaded | IngestError::Unavailable(_) => tonic::Status::with_error_details(
                Code::Unavailable,
                msg,
                ErrorDetails::with_retry_info(Some(Duration::from_secs(RETRY_AFTER_SECS))),
            ),
            IngestError::Decode(m) => tonic::Status::with_error_details(
                Code::InvalidArgument,
                msg.clone(),
                ErrorDetails::with_bad_request_violation("request", m.clone()),
            ),
            _ => tonic::Status::new(self.grpc_code(), msg),
        }
    }
}

impl StoreError {
    /// Status of a query API failure: the caller's SQL is a 400, our trouble a 5xx.
    pub fn http_status(&self) -> StatusCode {
        match self {
            StoreError::Refused(_) | StoreError::Query(_) => StatusCode::BAD_REQUEST,
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            StoreError::Overloaded | StoreError::Evicted | StoreError::Restarting => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}
