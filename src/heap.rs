//! Giving memory back to the operating system after a large transient allocation.
//!
//! glibc keeps freed memory in its arenas (and raises its mmap threshold after a large free),
//! so a burst of big allocations (request bodies, a huge tool listing parsed by the SDK) would
//! leave the process tens or hundreds of megabytes larger for good. Callers ask for a trim only
//! after such an allocation is gone, never on the common path.

/// Asks the allocator to return what it can.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim() {
    // SAFETY: malloc_trim only returns free memory to the OS; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Asks the allocator to return what it can (nothing to do off glibc).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() {}
