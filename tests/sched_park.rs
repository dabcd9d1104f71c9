//! park/unpark under the race that lost wake-ups before (found by the fan-in benchmark):
//! a waker publishes a condition and unparks while the waiter consumes a stale token and
//! re-checks the condition. Both sides must synchronise through the task state's RMWs; with a
//! plain store or an early return on a stale load, store buffering lets each miss the other
//! and the waiter sleeps forever. Checked over many rounds, across workers and from a plain
//! thread, with extra stale unparks mixed in; a hang fails the test after a bound.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn rounds(rt: &gort::runtime::Runtime, from_thread: bool, n: u64) {
    let flag = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    let (f, p) = (flag.clone(), progress.clone());
    let (utx, urx) = std::sync::mpsc::channel();
    let waiter = rt.spawn(move || {
        utx.send(gort::park::unparker()).unwrap();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for i in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Stay RUNNING a random while, so that stale unparks find us running (NOTIFIED).
            for _ in 0..(x % 64) {
                std::hint::spin_loop();
            }
            // Acquire load / Release store, as channel tokens use: no fence of their own.
            while !f.load(Ordering::Acquire) {
                gort::park::park();
            }
            f.store(false, Ordering::Relaxed);
            p.store(i + 1, Ordering::SeqCst);
        }
    });
    let u = urx.recv().unwrap();
    let wake = move |stop: &dyn Fn() -> bool| {
        for i in 0..n {
            // Wait until the waiter consumed the previous round.
            let t0 = Instant::now();
            while progress.load(Ordering::SeqCst) < i {
                assert!(
                    t0.elapsed() < Duration::from_secs(20),
                    "waiter stuck at round {i}: lost wake-up"
                );
                if stop() {
                    return;
                }
                std::hint::spin_loop();
            }
            // A stale token the waiter will consume, then a real wake-up a random moment
            // later: the real one must never be lost against the consumption.
            u.unpark();
            for _ in 0..((i * 2_654_435_761) % 48) {
                std::hint::spin_loop();
            }
            flag.store(true, Ordering::Release);
            u.unpark();
        }
    };
    if from_thread {
        wake(&|| false);
    } else {
        rt.spawn(move || {
            wake(&|| {
                gort::yield_now();
                false
            })
        })
        .join()
        .unwrap();
    }
    waiter.join().unwrap();
}

#[test]
fn coroutine_waker_on_other_worker() {
    let rt = gort::runtime::Builder::new().workers(2).build().unwrap();
    rounds(&rt, false, 200_000);
}

#[test]
fn plain_thread_waker() {
    let rt = gort::runtime::Builder::new().workers(2).build().unwrap();
    rounds(&rt, true, 200_000);
}

#[test]
fn fan_in_over_a_bounded_channel_completes() {
    // The workload that exposed the bug: 100 producers, one consumer, capacity 128.
    for _ in 0..5 {
        let got = gort::run(|| {
            let (tx, rx) = gort::chan::bounded::<u64>(128);
            for _ in 0..100 {
                let tx = tx.clone();
                gort::spawn(move || {
                    for i in 0..2000 {
                        tx.send(i).unwrap();
                    }
                });
            }
            drop(tx);
            rx.iter().count()
        });
        assert_eq!(got, 200_000);
    }
}
