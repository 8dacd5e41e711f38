//! Request bodies that may be JSON or YAML (`Content-Type: application/yaml`).

use axum::http::HeaderMap;

pub fn is_yaml(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("yaml"))
}

pub fn text(bytes: &[u8]) -> Result<&str, super::ApiError> {
    std::str::from_utf8(bytes).map_err(|_| super::ApiError::bad_request("request body is not UTF-8"))
}
