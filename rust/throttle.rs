//! Keyed GCRA token buckets (equivalent to AWS's token bucket), lock-free, optionally living in
//! a file mapped `MAP_SHARED` so every worker process of the gateway shares them.
//!
//! Pure Rust, no PyO3.
//!
//! GCRA: with emission interval `T = 1e9 / rate` ns and tolerance `tau = (burst - 1) * T`, a
//! request at `now` is admitted iff `max(tat, now) - now <= tau`, and then
//! `tat = max(tat, now) + T`. `T` is rounded *up* to whole nanoseconds (and checked exactly with
//! an FMA), which makes `admitted <= burst + rate * t` hold exactly over any window of length t.
//!
//! Memory layout (little-endian, native atomics): a 64-byte header
//! `{magic: u64, capacity: u64, slot_size: u64, 0...}` followed by `capacity` slots
//! `{key_hash: AtomicU64, tat_ns: AtomicU64}`. `key_hash == 0` marks a free slot. Slots are
//! claimed with a CAS on `key_hash` (linear probing, bounded) and never freed; when no slot can
//! be claimed the bucket lives in a process-local map instead (never panics).

use memmap2::{MmapMut, MmapOptions};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

pub const MAGIC: u64 = 0x3130_4b42_4f43_4950; // "PICOBK01"
pub const HEADER_BYTES: usize = 64;
pub const SLOT_BYTES: usize = 16;
pub const DEFAULT_CAPACITY: usize = 16384;
const MAX_CAPACITY: usize = 1 << 26;
/// Longest probe sequence before a key falls back to the process-local map.
const MAX_PROBES: usize = 256;
/// Returned by `try_acquire` for a bucket that refuses everything (rate or burst <= 0).
pub const NEVER: u64 = u64::MAX;

/// CLOCK_MONOTONIC in nanoseconds: system-wide, so consistent across processes.
#[inline]
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// Process-independent 64-bit key hash (FNV-1a, then the murmur3 finaliser); never 0.
#[inline]
pub fn key_hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    if h == 0 {
        1
    } else {
        h
    }
}

/// Precomputed GCRA parameters of one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Emission interval T in ns (0 = refuse everything).
    pub interval_ns: u64,
    /// (burst - 1) * T.
    pub tau_ns: u64,
    /// burst * T: the furthest a valid `tat` can be ahead of `now`.
    pub span_ns: u64,
}

impl Limit {
    pub fn new(rate: f64, burst: i64) -> Limit {
        if rate.is_nan() || rate <= 0.0 || burst <= 0 {
            return Limit {
                interval_ns: 0,
                tau_ns: 0,
                span_ns: 0,
            };
        }
        let t = 1e9 / rate;
        let mut interval = if t >= 9.0e15 {
            9_000_000_000_000_000u64
        } else {
            t.ceil().max(1.0) as u64
        };
        // Make sure interval * rate >= 1e9 exactly (mul_add rounds once, so its sign is exact).
        while interval < 9_000_000_000_000_000 && (interval as f64).mul_add(rate, -1e9) < 0.0 {
            interval += 1;
        }
        let burst = burst as u64;
        Limit {
            interval_ns: interval,
            tau_ns: (burst - 1).saturating_mul(interval),
            span_ns: burst.saturating_mul(interval),
        }
    }

    #[inline]
    pub fn refuses_all(&self) -> bool {
        self.interval_ns == 0
    }

    /// The rate this limit enforces, in requests/s: `1e9 / T`, which differs from the configured
    /// rate only by `T`'s rounding up to a whole nanosecond. 0 for a limit that refuses all.
    pub fn rate(&self) -> f64 {
        if self.refuses_all() {
            0.0
        } else {
            1e9 / self.interval_ns as f64
        }
    }

    /// The burst this limit enforces (the configured one, unless that saturated `burst * T`).
    pub fn burst(&self) -> u64 {
        if self.refuses_all() {
            0
        } else {
            self.span_ns / self.interval_ns
        }
    }

    /// One GCRA step: `Ok(new_tat)` when admitted, `Err(wait_ns)` (> 0) when refused.
    #[inline]
    pub fn step(&self, stored_tat: u64, now: u64) -> Result<u64, u64> {
        if self.refuses_all() {
            return Err(NEVER);
        }
        // A `tat` further ahead than a full burst is stale (clock reset, or the limit was
        // lowered on reload): treat the bucket as just empty.
        let tat = stored_tat.max(now).min(now.saturating_add(self.span_ns));
        let ahead = tat - now;
        if ahead > self.tau_ns {
            Err(ahead - self.tau_ns)
        } else {
            Ok(tat.saturating_add(self.interval_ns))
        }
    }
}

