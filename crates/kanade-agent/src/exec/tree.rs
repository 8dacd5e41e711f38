//! The process tree of one run, and ending all of it.

#[cfg(unix)]
pub use unix::{Tree, prepare};
#[cfg(windows)]
pub use windows::{Tree, prepare};

#[cfg(unix)]
mod unix {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;

    /// Put the shell in a new process group whose id is its pid; its children inherit it.
    pub fn prepare(cmd: &mut tokio::process::Command) {
        cmd.process_group(0);
    }

    pub struct Tree(Option<i32>);

    impl Tree {
        pub fn attach(child: &tokio::process::Child) -> Self {
            Self(child.id().and_then(|id| i32::try_from(id).ok()))
        }

        pub fn kill(&mut self) {
            if let Some(pgid) = self.0 {
                // ESRCH (group already gone) is the outcome we want anyway.
                let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            }
        }
    }
}

#[cfg(windows)]
mod windows {
    use win32job::{ExtendedLimitInfo, Job};

    pub fn prepare(_cmd: &mut tokio::process::Command) {}

    /// A job object with kill-on-close: closing it ends every process assigned to it, including
    /// the ones they started after assignment.
    pub struct Tree(Option<Job>);

    impl Tree {
        pub fn attach(child: &tokio::process::Child) -> Self {
            let tree = child.raw_handle().map_or(Self(None), Self::attach_handle);
            if !tree.attached() {
                tracing::warn!(
                    "cannot put the script in a job object; a kill will only end the shell itself"
                );
            }
            tree
        }

        pub fn attach_handle(process: std::os::windows::io::RawHandle) -> Self {
            let mut limits = ExtendedLimitInfo::new();
            limits.limit_kill_on_job_close();
            let job = Job::create_with_limit_info(&limits)
                .ok()
                .and_then(|job| job.assign_process(process as isize).ok().map(|()| job));
            Self(job)
        }

        pub fn attached(&self) -> bool {
            self.0.is_some()
        }

        pub fn kill(&mut self) {
            // Dropping the Job closes its handle, which kills everything still in it.
            self.0.take();
        }
    }
}
