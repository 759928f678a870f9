//! Decisions remembered by what Cedar saw. A decision is a pure function of the engine and the
//! request's `CedarInputs` (the entities and context are built from them alone), so a request
//! whose inputs were decided before by the same engine gets the same matches without building
//! entities or evaluating a policy. Each engine has its own cache: a reload starts empty, and
//! what the namespace watch changes (a namespace's team or environment) is part of the inputs.
//!
//! Repeats are common in real traffic: a controller's writes to the objects it manages, the same
//! person syncing the same Application, the API server's retries.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Found;
use crate::entities::CedarInputs;
use crate::sync::lock;

/// Most decisions an engine remembers. A few hundred bytes each (the inputs and the matches):
/// about 2 MiB when full. When full it starts over, which bounds memory whatever is sent.
pub const DECISION_CACHE_ENTRIES: usize = 4096;

pub struct DecisionCache {
    entries: Mutex<HashMap<CedarInputs, Found, foldhash::fast::RandomState>>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// How a cache has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: usize,
}

impl DecisionCache {
    /// A cache of at most `capacity` decisions; 0 remembers nothing.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::default()),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub(super) fn get(&self, inputs: &CedarInputs) -> Option<Found> {
        if self.capacity == 0 {
            return None;
        }
        let found = lock(&self.entries).get(inputs).cloned();
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
        let mut entries = lock(&self.entries);
        if entries.len() >= self.capacity {
            entries.clear();
        }
        entries.insert(inputs, found);
    }

    /// Most decisions remembered (0: none).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: lock(&self.entries).len(),
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
