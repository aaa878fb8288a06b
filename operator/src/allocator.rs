//! glibc's allocator, set for a process that keeps many small cached objects for days
//! (BENCHMARKS.md, "Memory: glibc's arenas"). By default glibc gives each thread that
//! allocates under contention an arena of its own, up to eight per core, and frees into the
//! arena that allocated: the memory a tokio worker freed stays in its arena while another
//! grows, and large transient buffers (a LIST page, a burst of key generation) leave holes
//! that are not handed back. Two arenas, and buffers of 128 KiB or more in their own mappings
//! (returned to the system when freed), keep the resident size close to what is live. The
//! environment (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`)
//! overrides each setting. No effect on other C libraries.

/// Arenas for all threads.
pub const ARENAS: i32 = 2;
/// Allocations of this size or more get their own mapping.
pub const MMAP_THRESHOLD: i32 = 128 * 1024;
/// Free memory above this at the top of an arena is returned to the system.
pub const TRIM_THRESHOLD: i32 = 128 * 1024;

/// Apply the settings above, unless the environment sets them. Call first thing in `main`,
/// before any thread is started.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (param, env, value) in [
        (libc::M_ARENA_MAX, "MALLOC_ARENA_MAX", ARENAS),
        (
            libc::M_MMAP_THRESHOLD,
            "MALLOC_MMAP_THRESHOLD_",
            MMAP_THRESHOLD,
        ),
        (
            libc::M_TRIM_THRESHOLD,
            "MALLOC_TRIM_THRESHOLD_",
            TRIM_THRESHOLD,
        ),
    ] {
        if std::env::var_os(env).is_none() {
            // SAFETY: mallopt only changes glibc's allocator parameters; called before any
            // other thread exists, with parameters and values glibc documents (mallopt(3)).
            unsafe {
                libc::mallopt(param, value);
            }
        }
    }
}
