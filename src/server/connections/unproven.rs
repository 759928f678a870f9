//! Connections that have not sent a request yet: at the connection cap, the oldest of them is
//! closed first to make room (a silent flood cannot lock real clients out).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::sync::lock;

/// Connections that have not sent a request yet, by when they were accepted.
#[derive(Default)]
pub(super) struct Unproven {
    next: AtomicU64,
    waiting: Arc<Mutex<BTreeMap<u64, Arc<Notify>>>>,
}

/// One connection's place among the unproven, until its first request (or its end).
pub(super) struct Registration {
    id: u64,
    pub(super) closing: Arc<Notify>,
    waiting: Arc<Mutex<BTreeMap<u64, Arc<Notify>>>>,
}

impl Unproven {
    pub(super) fn register(&self) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let closing = Arc::new(Notify::new());
        lock(&self.waiting).insert(id, closing.clone());
        Registration {
            id,
            closing,
            waiting: self.waiting.clone(),
        }
    }

    /// Tell the oldest unproven connection to close; false when there is none.
    pub(super) fn close_oldest(&self) -> bool {
        let oldest = lock(&self.waiting).pop_first();
        match oldest {
            Some((_, closing)) => {
                // Stores a permit if the connection is not waiting on it right now.
                closing.notify_one();
                true
            }
            None => false,
        }
    }
}

impl Registration {
    /// The connection sent a request: it is no longer among the first to close.
    pub(super) fn proven(&self) {
        lock(&self.waiting).remove(&self.id);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.proven();
    }
}
