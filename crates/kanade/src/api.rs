//! The backend over HTTP: one request per call on a fresh HTTP/1 connection (a CLI makes a
//! handful), JSON in and out, and failures turned into one line that says what to do.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::cli::Global;

const TIMEOUT: Duration = Duration::from_secs(30);

pub struct Api {
    /// As given, for messages.
    url: String,
    authority: String,
    prefix: String,
    token: Option<String>,
}

/// `http://host:port/prefix` → (authority with port, prefix without trailing slash).
pub fn parse_base(url: &str) -> anyhow::Result<(String, String)> {
    if url.starts_with("https://") {
        bail!(
            "--backend-url {url}: https is not supported by this CLI yet; reach the backend over http (e.g. through an SSH tunnel)"
        );
    }
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        anyhow!("--backend-url {url:?} must start with http:// (e.g. http://127.0.0.1:8080)")
    })?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.is_empty() {
        bail!("--backend-url {url:?} has no host (e.g. http://127.0.0.1:8080)");
    }
    let authority = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let prefix = path.trim_end_matches('/');
    Ok((authority, if prefix.is_empty() { String::new() } else { format!("/{prefix}") }))
}

impl Api {
    pub fn new(global: &Global) -> anyhow::Result<Self> {
        let (authority, prefix) = parse_base(&global.backend_url)?;
        let token = global.token.clone().or_else(|| crate::credentials::token_for(&global.backend_url));
        Ok(Self { url: global.backend_url.clone(), authority, prefix, token })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(Method::POST, path, Some(("application/json", body.to_string().into_bytes()))).await
    }

    pub async fn post_yaml(&self, path: &str, text: &str) -> anyhow::Result<Value> {
        self.call(Method::POST, path, Some(("application/yaml", text.as_bytes().to_vec()))).await
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(Method::PUT, path, Some(("application/json", body.to_string().into_bytes()))).await
    }

    pub async fn patch_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(Method::PATCH, path, Some(("application/json", body.to_string().into_bytes()))).await
    }

    pub async fn post_bytes(&self, path: &str, body: Vec<u8>) -> anyhow::Result<Value> {
        self.call(Method::POST, path, Some(("application/octet-stream", body))).await
    }

    pub async fn post(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::POST, path, None).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::DELETE, path, None).await
    }

    async fn call(&self, method: Method, path: &str, body: Option<(&str, Vec<u8>)>) -> anyhow::Result<Value> {
        let what = format!("{method} {path}");
        tokio::time::timeout(TIMEOUT, self.send(method, path, body))
            .await
            .map_err(|_| anyhow!("{what}: the backend at {} did not answer within {TIMEOUT:?}", self.url))?
    }

    async fn send(&self, method: Method, path: &str, body: Option<(&str, Vec<u8>)>) -> anyhow::Result<Value> {
        let stream = tokio::net::TcpStream::connect(&self.authority).await.map_err(|e| {
            anyhow!(
                "cannot reach the backend at {} ({e}); is kanade-backend running? (set --backend-url or KANADE_BACKEND_URL)",
                self.url
            )
        })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("HTTP handshake with {} failed", self.url))?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.prefix))
            .header("host", &self.authority)
            .header("accept", "application/json")
            // The audit trail says which client acted.
            .header("x-kanade-source", "cli");
        if let Some(token) = &self.token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let (content_type, bytes) = body.unwrap_or(("application/json", Vec::new()));
        let req = req.header("content-type", content_type).body(Full::new(Bytes::from(bytes)))?;
        let response = sender
            .send_request(req)
            .await
            .with_context(|| format!("{method} {path} to {} failed", self.url))?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        let json: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        if status.is_success() {
            return Ok(json);
        }
        Err(anyhow!(failure(status, &json)))
    }
}

/// One line for a failed call, from the API's `{error, code, detail}`.
pub fn failure(status: StatusCode, body: &Value) -> String {
    let message = body["error"].as_str().unwrap_or_else(|| status.canonical_reason().unwrap_or("error"));
    match status {
        StatusCode::UNAUTHORIZED if body["code"] == "bad_credentials" => message.to_owned(),
        StatusCode::UNAUTHORIZED => {
            format!("{message}: not logged in or the token expired; run `kanade login`")
        }
        // The backend names the role needed; a bare 403 (a proxy) gets a hint.
        StatusCode::FORBIDDEN if message.contains("role") || message.contains("password") => {
            message.to_owned()
        }
        StatusCode::FORBIDDEN => format!("{message}: your role does not allow this"),
        StatusCode::UNPROCESSABLE_ENTITY => {
            let problems: Vec<&str> = body["detail"]["problems"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if problems.len() > 1 {
                format!("invalid ({} problems):\n  {}", problems.len(), problems.join("\n  "))
            } else {
                format!("invalid: {message}")
            }
        }
        _ => format!("{message} ({})", status.as_u16()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(parse_base("http://127.0.0.1:8080").unwrap(), ("127.0.0.1:8080".into(), String::new()));
        assert_eq!(parse_base("http://kanade/").unwrap(), ("kanade:80".into(), String::new()));
        assert_eq!(parse_base("http://h:9/base/").unwrap(), ("h:9".into(), "/base".into()));
        assert_eq!(
            parse_base("127.0.0.1:8080").unwrap_err().to_string(),
            r#"--backend-url "127.0.0.1:8080" must start with http:// (e.g. http://127.0.0.1:8080)"#
        );
    }

    #[test]
    fn failures_say_what_to_do() {
        let body = serde_json::json!({ "error": "2 problems", "code": "invalid", "detail": { "problems": ["cron: bad", "mode: bad"] } });
        assert_eq!(
            failure(StatusCode::UNPROCESSABLE_ENTITY, &body),
            "invalid (2 problems):\n  cron: bad\n  mode: bad"
        );
        let body = serde_json::json!({ "error": "token expired", "code": "unauthorized" });
        assert_eq!(
            failure(StatusCode::UNAUTHORIZED, &body),
            "token expired: not logged in or the token expired; run `kanade login`"
        );
        let body = serde_json::json!({ "error": "wrong user name or password", "code": "bad_credentials" });
        assert_eq!(failure(StatusCode::UNAUTHORIZED, &body), "wrong user name or password");
        assert_eq!(
            failure(StatusCode::NOT_FOUND, &serde_json::json!({ "error": "schedule x does not exist" })),
            "schedule x does not exist (404)"
        );
    }
}
