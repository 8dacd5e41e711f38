//! Giving memory back. glibc's allocator keeps what a burst freed (an inventory: the installed
//! software list and its encoded message) resident in its heaps, and gives every thread that
//! allocates an arena of its own. An agent is idle nearly always and runs on thousands of
//! endpoints, so it asks for few arenas and trims the heaps after a burst, and hands back the
//! pages of its own code that only start-up and the burst used. Elsewhere (Windows, musl) these
//! are no-ops.
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

/// Call once start-up work (and each inventory) is done. The agent's own code and constants are
/// mapped from its binary, and every page a start-up path touched stays resident while the
/// agent idles, which is nearly always: about two thirds of an idle agent's resident memory.
/// Those pages are clean copies of the file, so handing them back costs nothing but a fault
/// when they are next needed; what idle work (heartbeats, the broker connection) uses comes
/// back on its first use and stays. Linux only (`MADV_PAGEOUT`, 5.4+; an older kernel
/// refuses it and nothing changes); Windows' memory view already leaves image pages out of a
/// process's private working set.
pub fn drop_cold_code() {
    #[cfg(target_os = "linux")]
    {
        let Ok(exe) = std::fs::read_link("/proc/self/exe") else { return };
        let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else { return };
        for (start, end) in read_only_ranges_of(&maps, &exe.to_string_lossy()) {
            // SAFETY: the range is a whole mapping of our own binary, read from the kernel's
            // own list; it is read-only, so paging it out loses nothing and no pointer into
            // it changes meaning (the next read faults the same bytes back in).
            unsafe {
                nix::libc::madvise(start as *mut nix::libc::c_void, end - start, nix::libc::MADV_PAGEOUT);
            }
        }
    }
}

/// Pure: the address ranges of `maps` (`/proc/self/maps`) that map `file` read-only (code and
/// constants; never a writable mapping, whose pages may hold data of ours).
pub fn read_only_ranges_of(maps: &str, file: &str) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            // address perms offset dev inode path (the path may hold spaces, and ends in
            // " (deleted)" once the binary was replaced, as `/proc/self/exe` then reads too)
            let mut fields = line.splitn(6, ' ');
            let range = fields.next()?;
            let perms = fields.next()?;
            let path = fields.nth(3)?.trim_start();
            if path != file || perms.as_bytes().get(1) != Some(&b'-') {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            Some((usize::from_str_radix(start, 16).ok()?, usize::from_str_radix(end, 16).ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_read_only_mappings_of_the_binary_are_chosen() {
        let maps = "\
55d0a0000000-55d0a0100000 r--p 00000000 08:01 42 /opt/kanade/kanade-agent
55d0a0100000-55d0a0600000 r-xp 00100000 08:01 42                         /opt/kanade/kanade-agent
55d0a0600000-55d0a0700000 r--p 00600000 08:01 42 /opt/kanade/kanade-agent
55d0a0700000-55d0a0710000 rw-p 00700000 08:01 42 /opt/kanade/kanade-agent
55d0a1000000-55d0a1100000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000100000 r-xp 00000000 08:01 77 /usr/lib/libc.so.6
7f0000200000-7f0000300000 r-xp 00000000 08:01 78 /opt/kanade/kanade-agent (deleted)
";
        assert_eq!(
            read_only_ranges_of(maps, "/opt/kanade/kanade-agent"),
            vec![
                (0x55d0a0000000, 0x55d0a0100000),
                (0x55d0a0100000, 0x55d0a0600000),
                (0x55d0a0600000, 0x55d0a0700000)
            ]
        );
        assert!(read_only_ranges_of("garbage\n\n", "/x").is_empty());
    }
}
