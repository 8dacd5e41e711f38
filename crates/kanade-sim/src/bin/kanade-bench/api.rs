//! The backend's JSON API, blocking (the runner measures it, it does not need to be fast).

use anyhow::{Context, bail};
use serde_json::Value;

pub fn get(port: u16, path: &str) -> anyhow::Result<Value> {
    call(port, "GET", path, None)
}

pub fn post(port: u16, path: &str, body: &Value) -> anyhow::Result<Value> {
    call(port, "POST", path, Some(body))
}

fn call(port: u16, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
    let payload = body.map(Value::to_string).unwrap_or_default();
    let (status, bytes) =
        kanade_testkit::http::request(port, method, path, payload.as_bytes(), "application/json")
            .map_err(anyhow::Error::msg)?;
    let v: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).with_context(|| format!("{method} {path}: not JSON"))?
    };
    if !(200..300).contains(&status) {
        bail!("{method} {path}: HTTP {status}: {v}");
    }
    Ok(v)
}
