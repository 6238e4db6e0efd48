//! Per-request identifiers: HTTP APIs' `apigw-requestid` (the same form is REST APIs'
//! `$context.extendedRequestId`, `x-amz-apigw-id`), UUIDs (REST APIs' `$context.requestId`,
//! Lambda's invocation ids) and X-Ray trace ids.
//!
//! Both need uniqueness, not secrecy, so they come from a per-generator random seed and an atomic
//! counter rather than a system call per request. Made in Rust because the Python equivalent
//! (integer packing, base64, hex) was about 6% of a proxied request's event-loop time.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const HEX: &[u8; 16] = b"0123456789abcdef";

pub struct IdGenerator {
    /// 56 random bits naming this generator (a worker process): ids of two workers never collide.
    prefix: u64,
    counter: AtomicU32,
    /// wyrand state: trace ids' random part.
    state: AtomicU64,
}

impl IdGenerator {
    pub fn new() -> Self {
        let seed = random_u64();
        IdGenerator {
            prefix: seed >> 8,
            counter: AtomicU32::new(0),
            state: AtomicU64::new(random_u64()),
        }
    }

    /// 16 base64 characters (11 bytes: the prefix, then the counter scrambled by an odd
    /// multiplier, a bijection modulo 2^32), e.g. `JKJaXmPLvHcESHA=`: unique per generator for
    /// 2^32 requests, and consecutive ids do not look consecutive.
    pub fn request_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let scrambled = n.wrapping_mul(0x9E37_79B1);
        let mut raw = [0u8; 12];
        raw[..7].copy_from_slice(&self.prefix.to_be_bytes()[1..]);
        raw[7..11].copy_from_slice(&scrambled.to_be_bytes());
        let mut out = String::with_capacity(16);
        for group in raw.chunks(3) {
            let v = (u32::from(group[0]) << 16) | (u32::from(group[1]) << 8) | u32::from(group[2]);
            for shift in [18, 12, 6, 0] {
                out.push(BASE64[((v >> shift) & 63) as usize] as char);
            }
        }
        // 11 bytes encode to 15 characters and one '=' of padding.
        out.truncate(15);
        out.push('=');
        out
    }

    /// An X-Ray trace header value: `Root=1-<epoch seconds, 8 hex>-<96 random bits, 24 hex>`.
    pub fn trace_id(&self, epoch_seconds: u64) -> String {
        let mut out = String::with_capacity(35);
        out.push_str("Root=1-");
        push_hex(&mut out, epoch_seconds & 0xFFFF_FFFF, 8);
        out.push('-');
        push_hex(&mut out, self.next_random() >> 32, 8);
        push_hex(&mut out, self.next_random(), 16);
        out
    }

    /// A random (version 4) UUID, as REST APIs' request ids and Lambda's invocation ids
    /// (`context.aws_request_id`) are.
    pub fn uuid(&self) -> String {
        let (hi, lo) = (self.next_random(), self.next_random());
        let hi = (hi & !0xF000) | 0x4000; // version 4
        let lo = (lo & !(0b11 << 62)) | (0b10 << 62); // RFC 4122 variant
        let mut out = String::with_capacity(36);
        push_hex(&mut out, hi >> 32, 8);
        out.push('-');
        push_hex(&mut out, (hi >> 16) & 0xFFFF, 4);
        out.push('-');
        push_hex(&mut out, hi & 0xFFFF, 4);
        out.push('-');
        push_hex(&mut out, lo >> 48, 4);
        out.push('-');
        push_hex(&mut out, lo & 0xFFFF_FFFF_FFFF, 12);
        out
    }

    fn next_random(&self) -> u64 {
        // wyrand: a Weyl sequence (atomic, so generators are thread-safe) through a 128-bit mix.
        let s = self
            .state
            .fetch_add(0xa076_1d64_78bd_642f, Ordering::Relaxed)
            .wrapping_add(0xa076_1d64_78bd_642f);
        let m = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
        ((m >> 64) as u64) ^ (m as u64)
    }
}

impl Default for IdGenerator {
    fn default() -> Self {
        Self::new()
    }
}

fn push_hex(out: &mut String, value: u64, digits: u32) {
    for i in (0..digits).rev() {
        out.push(HEX[((value >> (i * 4)) & 15) as usize] as char);
    }
}

pub(crate) fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: getrandom writes at most buf.len() bytes into the live buffer.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != 8 {
        // No entropy source: the clock and the address of a stack value still differ per process.
        let t = crate::throttle::monotonic_ns();
        return t ^ (&buf as *const _ as u64).rotate_left(32) ^ u64::from(std::process::id());
    }
    u64::from_ne_bytes(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn request_ids_are_16_base64_chars_and_unique() {
        let ids = IdGenerator::new();
        let mut seen = HashSet::new();
        for _ in 0..100_000 {
            let id = ids.request_id();
            assert_eq!(id.len(), 16);
            assert!(id.ends_with('='));
            assert!(id[..15].bytes().all(|b| BASE64.contains(&b)));
            assert!(seen.insert(id));
        }
    }

    #[test]
    fn two_generators_differ() {
        let (a, b) = (IdGenerator::new(), IdGenerator::new());
        assert_ne!(a.request_id(), b.request_id());
        assert_ne!(a.trace_id(1), b.trace_id(1));
    }

    #[test]
    fn trace_ids_have_xray_shape() {
        let ids = IdGenerator::new();
        let t = ids.trace_id(0x5f00_0001);
        assert_eq!(t.len(), 7 + 8 + 1 + 24);
        assert!(t.starts_with("Root=1-5f000001-"));
        assert!(t[16..].bytes().all(|b| HEX.contains(&b)));
        assert_ne!(ids.trace_id(1), ids.trace_id(1));
    }

    #[test]
    fn uuids_are_version_4() {
        let ids = IdGenerator::new();
        let (a, b) = (ids.uuid(), ids.uuid());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
        assert_eq!(a.matches('-').count(), 4);
    }
}

