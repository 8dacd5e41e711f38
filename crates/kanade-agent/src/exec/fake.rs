//! The fleet simulator's executor: no process, just a wait, an exit code drawn from a failure
//! rate and output of a chosen size, with every run counted so a benchmark can prove that no
//! command ran twice. Everything around it (intake, ledger, gates, outbox) is the real agent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kanade_shared::{ExecId, PcId};

use super::{Ending, RunOutcome};

#[derive(Debug, Clone, Default)]
pub struct FakeExecutor {
    pub duration: Duration,
    /// Share of runs that exit 1, in [0, 1].
    pub failure_rate: f64,
    pub output_bytes: usize,
    pub runs: RunLog,
}

/// How often each (exec, pc) ran, shared by every simulated agent of a process; with a file,
/// also one line `<exec> <pc>` per run, appended as the run starts, so the count survives the
/// process being killed (a chaos test reads it).
#[derive(Debug, Clone, Default)]
pub struct RunLog(Arc<Mutex<HashMap<(ExecId, PcId), u32>>>, Option<Arc<Mutex<std::fs::File>>>);

impl RunLog {
    /// A log that also appends each run to `path`.
    pub fn to_file(path: &std::path::Path) -> std::io::Result<Self> {
        let file = std::fs::File::options().create(true).append(true).open(path)?;
        Ok(Self(Arc::default(), Some(Arc::new(Mutex::new(file)))))
    }

    fn record(&self, exec: ExecId, pc: &PcId) {
        *self.0.lock().unwrap().entry((exec, pc.clone())).or_default() += 1;
        if let Some(file) = &self.1 {
            use std::io::Write;
            // One write per line: a kill leaves whole lines behind.
            let line = format!("{exec} {pc}\n");
            if let Err(e) = file.lock().unwrap().write_all(line.as_bytes()) {
                tracing::error!(error = %e, "cannot append to the run log");
            }
        }
    }

    pub fn total(&self) -> u64 {
        self.0.lock().unwrap().values().map(|&n| u64::from(n)).sum()
    }

    /// Runs beyond the first of the same exec on the same PC.
    pub fn doubles(&self) -> u64 {
        self.0.lock().unwrap().values().map(|&n| u64::from(n.saturating_sub(1))).sum()
    }
}

impl FakeExecutor {
    pub async fn run(
        &self,
        exec: ExecId,
        pc: &PcId,
        timeout: Duration,
        kill: impl std::future::Future<Output = ()>,
    ) -> RunOutcome {
        self.runs.record(exec, pc);
        let ending = tokio::select! {
            () = tokio::time::sleep(self.duration.min(timeout)) => {
                if self.duration > timeout { Ending::TimedOut } else { Ending::Exited }
            }
            () = kill => Ending::Killed,
        };
        let failed = fastrand::f64() < self.failure_rate;
        RunOutcome {
            exit_code: (ending == Ending::Exited).then_some(i32::from(failed)),
            ending,
            stdout: "x".repeat(self.output_bytes),
            stderr: String::new(),
            truncated: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_are_counted_and_end_as_configured() {
        let fake = FakeExecutor { output_bytes: 3, ..Default::default() };
        let (exec, pc): (ExecId, PcId) = (ExecId::new(), "sim-00001".parse().unwrap());
        let out = fake.run(exec, &pc, Duration::from_secs(1), std::future::pending()).await;
        assert_eq!((out.ending, out.exit_code, out.stdout.as_str()), (Ending::Exited, Some(0), "xxx"));
        fake.run(exec, &pc, Duration::from_secs(1), std::future::pending()).await;
        assert_eq!((fake.runs.total(), fake.runs.doubles()), (2, 1));

        let slow =
            FakeExecutor { duration: Duration::from_secs(60), failure_rate: 1.0, ..Default::default() };
        let out = slow.run(ExecId::new(), &pc, Duration::from_secs(60), async {}).await;
        assert_eq!((out.ending, out.exit_code), (Ending::Killed, None));
        let failing = FakeExecutor { failure_rate: 1.0, ..Default::default() };
        let out = failing.run(ExecId::new(), &pc, Duration::from_secs(1), std::future::pending()).await;
        assert_eq!(out.exit_code, Some(1));
    }
}
