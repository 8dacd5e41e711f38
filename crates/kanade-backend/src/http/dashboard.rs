//! The web dashboard: a plain-JavaScript single-page app over the JSON API, compiled into the
//! binary (no network fetch, works offline). Served gzip-compressed when the browser accepts
//! it, with an ETag so a reload costs a 304, and a content security policy that allows only
//! our own scripts and styles.

use std::sync::OnceLock;

use super::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::Digest;

struct Asset {
    name: &'static str,
    mime: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $mime:expr) => {
        Asset { name: $name, mime: $mime, body: include_bytes!(concat!("../../assets/", $name)) }
    };
}

/// Third-party files `build.rs` fetched from the npm registry (pinned by web/package-lock.json).
macro_rules! vendor {
    ($name:literal, $file:literal, $mime:expr) => {
        Asset {
            name: concat!("vendor/", $name),
            mime: $mime,
            body: include_bytes!(concat!(env!("OUT_DIR"), "/web/node_modules/", $file)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("js/app.js", JS),
    asset!("js/core.js", JS),
    asset!("js/live.js", JS),
    asset!("js/pages/login.js", JS),
    asset!("js/pages/overview.js", JS),
    asset!("js/pages/agents.js", JS),
    asset!("js/pages/jobs.js", JS),
    asset!("js/pages/executions.js", JS),
    asset!("js/pages/schedules.js", JS),
    asset!("js/pages/audit.js", JS),
    asset!("js/pages/admin.js", JS),
    asset!("js/pages/account.js", JS),
    asset!("js/pages/groups.js", JS),
    asset!("js/pages/enroll.js", JS),
    asset!("js/pages/events.js", JS),
    asset!("js/pages/compliance.js", JS),
    asset!("js/pages/facts.js", JS),
    asset!("js/pages/notifications.js", JS),
    asset!("js/charts.js", JS),
    vendor!("uPlot.esm.js", "uplot/dist/uPlot.esm.js", JS),
    vendor!("uPlot.min.css", "uplot/dist/uPlot.min.css", "text/css; charset=utf-8"),
];

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

struct Prepared {
    gzip: Vec<u8>,
    etag: String,
}

fn prepared() -> &'static [Prepared] {
    static PREPARED: OnceLock<Vec<Prepared>> = OnceLock::new();
    PREPARED.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                use std::io::Write;
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                gz.write_all(a.body).expect("gzip into memory");
                let digest = sha2::Sha256::digest(a.body);
                let etag =
                    format!("\"{}\"", digest.iter().take(12).map(|b| format!("{b:02x}")).collect::<String>());
                Prepared { gzip: gz.finish().expect("gzip into memory"), etag }
            })
            .collect()
    })
}

pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

pub async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

fn serve(name: &str, request: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        return super::ApiError::not_found(format!("no dashboard file {name:?}")).into_response();
    };
    let (a, p) = (&ASSETS[i], &prepared()[i]);
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, HeaderValue::from_str(&p.etag).expect("hex etag"));
    // Revalidate every time: cheap with the ETag, and a new backend's assets show at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if request.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(p.etag.as_str()) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.mime));
    let gzip_ok = request
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    if gzip_ok {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        (headers, p.gzip.clone()).into_response()
    } else {
        (headers, a.body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_compresses_and_has_a_distinct_etag() {
        let p = prepared();
        assert_eq!(p.len(), ASSETS.len());
        let mut etags: Vec<&str> = p.iter().map(|p| p.etag.as_str()).collect();
        etags.sort();
        etags.dedup();
        assert_eq!(etags.len(), ASSETS.len());
        let js: usize = ASSETS.iter().filter(|a| a.mime == JS).map(|a| a.body.len()).sum();
        assert!(js > 0);
    }
}
