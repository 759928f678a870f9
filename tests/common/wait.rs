//! Waiting for what happens in the background.

use std::time::{Duration, Instant};

/// Generous: the machine is shared, and only a failing test waits this long.
const WITHIN: Duration = Duration::from_secs(20);

/// Check every 50 ms until `check` holds; fail, naming `what`, after 20 s.
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + WITHIN;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
