//! The one API error type: a stable machine `code`, a human `error`, the right status, and a
//! `detail` (the list of validation problems, when there are several). Internals are logged,
//! never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kanade_shared::api::{ErrorBody, ErrorDetail};

use crate::db::DbError;
use crate::pipeline::ExecError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The problems of a refused request, each naming its field.
    pub problems: Option<Vec<String>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), problems: None }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    /// 422 with every problem listed in `detail`.
    pub fn invalid(problems: Vec<String>) -> Self {
        let message = match problems.as_slice() {
            [one] => one.clone(),
            many => format!("{} problems: {}", many.len(), many.join("; ")),
        };
        Self { problems: Some(problems), ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message) }
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        tracing::error!(error = %e, "database error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the backend log")
    }
}

impl From<ExecError> for ApiError {
    fn from(e: ExecError) -> Self {
        match e {
            ExecError::Invalid(m) => Self::invalid(vec![m]),
            ExecError::NotFound(m) => Self::not_found(m),
            ExecError::Broker { what, source } => {
                tracing::warn!(what = %what, error = ?source, "broker error");
                Self::unavailable(
                    "nats_unavailable",
                    format!("the broker did not take the request: {what}: {source}"),
                )
            }
            ExecError::Refused(m) => Self::new(
                StatusCode::BAD_GATEWAY,
                "nats_refused",
                format!("the broker refused the request: {m}"),
            ),
            ExecError::Db(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = self.code, "{}", self.message);
        }
        let body = ErrorBody {
            error: self.message,
            code: self.code.to_owned(),
            detail: self.problems.map(|problems| ErrorDetail { problems }),
        };
        (self.status, Json(body)).into_response()
    }
}
