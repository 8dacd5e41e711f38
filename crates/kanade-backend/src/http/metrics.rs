//! The outermost layer of every request: a request id (the caller's `X-Request-Id`, else a new
//! one, sent back on the response), one access-log line, a deadline, and latency histograms
//! labelled only from bounded sets (the matched route, a known method, the status class), so no
//! client can grow the series.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};

const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Default)]
pub struct HttpMetrics(Mutex<BTreeMap<(&'static str, String, &'static str), Histogram>>);

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl HttpMetrics {
    fn observe(&self, method: &'static str, route: &str, status: &'static str, seconds: f64) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let h = map.entry((method, route.to_owned(), status)).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    pub fn render(&self) -> String {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let name = "kanade_http_request_duration_seconds";
        let mut out = format!("# HELP {name} HTTP request latency by route.\n# TYPE {name} histogram\n");
        for ((method, route, status), h) in map.iter() {
            let labels = format!("method=\"{method}\",route=\"{route}\",status=\"{status}\"");
            for (i, bound) in BUCKETS.iter().enumerate() {
                out.push_str(&format!("{name}_bucket{{{labels},le=\"{bound}\"}} {}\n", h.counts[i]));
            }
            out.push_str(&format!("{name}_bucket{{{labels},le=\"+Inf\"}} {}\n", h.count));
            out.push_str(&format!(
                "{name}_sum{{{labels}}} {}\n{name}_count{{{labels}}} {}\n",
                h.sum, h.count
            ));
        }
        out
    }
}

/// Who a response was for (the authorizing layer leaves it in the response's extensions), read
/// by the access log.
#[derive(Clone)]
pub struct CallerName(pub String);

/// The process's own figures, where the OS shows them (Linux `/proc`).
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: f64,
    pub open_fds: f64,
}

pub fn process_stats() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as f64;
    let (cpu_seconds, resident_bytes) = parse_proc(&stat, &status)?;
    Some(ProcessStats { cpu_seconds, resident_bytes, open_fds })
}

/// Pure: (CPU seconds, resident bytes) from `/proc/self/stat` (utime and stime, fields 14 and
/// 15, in USER_HZ = 100 ticks, fixed for the proc interface) and `/proc/self/status` (`VmRSS`).
fn parse_proc(stat: &str, status: &str) -> Option<(f64, f64)> {
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let rss_kb: f64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
    Some((ticks as f64 / 100.0, rss_kb * 1024.0))
}

/// The method as a label: one of a fixed set.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

pub fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// How long a request may take before it is answered 503: long-lived and upload routes are
/// exempt (the event stream never ends; a release upload is as slow as the link).
pub fn deadline(route: &str) -> Option<Duration> {
    match route {
        "/api/stream" | "/api/agent/releases" | "/api/executions/{exec_id}/pcs/{pc}/tail" => None,
        _ => Some(REQUEST_TIMEOUT),
    }
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A request id worth echoing: short and printable, else a new one is made.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(REQUEST_ID)
        .filter(|v| {
            v.len() <= 128
                && v.to_str().is_ok_and(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic()))
        })
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::now_v7().to_string()).expect("a uuid is a header value")
        })
}

const REQUEST_ID: &str = "x-request-id";

/// A read that ran out of time may simply be asked again; a change may have taken effect
/// before the answer was dropped, so asking again could do it twice.
fn timed_out(limit: Duration, reads: bool) -> ApiError {
    let secs = limit.as_secs();
    if reads {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!("no answer within {secs} s; try again, or narrow it"),
        )
    } else {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!(
                "no answer within {secs} s; it may still have taken effect: check (e.g. `kanade executions list`) before trying again"
            ),
        )
    }
}

pub async fn track(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let id = request_id(request.headers());
    request.headers_mut().insert(REQUEST_ID, id.clone());
    let started = Instant::now();
    let reads = matches!(method, "GET" | "HEAD");
    let mut response = match deadline(&route) {
        None => next.run(request).await,
        Some(limit) => match tokio::time::timeout(limit, next.run(request)).await {
            Ok(r) => r,
            Err(_) => timed_out(limit, reads).into_response(),
        },
    };
    let elapsed = started.elapsed();
    let status = response.status();
    state.http_metrics.observe(method, &route, status_class(status), elapsed.as_secs_f64());
    let caller = response.extensions().get::<CallerName>().map_or("-", |c| c.0.as_str());
    tracing::info!(
        target: "kanade_backend::access",
        method,
        route,
        status = status.as_u16(),
        ms = elapsed.as_millis() as u64,
        request_id = id.to_str().unwrap_or("-"),
        caller,
        "request"
    );
    response.headers_mut().insert(REQUEST_ID, id);
    response
}

#[cfg(test)]
mod tests {
    use axum::http::Method;

    use super::*;

    #[test]
    fn process_figures_are_read_from_proc() {
        let stat =
            "4242 (kanade backend) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 130 0 0 20 0 9 0 123 456 789";
        let status = "Name:\tkanade-backend\nVmRSS:\t  51200 kB\nThreads:\t9\n";
        assert_eq!(parse_proc(stat, status), Some((3.8, 51200.0 * 1024.0)));
        assert_eq!(parse_proc("garbage", status), None);
    }

    #[test]
    fn labels_come_from_bounded_sets() {
        let method = |m: &str| method_label(&Method::from_bytes(m.as_bytes()).unwrap());
        assert_eq!(
            ["GET", "DELETE", "BREW", "X-ANYTHING-1"].map(method),
            ["GET", "DELETE", "other", "other"]
        );
        let class = |c: u16| status_class(StatusCode::from_u16(c).unwrap());
        assert_eq!([101, 204, 304, 422, 503].map(class), ["1xx", "2xx", "3xx", "4xx", "5xx"]);
        assert_eq!((deadline("/api/stream"), deadline("/api/jobs")), (None, Some(REQUEST_TIMEOUT)));
    }

    #[test]
    fn a_request_id_is_echoed_only_when_it_is_short_and_printable() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(REQUEST_ID, HeaderValue::from_str(v).unwrap());
            request_id(&h)
        };
        assert_eq!(with("abc-123"), "abc-123");
        assert_ne!(with("has space"), "has space");
        assert_ne!(with(&"x".repeat(200)), "x".repeat(200).as_str());
        assert_eq!(request_id(&HeaderMap::new()).len(), 36);
    }
}
