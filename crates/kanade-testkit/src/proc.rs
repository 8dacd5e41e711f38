//! What a process has used so far, read from `/proc` (Linux): the benchmarks report CPU per
//! component this way, measured around what they time.

use std::time::Duration;

/// Clock ticks a second in `/proc/<pid>/stat` (`USER_HZ`, 100 on every Linux this runs on).
const TICKS_PER_SEC: u64 = 100;

/// CPU time (user + system) process `pid` has used so far; `None` once it is gone.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_of_stat(&stat)
}

/// The CPU time in one `/proc/<pid>/stat` line: utime and stime, the 14th and 15th fields,
/// counted after the parenthesised command name (which may hold spaces).
fn cpu_of_stat(stat: &str) -> Option<Duration> {
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 1000 / TICKS_PER_SEC))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_read_after_a_command_name_with_spaces() {
        let cases = [
            ("1 (nats-server) S 0 1 1 0 -1 0 0 0 0 0 250 30 0 0", Some(Duration::from_millis(2800))),
            ("7 (tokio rt) x) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0", Some(Duration::from_millis(30))),
            ("7 (short) R 1 7", None),
            ("no parenthesis", None),
        ];
        for (stat, want) in cases {
            assert_eq!(cpu_of_stat(stat), want, "{stat}");
        }
    }

    #[test]
    fn this_process_has_a_cpu_time() {
        assert!(cpu_time(std::process::id()).is_some());
    }
}
