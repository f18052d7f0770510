//! Gives freed heap memory back to the OS in a long-running `serve`.
//!
//! glibc's allocator keeps memory freed inside its arenas (one per thread
//! that allocated) for reuse; only the top of each heap is ever trimmed by
//! itself. After a burst — large uploads, a big write group, a wide search —
//! most of the peak stays resident although nothing holds it. `malloc_trim`
//! returns the free pages of every arena (`MADV_DONTNEED`), so a trim every
//! few seconds brings the resident size back near the baseline; it takes
//! well under a millisecond on a quiet heap, and nothing when there is
//! nothing to give back. Large blocks are kept out of the arenas altogether
//! (a fixed mmap threshold). Other allocators and platforms need nothing
//! here.

use std::time::Duration;

/// How often the heap is trimmed.
const EVERY: Duration = Duration::from_secs(5);

/// Starts the trimming thread (for the life of the process).
pub fn spawn_trimmer() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // Large blocks (upload chunks, encoded rows, write groups) are
        // mapped on their own and unmapped when freed. glibc otherwise
        // raises this threshold each time such a block is freed (up to
        // 32 MiB), after which they come from the arenas and fragment
        // them; setting it fixes it at the initial 128 KiB.
        // SAFETY: mallopt only sets an allocator parameter.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        }
        let started = std::thread::Builder::new()
            .name("heap-trim".to_owned())
            .spawn(|| {
                loop {
                    std::thread::sleep(EVERY);
                    // SAFETY: malloc_trim only walks the allocator's own
                    // arenas under their locks; it takes no pointers.
                    unsafe {
                        libc::malloc_trim(0);
                    }
                }
            });
        if let Err(e) = started {
            tracing::debug!(error = %e, "heap trimming not started");
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = EVERY;
}
