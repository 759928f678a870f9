//! Decisions remembered by what Cedar saw. A decision is a pure function of the engine and the
//! request's `CedarInputs` (the entities and context are built from them alone), so a request
//! whose inputs were decided before by the same engine gets the same matches without building
//! entities or evaluating a policy. Each engine has its own cache: a reload starts empty, and
//! what the namespace watch changes (a namespace's team or environment) is part of the inputs.
//!
//! Bounded by count and by bytes: an attacker sending distinct requests only makes misses.
//!
//! Repeats are common in real traffic: a controller's writes to the objects it manages, the same
//! person syncing the same Application, the API server's retries.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Found;
use crate::FastHash;
use crate::entities::CedarInputs;
use crate::sync::lock;

/// Most decisions an engine remembers. A few hundred bytes each (the inputs and the matches):
/// about 2 MiB when full. When full it starts over.
pub const DECISION_CACHE_ENTRIES: usize = 4096;

/// Most bytes (estimated) the remembered decisions may hold, whatever their number: an object
/// may carry thousands of labels, an ApplicationSet reach hundreds of places. Past it the cache
/// starts over, so memory stays bounded whatever is sent.
pub const DECISION_CACHE_BYTES: usize = 8 * 1024 * 1024;

/// A decision whose inputs are larger than this is not remembered: rare, and each would take
/// much of the room.
pub const LARGEST_REMEMBERED_BYTES: usize = 64 * 1024;

pub struct DecisionCache {
    remembered: Mutex<Remembered>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Default)]
struct Remembered {
    entries: HashMap<CedarInputs, Found, FastHash>,
    bytes: usize,
}

/// How a cache has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: usize,
    /// What the remembered decisions hold, estimated.
    pub bytes: usize,
}

impl DecisionCache {
    /// A cache of at most `capacity` decisions; 0 remembers nothing.
    pub fn new(capacity: usize) -> Self {
        Self {
            remembered: Mutex::new(Remembered::default()),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub(super) fn get(&self, inputs: &CedarInputs) -> Option<Found> {
        if self.capacity == 0 {
            return None;
        }
        let found = lock(&self.remembered).entries.get(inputs).cloned();
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    pub(super) fn insert(&self, inputs: CedarInputs, found: Found) {
        if self.capacity == 0 {
            return;
        }
        let bytes = inputs.size_estimate() + found.size_estimate();
        if bytes > LARGEST_REMEMBERED_BYTES {
            return;
        }
        let mut remembered = lock(&self.remembered);
        if remembered.entries.len() >= self.capacity
            || remembered.bytes + bytes > DECISION_CACHE_BYTES
        {
            remembered.entries.clear();
            remembered.bytes = 0;
        }
        // The same inputs decided twice at once (two threads) are counted once.
        if remembered.entries.insert(inputs, found).is_none() {
            remembered.bytes += bytes;
        }
    }

    /// Most decisions remembered (0: none).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn stats(&self) -> CacheStats {
        let remembered = lock(&self.remembered);
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: remembered.entries.len(),
            bytes: remembered.bytes,
        }
    }
}

impl Default for DecisionCache {
    fn default() -> Self {
        Self::new(DECISION_CACHE_ENTRIES)
    }
}

impl fmt::Debug for DecisionCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecisionCache")
            .field("capacity", &self.capacity)
            .field("stats", &self.stats())
            .finish()
    }
}
