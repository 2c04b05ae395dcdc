//! Caps the number of glibc malloc arenas (`mallopt(M_ARENA_MAX)`).
//!
//! The collector's own allocations go through mimalloc (`main.rs`); DuckDB's C++ code allocates
//! with the C library's `malloc`. glibc gives threads that contend for an arena new arenas, up to
//! 8 per core, and memory freed into an arena stays with it for that arena's next allocations.
//! With the writer, checkpoints and readers' queries on different threads, DuckDB's freed blocks
//! were spread over many arenas: in short soaks the process held ~60-90 MiB more at the median
//! and ~25-75 MiB more at its peak than with two arenas, for the same work and no measurable
//! difference in throughput (BENCHMARKS.md, issue 11). Called once at start, before DuckDB opens.
#![allow(unsafe_code)]

/// Why the cap was not applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ArenaError {
    #[error("{0} arenas is too many")]
    TooMany(usize),
    #[error("glibc refused M_ARENA_MAX = {0}")]
    Refused(usize),
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
}
