//! `Json`, `Query`, `Path` and `RawBody` extractors whose rejections (malformed JSON, a field of
//! the wrong type, a missing content type, a bad query value or path segment, a body over the
//! route's limit) answer with the API's one error shape `{error, code, detail}` naming the
//! field, instead of axum's plain text. `Json` is also the response type, so a handler module
//! imports one `Json`.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ApiError;

pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(query_rejection(&rejection)),
        }
    }
}

pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(path_rejection(&rejection)),
        }
    }
}

/// A body read whole, as bytes (a job document in JSON or YAML, a script, a release).
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(req, state).await {
            Ok(bytes) => Ok(Self(bytes)),
            Err(rejection) => Err(body_rejection(&rejection)),
        }
    }
}

const TOO_LARGE: &str =
    "the body is larger than this route accepts (an agent release up to 512 MiB, any other body up to 2 MiB)";

fn path_rejection(rejection: &PathRejection) -> ApiError {
    let text = rejection.body_text();
    ApiError::new(StatusCode::BAD_REQUEST, "bad_path", format!("path: {}", detail(&text)))
}

fn body_rejection(rejection: &BytesRejection) -> ApiError {
    let status = rejection.status();
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(status, "too_large", TOO_LARGE),
        _ => ApiError::new(status, "malformed", format!("cannot read the body: {}", rejection.body_text())),
    }
}

/// axum's text says what failed and where (`name: invalid type: integer, expected a string at
/// line 1 column 9`); keep it, minus its generic preamble.
fn json_rejection(rejection: &JsonRejection) -> ApiError {
    let text = rejection.body_text();
    let (status, code, message) = match rejection {
        JsonRejection::MissingJsonContentType(_) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with `Content-Type: application/json`".to_owned(),
        ),
        JsonRejection::JsonSyntaxError(_) => {
            (StatusCode::BAD_REQUEST, "malformed", format!("malformed JSON: {}", detail(&text)))
        }
        JsonRejection::JsonDataError(_) => {
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid", detail(&text).to_owned())
        }
        _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", TOO_LARGE);
        }
        _ => (rejection.status(), "malformed", text.clone()),
    };
    if code == "invalid" { ApiError::invalid(vec![message]) } else { ApiError::new(status, code, message) }
}

fn query_rejection(rejection: &QueryRejection) -> ApiError {
    let text = rejection.body_text();
    ApiError::new(StatusCode::BAD_REQUEST, "bad_query", format!("query string: {}", detail(&text)))
}

/// `Failed to deserialize …: <what>` → `<what>`.
fn detail(text: &str) -> &str {
    text.split_once(": ").map_or(text, |(_, rest)| rest)
}
