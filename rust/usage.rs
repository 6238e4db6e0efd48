//! Usage plans' quotas and usage counts, and the counters of refused requests: a table of
//! labelled slots that every worker process of the gateway maps (`MAP_SHARED`, like the token
//! buckets of `crate::throttle`), so that two workers can never together pass a quota.
//!
//! Pure Rust, no PyO3.
//!
//! Quotas follow "QuotaSettings" of the API Gateway API reference: `limit` requests per `period`
//! (DAY, WEEK or MONTH), counted per API key across every stage of its usage plan, and `offset`
//! requests taken off the limit in the initial period (the one in which the quota was set). Periods
//! are UTC: a day starts at 00:00, a week on Sunday 00:00 (the week AWS's older reference starts
//! at offset 0), a month on its first day 00:00.
//!
//! Memory layout: a 64-byte header `{magic, capacity, slot_bytes, claimed}`
//! (`throttle::map_shared_table`), the claim index (`capacity` u32s: slot numbers + 1, in the
//! order they were claimed), then `capacity` slots of 256 bytes: `{key_hash, label_len, words[4],
//! label[208]}`. A slot is claimed with a CAS on `key_hash` (linear probing, bounded), entered in
//! the index, its label (what it counts, as text: `usage\tPLAN\tKEY`, `stage\tAPI\tSTAGE`,
//! `key\tKEY`) written by the claimer and published by `label_len`; readers (the usage writer,
//! `/metrics`) walk the index, not the whole table, and see only labelled slots. Slots are never
//! freed; when none can be claimed the counter lives in a process-local map instead (never panics).
//!
//! A usage slot's words: `[period, day (even), day (odd), 0]`, each a 24-bit tag and a 40-bit count.
//! The period word (tag: the period's kind and index) counts the requests of the current quota
//! period; the day words (tag: the day + 1) count each UTC day's requests, two days kept so that
//! the writer reads yesterday's final count after midnight. A word whose tag is not the current
//! one is reset from the durable counts the spec carries (`UsageBase`), so a restarted gateway goes
//! on from what was made durable. A counter slot's words: `[throttled, quota exceeded, 0, 0]`.

use std::cell::UnsafeCell;
use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use memmap2::MmapMut;
use serde::Deserialize;

use crate::throttle::{key_hash, map_shared_table, normalise_capacity, HEADER_BYTES};
use crate::time::{civil_from_days, days_from_civil};

pub const MAGIC: u64 = 0x3130_5355_4f43_4950; // "PICOUS01"
pub const SLOT_BYTES: usize = 256;
pub const LABEL_BYTES: usize = SLOT_BYTES - 48;
/// Slots of a new table: one per usage-plan key in use, and per stage and key refused once.
pub const DEFAULT_CAPACITY: usize = 65_536;
const MAX_CAPACITY: usize = 1 << 22;
const MAX_PROBES: usize = 256;
pub const DAY_MS: u64 = 86_400_000;
const COUNT_BITS: u32 = 40;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const TAG_MASK: u64 = (1 << 24) - 1;

/// Bytes of the claim index of a table of `capacity` slots (u32s, rounded to 64 bytes).
fn index_bytes(capacity: usize) -> usize {
    (capacity * 4).div_ceil(64) * 64
}

/// A quota's period (`QuotaSettings.period`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum QuotaPeriod {
    Day,
    Week,
    Month,
}

impl QuotaPeriod {
    pub fn name(self) -> &'static str {
        match self {
            QuotaPeriod::Day => "DAY",
            QuotaPeriod::Week => "WEEK",
            QuotaPeriod::Month => "MONTH",
        }
    }

    pub fn parse(name: &str) -> Option<QuotaPeriod> {
        match name {
            "DAY" => Some(QuotaPeriod::Day),
            "WEEK" => Some(QuotaPeriod::Week),
            "MONTH" => Some(QuotaPeriod::Month),
            _ => None,
        }
    }

    /// The index of the period holding UTC day `day` (days since 1970-01-01): the day itself, the
    /// week (Sunday-based), or `year * 12 + month - 1`.
    pub fn index_of_day(self, day: i64) -> i64 {
        match self {
            QuotaPeriod::Day => day,
            // 1970-01-04 was the first Sunday.
            QuotaPeriod::Week => (day + 4).div_euclid(7),
            QuotaPeriod::Month => {
                let (year, month, _) = civil_from_days(day);
                year * 12 + i64::from(month) - 1
            }
        }
    }

    /// The first day of period `index`.
    pub fn start_day(self, index: i64) -> i64 {
        match self {
            QuotaPeriod::Day => index,
            QuotaPeriod::Week => index * 7 - 4,
            QuotaPeriod::Month => {
                days_from_civil(index.div_euclid(12), index.rem_euclid(12) as u32 + 1, 1)
            }
        }
    }

    /// The first day after period `index`.
    pub fn end_day(self, index: i64) -> i64 {
        self.start_day(index + 1)
    }

    fn code(self) -> u64 {
        match self {
            QuotaPeriod::Day => 1,
            QuotaPeriod::Week => 2,
            QuotaPeriod::Month => 3,
        }
    }

    /// The 24-bit tag of period `index`: its kind and index (never 0).
    fn tag(self, index: i64) -> u64 {
        (self.code() << 22) | (index as u64 & ((1 << 22) - 1))
    }
}

