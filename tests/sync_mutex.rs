//! gort::sync::Mutex fairness and exclusion under its Go-style design (normal mode with
//! barging, starvation mode after a 1 ms wait), and RwLock exclusion across coroutines and
//! plain threads. Mirrors Go's TestMutexFairness; bounds are generous and count-based (a hog
//! stops after a fixed number of iterations or 20 s), so a slow machine cannot flake them:
//! the assertion is only that the waiter got the lock while the hog was still hogging.
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gort::sync::{Mutex, RwLock, WaitGroup};
use proptest::prelude::*;

fn rt(workers: usize) -> gort::runtime::Runtime {
    gort::runtime::Builder::new()
        .workers(workers)
        .build()
        .unwrap()
}

/// Hard stop for a hog: far beyond what a healthy lock needs (a starving waiter is served
/// about 1 ms after it starts waiting).
const HOG_LIMIT: Duration = Duration::from_secs(20);

/// Runs `hog` (which relocks `m` in a loop until `stop` is set or its own bound) and a
/// waiter that takes `m` `rounds` times; returns whether the waiter finished while the hog
/// was still running.
/// A hog that relocks in a tight loop until stopped (or HOG_LIMIT). Every 4096 rounds it yields,
/// which lets a waiter (or the test's other coroutines) that landed on this worker run at all
/// (workers are cooperative); the waiter then competes for the lock like any other.
fn tight_loop_hog(m: &Mutex<u64>, stop: &AtomicBool) {
    let t = Instant::now();
    for i in 0u64.. {
        *m.lock() += 1;
        if i % 4096 == 0 {
            if stop.load(Ordering::Relaxed) || t.elapsed() > HOG_LIMIT {
                break;
            }
            gort::yield_now();
        }
    }
}

fn waiter_beats_hog(
    m: Arc<Mutex<u64>>,
    hog: impl FnOnce(&Mutex<u64>, &AtomicBool) + Send + 'static,
    waiter: impl FnOnce() -> gort::JoinHandle<()>,
) -> bool {
    let stop = Arc::new(AtomicBool::new(false));
    let hog_done = Arc::new(AtomicBool::new(false));
    let h = {
        let (m, stop, hog_done) = (m.clone(), stop.clone(), hog_done.clone());
        gort::spawn(move || {
            hog(&m, &stop);
            hog_done.store(true, Ordering::SeqCst);
        })
    };
    // Let the hog get going first.
    gort::time::sleep(Duration::from_millis(5));
    waiter().join().unwrap();
    let in_time = !hog_done.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    h.join().unwrap();
    in_time
}

// One worker: the hog holds the lock across a yield, so the waiter runs (and finds it
// locked) every round, and the hog barges back in right after each unlock. Only starvation
// mode (hand-off after the waiter has waited 1 ms) lets the waiter in.
#[test]
fn starvation_mode_serves_waiter_on_one_worker() {
    rt(1).run(|| {
        let m = Arc::new(Mutex::new(0u64));
        let m2 = m.clone();
        let ok = waiter_beats_hog(
            m,
            |m, stop| {
                let t = Instant::now();
                for i in 0u64.. {
                    let mut g = m.lock();
                    *g += 1;
                    gort::yield_now();
                    drop(g);
                    if stop.load(Ordering::Relaxed) || (i % 1024 == 0 && t.elapsed() > HOG_LIMIT) {
                        break;
                    }
                }
            },
            move || {
                gort::spawn(move || {
                    for _ in 0..10 {
                        *m2.lock() += 1_000_000;
                        gort::yield_now();
                    }
                })
            },
        );
        assert!(ok, "waiter starved behind a barging hog");
    });
}

// Two workers, tight loop without yields: the hog relocks within nanoseconds; the waiter
// (a coroutine, on whichever worker it lands) must still get through.
#[test]
fn starvation_mode_serves_waiter_tight_loop_two_workers() {
    rt(2).run(|| {
        let m = Arc::new(Mutex::new(0u64));
        let m2 = m.clone();
        let ok = waiter_beats_hog(m, tight_loop_hog, move || {
            gort::spawn(move || {
                for _ in 0..100 {
                    *m2.lock() += 1;
                }
            })
        });
        assert!(ok, "waiter starved behind a tight-loop hog");
    });
}

// The waiter is a plain OS thread (it blocks the thread, not a worker).
#[test]
fn starvation_mode_serves_plain_thread_waiter() {
    rt(1).run(|| {
        let m = Arc::new(Mutex::new(0u64));
        let m2 = m.clone();
        let ok = waiter_beats_hog(m, tight_loop_hog, move || {
            gort::spawn(move || {
                let wg = WaitGroup::new();
                wg.add(1);
                let wg2 = wg.clone();
                let t = std::thread::spawn(move || {
                    for _ in 0..100 {
                        *m2.lock() += 1;
                    }
                    wg2.done();
                });
                wg.wait(); // parks the coroutine; a thread join would block the worker
                t.join().unwrap();
            })
        });
        assert!(ok, "plain-thread waiter starved");
    });
}

