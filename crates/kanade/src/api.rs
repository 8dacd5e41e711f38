//! The backend over HTTP or HTTPS (reqwest on rustls; proxies from the environment): one
//! client per command, so its connection is reused across the calls a command makes; JSON in
//! and out, and failures turned into one line that says what to do.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use kanade_shared::api::ErrorBody;
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cli::Global;

const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Api {
    /// As given, for messages.
    url: String,
    base: Url,
    client: reqwest::Client,
    token: Option<String>,
}

/// `http(s)://host[:port][/prefix]` → the base URL requests are made under (prefix without a
/// trailing slash).
pub fn parse_base(url: &str) -> anyhow::Result<Url> {
    if !url.starts_with("http://") && !url.starts_with("https://") {
        bail!("--backend-url {url:?} must start with http:// or https:// (e.g. http://127.0.0.1:8080)");
    }
    let mut parsed = Url::parse(url).map_err(|e| anyhow!("--backend-url {url:?} is not a URL ({e})"))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        bail!("--backend-url {url:?} has no host (e.g. http://127.0.0.1:8080)");
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        bail!("--backend-url {url:?}: give the base URL only, without ?query or #fragment");
    }
    let prefix = parsed.path().trim_end_matches('/').to_owned();
    parsed.set_path(&prefix);
    Ok(parsed)
}

/// The HTTP client: TLS trusting `ca_file`'s certificates only when given (a private CA), else
/// the system's; plain `http://` needs no trust store (a minimal container may have none).
pub fn client(https: bool, ca_file: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let roots = if https || ca_file.is_some() {
        kanade_shared::tls::root_store(ca_file, "--ca-file").map_err(anyhow::Error::msg)?
    } else {
        kanade_shared::tls::no_roots()
    };
    let tls = kanade_shared::tls::client_config(roots).map_err(anyhow::Error::msg)?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("kanade/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot set up the HTTP client")
}

impl Api {
    pub fn new(global: &Global) -> anyhow::Result<Self> {
        let base = parse_base(&global.backend_url)?;
        let token = global.token.clone().or_else(|| crate::credentials::token_for(&global.backend_url));
        let client = client(base.scheme() == "https", global.ca_file.as_deref())?;
        Ok(Self { url: global.backend_url.clone(), base, client, token })
    }

