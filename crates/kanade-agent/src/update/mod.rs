//! Self-update decisions (the functional core; the download/swap/restart shell that applies
//! them is not built yet). `policy.rs` decides whether to install a version, what a boot means
//! for a version on trial, and checks a downloaded binary against its release.

pub mod policy;