// Go: TestMutexFairness: a hog holds the lock across sleeps; another coroutine must still
// take it 10 times.
#[test]
fn fairness_hog_sleeping_under_lock() {
    rt(2).run(|| {
        let m = Arc::new(Mutex::new(0u64));
        let m2 = m.clone();
        let ok = waiter_beats_hog(
            m,
            |m, stop| {
                let t = Instant::now();
                while !stop.load(Ordering::Relaxed) && t.elapsed() < HOG_LIMIT {
                    let _g = m.lock();
                    gort::time::sleep(Duration::from_micros(100));
                }
            },
            move || {
                gort::spawn(move || {
                    for _ in 0..10 {
                        gort::time::sleep(Duration::from_micros(100));
                        drop(m2.lock());
                    }
                })
            },
        );
        assert!(ok, "waiter never got the lock from a sleeping hog");
    });
}

// 1000 coroutines on 4 workers in a tight lock/unlock loop (the barging/spinning path), plus
// two plain threads: a non-atomic read-modify-write under the lock must never lose an
// update, and nobody may be inside at the same time as anyone else.
#[test]
fn mutual_exclusion_1000_coroutines_4_workers() {
    const COROS: u64 = 1000;
    const PER: u64 = 200;
    const THREAD_PER: u64 = 10_000;
    let m = Arc::new(Mutex::new(0u64));
    let inside = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (m, inside) = (m.clone(), inside.clone());
            std::thread::spawn(move || {
                for _ in 0..THREAD_PER {
                    let mut g = m.lock();
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                    *g += 1;
                    inside.fetch_sub(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let (m2, inside2) = (m.clone(), inside.clone());
    rt(4).run(move || {
        let wg = WaitGroup::new();
        for i in 0..COROS {
            wg.add(1);
            let (m, wg, inside) = (m2.clone(), wg.clone(), inside2.clone());
            gort::spawn(move || {
                for j in 0..PER {
                    let mut g = if (i + j) % 7 == 0 {
                        loop {
                            if let Some(g) = m.try_lock() {
                                break g;
                            }
                            gort::yield_now();
                        }
                    } else {
                        m.lock()
                    };
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                    let v = *g;
                    if i % 10 == 0 && j % 50 == 0 {
                        // Held across a reschedule (sparingly: every waiter queued behind it
                        // soon qualifies for starvation mode, i.e. one hand-off per lock).
                        gort::yield_now();
                    }
                    *g = v + 1;
                    inside.fetch_sub(1, Ordering::SeqCst);
                }
                wg.done();
            });
        }
        wg.wait();
    });
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*m.lock(), COROS * PER + 2 * THREAD_PER);
    assert!(m.try_lock().is_some());
}

// RwLock from coroutines on 4 workers and a plain thread: readers see consistent pairs,
// writers are alone, and every write lands.
#[test]
fn rwlock_exclusion_mixed_threads() {
    let l = Arc::new(RwLock::new((0u64, 0u64)));
    let writers = Arc::new(AtomicUsize::new(0));
    let readers = Arc::new(AtomicUsize::new(0));
    let check_write = |w: &AtomicUsize, r: &AtomicUsize| {
        assert_eq!(w.fetch_add(1, Ordering::SeqCst), 0);
        assert_eq!(r.load(Ordering::SeqCst), 0);
    };
    let t = {
        let (l, w, r) = (l.clone(), writers.clone(), readers.clone());
        std::thread::spawn(move || {
            for _ in 0..5000 {
                let mut g = l.write();
                check_write(&w, &r);
                g.0 += 1;
                g.1 += 1;
                w.fetch_sub(1, Ordering::SeqCst);
                drop(g);
                let g = l.read();
                assert_eq!(g.0, g.1);
            }
        })
    };
    let (l2, w2, r2) = (l.clone(), writers.clone(), readers.clone());
    rt(4).run(move || {
        let wg = WaitGroup::new();
        for i in 0..400u64 {
            wg.add(1);
            let (l, wg, w, r) = (l2.clone(), wg.clone(), w2.clone(), r2.clone());
            gort::spawn(move || {
                for j in 0..50u64 {
                    if (i + j) % 5 == 0 {
                        let mut g = l.write();
                        check_write(&w, &r);
                        g.0 += 1;
                        if j % 10 == 0 {
                            gort::yield_now();
                        }
                        g.1 += 1;
                        w.fetch_sub(1, Ordering::SeqCst);
                    } else {
                        let g = l.read();
                        r.fetch_add(1, Ordering::SeqCst);
                        assert_eq!(w.load(Ordering::SeqCst), 0);
                        assert_eq!(g.0, g.1);
                        if j % 10 == 1 {
                            gort::yield_now();
                        }
                        r.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                wg.done();
            });
        }
        wg.wait();
    });
    t.join().unwrap();
    assert_eq!(*l.read(), (5000 + 400 * 10, 5000 + 400 * 10));
}

#[derive(Debug, Clone)]
enum Op {
    /// lock, then hold for this many yields
    Lock(u8),
    /// try_lock, then yield if it failed
    TryLock,
    /// lock, sleep this many microseconds while holding
    LockSleep(u16),
    Yield,
    /// read lock of the RwLock, hold for this many yields
    Read(u8),
    /// write lock of the RwLock, hold for this many yields
    Write(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..3).prop_map(Op::Lock),
        2 => Just(Op::TryLock),
        1 => (0u16..1500).prop_map(Op::LockSleep),
        2 => Just(Op::Yield),
        2 => (0u8..3).prop_map(Op::Read),
        2 => (0u8..3).prop_map(Op::Write),
    ]
}

struct Shared {
    m: Mutex<Cell<u64>>,
    l: RwLock<u64>,
    inside: AtomicUsize,
    rw: AtomicUsize, // readers, or usize::MAX / 2 added for a writer
    expect_m: AtomicU64,
    expect_l: AtomicU64,
}

fn run_ops(s: &Shared, ops: &[Op]) {
    for op in ops {
        match *op {
            Op::Lock(n) => {
                let g = s.m.lock();
                assert_eq!(s.inside.fetch_add(1, Ordering::SeqCst), 0);
                let v = g.get();
                for _ in 0..n {
                    gort::yield_now();
                }
                g.set(v + 1);
                s.inside.fetch_sub(1, Ordering::SeqCst);
                s.expect_m.fetch_add(1, Ordering::SeqCst);
            }
            Op::TryLock => match s.m.try_lock() {
                Some(g) => {
                    assert_eq!(s.inside.fetch_add(1, Ordering::SeqCst), 0);
                    g.set(g.get() + 1);
                    s.inside.fetch_sub(1, Ordering::SeqCst);
                    s.expect_m.fetch_add(1, Ordering::SeqCst);
                }
                None => gort::yield_now(),
            },
            Op::LockSleep(us) => {
                let g = s.m.lock();
                assert_eq!(s.inside.fetch_add(1, Ordering::SeqCst), 0);
                gort::time::sleep(Duration::from_micros(us as u64));
                g.set(g.get() + 1);
                s.inside.fetch_sub(1, Ordering::SeqCst);
                s.expect_m.fetch_add(1, Ordering::SeqCst);
            }
            Op::Yield => gort::yield_now(),
            Op::Read(n) => {
                let g = s.l.read();
                assert!(s.rw.fetch_add(1, Ordering::SeqCst) < usize::MAX / 4);
                let v = *g;
                for _ in 0..n {
                    gort::yield_now();
                }
                assert_eq!(*g, v);
                s.rw.fetch_sub(1, Ordering::SeqCst);
            }
            Op::Write(n) => {
                let mut g = s.l.write();
                assert_eq!(s.rw.fetch_add(usize::MAX / 2, Ordering::SeqCst), 0);
                let v = *g;
                for _ in 0..n {
                    gort::yield_now();
                }
                *g = v + 1;
                s.rw.fetch_sub(usize::MAX / 2, Ordering::SeqCst);
                s.expect_l.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    // Random programs of lock/try_lock/read/write with holds across yields and sleeps, run by
    // several coroutines (each program many times over) on 1..=3 workers plus one plain
    // thread: exclusion always holds, no update is lost and everything finishes (a lost
    // wake-up would hang; the harness's test timeout catches it).
    #[test]
    fn random_interleavings(
        workers in 1usize..=3,
        progs in proptest::collection::vec(proptest::collection::vec(op(), 1..12), 2..8),
    ) {
        let s = Arc::new(Shared {
            m: Mutex::new(Cell::new(0)),
            l: RwLock::new(0),
            inside: AtomicUsize::new(0),
            rw: AtomicUsize::new(0),
            expect_m: AtomicU64::new(0),
            expect_l: AtomicU64::new(0),
        });
        let thread = {
            let (s, p) = (s.clone(), progs[0].clone());
            std::thread::spawn(move || {
                for _ in 0..5 {
                    run_ops(&s, &p);
                }
            })
        };
        let s2 = s.clone();
        rt(workers).run(move || {
            let hs: Vec<_> = progs
                .iter()
                .cycle()
                .take(progs.len() * 8)
                .cloned()
                .map(|p| {
                    let s = s2.clone();
                    gort::spawn(move || {
                        for _ in 0..5 {
                            run_ops(&s, &p);
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        });
        thread.join().unwrap();
        prop_assert_eq!(s.m.lock().get(), s.expect_m.load(Ordering::SeqCst));
        prop_assert_eq!(*s.l.read(), s.expect_l.load(Ordering::SeqCst));
    }
}