/// The UTC day (days since 1970-01-01) of `epoch_ms`.
#[inline]
pub fn day_of(epoch_ms: u64) -> i64 {
    (epoch_ms / DAY_MS) as i64
}

fn day_tag(day: i64) -> u64 {
    (day as u64).wrapping_add(1) & TAG_MASK
}

#[inline]
fn pack(tag: u64, count: u64) -> u64 {
    (tag << COUNT_BITS) | count.min(COUNT_MASK)
}

#[inline]
fn unpack(word: u64) -> (u64, u64) {
    (word >> COUNT_BITS, word & COUNT_MASK)
}

/// A usage plan's quota, compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub period: QuotaPeriod,
    pub limit: u64,
    pub offset: u64,
    /// The initial period (the one the quota was set in), whose limit is `limit - offset`.
    pub initial: Option<i64>,
}

impl Quota {
    /// Requests allowed in period `index`, with `credit` added (UpdateUsage).
    pub fn limit_in(&self, index: i64, credit: i64) -> u64 {
        let base = if self.initial == Some(index) {
            self.limit.saturating_sub(self.offset)
        } else {
            self.limit
        };
        let base = base.min(i64::MAX as u64) as i64;
        base.saturating_add(credit).max(0) as u64
    }
}

/// What is durable of one usage-plan key's usage, from the spec: requests per UTC day (recent
/// days), and the credits UpdateUsage granted per quota period (`remaining` set to a value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageBase {
    /// (day, requests), days since 1970-01-01.
    pub days: Vec<(i64, u64)>,
    /// (period, period index, requests added to the period's limit; negative takes away).
    pub credits: Vec<(QuotaPeriod, i64, i64)>,
}

impl UsageBase {
    pub fn day(&self, day: i64) -> u64 {
        self.days
            .iter()
            .find(|(d, _)| *d == day)
            .map_or(0, |(_, n)| *n)
    }

    pub fn credit(&self, period: QuotaPeriod, index: i64) -> i64 {
        self.credits
            .iter()
            .filter(|(p, i, _)| *p == period && *i == index)
            .map(|(_, _, c)| *c)
            .sum()
    }
}

/// A quota's standing after a request: its limit in the current period, what remains of it and
/// when the period ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaState {
    pub limit: u64,
    pub remaining: u64,
    /// Milliseconds until the period ends (and the quota starts afresh).
    pub reset_ms: u64,
}

/// The verdict on one request of a usage-plan key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Counted; the quota's state (None: the plan has no quota).
    Admitted(Option<QuotaState>),
    /// Past the quota: not counted.
    Exceeded(QuotaState),
}

/// What a counter slot's word counts: refusals (stages and keys), and the stage cache's hits and
/// misses (stages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    Throttled = 0,
    QuotaExceeded = 1,
    CacheHit = 2,
    CacheMiss = 3,
}

#[repr(C)]
pub struct Slot {
    key: AtomicU64,
    label_len: AtomicU64,
    words: [AtomicU64; 4],
    label: UnsafeCell<[u8; LABEL_BYTES]>,
}

impl Slot {
    fn new_local(label: &[u8]) -> Box<Slot> {
        let slot = Box::new(Slot {
            key: AtomicU64::new(0),
            label_len: AtomicU64::new(0),
            words: Default::default(),
            label: UnsafeCell::new([0; LABEL_BYTES]),
        });
        slot.write_label(label);
        slot
    }

    /// Written once, by the slot's claimer, before `label_len` publishes it.
    fn write_label(&self, label: &[u8]) {
        let n = label.len().min(LABEL_BYTES);
        // SAFETY: only the claimer writes the label, before publishing its length; readers read it
        // only after seeing that length (Acquire).
        unsafe { (&mut *self.label.get())[..n].copy_from_slice(&label[..n]) };
        self.label_len.store(n as u64, Ordering::Release);
    }

