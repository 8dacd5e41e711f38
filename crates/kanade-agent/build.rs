//! Records the target triple the agent is built for: self-update downloads the release
//! published under `<version>/<this triple>`.

fn main() {
    let target = std::env::var("TARGET").expect("cargo sets TARGET for build scripts");
    println!("cargo:rustc-env=KANADE_AGENT_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
