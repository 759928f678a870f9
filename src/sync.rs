//! Locking that survives a panic elsewhere.

use std::sync::{Mutex, MutexGuard};

/// Lock `mutex` even if a holder panicked: everything guarded this way (statuses, counters,
/// queues of wake-ups) is whole after any single update, so a panic must not also take down
/// `/readyz`, the reloader or the accept loop.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}
