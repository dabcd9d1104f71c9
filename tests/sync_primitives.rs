//! gort::sync under many coroutines on several workers (mirrors Go's `sync` tests:
//! TestWaitGroup, TestMutex, TestRWMutex, TestCond*, TestOnce).
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gort::sync::{Barrier, Condvar, Mutex, Once, OnceLock, RwLock, Semaphore, WaitGroup};

fn rt4() -> gort::runtime::Runtime {
    gort::runtime::Builder::new().workers(4).build().unwrap()
}

// Go: TestWaitGroup + TestMutex: 1000 coroutines increment a shared counter under a Mutex,
// holding the guard across a yield and a sleep (a blocking gort call).
#[test]
fn mutex_and_waitgroup_many_coroutines() {
    rt4().run(|| {
        let m = Arc::new(Mutex::new(0u64));
        let wg = WaitGroup::new();
        for i in 0..1000 {
            wg.add(1);
            let (m, wg) = (m.clone(), wg.clone());
            gort::spawn(move || {
                for _ in 0..20 {
                    let mut g = m.lock();
                    let v = *g;
                    gort::yield_now();
                    if i % 250 == 0 {
                        gort::time::sleep(Duration::from_micros(100));
                    }
                    *g = v + 1;
                }
                wg.done();
            });
        }
        wg.wait();
        assert_eq!(*m.lock(), 20_000);
        assert!(m.try_lock().is_some());
    });
}

// Go: TestRWMutex: writers exclude readers; readers share.
#[test]
fn rwlock_exclusion() {
    rt4().run(|| {
        let l = Arc::new(RwLock::new((0u64, 0u64)));
        let active = Arc::new(AtomicUsize::new(0));
        let wg = WaitGroup::new();
        for i in 0..200 {
            wg.add(1);
            let (l, wg, active) = (l.clone(), wg.clone(), active.clone());
            gort::spawn(move || {
                for _ in 0..10 {
                    if i % 4 == 0 {
                        let mut g = l.write();
                        assert_eq!(active.fetch_add(1, Ordering::SeqCst), 0);
                        g.0 += 1;
                        gort::yield_now();
                        g.1 += 1;
                        active.fetch_sub(1, Ordering::SeqCst);
                    } else {
                        let g = l.read();
                        assert_eq!(g.0, g.1);
                        gort::yield_now();
                    }
                }
                wg.done();
            });
        }
        wg.wait();
        assert_eq!(*l.read(), (500, 500));
    });
}

// Go: TestCondSignal / TestCondBroadcast.
#[test]
fn condvar_signal_and_broadcast() {
    rt4().run(|| {
        let pair = Arc::new((Mutex::new(0u32), Condvar::new()));
        let wg = WaitGroup::new();
        for _ in 0..50 {
            wg.add(1);
            let (p, wg) = (pair.clone(), wg.clone());
            gort::spawn(move || {
                let g = p.0.lock();
                let g = p.1.wait_while(g, |v| *v == 0);
                assert_eq!(*g, 1);
                drop(g);
                wg.done();
            });
        }
        gort::time::sleep(Duration::from_millis(10));
        *pair.0.lock() = 1;
        pair.1.notify_all();
        wg.wait();
    });
}

// Go: TestOnce / TestOncePanic; plus OnceLock, Semaphore, Barrier.
#[test]
fn once_oncelock_semaphore_barrier() {
    rt4().run(|| {
        let once = Arc::new(Once::new());
        let cell = Arc::new(OnceLock::new());
        let hits = Arc::new(AtomicUsize::new(0));
        let sem = Arc::new(Semaphore::new(3));
        let inside = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(40));
        let leaders = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..40)
            .map(|i| {
                let (once, cell, hits, sem, inside, barrier, leaders) = (
                    once.clone(),
                    cell.clone(),
                    hits.clone(),
                    sem.clone(),
                    inside.clone(),
                    barrier.clone(),
                    leaders.clone(),
                );
                gort::spawn(move || {
                    once.call_once(|| {
                        gort::time::sleep(Duration::from_millis(5));
                        hits.fetch_add(1, Ordering::SeqCst);
                    });
                    assert_eq!(hits.load(Ordering::SeqCst), 1);
                    assert_eq!(*cell.get_or_init(|| i), *cell.get().unwrap());
                    sem.acquire(1);
                    assert!(inside.fetch_add(1, Ordering::SeqCst) < 3);
                    gort::time::sleep(Duration::from_micros(200));
                    inside.fetch_sub(1, Ordering::SeqCst);
                    sem.release(1);
                    if barrier.wait().is_leader() {
                        leaders.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(leaders.load(Ordering::SeqCst), 1);
        assert_eq!(sem.available(), 3);
        // A panicking Once initializer counts as done (Go semantics).
        let o = Arc::new(Once::new());
        let o2 = o.clone();
        assert!(gort::spawn(move || o2.call_once(|| panic!("init")))
            .join()
            .is_err());
        assert!(o.is_completed());
        // A panic while holding the Mutex does not poison it.
        let m = Arc::new(Mutex::new(1));
        let m2 = m.clone();
        assert!(gort::spawn(move || {
            let _g = m2.lock();
            panic!("held");
        })
        .join()
        .is_err());
        assert_eq!(*m.lock(), 1);
    });
}

#[test]
#[should_panic(expected = "negative WaitGroup counter")]
fn waitgroup_negative_panics() {
    WaitGroup::new().done();
}
