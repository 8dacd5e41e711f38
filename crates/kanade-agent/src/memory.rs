//! Giving memory back. glibc's allocator keeps what a burst freed (an inventory: the installed
//! software list and its encoded message) resident in its heaps, and gives every thread that
//! allocates an arena of its own. An agent is idle nearly always and runs on thousands of
//! endpoints, so it asks for few arenas and trims the heaps after a burst. Elsewhere (Windows,
//! musl) both are no-ops.
#![allow(unsafe_code)]

/// Call at start, before the runtime's threads exist.
pub fn few_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; no pointer is passed.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 2);
    }
}

/// Call after a burst of allocations that are freed by now.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the OS; no pointer is passed.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}
