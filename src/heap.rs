//! The collector's own heap: what it holds (`/metrics`) and how soon it gives freed memory back.
//! The binaries allocate through mimalloc (`main.rs`); DuckDB's C++ code allocates through
//! glibc's malloc (`malloc_arenas.rs`), so mimalloc's committed memory is the collector's heap
//! without DuckDB's: the queues, windows and buffers the ingest path bounds (BENCHMARKS.md,
//! "memory outside DuckDB's cache").
//!
//! mimalloc gives the pages of freed memory back to the system after a delay (`purge_delay`, 1000
//! ms by default). Rows are made on the decode threads and freed on the drop threads at ~150 MB/s
//! under full load, so up to that second's worth waits; `--heap-purge-ms` (250 by default) sets
//! the delay at start, unless `MIMALLOC_PURGE_DELAY` is in the environment (mimalloc's own
//! setting, then left to it).
//!
//! mimalloc also asks the kernel for transparent huge pages for its arenas (`madvise`), so a
//! 2 MiB page stays resident while any of it is in use. Unless `--heap-huge-pages` is given (or
//! `MIMALLOC_ALLOW_THP` is set), `serve` turns them off for the process at start
//! (`prctl(PR_SET_THP_DISABLE)`, which is what mimalloc itself does with `MIMALLOC_ALLOW_THP=0`):
//! at full rate ~43 MiB less resident for no throughput measured (BENCHMARKS.md, issue 11).

// Linked for its C library (the declarations below), whether or not the global allocator is it.
use mimalloc as _;

#[allow(unsafe_code)]
mod ffi {
    use std::ffi::{c_int, c_long};

    /// `mi_option_purge_delay`: its place in `mi_option_t` (`mimalloc.h`, v3, the version the
    /// `mimalloc` crate builds; the unit test below reads it back).
    pub const PURGE_DELAY: c_int = 15;

    extern "C" {
        /// Set / read one of mimalloc's options (`mimalloc.h`).
        pub fn mi_option_set(option: c_int, value: c_long);
        pub fn mi_option_get(option: c_int) -> c_long;
        /// mimalloc's process statistics (`mimalloc.h`); every pointer may be null.
        pub fn mi_process_info(
            elapsed_msecs: *mut usize,
            user_msecs: *mut usize,
            system_msecs: *mut usize,
            current_rss: *mut usize,
            peak_rss: *mut usize,
            current_commit: *mut usize,
            peak_commit: *mut usize,
            page_faults: *mut usize,
        );
    }

    /// Memory mimalloc has committed now, in bytes (on Linux: what it made readable and
    /// writable; pages it has purged still count, so an upper bound of what is resident).
    pub fn committed() -> u64 {
        let mut current: usize = 0;
        // SAFETY: mi_process_info writes through the non-null pointers only, each to a live
        // local of the declared type; the others are null, which it skips.
        unsafe {
            mi_process_info(
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut current,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        current as u64
    }

    /// Set an option (mimalloc reads its options where it uses them; this is one store).
    pub fn set(option: c_int, value: c_long) {
        // SAFETY: takes two integers and touches no memory of ours.
        unsafe { mi_option_set(option, value) }
    }

    /// Read an option.
    pub fn get(option: c_int) -> c_long {
        // SAFETY: as above.
        unsafe { mi_option_get(option) }
    }
}

/// Bytes mimalloc has committed: the collector's heap when mimalloc is the global allocator (the
/// binaries), ~0 otherwise (the tests' own processes).
pub fn committed_bytes() -> u64 {
    ffi::committed()
}

/// Default of `--heap-purge-ms`: at full rate 250 ms held ~28 MiB less resident memory than
/// mimalloc's 1000 (477 against 505 MiB besides DuckDB's buffer manager, six alternated pairs)
/// for ~1.5% more CPU per span, inside the box's drift (BENCHMARKS.md). 100 ms cost ~5%, 0 (at
/// once) 12-20%.
pub const DEFAULT_PURGE_MS: u32 = 250;

/// How long the pages of freed memory wait before they go back to the system, from now on.
/// `false` when `MIMALLOC_PURGE_DELAY` is set (mimalloc's own setting wins; nothing changes).
pub fn set_purge_delay(ms: u32) -> bool {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return false;
    }
    ffi::set(ffi::PURGE_DELAY, ms.into());
    true
}

/// Keep the process's anonymous memory in base pages: no transparent huge pages, which
/// mimalloc asks for. `Ok(false)` when `MIMALLOC_ALLOW_THP` is in the environment (mimalloc's own
/// setting, then left to it) or on a system without the call.
pub fn disable_huge_pages() -> std::io::Result<bool> {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return Ok(false);
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE only sets a flag of this process's memory map; the call
        // takes no pointers (the kernel reads unsigned longs and refuses non-zero unused ones, hence
        // the widths). It returns 0 on success, -1 with errno set on failure.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::prctl(
                libc::PR_SET_THP_DISABLE,
                1 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(true)
    }
    #[cfg(not(target_os = "linux"))]
    Ok(false)
}

/// Whether transparent huge pages are off for this process (`PR_GET_THP_DISABLE`).
pub fn huge_pages_disabled() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: as above; PR_GET_THP_DISABLE returns the flag (0 or 1), or -1 on error.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::prctl(
                libc::PR_GET_THP_DISABLE,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
        rc == 1
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// The purge delay mimalloc applies now, in ms.
pub fn purge_delay() -> std::ffi::c_long {
    ffi::get(ffi::PURGE_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_is_mimallocs_option_and_reads_back() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            assert!(!set_purge_delay(DEFAULT_PURGE_MS));
            return;
        }
        // mimalloc's own default, before anything set it (no other test of this binary does).
        assert_eq!(purge_delay(), 1000, "option 15 is not purge_delay: mimalloc.h changed");
        assert!(set_purge_delay(DEFAULT_PURGE_MS));
        assert_eq!(purge_delay(), std::ffi::c_long::from(DEFAULT_PURGE_MS));
        assert!(set_purge_delay(1000));
        assert_eq!(purge_delay(), 1000);
    }

    #[test]
    fn huge_pages_turn_off_for_the_process() {
        if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
            assert!(!disable_huge_pages().expect("nothing to fail"));
            return;
        }
        #[cfg(target_os = "linux")]
        {
            assert!(disable_huge_pages().expect("prctl"));
            assert!(huge_pages_disabled());
        }
    }
}
