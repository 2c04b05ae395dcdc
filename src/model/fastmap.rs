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

    /// The fingerprint of the pair (`a`, `b`): `b`'s, seeded by `a`'s, folded with `a`'s. Each
    /// part is hashed where it lies (no copy into one buffer: that copy and the hash of the
    /// joined bytes were a fifth of the pipeline thread's time), and the split is unambiguous,
    /// since `a` is hashed on its own.
    pub fn pair(&self, a: &[u8], b: &[u8]) -> u128 {
        let ha = self.of(a);
        let seed = self.seed ^ (ha as u64) ^ ((ha >> 64) as u64).rotate_left(29);
        twox_hash::XxHash3_128::oneshot_with_seed(seed, b) ^ ha.rotate_left(17)
    }

    /// `pair` in 64 bits (XXH3-64 for both parts), for windows whose keys are many and whose
    /// mistakes are bounded (`dedup`): two distinct pairs share one with a probability of about
    /// 2^-64, so a lookup in a window of `n` keys finds a false match with a probability of
    /// `n` / 2^64 (1e-14 for 200,000).
    pub fn pair64(&self, a: &[u8], b: &[u8]) -> u64 {
        let ha = twox_hash::XxHash3_64::oneshot_with_seed(self.seed, a);
        twox_hash::XxHash3_64::oneshot_with_seed(self.seed ^ ha, b) ^ ha.rotate_left(17)
    }
}

#[cfg(test)]
mod tests {
    use super::Fingerprint;

    /// A pair's fingerprint depends on where the split is and on the order, is stable within a
    /// process, and differs between pairs that share a part.
    #[test]
    fn pair_fingerprints_keep_the_split_and_the_order() {
        let f = Fingerprint::default();
        let (t, s) = (b"4bf92f3577b34da6a3ce929d0e0e4736".as_slice(), b"00f067aa0ba902b7".as_slice());
        assert_eq!(f.pair(t, s), f.pair(t, s));
        assert_ne!(f.pair(t, s), f.pair(s, t));
        assert_ne!(f.pair(b"ab", b"c"), f.pair(b"a", b"bc"));
        assert_ne!(f.pair(b"", b"x"), f.pair(b"x", b""));
        assert_ne!(f.pair(t, s), f.pair(t, b"00f067aa0ba902b8"));
        assert_ne!(f.pair(t, s), f.pair(b"4bf92f3577b34da6a3ce929d0e0e4737", s));
        assert_ne!(f.pair(t, b""), f.of(t), "a pair is not its first part alone");
        assert_eq!(f.pair64(t, s), f.pair64(t, s));
        assert_ne!(f.pair64(t, s), f.pair64(s, t));
        assert_ne!(f.pair64(b"ab", b"c"), f.pair64(b"a", b"bc"));
        assert_ne!(f.pair64(b"", b"x"), f.pair64(b"x", b""));
        assert_ne!(f.pair64(t, s), f.pair64(t, b"00f067aa0ba902b8"));
        let other = Fingerprint::default();
        assert_ne!(f.pair(t, s), other.pair(t, s), "seeded per process (per map owner)");
    }
}
