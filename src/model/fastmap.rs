//! Hash maps for the ingest path's per-record bookkeeping (dedup windows, context inheritance,
//! seen agents and sessions, rollups). The standard SipHash costs more than the lookups it
//! serves there; foldhash is several times faster on short string keys and still seeds every
//! map from a per-process random state, so keys chosen by a client cannot be aimed at it.

pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// 128-bit fingerprints (XXH3-128 with a per-process random seed) of the ids the bookkeeping keys
/// its maps by (`dedup`, `pipeline::inherit`): 16 bytes whatever the ids look like (OTLP hex, a
/// hook's or a test's own text), and no copy of them. Two distinct inputs share a fingerprint with
/// a probability of about 2^-128.
#[derive(Debug)]
pub struct Fingerprint {
    seed: u64,
}

impl Default for Fingerprint {
    fn default() -> Self {
        use std::hash::BuildHasher;
        Self { seed: std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64) }
    }
}

impl Fingerprint {
    pub fn of(&self, bytes: &[u8]) -> u128 {
        twox_hash::XxHash3_128::oneshot_with_seed(self.seed, bytes)
    }

    /// The fingerprint of `a`, 0xFF, `b` (a byte that UTF-8 never holds, so the split is
    /// unambiguous when `a` is text).
    pub fn pair(&self, a: &[u8], b: &[u8]) -> u128 {
        let n = a.len() + 1 + b.len();
        let mut stack = [0u8; 128];
        let mut heap = Vec::new();
        let buf: &mut [u8] = if n <= stack.len() {
            &mut stack[..n]
        } else {
            heap.resize(n, 0);
            &mut heap
        };
        buf[..a.len()].copy_from_slice(a);
        buf[a.len()] = 0xff;
        buf[a.len() + 1..].copy_from_slice(b);
        self.of(buf)
    }
}
