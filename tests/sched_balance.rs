//! Placement of new coroutines over the workers. A started coroutine never moves, so the
//! worker a long-lived one (a connection's handler) starts on serves it for good: spawns from
//! a worker that holds clearly more pinned coroutines than another go to that other one.
//! Go gets the same spread by moving goroutines (runqsteal, netpoll injecting into any P);
//! the behaviour checked here is Go's "one accept loop keeps every P busy".
use std::sync::Arc;
use std::time::{Duration, Instant};

use gort::runtime;

/// Spawns `n` coroutines from one coroutine, yielding after each spawn so that each new one
/// starts right away on the spawner's worker unless placement sends it elsewhere; each then
/// waits (parked) until the channel closes. Returns the pinned count per worker while all
/// wait.
fn spread_of_parked(workers: usize, n: usize) -> Vec<usize> {
    let rt = Arc::new(runtime::Builder::new().workers(workers).build().unwrap());
    let rt2 = rt.clone();
    rt.run(move || {
        let (tx, rx) = gort::chan::bounded::<()>(0);
        let started = gort::sync::WaitGroup::new();
        started.add(n as i64);
        for _ in 0..n {
            let rx = rx.clone();
            let started = started.clone();
            gort::spawn(move || {
                started.done();
                let _ = rx.recv(); // parks until `tx` is dropped
            });
            gort::yield_now();
        }
        started.wait();
        let spread = rt2.stats().pinned_per_worker;
        drop(tx);
        spread
    })
}

#[test]
fn spawns_spread_over_workers() {
    let spread = spread_of_parked(4, 400);
    assert_eq!(spread.len(), 4);
    // The spawner itself, plus the 400 parked ones.
    assert!(spread.iter().sum::<usize>() >= 401, "{spread:?}");
    let (min, max) = (*spread.iter().min().unwrap(), *spread.iter().max().unwrap());
    // Placement keeps every worker within its slack (8, or an eighth) of the others; without
    // it nearly all 400 start on the spawner's worker.
    assert!(min >= 60, "unbalanced: {spread:?}");
    assert!(max <= 160, "unbalanced: {spread:?}");
}

#[test]
fn one_worker_takes_everything() {
    let spread = spread_of_parked(1, 100);
    assert_eq!(spread, vec![101]);
}

#[test]
fn pinned_counts_return_to_zero() {
    let rt = runtime::Builder::new().workers(3).build().unwrap();
    rt.run(|| {
        let hs: Vec<_> = (0..300)
            .map(|_| {
                gort::spawn(|| {
                    gort::time::sleep(Duration::from_millis(20));
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    // `run` returns a moment before its coroutine finishes.
    let deadline = Instant::now() + Duration::from_secs(10);
    while rt.stats().pinned_per_worker.iter().sum::<usize>() != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(rt.stats().pinned_per_worker, vec![0, 0, 0]);
}
