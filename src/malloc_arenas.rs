//! Caps the number of glibc malloc arenas (`mallopt(M_ARENA_MAX)`) and fixes glibc's mmap
//! threshold (`mallopt(M_MMAP_THRESHOLD)`).
//!
//! The collector's own allocations go through mimalloc (`main.rs`); DuckDB's C++ code allocates
//! with the C library's `malloc`. glibc gives threads that contend for an arena new arenas, up to
//! 8 per core, and memory freed into an arena stays with it for that arena's next allocations.
//! With the writer, checkpoints and readers' queries on different threads, DuckDB's freed blocks
//! were spread over many arenas: in short soaks the process held ~60-90 MiB more at the median
//! and ~25-75 MiB more at its peak than with two arenas, for the same work and no measurable
//! difference in throughput (BENCHMARKS.md, issue 11). Called once at start, before DuckDB opens.
//!
//! glibc serves an allocation above its mmap threshold with its own mapping, given back whole
//! when freed; below it, from an arena, where freed memory stays. The threshold starts at 128 KiB
//! and slides up to the largest mapped block freed so far, so after the first of DuckDB's
//! 256 KiB blocks is freed every later one lands in an arena, and what DuckDB frees outside its
//! buffer manager stays resident there. Fixed at 128 KiB (`--malloc-mmap-threshold-kib 128`),
//! resident memory less DuckDB's buffer manager was ~35 MiB lower at full rate, for ~1 us more
//! of the writer's time per span (mapping, faulting in and unmapping each block) and 10-15% of
//! the throughput; so glibc's sliding threshold stays the default (BENCHMARKS.md, issue 11).
#![allow(unsafe_code)]

/// Why the cap was not applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ArenaError {
    #[error("{0} arenas is too many")]
    TooMany(usize),
    #[error("glibc refused M_ARENA_MAX = {0}")]
    Refused(usize),
    #[error("glibc refused M_MMAP_THRESHOLD = {0} bytes")]
    RefusedThreshold(usize),
}

/// The arena cap for `--malloc-arena-max` (0: one per core, at least 2).
pub fn arena_cap(flag: usize) -> usize {
    if flag > 0 {
        return flag;
    }
    std::thread::available_parallelism().map_or(2, |n| n.get()).max(2)
}

/// Apply the cap. `Ok(())` where there is nothing to do (not glibc).
pub fn limit(arenas: usize) -> Result<(), ArenaError> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let n = libc::c_int::try_from(arenas).map_err(|_| ArenaError::TooMany(arenas))?;
        // SAFETY: `mallopt` only sets a tunable of glibc's allocator (it takes the arena lock
        // itself); `M_ARENA_MAX` with a positive value is documented for any time after start. It
        // reads no memory of ours. It returns 1 on success, 0 on error.
        let ok = unsafe { libc::mallopt(libc::M_ARENA_MAX, n) };
        if ok != 1 {
            return Err(ArenaError::Refused(arenas));
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = arenas;
    Ok(())
}

/// Fix glibc's mmap threshold at `bytes` (which also stops it sliding); 0 leaves glibc's own.
/// `Ok(())` where there is nothing to do (not glibc, or 0).
pub fn mmap_threshold(bytes: usize) -> Result<(), ArenaError> {
    if bytes == 0 {
        return Ok(());
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let n = libc::c_int::try_from(bytes).map_err(|_| ArenaError::RefusedThreshold(bytes))?;
        // SAFETY: as in `limit`: `mallopt` sets one tunable under glibc's own lock and reads no
        // memory of ours. It returns 1 on success, 0 for a value glibc refuses.
        let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, n) };
        if ok != 1 {
            return Err(ArenaError::RefusedThreshold(bytes));
        }
    }
    Ok(())
}

/// Give the free pages of glibc's arenas back to the system (`malloc_trim(0)`), after DuckDB
/// freed much at once (`store::reattach`). A no-op where the C library is not glibc.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only releases free memory of glibc's own arenas, under their locks;
    // it reads and writes no memory of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Bytes allocated and not freed through glibc's `malloc` (`mallinfo2`: arena chunks in use plus
/// mapped blocks); `None` where the C library is not glibc. The collector's own heap is mimalloc's,
/// so this is DuckDB's: its buffer manager's blocks (`duckdb_memory()`) and what it holds outside
/// them. The latter grows with the row groups the open database holds in memory (their columns'
/// segments, statistics and handles: ~46 KiB per row group of a 23-column table, ~6 bytes a row
/// at 8,192-row groups; BENCHMARKS.md, issue 11), which DuckDB frees only when the database is
/// closed. Takes each arena's lock for a walk of its free lists: for `/metrics`, not a hot path.
pub fn in_use_bytes() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallinfo2` only reads glibc's allocator state under its own locks and returns
        // a plain struct by value; it touches no memory of ours.
        let m = unsafe { libc::mallinfo2() };
        Some((m.uordblks as u64).saturating_add(m.hblkhd as u64))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_the_flag_or_the_cores_and_glibc_takes_it() {
        assert_eq!(arena_cap(3), 3);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        assert_eq!(arena_cap(0), cores.max(2));
        assert_eq!(limit(arena_cap(0)), Ok(()));
        // A value glibc cannot represent is refused before the call.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        assert!(limit(usize::MAX).is_err());
    }

    #[test]
    fn no_threshold_is_nothing_to_do_and_one_glibc_cannot_represent_is_refused() {
        // (Setting one here would fix it for every other test in this binary, DuckDB's included.)
        assert_eq!(mmap_threshold(0), Ok(()));
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        assert_eq!(mmap_threshold(usize::MAX), Err(ArenaError::RefusedThreshold(usize::MAX)));
    }
}
