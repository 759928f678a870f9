//! Unit tests for `src/limits.rs` (kept apart so `src/` holds only shipped code).

use super::*;

fn gate(budget: usize, workers: usize, queue: usize) -> Gate {
    Gate::new(Limits {
        memory_budget: budget,
        decision_workers: workers,
        max_queue: queue,
        ..Limits::default()
    })
}

#[test]
fn reservations_are_refused_beyond_the_budget_and_given_back_on_drop() {
    let gate = gate(1000, 1, 1);
    let mut first = gate.reserve(600).unwrap();
    assert_eq!(gate.reserve(500).err(), Some(Shed::Memory));
    assert_eq!(first.grow(500), Err(Shed::Memory));
    assert_eq!(first.bytes(), 600, "a refused growth keeps what is held");
    first.grow(400).unwrap();
    assert_eq!(gate.reserved(), 1000);
    drop(first);
    assert_eq!(gate.reserved(), 0);
    gate.reserve(1000).unwrap();
}

#[test]
fn only_large_bodies_draw_on_the_receiving_share_and_only_while_they_arrive() {
    let gate = gate(4 << 20, 1, 1);
    let share = (4 << 20) / RECEIVING_SHARE;
    let mut large = gate.reserve(0).unwrap();
    large.body_grew(0, SMALL_BODY_BYTES).unwrap();
    large
        .body_grew(SMALL_BODY_BYTES, SMALL_BODY_BYTES + share)
        .unwrap();
    assert_eq!(gate.reserved(), SMALL_BODY_BYTES + share);
    // The share is full: another large body is refused, a small one is not.
    let mut second = gate.reserve(0).unwrap();
    assert_eq!(second.body_grew(0, SMALL_BODY_BYTES + 1), Err(Shed::Memory));
    let mut small = gate.reserve(0).unwrap();
    small.body_grew(0, SMALL_BODY_BYTES).unwrap();
    // Once received, the body counts against the budget only.
    large.received();
    let mut third = gate.reserve(0).unwrap();
    third.body_grew(0, SMALL_BODY_BYTES + 1).unwrap();
    drop((large, second, small, third));
    assert_eq!(gate.reserved(), 0);
}

#[tokio::test]
async fn a_full_queue_sheds_and_a_wait_ends_at_the_deadline() {
    let gate = gate(1000, 1, 1);
    let far = Instant::now() + Duration::from_secs(30);
    let held = gate.slot(far).await.unwrap();
    // One waiter fits in the queue; it gives up at its deadline.
    let soon = Instant::now() + Duration::from_millis(50);
    let waiter = gate.slot(soon);
    let second = async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(gate.queued(), 1);
        gate.slot(far).await.err()
    };
    let (waited, second) = tokio::join!(waiter, second);
    assert_eq!(waited.err(), Some(Shed::Deadline));
    assert_eq!(second, Some(Shed::Queue));
    assert_eq!(gate.queued(), 0);
    drop(held);
    assert!(gate.slot(far).await.is_ok());
}

#[test]
fn connections_stay_below_the_fd_limit_and_the_budget_admits_the_largest_request() {
    let mut limits = Limits {
        memory_budget: 1,
        max_connections: 5000,
        ..Limits::default()
    };
    let notes = limits.normalise(Some(1024));
    assert_eq!(limits.max_connections, 1024 - RESERVED_FDS);
    assert!(limits.max_connections >= 512);
    // The largest request the defaults allow: a 4 MiB body (4,194,304 bytes) holding
    // min(300,000, 4,194,304 / 2 + 1) = 300,000 values, as many members and
    // min(60,000, 300,000) = 60,000 objects, estimated at
    //   16,384 (base) + 2 × 4,194,304 (body copies) + 300,000 × 80 (values)
    //   + 300,000 × 80 (members) + 60,000 × 400 (objects) = 80,404,992 bytes.
    assert_eq!(limits.largest_request(), 80_404_992);
    // It and the first bytes of the 64 queued requests, 64 × (65,536 + 16,384) = 5,242,880,
    // must fit in the 3/4 of the budget left beside the receiving share (1/4):
    //   (80,404,992 + 5,242,880) × 4 / 3 = 342,591,488 / 3 = 114,197,162 (rounded down).
    assert_eq!(limits.memory_budget, 114_197_162);
    assert!(limits.least_memory_budget() > limits.largest_request());
    assert_eq!(notes.len(), 2, "{notes:?}");
    let mut unchanged = Limits::default();
    assert!(unchanged.normalise(None).is_empty());
    assert_eq!(unchanged, Limits::default());
}

#[test]
fn throttle_logs_once_per_interval_and_counts_the_rest() {
    let throttle = Throttle::new(Duration::from_secs(3600));
    assert_eq!(throttle.ready(), Some(0));
    assert_eq!(throttle.ready(), None);
    assert_eq!(throttle.ready(), None);
    assert_eq!(throttle.suppressed.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn a_request_waits_for_memory_until_another_gives_it_back_or_its_deadline() {
    let gate = gate(1000, 1, 4);
    let held = gate.reserve(800).unwrap();
    let mut waiting = gate.reserve(100).unwrap();
    let soon = Instant::now() + Duration::from_millis(50);
    assert_eq!(
        gate.grow_or_wait(&mut waiting, 500, soon).await,
        Err(Shed::Memory)
    );
    assert_eq!(gate.queued(), 0);
    let far = Instant::now() + Duration::from_secs(30);
    let release = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(gate.queued(), 1);
        drop(held);
    };
    let (grown, ()) = tokio::join!(gate.grow_or_wait(&mut waiting, 500, far), release);
    assert_eq!(grown, Ok(()));
    assert_eq!(waiting.bytes(), 600);
}
