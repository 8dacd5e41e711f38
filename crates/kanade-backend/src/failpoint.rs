//! Named places where a test can make the backend die on the spot, as a SIGKILL there would
//! (`hit`), or fail one step (`armed`): `KANADE_FAILPOINT=<name>` names the one in force. The only
//! way to prove what a crash or a failure at exactly that point leaves behind; unset, it costs
//! one comparison.

use std::sync::OnceLock;

pub fn hit(name: &str) {
    if armed(name) {
        eprintln!("KANADE_FAILPOINT={name}: aborting here");
        std::process::abort();
    }
}

/// Whether `KANADE_FAILPOINT` names `name`, for a failpoint that fails a step instead.
pub fn armed(name: &str) -> bool {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    ARMED.get_or_init(|| std::env::var("KANADE_FAILPOINT").ok()).as_deref() == Some(name)
}