#[repr(C)]
struct Slot {
    key: AtomicU64,
    tat: AtomicU64,
}

enum Backing {
    Anon(#[allow(dead_code)] MmapMut),
    File(#[allow(dead_code)] MmapMut, #[allow(dead_code)] File),
}

/// The bucket table.
pub struct Buckets {
    _backing: Backing,
    slots: *const Slot,
    mask: usize,
    capacity: usize,
    overflow: Mutex<HashMap<u64, u64>>,
}

// SAFETY: the mapped memory is owned by `_backing` for the lifetime of `Buckets` and is only
// ever accessed through atomics.
unsafe impl Send for Buckets {}
unsafe impl Sync for Buckets {}

fn bad_file(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {why}", path.display()),
    )
}

struct FlockGuard(i32);

impl FlockGuard {
    fn lock(file: &File) -> io::Result<FlockGuard> {
        let fd = file.as_raw_fd();
        loop {
            // SAFETY: fd is a valid open descriptor.
            if unsafe { libc::flock(fd, libc::LOCK_EX) } == 0 {
                return Ok(FlockGuard(fd));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

impl Drop for FlockGuard {
    fn drop(&mut self) {
        // SAFETY: the descriptor outlives the guard.
        unsafe { libc::flock(self.0, libc::LOCK_UN) };
    }
}

pub(crate) fn normalise_capacity(capacity: usize) -> usize {
    capacity.clamp(1, MAX_CAPACITY).next_power_of_two()
}

/// Map the table of `slot_bytes`-sized slots in the file at `path` (`MAP_SHARED`): a 64-byte
/// header `{magic, capacity, slot_bytes}`, `index_bytes(capacity)` bytes the table may use as it
/// likes, then the slots, all zero when new. Creates and sizes the
/// file if needed; an existing valid file keeps its own capacity. Safe against several processes
/// creating it at once (initialisation runs under an exclusive `flock`, the size is set with an
/// idempotent `ftruncate`, the magic word is published last with a CAS). `what` names the table
/// in errors. Returns the mapping, its file (which must stay open) and the capacity.
pub(crate) fn map_shared_table(
    path: &Path,
    magic: u64,
    slot_bytes: usize,
    capacity: usize,
    what: &str,
    index_bytes: fn(usize) -> usize,
) -> io::Result<(MmapMut, File, usize)> {
    let size = |cap: usize| HEADER_BYTES + index_bytes(cap) + cap * slot_bytes;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    let _lock = FlockGuard::lock(&file)?;
    let len = file.metadata()?.len() as usize;
    let mut header = [0u8; 24];
    if len >= HEADER_BYTES {
        file.read_exact_at(&mut header, 0)?;
    }
    let word = |i: usize| u64::from_ne_bytes(header[i * 8..i * 8 + 8].try_into().unwrap());
    let capacity = if word(0) == magic {
        let cap = word(1) as usize;
        if !cap.is_power_of_two() || cap > MAX_CAPACITY || word(2) != slot_bytes as u64 {
            return Err(bad_file(path, &format!("corrupt {what} header")));
        }
        if len < size(cap) {
            return Err(bad_file(path, &format!("{what} file is truncated")));
        }
        cap
    } else if header.iter().all(|b| *b == 0) {
        let cap = normalise_capacity(capacity);
        file.set_len(size(cap).max(len) as u64)?;
        cap
    } else {
        return Err(bad_file(path, &format!("not a Portico {what} file")));
    };
    // SAFETY: the file stays open (returned with the map) while mapped; other processes only ever
    // change it through atomics or grow it.
    let map = unsafe {
        MmapOptions::new()
            .len(size(capacity))
            .map_mut(&file)?
    };
    let words = map.as_ptr() as *const AtomicU64;
    // SAFETY: the header is 64 bytes, page-aligned.
    let (magic_word, cap_word, slot_word) = unsafe { (&*words, &*words.add(1), &*words.add(2)) };
    if magic_word.load(Ordering::Acquire) != magic {
        cap_word.store(capacity as u64, Ordering::Relaxed);
        slot_word.store(slot_bytes as u64, Ordering::Relaxed);
        if let Err(other) =
            magic_word.compare_exchange(0, magic, Ordering::AcqRel, Ordering::Acquire)
        {
            if other != magic {
                return Err(bad_file(path, &format!("not a Portico {what} file")));
            }
        }
    }
    drop(_lock);
    Ok((map, file, capacity))
}

impl Buckets {
    /// An in-process table of `capacity` slots (rounded up to a power of two).
    pub fn anonymous(capacity: usize) -> io::Result<Buckets> {
        let capacity = normalise_capacity(capacity);
        let map = MmapMut::map_anon(HEADER_BYTES + capacity * SLOT_BYTES)?;
        Ok(Self::from_map(Backing::Anon(map), capacity))
    }

    /// A table in the file at `path`, shared by every process that maps it. Creates and sizes the
    /// file if needed; an existing valid file keeps its own capacity (see `map_shared_table`).
    pub fn shared(path: &Path, capacity: usize) -> io::Result<Buckets> {
        let (map, file, capacity) =
            map_shared_table(path, MAGIC, SLOT_BYTES, capacity, "token-bucket", |_| 0)?;
        Ok(Self::from_map(Backing::File(map, file), capacity))
    }

    fn from_map(backing: Backing, capacity: usize) -> Buckets {
        let base = match &backing {
            Backing::Anon(m) | Backing::File(m, _) => m.as_ptr(),
        };
        Buckets {
            // SAFETY: the mapping is HEADER_BYTES + capacity * SLOT_BYTES long.
            slots: unsafe { base.add(HEADER_BYTES) } as *const Slot,
            _backing: backing,
            mask: capacity - 1,
            capacity,
            overflow: Mutex::new(HashMap::new()),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    #[inline]
    fn slot(&self, hash: u64) -> Option<&Slot> {
        let mut i = (hash as usize) & self.mask;
        for _ in 0..self.capacity.min(MAX_PROBES) {
            // SAFETY: i <= mask < capacity.
            let s = unsafe { &*self.slots.add(i) };
            let k = s.key.load(Ordering::Acquire);
            if k == hash {
                return Some(s);
            }
            if k == 0 {
                match s
                    .key
                    .compare_exchange(0, hash, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => return Some(s),
                    Err(k) if k == hash => return Some(s),
                    Err(_) => {}
                }
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Spend one token of the bucket `hash` at `now`: 0 when admitted, else ns to wait
    /// (`NEVER` for a bucket that refuses everything).
    #[inline]
    pub fn try_acquire(&self, hash: u64, limit: &Limit, now: u64) -> u64 {
        if limit.refuses_all() {
            return NEVER;
        }
        let hash = if hash == 0 { 1 } else { hash };
        match self.slot(hash) {
            Some(slot) => {
                let mut stored = slot.tat.load(Ordering::Acquire);
                loop {
                    match limit.step(stored, now) {
                        Err(wait) => return wait,
                        Ok(new) => match slot.tat.compare_exchange_weak(
                            stored,
                            new,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        ) {
                            Ok(_) => return 0,
                            Err(cur) => stored = cur,
                        },
                    }
                }
            }
            None => {
                let mut map = self.overflow.lock().unwrap_or_else(|e| e.into_inner());
                let tat = map.entry(hash).or_insert(0);
                match limit.step(*tat, now) {
                    Ok(new) => {
                        *tat = new;
                        0
                    }
                    Err(wait) => wait,
                }
            }
        }
    }

    /// Cluster mode: make bucket `hash` at least as spent as a `tat` (monotonic ns) the shared
    /// bucket was seen at; never refunds. A `tat` beyond a full burst is capped as `step` would.
    pub fn raise_tat(&self, hash: u64, limit: &Limit, tat: u64) {
        if limit.refuses_all() {
            return;
        }
        let hash = if hash == 0 { 1 } else { hash };
        let tat = tat.min(monotonic_ns().saturating_add(limit.span_ns));
        match self.slot(hash) {
            Some(slot) => {
                slot.tat.fetch_max(tat, Ordering::AcqRel);
            }
            None => {
                let mut map = self.overflow.lock().unwrap_or_else(|e| e.into_inner());
                let stored = map.entry(hash).or_insert(0);
                *stored = (*stored).max(tat);
            }
        }
    }

    /// Number of keys that did not fit in the table (process-local).
    pub fn overflow_len(&self) -> usize {
        self.overflow.lock().map(|m| m.len()).unwrap_or(0)
    }
    /// The fourth word of the table's header, unused by the table itself: every process mapping
    /// the table sees the same word (cluster mode counts Redis outages in it, `crate::cluster`).
    pub fn node_word(&self) -> &AtomicU64 {
        // SAFETY: the slots start HEADER_BYTES after the 64-byte header, mapped as long as `self`;
        // word 3 (bytes 24..32) is aligned and only ever accessed atomically.
        unsafe { &*((self.slots as *const u8).sub(HEADER_BYTES - 24) as *const AtomicU64) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn full_at_start_then_refill() {
        let b = Buckets::anonymous(64).unwrap();
        let l = Limit::new(2.0, 3); // T = 0.5 s
        let k = key_hash(b"k");
        let t0 = 10 * S;
        for _ in 0..3 {
            assert_eq!(b.try_acquire(k, &l, t0), 0);
        }
        assert_eq!(b.try_acquire(k, &l, t0), S / 2);
        assert_eq!(b.try_acquire(k, &l, t0 + S / 4), S / 4);
        assert_eq!(b.try_acquire(k, &l, t0 + S / 2), 0);
        assert_ne!(b.try_acquire(k, &l, t0 + S / 2), 0);
        // Fully refilled after burst * T; never more than burst.
        let t1 = t0 + 100 * S;
        for _ in 0..3 {
            assert_eq!(b.try_acquire(k, &l, t1), 0);
        }
        assert_ne!(b.try_acquire(k, &l, t1), 0);
        // Other keys are independent.
        assert_eq!(b.try_acquire(key_hash(b"other"), &l, t1), 0);
    }

    #[test]
    fn refuse_all() {
        let b = Buckets::anonymous(16).unwrap();
        for l in [
            Limit::new(0.0, 5),
            Limit::new(5.0, 0),
            Limit::new(-1.0, 5),
            Limit::new(f64::NAN, 5),
        ] {
            assert_eq!(b.try_acquire(1, &l, S), NEVER);
        }
    }

    #[test]
    fn tiny_and_huge_rates_do_not_overflow() {
        let b = Buckets::anonymous(16).unwrap();
        let l = Limit::new(1e-12, i64::MAX);
        assert_eq!(b.try_acquire(7, &l, u64::MAX - 5), 0);
        let l = Limit::new(1e12, 1);
        assert_eq!(l.interval_ns, 1);
        assert_eq!(b.try_acquire(8, &l, 5), 0);
        assert_eq!(b.try_acquire(8, &l, 5), 1);
        assert_eq!(b.try_acquire(8, &l, 6), 0);
    }

    #[test]
    fn enforced_rate_and_burst_read_back() {
        let l = Limit::new(500.0, 100);
        assert_eq!((l.rate(), l.burst()), (500.0, 100));
        let l = Limit::new(5.5, 10);
        assert!((l.rate() - 5.5).abs() < 1e-6 && l.rate() <= 5.5);
        assert_eq!(l.burst(), 10);
        assert_eq!((Limit::new(0.0, 5).rate(), Limit::new(0.0, 5).burst()), (0.0, 0));
    }

    #[test]
    fn interval_rounds_up_exactly() {
        for rate in [3.0, 7.0, 0.3, 1.5, 1e-3, 999.999, 123456.789] {
            let l = Limit::new(rate, 1);
            assert!(l.interval_ns as f64 * rate >= 1e9 * (1.0 - 1e-15), "{rate}");
            assert!(((l.interval_ns - 1) as f64) * rate < 1e9, "{rate}");
        }
    }

    #[test]
    fn full_table_falls_back_to_local_map() {
        let b = Buckets::anonymous(4).unwrap();
        let l = Limit::new(1.0, 1);
        for k in 1..=20u64 {
            assert_eq!(b.try_acquire(key_hash(&k.to_le_bytes()), &l, S), 0);
            assert_ne!(b.try_acquire(key_hash(&k.to_le_bytes()), &l, S), 0);
        }
        assert_eq!(b.overflow_len(), 16);
    }

    #[test]
    fn a_raised_tat_spends_and_never_refunds() {
        let b = Buckets::anonymous(16).unwrap();
        let l = Limit::new(1.0, 3);
        let now = monotonic_ns();
        // Seen elsewhere: two tokens spent.
        b.raise_tat(9, &l, now + 2 * S);
        assert_eq!(b.try_acquire(9, &l, now), 0);
        assert_ne!(b.try_acquire(9, &l, now), 0);
        // An older state does not refund.
        b.raise_tat(9, &l, now);
        assert_ne!(b.try_acquire(9, &l, now), 0);
        // Never beyond a full burst ahead.
        b.raise_tat(10, &l, u64::MAX);
        assert!(b.try_acquire(10, &l, now + 4 * S) == 0);
        b.raise_tat(11, &Limit::new(0.0, 1), now);
    }

    #[test]
    fn key_hash_is_stable() {
        assert_eq!(key_hash(b"account"), key_hash(b"account"));
        assert_ne!(key_hash(b"a"), key_hash(b"b"));
        assert_ne!(key_hash(b""), 0);
    }

    #[test]
    fn shared_file_is_shared_and_keeps_capacity() {
        let dir = std::env::temp_dir().join(format!("portico-bk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("buckets");
        let _ = std::fs::remove_file(&path);
        let a = Buckets::shared(&path, 100).unwrap();
        assert_eq!(a.capacity(), 128);
        let b = Buckets::shared(&path, 4096).unwrap();
        assert_eq!(b.capacity(), 128, "existing file keeps its capacity");
        let l = Limit::new(1.0, 4);
        let k = key_hash(b"shared");
        let admitted = (0..10)
            .map(|i| if i % 2 == 0 { &a } else { &b })
            .filter(|t| t.try_acquire(k, &l, 5 * S) == 0)
            .count();
        assert_eq!(admitted, 4);
        std::fs::write(
            dir.join("junk"),
            b"definitely not a bucket file, no sir, not at all!!!!!!!!!!!!!!!!",
        )
        .unwrap();
        assert!(Buckets::shared(&dir.join("junk"), 16).is_err());
        // Concurrent creation from many threads (separate file descriptions, like processes).
        let path2 = dir.join("race");
        let _ = std::fs::remove_file(&path2);
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let p = path2.clone();
                std::thread::spawn(move || {
                    let t = Buckets::shared(&p, 256).unwrap();
                    (0..4).filter(|_| t.try_acquire(k, &l, 5 * S) == 0).count()
                })
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 4);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn concurrent_threads_share_limit() {
        let b = std::sync::Arc::new(Buckets::anonymous(1024).unwrap());
        let l = Limit::new(1.0, 1000);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    (0..1000).filter(|_| b.try_acquire(42, &l, S) == 0).count()
                })
            })
            .collect();
        assert_eq!(
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .sum::<usize>(),
            1000
        );
    }

    proptest! {
        #[test]
        fn never_more_than_burst_plus_rate_t(
            rate in prop_oneof![0.001f64..1.0, 1.0f64..10_000.0],
            burst in 1i64..50,
            start in 0u64..1_000_000 * S,
            gaps in proptest::collection::vec(prop_oneof![Just(0u64), 0u64..1_000_000, 0u64..2 * S], 1..300),
        ) {
            let b = Buckets::anonymous(16).unwrap();
            let l = Limit::new(rate, burst);
            let mut now = start;
            let mut admitted_at = Vec::new();
            for g in gaps {
                now += g;
                let wait = b.try_acquire(99, &l, now);
                if wait == 0 {
                    admitted_at.push(now);
                } else {
                    // The wait is honest: the request right after it succeeds on a fresh copy.
                    prop_assert!(wait <= l.interval_ns);
                }
            }
            // Any window [a, z] between admitted requests.
            for i in 0..admitted_at.len() {
                for j in i..admitted_at.len() {
                    let n = (j - i + 1) as f64;
                    let t = (admitted_at[j] - admitted_at[i]) as f64 / 1e9;
                    prop_assert!(n <= burst as f64 + rate * t + 1e-9,
                        "n={} burst={} rate={} t={}", n, burst, rate, t);
                }
            }
        }

        #[test]
        fn recovers_at_rate(rate in 0.01f64..100_000.0, burst in 1i64..20) {
            let b = Buckets::anonymous(16).unwrap();
            let l = Limit::new(rate, burst);
            let t0 = S;
            for _ in 0..burst { prop_assert_eq!(b.try_acquire(5, &l, t0), 0); }
            let wait = b.try_acquire(5, &l, t0);
            prop_assert!(wait > 0);
            prop_assert_eq!(wait, l.interval_ns);
            prop_assert!(b.try_acquire(5, &l, t0 + wait - 1) > 0);
            prop_assert_eq!(b.try_acquire(5, &l, t0 + wait), 0);
            // T is 1e9 / rate rounded up by less than a nanosecond.
            prop_assert!((l.interval_ns as f64 - 1e9 / rate) < 1.0 + 1e-6);
        }
    }
}
