//! HTTP latency histograms per route (the matched path, so ids do not explode the label set).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;

const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Default)]
pub struct HttpMetrics(Mutex<BTreeMap<(String, String), Histogram>>);

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl HttpMetrics {
    fn observe(&self, method: &str, route: &str, seconds: f64) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let h = map.entry((method.to_owned(), route.to_owned())).or_default();
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
        for ((method, route), h) in map.iter() {
            let labels = format!("method=\"{method}\",route=\"{route}\"");
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

pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    state.http_metrics.observe(&method, &route, started.elapsed().as_secs_f64());
    response
}