    // Each call names the type the route answers (`kanade_shared::api`, `wire`): the same
    // types the backend answers with and the OpenAPI document describes.

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        self.call(Method::POST, path, Some(json_body(body)?)).await
    }

    pub async fn post_yaml<T: DeserializeOwned>(&self, path: &str, text: &str) -> anyhow::Result<T> {
        self.call(Method::POST, path, Some(("application/yaml", text.as_bytes().to_vec()))).await
    }

    pub async fn put_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        self.call(Method::PUT, path, Some(json_body(body)?)).await
    }

    pub async fn patch_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        self.call(Method::PATCH, path, Some(json_body(body)?)).await
    }

    pub async fn post_bytes<T: DeserializeOwned>(&self, path: &str, body: Vec<u8>) -> anyhow::Result<T> {
        self.call(Method::POST, path, Some(("application/octet-stream", body))).await
    }

    pub async fn post<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call(Method::POST, path, None).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call(Method::DELETE, path, None).await
    }

    /// A route that answers text (a script's body).
    pub async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let bytes = self.call_raw(Method::GET, path, None).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// A server-sent event route: `each("open", "")` once connected, then `each(event, data)`
    /// for every event until the stream ends or `each` says stop (`Ok(false)`). A stream silent for longer than three keep-alives is
    /// taken as lost.
    pub async fn events(
        &self,
        path: &str,
        mut each: impl FnMut(&str, &str) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let url = format!("{}{path}", self.base.as_str().trim_end_matches('/'));
        let mut req =
            self.client.get(&url).header("accept", "text/event-stream").header("x-kanade-source", "cli");
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let what = format!("GET {path}");
        let mut response = tokio::time::timeout(TIMEOUT, req.send())
            .await
            .map_err(|_| anyhow!("{what}: the backend at {} did not answer within {TIMEOUT:?}", self.url))?
            .map_err(|e| unreachable(&self.url, &Method::GET, path, &e))?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response.bytes().await.unwrap_or_default();
            return Err(anyhow!(failure(status, serde_json::from_slice(&bytes).ok().as_ref())));
        }
        // Connected: anything from now on arrives; a caller re-reads what it shows once here.
        if !each("open", "")? {
            return Ok(());
        }
        let mut parser = SseParser::default();
        loop {
            let chunk = tokio::time::timeout(SSE_SILENCE, response.chunk())
                .await
                .map_err(|_| anyhow!("{what}: the backend at {} went silent for {SSE_SILENCE:?}", self.url))?
                .with_context(|| format!("{what}: the stream from {} broke off", self.url))?;
            let Some(chunk) = chunk else { return Ok(()) };
            for (event, data) in parser.push(&chunk) {
                if !each(&event, &data)? {
                    return Ok(());
                }
            }
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> anyhow::Result<T> {
        let what = format!("{method} {path}");
        let bytes = self.call_raw(method, path, body).await?;
        // An empty answer (204) reads as JSON null: `()` or an `Option`.
        let bytes: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        let mut de = serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            anyhow!(
                "{what}: the backend at {} answered what this kanade cannot read (at `{}`: {}); are the CLI and the backend the same version? (kanade --version, GET /health)",
                self.url,
                e.path(),
                e.inner()
            )
        })
    }

    async fn call_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> anyhow::Result<bytes::Bytes> {
        let what = format!("{method} {path}");
        tokio::time::timeout(TIMEOUT, self.send(method, path, body))
            .await
            .map_err(|_| anyhow!("{what}: the backend at {} did not answer within {TIMEOUT:?}", self.url))?
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> anyhow::Result<bytes::Bytes> {
        // `path` may carry a query; the base's own path is a prefix.
        let url = format!("{}{path}", self.base.as_str().trim_end_matches('/'));
        let (content_type, bytes) = body.unwrap_or(("application/json", Vec::new()));
        let mut req = self
            .client
            .request(method.clone(), &url)
            .header("accept", "application/json")
            // The audit trail says which client acted.
            .header("x-kanade-source", "cli")
            .header("content-type", content_type)
            .body(bytes);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let response = req.send().await.map_err(|e| unreachable(&self.url, &method, path, &e))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("{method} {path}: the answer from {} broke off", self.url))?;
        if status.is_success() {
            return Ok(bytes);
        }
        // Not the API's error shape (a proxy's page): the status says what it can.
        let body: Option<ErrorBody> = serde_json::from_slice(&bytes).ok();
        Err(ApiFailure {
            message: failure(status, body.as_ref()),
            code: body.map(|b| b.code).unwrap_or_default(),
        }
        .into())
    }
}

fn json_body(body: &impl Serialize) -> anyhow::Result<(&'static str, Vec<u8>)> {
    Ok(("application/json", serde_json::to_vec(body).context("cannot encode the request body")?))
}

/// The backend refused a call: the line to show, and the API's error `code` for callers that
/// act on it (`mfa_required`).
#[derive(Debug)]
pub struct ApiFailure {
    pub message: String,
    pub code: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiFailure {}

/// The API's error code behind `e`, if the backend refused the call.
pub fn error_code(e: &anyhow::Error) -> Option<&str> {
    e.downcast_ref::<ApiFailure>().map(|f| f.code.as_str())
}

/// Three of the backend's 15 s keep-alives.
const SSE_SILENCE: Duration = Duration::from_secs(45);

/// Splits a server-sent event stream into (event, data) pairs; comments (keep-alives) are
/// dropped, several `data:` lines of one event are joined with newlines.
#[derive(Debug, Default)]
pub struct SseParser {
    pending: Vec<u8>,
}

impl SseParser {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<(String, String)> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = self.pending.drain(..end + 2).collect();
            let block = String::from_utf8_lossy(&block);
            let (mut event, mut data) = ("message".to_owned(), Vec::new());
            for line in block.lines() {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => event = value.to_owned(),
                    "data" => data.push(value),
                    _ => {}
                }
            }
            if !data.is_empty() {
                events.push((event, data.join("\n")));
            }
        }
        events
    }
}

