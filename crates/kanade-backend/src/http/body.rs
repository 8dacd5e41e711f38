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

/// 400 when the body is not JSON/YAML at all; 422 (every problem) when it is but does not validate.
pub fn parse_doc<T>(
    headers: &HeaderMap,
    body: &[u8],
    yaml: impl FnOnce(&str) -> Result<T, kanade_shared::manifest::Problems>,
    json: impl FnOnce(&[u8]) -> Result<T, kanade_shared::manifest::Problems>,
) -> Result<T, super::ApiError> {
    use super::ApiError;
    if is_yaml(headers) {
        let t = text(body)?;
        serde_yaml_ng::from_str::<serde_yaml_ng::Value>(t)
            .map_err(|e| ApiError::bad_request(format!("malformed YAML: {e}")))?;
        yaml(t).map_err(|p| ApiError::invalid(p.messages()))
    } else {
        serde_json::from_slice::<serde_json::Value>(body)
            .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
        json(body).map_err(|p| ApiError::invalid(p.messages()))
    }
}
