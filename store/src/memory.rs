//! Memory the store uses beyond its buffers, and the process's resident memory.
//!
//! Admission control (in the collector) refuses requests before memory runs out. It counts
//! what it can count exactly — buffered rows, requests in flight, and the working memory of
//! flushes and merges reserved here — and, as a backstop for everything it cannot (allocator
//! slack, decoder buffers, query engines), the process's resident set size sampled by a
//! background thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Bytes reserved by flushes and merges while they run.
#[derive(Debug, Clone, Default)]
pub struct WorkingMemory(Arc<AtomicUsize>);

impl WorkingMemory {
    /// Reserves `bytes` until the returned guard is dropped.
    pub fn reserve(&self, bytes: usize) -> Reservation {
        self.0.fetch_add(bytes, Ordering::AcqRel);
        Reservation {
            counter: self.0.clone(),
            bytes,
        }
    }

    pub fn bytes(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// A share of [`WorkingMemory`], given back on drop.
#[derive(Debug)]
pub struct Reservation {
    counter: Arc<AtomicUsize>,
    bytes: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// The process's resident set size, refreshed every [`RssSampler::PERIOD`] by a thread that
/// ends when the last handle is dropped. Reads are one atomic load.
#[derive(Debug, Clone)]
pub struct RssSampler(Arc<AtomicU64>);

impl RssSampler {
    pub const PERIOD: Duration = Duration::from_millis(20);

    /// Starts sampling; `None` where the platform has no `/proc/self/statm`.
    pub fn start() -> Option<Self> {
        let first = resident_bytes()?;
        let value = Arc::new(AtomicU64::new(first));
        let weak = Arc::downgrade(&value);
        std::thread::Builder::new()
            .name("sightline-rss".into())
            .spawn(move || {
                while let Some(value) = weak.upgrade() {
                    if let Some(rss) = resident_bytes() {
                        value.store(rss, Ordering::Release);
                    }
                    drop(value);
                    std::thread::sleep(Self::PERIOD);
                }
            })
            .ok()?;
        Some(Self(value))
    }

    /// The process's one sampler (every tenant's store reads the same process), started on
    /// first use.
    pub fn shared() -> Option<Self> {
        static SHARED: std::sync::OnceLock<Option<RssSampler>> = std::sync::OnceLock::new();
        SHARED.get_or_init(Self::start).clone()
    }

    /// The latest sample, in bytes.
    pub fn bytes(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

pub use sightline_common::process::resident_bytes;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_given_back() {
        let w = WorkingMemory::default();
        let a = w.reserve(100);
        let b = w.reserve(50);
        assert_eq!(w.bytes(), 150);
        drop(a);
        assert_eq!(w.bytes(), 50);
        drop(b);
        assert_eq!(w.bytes(), 0);
    }

    #[test]
    fn resident_size_follows_a_large_allocation() {
        let before = resident_bytes().expect("linux");
        let big = vec![1u8; 64 << 20];
        let during = resident_bytes().expect("linux");
        assert!(
            during >= before + (48 << 20),
            "rss {before} -> {during} after touching 64 MiB"
        );
        assert_eq!(big.iter().map(|&b| b as usize).sum::<usize>(), 64 << 20);
    }
}
