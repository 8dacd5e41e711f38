//! Poll a condition until it holds or a deadline passes; the panic names what was awaited.

use std::future::Future;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(25);

/// Whether `pid` is running anything: a zombie waiting for its new parent to reap it is not.
/// Reads /proc; where there is none it panics rather than answer "not running", which would let
/// every "the process is gone" assertion pass without looking.
pub fn process_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(") ").next().is_some_and(|rest| rest.starts_with('Z')),
        Err(_) if std::path::Path::new("/proc/self/stat").exists() => false,
        Err(e) => panic!(
            "cannot tell whether process {pid} runs: /proc is not readable ({e}); this check needs Linux's /proc"
        ),
    }
}

pub fn wait_until(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !condition() {
        if Instant::now() > end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(POLL);
    }
}

pub async fn wait_until_async<F, Fut>(what: &str, deadline: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    while !condition().await {
        if Instant::now() > end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_as_soon_as_the_condition_holds() {
        let mut calls = 0;
        wait_until("three calls", Duration::from_secs(5), || {
            calls += 1;
            calls == 3
        });
        assert_eq!(calls, 3);
    }

    #[test]
    #[should_panic(expected = "timed out after 50ms waiting for the impossible")]
    fn names_what_it_waited_for_on_timeout() {
        wait_until("the impossible", Duration::from_millis(50), || false);
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 50ms waiting for async never")]
    async fn async_variant_times_out_too() {
        wait_until_async("async never", Duration::from_millis(50), || async { false }).await;
    }
}