    fn label(&self) -> Option<&[u8]> {
        let n = self.label_len.load(Ordering::Acquire) as usize;
        // SAFETY: published by `write_label`, never written again.
        (n > 0).then(|| unsafe { &(&*self.label.get())[..n.min(LABEL_BYTES)] })
    }
}

/// A slot as readers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A usage-plan key's usage: the current quota period's count (period, index, requests), if
    /// the plan has a quota, and the requests of the days kept (day, requests).
    Usage {
        plan: String,
        key: String,
        period: Option<(QuotaPeriod, i64, u64)>,
        days: Vec<(i64, u64)>,
    },
    /// Refusals of one stage's requests, and its cache's hits and misses.
    Stage {
        api: String,
        stage: String,
        throttled: u64,
        quota_exceeded: u64,
        cache_hits: u64,
        cache_misses: u64,
    },
    /// Refusals of one API key's requests.
    Key {
        key: String,
        throttled: u64,
        quota_exceeded: u64,
    },
}

/// The label of a usage-plan key's usage slot.
pub fn usage_label(plan: &str, key: &str) -> Box<[u8]> {
    format!("usage\t{plan}\t{key}")
        .into_bytes()
        .into_boxed_slice()
}

/// The label of a stage's counters.
pub fn stage_label(api: &str, stage: &str) -> Box<[u8]> {
    format!("stage\t{api}\t{stage}")
        .into_bytes()
        .into_boxed_slice()
}

/// The label of an API key's counters.
pub fn key_label(key: &str) -> Box<[u8]> {
    format!("key\t{key}").into_bytes().into_boxed_slice()
}

/// A label and its slot's hash, computed once when the spec is compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labelled {
    pub hash: u64,
    pub label: Box<[u8]>,
}

impl Labelled {
    pub fn new(label: Box<[u8]>) -> Labelled {
        Labelled {
            hash: key_hash(&label),
            label,
        }
    }
}

fn decode(label: &[u8], words: [u64; 4]) -> Option<Entry> {
    let text = std::str::from_utf8(label).ok()?;
    let mut parts = text.split('\t');
    let kind = parts.next()?;
    let a = parts.next()?.to_owned();
    let b = parts.next().map(str::to_owned);
    Some(match (kind, b) {
        ("usage", Some(key)) => {
            let (tag, used) = unpack(words[0]);
            let period = [QuotaPeriod::Day, QuotaPeriod::Week, QuotaPeriod::Month]
                .into_iter()
                .find(|p| tag >> 22 == p.code())
                .map(|p| {
                    // The index from its low 22 bits: periods of the next 4 million days/weeks/months.
                    (p, (tag & ((1 << 22) - 1)) as i64, used)
                });
            let days = words[1..3]
                .iter()
                .map(|w| unpack(*w))
                .filter(|(tag, _)| *tag != 0)
                .map(|(tag, n)| (tag as i64 - 1, n))
                .collect();
            Entry::Usage {
                plan: a,
                key,
                period,
                days,
            }
        }
        ("stage", Some(stage)) => Entry::Stage {
            api: a,
            stage,
            throttled: words[0],
            quota_exceeded: words[1],
            cache_hits: words[2],
            cache_misses: words[3],
        },
        ("key", None) => Entry::Key {
            key: a,
            throttled: words[0],
            quota_exceeded: words[1],
        },
        _ => return None,
    })
}

enum Backing {
    Anon(#[allow(dead_code)] MmapMut),
    File(
        #[allow(dead_code)] MmapMut,
        #[allow(dead_code)] std::fs::File,
    ),
}

/// The table of usage and refusal counters.
pub struct Tally {
    _backing: Backing,
    /// How many slots were claimed (entries of `index` in use).
    claimed: *const AtomicU64,
    /// Claimed slots' numbers + 1, in claim order (0: being entered).
    index: *const AtomicU32,
    slots: *const Slot,
    mask: usize,
    capacity: usize,
    /// Counters that found no slot, by hash: process-local (boxed: their addresses never move,
    /// and entries are never removed while the table lives).
    overflow: Mutex<HashMap<u64, Box<Slot>>>,
}

// SAFETY: the mapped memory is owned by `_backing` for the table's lifetime; slots are only ever
// changed through atomics, labels only by their claimer before they are published.
unsafe impl Send for Tally {}
unsafe impl Sync for Tally {}

impl Tally {
    /// An in-process table of `capacity` slots (rounded up to a power of two).
    pub fn anonymous(capacity: usize) -> io::Result<Tally> {
        let capacity = normalise_capacity(capacity.min(MAX_CAPACITY));
        let map = MmapMut::map_anon(HEADER_BYTES + index_bytes(capacity) + capacity * SLOT_BYTES)?;
        Ok(Self::from_map(Backing::Anon(map), capacity))
    }

