//! Named places where a test can make the backend die on the spot, as a SIGKILL there would:
//! `KANADE_FAILPOINT=<name>` aborts the process when it reaches `hit(<name>)`. The only way to
//! prove what a crash at exactly that point leaves behind; unset, it costs one comparison.

use std::sync::OnceLock;

pub fn hit(name: &str) {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    if ARMED.get_or_init(|| std::env::var("KANADE_FAILPOINT").ok()).as_deref() == Some(name) {
        eprintln!("KANADE_FAILPOINT={name}: aborting here");
        std::process::abort();
    }
}
