//! Giving memory back to the operating system after a large transient allocation.
//!
//! glibc keeps freed memory in its arenas (and raises its mmap threshold after a large free),
//! so a burst of big allocations (request bodies, a huge tool listing parsed by the SDK) would
//! leave the process tens or hundreds of megabytes larger for good. Callers ask for a trim only
//! after such an allocation is gone, never on the common path.

/// Asks the allocator to return what it can.
pub fn trim() {
    #[cfg(test)]
    TRIMS.with(|n| n.set(n.get() + 1));
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the OS; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
thread_local! {
    /// How many trims this thread asked for: what a unit test can see of a trim (the memory
    /// it gives back shows only in the process's RSS, which every test shares). Per thread, so
    /// the tests that run beside one another do not count each other's.
    static TRIMS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many trims the calling thread has asked for.
#[cfg(test)]
pub fn trims_on_this_thread() -> usize {
    TRIMS.with(std::cell::Cell::get)
}