    /// The table in the file at `path`, shared by every process that maps it (created if needed;
    /// an existing one keeps its capacity).
    pub fn shared(path: &Path, capacity: usize) -> io::Result<Tally> {
        let (map, file, capacity) = map_shared_table(
            path,
            MAGIC,
            SLOT_BYTES,
            capacity.min(MAX_CAPACITY),
            "usage-counter",
            index_bytes,
        )?;
        Ok(Self::from_map(Backing::File(map, file), capacity))
    }

    fn from_map(backing: Backing, capacity: usize) -> Tally {
        let base = match &backing {
            Backing::Anon(m) | Backing::File(m, _) => m.as_ptr(),
        };
        Tally {
            // SAFETY: the mapping is HEADER_BYTES + index_bytes(capacity) + capacity * SLOT_BYTES
            // long; the header's fourth word is the claim count; every part is 64-byte aligned.
            claimed: unsafe { base.add(24) } as *const AtomicU64,
            index: unsafe { base.add(HEADER_BYTES) } as *const AtomicU32,
            slots: unsafe { base.add(HEADER_BYTES + index_bytes(capacity)) } as *const Slot,
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
    fn slot_at(&self, i: usize) -> &Slot {
        // SAFETY: callers pass i <= mask < capacity.
        unsafe { &*self.slots.add(i) }
    }

    /// The slot of `hash`, claimed (and labelled) if new; a process-local one when the table
    /// has no room.
    fn claim(&self, hash: u64, label: &[u8]) -> &Slot {
        let hash = if hash == 0 { 1 } else { hash };
        let mut i = (hash as usize) & self.mask;
        for _ in 0..self.capacity.min(MAX_PROBES) {
            let s = self.slot_at(i);
            let k = s.key.load(Ordering::Acquire);
            if k == hash {
                return s;
            }
            if k == 0 {
                match s
                    .key
                    .compare_exchange(0, hash, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        s.write_label(label);
                        // SAFETY: `claimed` is the header's fourth word; the index has `capacity`
                        // entries, and no more slots than that can be claimed.
                        let n = unsafe { &*self.claimed }.fetch_add(1, Ordering::AcqRel) as usize;
                        if n < self.capacity {
                            unsafe { &*self.index.add(n) }.store(i as u32 + 1, Ordering::Release);
                        }
                        return s;
                    }
                    Err(k) if k == hash => return s,
                    Err(_) => {}
                }
            }
            i = (i + 1) & self.mask;
        }
        let mut map = self.overflow.lock().unwrap_or_else(|e| e.into_inner());
        let slot: *const Slot = &**map.entry(hash).or_insert_with(|| Slot::new_local(label));
        // SAFETY: boxed slots are never removed or moved while the table lives.
        unsafe { &*slot }
    }

    /// Count one request of a usage-plan key (`usage`: its slot's hash and label) at `now_ms`:
    /// refused, uncounted, once the quota's period holds `limit` requests; `base` is what is
    /// durable of the key's usage.
    pub fn count(
        &self,
        usage: &Labelled,
        quota: Option<&Quota>,
        base: &UsageBase,
        now_ms: u64,
    ) -> Counted {
        let slot = self.claim(usage.hash, &usage.label);
        let day = day_of(now_ms);
        let state = match quota {
            None => None,
            Some(q) => {
                let index = q.period.index_of_day(day);
                let tag = q.period.tag(index);
                let limit = q.limit_in(index, base.credit(q.period, index));
                let reset_ms = (q.period.end_day(index) as u64 * DAY_MS).saturating_sub(now_ms);
                let word = &slot.words[0];
                let mut current = word.load(Ordering::Acquire);
                let used = loop {
                    let (t, n) = unpack(current);
                    let used = if t == tag {
                        n
                    } else {
                        self.seed(slot, q.period, index, base)
                    };
                    if used >= limit {
                        return Counted::Exceeded(QuotaState {
                            limit,
                            remaining: 0,
                            reset_ms,
                        });
                    }
                    match word.compare_exchange_weak(
                        current,
                        pack(tag, used + 1),
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => break used + 1,
                        Err(now) => current = now,
                    }
                };
                Some(QuotaState {
                    limit,
                    remaining: limit - used,
                    reset_ms,
                })
            }
        };
        let tag = day_tag(day);
        let word = &slot.words[1 + (day.rem_euclid(2) as usize)];
        let mut current = word.load(Ordering::Acquire);
        loop {
            let (t, n) = unpack(current);
            let next = if t == tag {
                pack(tag, n + 1)
            } else {
                pack(tag, base.day(day) + 1)
            };
            match word.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        Counted::Admitted(state)
    }

    /// The requests of period `index` so far: the durable days of the period, each replaced by the
    /// shared day count when one is kept (it started from the durable one and went on).
    fn seed(&self, slot: &Slot, period: QuotaPeriod, index: i64, base: &UsageBase) -> u64 {
        let (start, end) = (period.start_day(index), period.end_day(index));
        let mut total: u64 = base
            .days
            .iter()
            .filter(|(d, _)| (start..end).contains(d))
            .map(|(_, n)| n)
            .sum();
        for w in &slot.words[1..3] {
            let (tag, n) = unpack(w.load(Ordering::Acquire));
            if tag == 0 {
                continue;
            }
            let day = tag as i64 - 1;
            if (start..end).contains(&day) {
                total = total - base.day(day).min(total) + n;
            }
        }
        total
    }

    /// Cluster mode: what a shared period count (missing from Redis) starts from, as `count`
    /// would start the node's own: the durable days of the period, each replaced by the node's
    /// day count when it keeps one.
    pub fn period_seed(
        &self,
        usage: &Labelled,
        period: QuotaPeriod,
        index: i64,
        base: &UsageBase,
    ) -> u64 {
        let slot = self.claim(usage.hash, &usage.label);
        let (tag, n) = unpack(slot.words[0].load(Ordering::Acquire));
        if tag == period.tag(index) {
            return n;
        }
        self.seed(slot, period, index, base)
    }

    /// Cluster mode: what a shared day count starts from: the node's, else the durable one.
    pub fn day_seed(&self, usage: &Labelled, day: i64, base: &UsageBase) -> u64 {
        let slot = self.claim(usage.hash, &usage.label);
        let (tag, n) = unpack(slot.words[1 + day.rem_euclid(2) as usize].load(Ordering::Acquire));
        if tag == day_tag(day) {
            n
        } else {
            base.day(day)
        }
    }

    /// Cluster mode: raise the node's counts to the shared ones Redis answered with (never lower
    /// them), so that the usage writer makes them durable and a fallback goes on from them.
    /// `period`: the quota period, its index and its count.
    pub fn mirror(
        &self,
        usage: &Labelled,
        period: Option<(QuotaPeriod, i64, u64)>,
        day: i64,
        day_count: u64,
    ) {
        let slot = self.claim(usage.hash, &usage.label);
        let raise = |word: &AtomicU64, tag: u64, count: u64| {
            let mut current = word.load(Ordering::Acquire);
            loop {
                let (t, n) = unpack(current);
                if t == tag && n >= count {
                    return;
                }
                match word.compare_exchange_weak(
                    current,
                    pack(tag, count),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return,
                    Err(now) => current = now,
                }
            }
        };
        if let Some((p, index, count)) = period {
            raise(&slot.words[0], p.tag(index), count);
        }
        raise(
            &slot.words[1 + day.rem_euclid(2) as usize],
            day_tag(day),
            day_count,
        );
    }

    /// The node's counts of a usage-plan key: its quota period's (0 when the table counts another
    /// period) and its day's.
    pub fn counts(
        &self,
        usage: &Labelled,
        period: Option<(QuotaPeriod, i64)>,
        day: i64,
    ) -> (u64, u64) {
        let slot = self.claim(usage.hash, &usage.label);
        let read = |word: &AtomicU64, tag: u64| {
            let (t, n) = unpack(word.load(Ordering::Acquire));
            if t == tag {
                n
            } else {
                0
            }
        };
        let in_period = period.map_or(0, |(p, index)| read(&slot.words[0], p.tag(index)));
        (
            in_period,
            read(&slot.words[1 + day.rem_euclid(2) as usize], day_tag(day)),
        )
    }

    /// Count one refusal of the stage or key labelled `counter`.
    pub fn bump(&self, counter: &Labelled, what: Counter) {
        self.claim(counter.hash, &counter.label).words[what as usize]
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Every labelled slot, decoded (the process-local ones of this process included).
    pub fn entries(&self) -> Vec<Entry> {
        let read = |s: &Slot| -> Option<Entry> {
            let label = s.label()?;
            let words = [0, 1, 2, 3].map(|i| s.words[i].load(Ordering::Acquire));
            decode(label, words)
        };
        // SAFETY: the header's fourth word, and `capacity` index entries.
        let claimed = (unsafe { &*self.claimed }.load(Ordering::Acquire) as usize).min(self.capacity);
        let mut out: Vec<Entry> = (0..claimed)
            .map(|n| unsafe { &*self.index.add(n) }.load(Ordering::Acquire) as usize)
            .filter(|&i| i != 0 && i <= self.capacity)
            .map(|i| self.slot_at(i - 1))
            .filter_map(read)
            .collect();
        let map = self.overflow.lock().unwrap_or_else(|e| e.into_inner());
        out.extend(map.values().filter_map(|s| read(s)));
        out
    }

    /// Counters that did not fit in the table (process-local).
    pub fn overflow_len(&self) -> usize {
        self.overflow.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn day(y: i64, m: u32, d: u32) -> i64 {
        days_from_civil(y, m, d)
    }

    fn ms(y: i64, m: u32, d: u32, hour: u64) -> u64 {
        day(y, m, d) as u64 * DAY_MS + hour * 3_600_000
    }

    fn usage(plan: &str, key: &str) -> Labelled {
        Labelled::new(usage_label(plan, key))
    }

    fn quota(period: QuotaPeriod, limit: u64) -> Quota {
        Quota {
            period,
            limit,
            offset: 0,
            initial: None,
        }
    }

    #[test]
    fn periods_start_where_aws_starts_them() {
        // 2024-03-13 is a Wednesday; its week starts on Sunday the 10th.
        let wed = day(2024, 3, 13);
        let w = QuotaPeriod::Week.index_of_day(wed);
        assert_eq!(QuotaPeriod::Week.start_day(w), day(2024, 3, 10));
        assert_eq!(QuotaPeriod::Week.end_day(w), day(2024, 3, 17));
        assert_eq!(QuotaPeriod::Week.index_of_day(day(2024, 3, 16)), w);
        assert_eq!(QuotaPeriod::Week.index_of_day(day(2024, 3, 17)), w + 1);
        let m = QuotaPeriod::Month.index_of_day(day(2024, 2, 29));
        assert_eq!(QuotaPeriod::Month.start_day(m), day(2024, 2, 1));
        assert_eq!(QuotaPeriod::Month.end_day(m), day(2024, 3, 1));
        let dec = QuotaPeriod::Month.index_of_day(day(2023, 12, 31));
        assert_eq!(QuotaPeriod::Month.end_day(dec), day(2024, 1, 1));
        assert_eq!(QuotaPeriod::Day.index_of_day(wed), wed);
        assert_eq!(QuotaPeriod::parse("WEEK"), Some(QuotaPeriod::Week));
    }

    #[test]
    fn a_quota_refuses_past_its_limit_and_starts_afresh_each_period() {
        let t = Tally::anonymous(64).unwrap();
        let q = quota(QuotaPeriod::Day, 3);
        let k = usage("p", "k");
        let base = UsageBase::default();
        let now = ms(2024, 3, 13, 23);
        for left in [2, 1, 0] {
            match t.count(&k, Some(&q), &base, now) {
                Counted::Admitted(Some(s)) => {
                    assert_eq!((s.limit, s.remaining, s.reset_ms), (3, left, 3_600_000))
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(
            matches!(t.count(&k, Some(&q), &base, now), Counted::Exceeded(s) if s.remaining == 0)
        );
        // Midnight UTC: a new day.
        assert!(matches!(
            t.count(&k, Some(&q), &base, ms(2024, 3, 14, 0)),
            Counted::Admitted(_)
        ));
        let entries = t.entries();
        assert_eq!(
            entries,
            vec![Entry::Usage {
                plan: "p".into(),
                key: "k".into(),
                period: Some((QuotaPeriod::Day, day(2024, 3, 14), 1)),
                days: if day(2024, 3, 13) % 2 == 0 {
                    vec![(day(2024, 3, 13), 3), (day(2024, 3, 14), 1)]
                } else {
                    vec![(day(2024, 3, 14), 1), (day(2024, 3, 13), 3)]
                },
            }]
        );
    }

    #[test]
    fn offset_applies_to_the_initial_period_only_and_credits_to_theirs() {
        let t = Tally::anonymous(64).unwrap();
        let now = ms(2024, 3, 13, 12);
        let week = QuotaPeriod::Week.index_of_day(day_of(now));
        let q = Quota {
            period: QuotaPeriod::Week,
            limit: 5,
            offset: 3,
            initial: Some(week),
        };
        let k = usage("p", "k");
        let mut base = UsageBase::default();
        let admitted = |t: &Tally, base: &UsageBase, at: u64| {
            (0..20)
                .filter(|_| matches!(t.count(&k, Some(&q), base, at), Counted::Admitted(_)))
                .count()
        };
        assert_eq!(admitted(&t, &base, now), 2);
        // UpdateUsage granted 4 more this week.
        base.credits.push((QuotaPeriod::Week, week, 4));
        assert_eq!(admitted(&t, &base, now), 4);
        // Next Sunday: the whole limit, the credit gone with its week.
        assert_eq!(admitted(&t, &base, ms(2024, 3, 17, 0)), 5);
        assert_eq!(q.limit_in(week, -10), 0);
    }

    #[test]
    fn counting_goes_on_from_the_durable_counts() {
        let t = Tally::anonymous(64).unwrap();
        let now = ms(2024, 3, 13, 12);
        let today = day_of(now);
        let q = quota(QuotaPeriod::Month, 10);
        let base = UsageBase {
            // Earlier this month, today so far, and last month (not this period's).
            days: vec![(today - 5, 4), (today, 3), (day(2024, 2, 28), 50)],
            credits: vec![],
        };
        let k = usage("p", "k");
        let n = (0..20)
            .filter(|_| matches!(t.count(&k, Some(&q), &base, now), Counted::Admitted(_)))
            .count();
        assert_eq!(n, 3);
        let Entry::Usage { days, .. } = &t.entries()[0] else {
            panic!()
        };
        assert!(days.contains(&(today, 6)));
        // A quota added mid-period counts what the day words already hold.
        let t = Tally::anonymous(64).unwrap();
        for _ in 0..2 {
            t.count(&k, None, &base, now);
        }
        let n = (0..20)
            .filter(|_| matches!(t.count(&k, Some(&q), &base, now), Counted::Admitted(_)))
            .count();
        assert_eq!(n, 10 - 4 - 3 - 2);
    }

    #[test]
    fn shared_counts_are_mirrored_raised_never_lowered_and_seed_the_next_count() {
        let t = Tally::anonymous(16).unwrap();
        let k = usage("p", "k");
        let now = ms(2024, 3, 13, 12);
        let today = day_of(now);
        let week = QuotaPeriod::Week.index_of_day(today);
        let base = UsageBase {
            days: vec![(today - 1, 4), (today, 2)],
            credits: vec![],
        };
        // Nothing mirrored yet: the durable counts of the period (Sunday the 10th to today).
        assert_eq!(t.period_seed(&k, QuotaPeriod::Week, week, &base), 6);
        assert_eq!(t.day_seed(&k, today, &base), 2);
        t.mirror(&k, Some((QuotaPeriod::Week, week, 30)), today, 20);
        assert_eq!(t.counts(&k, Some((QuotaPeriod::Week, week)), today), (30, 20));
        // Never lowered by an older answer.
        t.mirror(&k, Some((QuotaPeriod::Week, week, 25)), today, 19);
        assert_eq!(t.counts(&k, Some((QuotaPeriod::Week, week)), today), (30, 20));
        assert_eq!(t.period_seed(&k, QuotaPeriod::Week, week, &base), 30);
        assert_eq!(t.day_seed(&k, today, &base), 20);
        // Counting on the node's own goes on from the mirrored counts.
        let q = Quota {
            period: QuotaPeriod::Week,
            limit: 31,
            offset: 0,
            initial: None,
        };
        assert!(matches!(t.count(&k, Some(&q), &base, now), Counted::Admitted(_)));
        assert!(matches!(t.count(&k, Some(&q), &base, now), Counted::Exceeded(_)));
        assert_eq!(t.counts(&k, Some((QuotaPeriod::Week, week)), today), (31, 21));
        // Another period's or day's words read as nothing.
        assert_eq!(t.counts(&k, Some((QuotaPeriod::Day, today)), today + 2), (0, 0));
    }

    #[test]
    fn refusals_are_counted_per_label() {
        let t = Tally::anonymous(16).unwrap();
        let stage = Labelled::new(stage_label("api", "prod"));
        let key = Labelled::new(key_label("k1"));
        t.bump(&stage, Counter::Throttled);
        t.bump(&stage, Counter::Throttled);
        t.bump(&stage, Counter::QuotaExceeded);
        t.bump(&key, Counter::QuotaExceeded);
        let mut entries = t.entries();
        entries.sort_by_key(|e| format!("{e:?}"));
        assert_eq!(
            entries,
            vec![
                Entry::Key {
                    key: "k1".into(),
                    throttled: 0,
                    quota_exceeded: 1
                },
                Entry::Stage {
                    api: "api".into(),
                    stage: "prod".into(),
                    throttled: 2,
                    quota_exceeded: 1,
                    cache_hits: 0,
                    cache_misses: 0,
                },
            ]
        );
    }

    #[test]
    fn a_full_table_counts_locally() {
        let t = Tally::anonymous(2).unwrap();
        let q = quota(QuotaPeriod::Day, 1);
        let now = ms(2024, 1, 1, 1);
        for i in 0..10 {
            let k = usage("p", &format!("k{i}"));
            assert!(matches!(
                t.count(&k, Some(&q), &UsageBase::default(), now),
                Counted::Admitted(_)
            ));
            assert!(matches!(
                t.count(&k, Some(&q), &UsageBase::default(), now),
                Counted::Exceeded(_)
            ));
        }
        assert_eq!(t.overflow_len(), 8);
        assert_eq!(t.entries().len(), 10);
    }

    #[test]
    fn processes_sharing_the_file_never_pass_the_quota_together() {
        let dir = std::env::temp_dir().join(format!("portico-usage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("usage");
        let _ = std::fs::remove_file(&path);
        let q = quota(QuotaPeriod::Day, 1000);
        let now = ms(2024, 5, 1, 9);
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let p = path.clone();
                std::thread::spawn(move || {
                    // Each thread maps the file itself, as a worker process does.
                    let t = Tally::shared(&p, 1024).unwrap();
                    let k = usage("plan", "key");
                    (0..400)
                        .filter(|_| {
                            matches!(
                                t.count(&k, Some(&q), &UsageBase::default(), now),
                                Counted::Admitted(_)
                            )
                        })
                        .count()
                })
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 1000);
        let t = Tally::shared(&path, 1).unwrap();
        assert_eq!(t.capacity(), 1024, "an existing file keeps its capacity");
        let Entry::Usage { period, .. } = &t.entries()[0] else {
            panic!()
        };
        assert_eq!(period.unwrap().2, 1000);
        std::fs::write(dir.join("junk"), [7u8; 100]).unwrap();
        assert!(Tally::shared(&dir.join("junk"), 16).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    proptest! {
        #[test]
        fn periods_tile_time(day in -100_000i64..200_000) {
            for p in [QuotaPeriod::Day, QuotaPeriod::Week, QuotaPeriod::Month] {
                let i = p.index_of_day(day);
                let (start, end) = (p.start_day(i), p.end_day(i));
                prop_assert!(start <= day && day < end);
                prop_assert_eq!(p.index_of_day(start), i);
                prop_assert_eq!(p.index_of_day(end), i + 1);
                prop_assert_eq!(p.index_of_day(end - 1), i);
                let len = end - start;
                match p {
                    QuotaPeriod::Day => prop_assert_eq!(len, 1),
                    QuotaPeriod::Week => {
                        prop_assert_eq!(len, 7);
                        // Sundays: 1970-01-04 was one.
                        prop_assert_eq!((start - 3).rem_euclid(7), 0);
                    }
                    QuotaPeriod::Month => {
                        prop_assert!((28..=31).contains(&len));
                        prop_assert_eq!(civil_from_days(start).2, 1);
                    }
                }
            }
        }

        #[test]
        fn admitted_never_pass_the_limit_of_any_period(
            limit in 0u64..20,
            offset in 0u64..25,
            steps in proptest::collection::vec((0u64..3 * DAY_MS, 1usize..8), 1..40),
            period in prop_oneof![Just(QuotaPeriod::Day), Just(QuotaPeriod::Week), Just(QuotaPeriod::Month)],
        ) {
            let t = Tally::anonymous(8).unwrap();
            let start = ms(2024, 1, 29, 0);
            let initial = period.index_of_day(day_of(start));
            let q = Quota { period, limit, offset, initial: Some(initial) };
            let k = usage("p", "k");
            let mut now = start;
            let mut per_period: HashMap<i64, u64> = HashMap::new();
            for (gap, burst) in steps {
                now += gap;
                let index = period.index_of_day(day_of(now));
                for _ in 0..burst {
                    let admitted = matches!(t.count(&k, Some(&q), &UsageBase::default(), now), Counted::Admitted(_));
                    let n = per_period.entry(index).or_default();
                    let allowed = if index == initial { limit.saturating_sub(offset) } else { limit };
                    // Admitted exactly while the period has room.
                    prop_assert_eq!(admitted, *n < allowed);
                    if admitted { *n += 1; }
                }
            }
        }
    }
}
