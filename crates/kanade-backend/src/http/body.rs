//! Request bodies that may be JSON or YAML (`Content-Type: application/yaml`). Parsing runs on
//! the blocking pool, never on the async workers, and YAML aliases are refused before anything
//! is built (see `manifest::refuse_aliases`), so what a body costs stays proportional to its size.

use axum::body::Bytes;
use axum::http::HeaderMap;
use kanade_shared::manifest::Problems;

pub fn is_yaml(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("yaml"))
}

pub fn text(bytes: &[u8]) -> Result<&str, super::ApiError> {
    std::str::from_utf8(bytes).map_err(|_| super::ApiError::bad_request("request body is not UTF-8"))
}

/// A YAML body as written, to keep next to what it parses to (JSON bodies are machine-made:
/// the parsed form says all they do).
pub fn source(headers: &HeaderMap, body: &[u8]) -> Result<Option<String>, super::ApiError> {
    if is_yaml(headers) { text(body).map(|t| Some(t.to_owned())) } else { Ok(None) }
}

/// 400 when the body is not JSON/YAML at all (or uses YAML aliases); 422 (every problem) when
/// it is but does not validate.
pub async fn parse_doc<T: Send + 'static>(
    headers: &HeaderMap,
    body: Bytes,
    yaml: fn(&str) -> Result<T, Problems>,
    json: fn(&[u8]) -> Result<T, Problems>,
) -> Result<T, super::ApiError> {
    let is_yaml = is_yaml(headers);
    tokio::task::spawn_blocking(move || parse_now(is_yaml, &body, yaml, json)).await.map_err(|e| {
        tracing::error!(error = %e, "request body parser panicked");
        super::ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the backend log",
        )
    })?
}

fn parse_now<T>(
    is_yaml: bool,
    body: &[u8],
    yaml: fn(&str) -> Result<T, Problems>,
    json: fn(&[u8]) -> Result<T, Problems>,
) -> Result<T, super::ApiError> {
    use super::ApiError;
    if is_yaml {
        let t = text(body)?;
        kanade_shared::manifest::refuse_aliases(t)
            .map_err(|p| ApiError::bad_request(format!("malformed YAML: {}", p.messages().join("; "))))?;
        serde_yaml_ng::from_str::<serde_yaml_ng::Value>(t)
            .map_err(|e| ApiError::bad_request(format!("malformed YAML: {e}")))?;
        yaml(t).map_err(|p| ApiError::invalid(p.messages()))
    } else {
        serde_json::from_slice::<serde_json::Value>(body)
            .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
        json(body).map_err(|p| ApiError::invalid(p.messages()))
    }
}
