//! What the collector's own allocator holds. The binaries allocate through mimalloc (`main.rs`);
//! DuckDB's C++ code allocates through glibc's malloc (`malloc_arenas.rs`), so mimalloc's
//! committed memory is the collector's heap without DuckDB's: the queues, windows and buffers
//! the ingest path bounds (BENCHMARKS.md, "memory outside DuckDB's cache").

// Linked for its C library (the declaration below), whether or not the global allocator is it.
use mimalloc as _;

#[allow(unsafe_code)]
mod ffi {
    extern "C" {
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
}

/// Bytes mimalloc has committed: the collector's heap when mimalloc is the global allocator (the
/// binaries), ~0 otherwise (the tests' own processes).
pub fn committed_bytes() -> u64 {
    ffi::committed()
}
