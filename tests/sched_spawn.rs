//! Spawn, join, panics, yield fairness, names and blocking work across workers.
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gort::runtime;

#[test]
fn join_values_across_workers() {
    let rt = runtime::Builder::new().workers(4).build().unwrap();
    let sum = rt.run(|| {
        let hs: Vec<_> = (0..5000u64)
            .map(|i| {
                gort::spawn(move || {
                    gort::yield_now();
                    i
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    assert_eq!(sum, 5000 * 4999 / 2);
    // `run` returns once main's result is published, a moment before main itself finishes.
    let deadline = Instant::now() + Duration::from_secs(10);
    while rt.stats().live != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(rt.stats().live, 0);
}

#[test]
fn join_from_plain_thread_and_from_coroutine() {
    let h = gort::spawn(|| 7);
    assert_eq!(h.join().unwrap(), 7);
    let v = gort::run(|| gort::spawn(|| "x".to_string()).join().unwrap());
    assert_eq!(v, "x");
}

#[test]
fn panic_is_caught_and_joined() {
    let rt = runtime::Builder::new().workers(2).build().unwrap();
    let h = rt.spawn(|| -> u32 { panic!("bad {}", 42) });
    let e = h.join().unwrap_err();
    assert_eq!(e.message(), Some("bad 42"));
    // The runtime lives on.
    assert_eq!(rt.run(|| 1 + 1), 2);
}

#[test]
fn run_resumes_panics_on_caller() {
    let r = std::panic::catch_unwind(|| gort::run(|| panic!("main failed")));
    assert!(r.is_err());
}

#[test]
fn names_ids_and_current() {
    assert!(gort::current().is_none());
    let h = gort::Builder::new()
        .name("worker-conn")
        .stack_size(32 * 1024)
        .spawn(|| gort::current().unwrap())
        .unwrap();
    let id = h.id();
    assert_eq!(h.name(), Some("worker-conn"));
    let info = h.join().unwrap();
    assert_eq!(info.id(), id);
    assert_eq!(info.name(), Some("worker-conn"));
}

#[test]
fn go_macro_runs_expression() {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let h = gort::go!(n2.fetch_add(5, Ordering::SeqCst));
    h.join().unwrap();
    assert_eq!(n.load(Ordering::SeqCst), 5);
}

/// A coroutine that yields in a loop must not starve others on its worker
/// (Go: TestYieldProgress / TestGoroutineParallelism behaviour).
#[test]
fn yield_loop_does_not_starve() {
    let rt = runtime::Builder::new().workers(1).build().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s1 = stop.clone();
    let spinner = rt.spawn(move || {
        let mut n = 0u64;
        while !s1.load(Ordering::SeqCst) {
            gort::yield_now();
            n += 1;
            assert!(n < 50_000_000, "the other coroutine never ran");
        }
        n
    });
    let s2 = stop.clone();
    rt.spawn(move || {
        // Sleeping needs the timer check even though the run queue never empties.
        gort::time::sleep(Duration::from_millis(5));
        s2.store(true, Ordering::SeqCst);
    });
    assert!(spinner.join().unwrap() > 0);
}

/// A yield loop must not starve work that arrives from outside the worker: a spawn from a
/// plain thread (global injector) and a wake-up from a plain thread (the worker's inbox).
/// The worker's switch fast path skips both; they must still be seen.
#[test]
fn yield_loop_does_not_starve_injector_or_inbox() {
    let rt = runtime::Builder::new().workers(1).build().unwrap();
    let (tx, rx) = gort::chan::bounded::<()>(0);
    let stop = Arc::new(AtomicBool::new(false));
    let woken = Arc::new(AtomicBool::new(false));
    let w2 = woken.clone();
    // Parks in `recv` before the spinner starts; the plain-thread send wakes it via the inbox.
    let waiter = rt.spawn(move || {
        rx.recv().unwrap();
        w2.store(true, Ordering::SeqCst);
    });
    let s1 = stop.clone();
    let w1 = woken.clone();
    let spinner = rt.spawn(move || {
        let mut n = 0u64;
        while !(s1.load(Ordering::SeqCst) && w1.load(Ordering::SeqCst)) {
            gort::yield_now();
            n += 1;
            assert!(n < 50_000_000, "injected or woken coroutine never ran");
        }
        n
    });
    tx.send(()).unwrap(); // from this plain thread: inbox
    let s2 = stop.clone();
    rt.spawn(move || s2.store(true, Ordering::SeqCst)) // from this plain thread: injector
        .join()
        .unwrap();
    waiter.join().unwrap();
    assert!(spinner.join().unwrap() > 0);
}

/// Shutting a runtime down while a coroutine yields forever returns (the worker checks for
/// shutdown at least every 61 switches).
#[test]
fn shutdown_with_a_yield_loop_running() {
    let rt = runtime::Builder::new()
        .workers(1)
        .watchdog(None)
        .build()
        .unwrap();
    let started = Arc::new(AtomicBool::new(false));
    let s = started.clone();
    let _spinner = rt.spawn(move || loop {
        s.store(true, Ordering::SeqCst);
        gort::yield_now();
    });
    while !started.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    rt.shutdown();
}

/// Two coroutines that keep waking each other (runnext ping-pong) must not starve a third.
#[test]
fn runnext_pingpong_does_not_starve_queue() {
    let rt = runtime::Builder::new().workers(1).build().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    rt.run(move || {
        let (a_r, a_w) = gort::io::Fd::pipe().unwrap();
        let (b_r, b_w) = gort::io::Fd::pipe().unwrap();
        let d1 = d.clone();
        let p1 = gort::spawn(move || {
            let mut b = [0u8; 1];
            let mut rounds = 0u64;
            while !d1.load(Ordering::SeqCst) {
                a_w.write(b"x").unwrap();
                b_r.read(&mut b).unwrap();
                rounds += 1;
                assert!(rounds < 10_000_000);
            }
            a_w.write(b"q").unwrap();
        });
        let p2 = gort::spawn(move || {
            let mut b = [0u8; 1];
            loop {
                a_r.read(&mut b).unwrap();
                if b[0] == b'q' {
                    break;
                }
                b_w.write(b"y").unwrap();
            }
        });
        let d2 = d.clone();
        gort::spawn(move || d2.store(true, Ordering::SeqCst))
            .join()
            .unwrap();
        p1.join().unwrap();
        p2.join().unwrap();
    });
    assert!(done.load(Ordering::SeqCst));
}

#[test]
fn spawn_blocking_parks_only_the_coroutine() {
    let rt = runtime::Builder::new().workers(1).build().unwrap();
    let ticks = Arc::new(AtomicUsize::new(0));
    let t2 = ticks.clone();
    let v = rt.run(move || {
        let ticker = gort::spawn(move || {
            for _ in 0..20 {
                t2.fetch_add(1, Ordering::SeqCst);
                gort::time::sleep(Duration::from_millis(1));
            }
        });
        let t0 = Instant::now();
        let v = gort::spawn_blocking(|| {
            std::thread::sleep(Duration::from_millis(60));
            99
        });
        assert!(t0.elapsed() >= Duration::from_millis(60));
        ticker.join().unwrap();
        v
    });
    assert_eq!(v, 99);
    // The ticker ran while the blocking job occupied its thread.
    assert_eq!(ticks.load(Ordering::SeqCst), 20);
    // From a plain thread it just runs.
    assert_eq!(gort::spawn_blocking(|| 5), 5);
    let r = std::panic::catch_unwind(|| rt.run(|| gort::spawn_blocking(|| panic!("in pool"))));
    assert!(r.is_err());
}

// The lookup half of Go's TestDialTimeout behaviours (a dial deadline covers name
// resolution): waiting for blocking work ends at the deadline, while the job runs on.
#[test]
fn spawn_blocking_deadline_gives_up_at_the_deadline() {
    let rt = runtime::Builder::new().workers(1).build().unwrap();
    let slow = || {
        std::thread::sleep(Duration::from_secs(2));
        1
    };
    rt.run(move || {
        // The worker stays free while the coroutine waits.
        let ticker = gort::spawn(|| gort::time::sleep(Duration::from_millis(1)));
        let t0 = Instant::now();
        let e = gort::spawn_blocking_deadline(t0 + Duration::from_millis(50), slow).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(e.to_string(), "i/o timeout");
        // A behaviour bound (the job takes 2 s), not a benchmark.
        assert!(
            t0.elapsed() < Duration::from_millis(1500),
            "waited for the job"
        );
        ticker.join().unwrap();
        // In time: the value; a panic in time is resumed on the caller.
        let far = Instant::now() + Duration::from_secs(60);
        assert_eq!(gort::spawn_blocking_deadline(far, || 7).unwrap(), 7);
        let far = Instant::now() + Duration::from_secs(60);
        let r = std::panic::catch_unwind(|| {
            gort::spawn_blocking_deadline(far, || -> u8 { panic!("in pool") })
        });
        assert!(r.is_err());
        // A deadline already past fails at once without running the job.
        let ran = Arc::new(AtomicBool::new(false));
        let r2 = ran.clone();
        let e =
            gort::spawn_blocking_deadline(Instant::now(), move || r2.store(true, Ordering::SeqCst))
                .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        gort::time::sleep(Duration::from_millis(20));
        assert!(!ran.load(Ordering::SeqCst));
    });
    // From a plain thread: the same, with the job on a thread of its own.
    let t0 = Instant::now();
    let e = gort::spawn_blocking_deadline(t0 + Duration::from_millis(50), slow).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "waited for the job"
    );
    let far = Instant::now() + Duration::from_secs(60);
    assert_eq!(gort::spawn_blocking_deadline(far, || 8).unwrap(), 8);
}

#[test]
fn spawn_from_many_threads_at_once() {
    let rt = Arc::new(runtime::Builder::new().workers(2).build().unwrap());
    let total = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let rt = rt.clone();
            let total = total.clone();
            std::thread::spawn(move || {
                let hs: Vec<_> = (0..500)
                    .map(|_| {
                        let t = total.clone();
                        rt.spawn(move || {
                            t.fetch_add(1, Ordering::SeqCst);
                        })
                    })
                    .collect();
                for h in hs {
                    h.join().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(total.load(Ordering::SeqCst), 2000);
}

#[test]
fn stats_and_dump_show_parked_coroutines() {
    let rt = runtime::Builder::new().workers(2).build().unwrap();
    let (r, w) = gort::io::Fd::pipe().unwrap();
    let h = rt
        .spawn_with(gort::Builder::new().name("reader"), move || {
            let mut b = [0u8; 1];
            r.read(&mut b).unwrap()
        })
        .unwrap();
    let mut seen = false;
    for _ in 0..2000 {
        let d = rt.dump();
        if d.contains("IO wait: fd read") && d.contains("\"reader\"") {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(seen, "dump never showed the parked reader:\n{}", rt.dump());
    assert!(rt.stats().parked >= 1);
    w.write(b"z").unwrap();
    assert_eq!(h.join().unwrap(), 1);
}