/// What went wrong before any answer came, with the cause's chain and what to try.
fn unreachable(url: &str, method: &Method, path: &str, e: &reqwest::Error) -> anyhow::Error {
    let mut causes = Vec::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    let cause = if causes.is_empty() { e.to_string() } else { causes.join(": ") };
    if cause.contains("certificate") || cause.contains("UnknownIssuer") {
        anyhow!(
            "cannot reach the backend at {url} over TLS ({cause}); if its certificate comes from a private CA, give that CA's PEM file with --ca-file (or KANADE_CA_FILE)"
        )
    } else if e.is_connect() {
        anyhow!(
            "cannot reach the backend at {url} ({cause}); is kanade-backend running? (set --backend-url or KANADE_BACKEND_URL)"
        )
    } else {
        anyhow!("{method} {path} to {url} failed ({cause})")
    }
}

/// One line for a failed call, from the API's `{error, code, detail}`.
pub fn failure(status: StatusCode, body: Option<&ErrorBody>) -> String {
    let message = body.map_or_else(|| status.canonical_reason().unwrap_or("error"), |b| b.error.as_str());
    let code = body.map_or("", |b| b.code.as_str());
    match status {
        StatusCode::UNAUTHORIZED if code == "bad_credentials" => message.to_owned(),
        StatusCode::UNAUTHORIZED => {
            format!("{message}: not logged in or the token expired; run `kanade login`")
        }
        // The backend names the role needed; a bare 403 (a proxy) gets a hint.
        StatusCode::FORBIDDEN if message.contains("role") || message.contains("password") => {
            message.to_owned()
        }
        StatusCode::FORBIDDEN => format!("{message}: your role does not allow this"),
        StatusCode::UNPROCESSABLE_ENTITY => {
            let problems: &[String] = body.and_then(|b| b.detail.as_ref()).map_or(&[], |d| &d.problems);
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
    fn server_sent_events_split_across_chunks() {
        let mut p = SseParser::default();
        assert_eq!(p.push(b"event: output\ndata: {\"a\""), vec![]);
        assert_eq!(
            p.push(b":1}\n\n: keep-alive\n\nevent: end\ndata: x\ndata: y\n\ndata: plain\n\n"),
            vec![
                ("output".to_owned(), "{\"a\":1}".to_owned()),
                ("end".to_owned(), "x\ny".to_owned()),
                ("message".to_owned(), "plain".to_owned()),
            ]
        );
    }

    #[test]
    fn base_urls() {
        let base = |u: &str| parse_base(u).map(|u| u.to_string()).map_err(|e| e.to_string());
        assert_eq!(base("http://127.0.0.1:8080"), Ok("http://127.0.0.1:8080/".into()));
        assert_eq!(base("https://kanade.example/"), Ok("https://kanade.example/".into()));
        assert_eq!(base("http://h:9/base/"), Ok("http://h:9/base".into()));
        assert_eq!(
            base("127.0.0.1:8080"),
            Err(r#"--backend-url "127.0.0.1:8080" must start with http:// or https:// (e.g. http://127.0.0.1:8080)"#.into())
        );
        assert_eq!(
            base("http://h/?x=1"),
            Err(r#"--backend-url "http://h/?x=1": give the base URL only, without ?query or #fragment"#
                .into())
        );
    }

    fn error(v: serde_json::Value) -> ErrorBody {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn failures_say_what_to_do() {
        let body = error(
            serde_json::json!({ "error": "2 problems", "code": "invalid", "detail": { "problems": ["cron: bad", "mode: bad"] } }),
        );
        assert_eq!(
            failure(StatusCode::UNPROCESSABLE_ENTITY, Some(&body)),
            "invalid (2 problems):\n  cron: bad\n  mode: bad"
        );
        let body = error(serde_json::json!({ "error": "token expired", "code": "unauthorized" }));
        assert_eq!(
            failure(StatusCode::UNAUTHORIZED, Some(&body)),
            "token expired: not logged in or the token expired; run `kanade login`"
        );
        let body =
            error(serde_json::json!({ "error": "wrong user name or password", "code": "bad_credentials" }));
        assert_eq!(failure(StatusCode::UNAUTHORIZED, Some(&body)), "wrong user name or password");
        assert_eq!(
            failure(
                StatusCode::NOT_FOUND,
                Some(&error(
                    serde_json::json!({ "error": "schedule x does not exist", "code": "not_found" })
                ))
            ),
            "schedule x does not exist (404)"
        );
        assert_eq!(failure(StatusCode::BAD_GATEWAY, None), "Bad Gateway (502)");
    }
}
