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
