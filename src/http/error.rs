//! One error type for every handler, rendered as `application/problem+json`
//! (RFC 9457). A 5xx body carries a generic detail; the real error travels in a
//! response extension to the logging middleware.
use crate::domain::FieldError;
use crate::engine::EngineError;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("malformed request: {0}")]
    BadRequest(String),
    #[error("missing or invalid bearer key")]
    Unauthorized,
    #[error("this key may not use this resource")]
    Forbidden,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("this route does not take this method (see the Allow header)")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("request body above the limit")]
    PayloadTooLarge,
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("{0}")]
    Unavailable(String),
    #[error("too many requests; retry after {} s", super::limit::retry_after_secs(*.0))]
    TooManyRequests(std::time::Duration),
    #[error(transparent)]
    Internal(EngineError),
}

impl ApiError {
    /// A request over a rate limit (`reason`: key or auth), counted.
    pub fn too_many(reason: &'static str, wait: std::time::Duration) -> Self {
        metrics::counter!(crate::metrics::RATE_LIMITED_TOTAL, "reason" => reason).increment(1);
        ApiError::TooManyRequests(wait)
    }

    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }
}

/// The real cause of a 5xx, for the logging middleware.
#[derive(Debug, Clone)]
pub struct InternalError(pub String);

/// RFC 9457 problem details.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [FieldError]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

impl From<EngineError> for ApiError {
    /// A busy lock is the client's to retry (503); anything else is ours (500).
    fn from(e: EngineError) -> Self {
        match e.busy() {
            Some(why) => ApiError::Unavailable(why),
            None => ApiError::Internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, slug, title) = match &self {
            ApiError::Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation", "Invalid request"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "malformed-request", "Malformed request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "Method not allowed"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "Payload too large"),
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported media type")
            }
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable"),
            ApiError::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "too-many-requests", "Too many requests"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
        };
        let detail = match &self {
            ApiError::Internal(_) => "an internal error occurred; nothing was changed by this request".to_owned(),
            ApiError::Validation(errors) => format!("{} field(s) are invalid", errors.len()),
            other => other.to_string(),
        };
        let errors = match &self {
            ApiError::Validation(errors) => Some(errors.as_slice()),
            _ => None,
        };
        let body = Problem {
            kind: format!("/problems/{slug}"),
            title,
            status: status.as_u16(),
            detail,
            errors,
            request_id: super::current_request_id(),
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (status, [(header::CONTENT_TYPE, "application/problem+json")], json).into_response();
        if let ApiError::Internal(e) = &self {
            response.extensions_mut().insert(InternalError(e.to_string()));
        }
        if matches!(self, ApiError::Unavailable(_)) {
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        if let ApiError::TooManyRequests(wait) = &self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(super::limit::retry_after_secs(*wait)));
        }
        if matches!(self, ApiError::Unauthorized) {
            // RFC 9110 §11.6.1: a 401 names the scheme it wants.
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer realm=\"komisi\""));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    /// The database unreachable, out of connections or its pool exhausted is
    /// the client's to retry: 503 with `Retry-After`, not an internal error.
    #[test]
    fn an_unavailable_database_is_a_503_with_retry_after() {
        for e in [sqlx::Error::PoolTimedOut, sqlx::Error::PoolClosed] {
            let response = ApiError::from(EngineError::Store(StoreError::from(e))).into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[header::RETRY_AFTER], "1");
            assert_eq!(response.headers()[header::CONTENT_TYPE], "application/problem+json");
        }
        let other = ApiError::from(EngineError::Store(StoreError::Corrupt("x".into()))).into_response();
        assert_eq!(other.status(), StatusCode::INTERNAL_SERVER_ERROR);
        // A lock conflict that outlived its retries is the client's to retry.
        let conflict = ApiError::from(EngineError::Store(StoreError::LockConflict(sqlx::Error::PoolTimedOut)));
        let conflict = conflict.into_response();
        assert_eq!(conflict.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(conflict.headers()[header::RETRY_AFTER], "1");
    }
}
