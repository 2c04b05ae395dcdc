//! Hash maps for the ingest path's per-record bookkeeping (dedup windows, context inheritance,
//! seen agents and sessions, rollups). The standard SipHash costs more than the lookups it
//! serves there; foldhash is several times faster on short string keys and still seeds every
//! map from a per-process random state, so keys chosen by a client cannot be aimed at it.

pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
