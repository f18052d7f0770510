//! Progress of long package work (export, unpack, validation), for
//! whoever watches: the CLI draws a bar, jobs and the server ignore it.

use std::io::Read;

/// Told about long work as it happens. Calls are cheap and may come from
/// several threads at once; every method has a do-nothing default.
pub trait Progress: Sync {
    /// A new stage begins: `total` bytes of work when known beforehand.
    fn stage(&self, _name: &str, _total: Option<u64>) {}
    /// `bytes` more of the current stage are done.
    fn advance(&self, _bytes: u64) {}
    /// Asked between files: true stops the work at that safe point (its
    /// job was cancelled or the worker is shutting down).
    fn should_stop(&self) -> bool {
        false
    }
}

/// Watches nothing.
pub struct Silent;

impl Progress for Silent {}

/// A reader that reports every byte it hands out as progress.
pub struct Reporting<'a, R> {
    inner: R,
    progress: &'a dyn Progress,
}

impl<'a, R> Reporting<'a, R> {
    pub fn new(inner: R, progress: &'a dyn Progress) -> Self {
        Reporting { inner, progress }
    }
}

impl<R: Read> Read for Reporting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Sum(AtomicU64);
    impl Progress for Sum {
        fn advance(&self, bytes: u64) {
            self.0.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_reporting_reader_reports_exactly_what_it_reads() {
        let sum = Sum(AtomicU64::new(0));
        let data = vec![7u8; 100_000];
        let mut out = Vec::new();
        Reporting::new(&data[..], &sum)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        assert_eq!(sum.0.load(Ordering::Relaxed), 100_000);
    }
}
