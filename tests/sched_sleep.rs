//! Timers: sleepers never wake early; many concurrent sleepers all wake.
use std::time::{Duration, Instant};

use gort::runtime;

#[test]
fn sleepers_never_wake_early() {
    let rt = runtime::Builder::new().workers(2).build().unwrap();
    rt.run(|| {
        let hs: Vec<_> = (0..2000u64)
            .map(|i| {
                gort::spawn(move || {
                    let d = Duration::from_micros((i * 7919) % 20_000);
                    let t = Instant::now();
                    gort::time::sleep(d);
                    let e = t.elapsed();
                    assert!(e >= d, "woke after {e:?}, asked {d:?}");
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
}

#[test]
fn sleep_until_past_returns_at_once_and_plain_thread_sleeps() {
    gort::run(|| gort::time::sleep_until(Instant::now() - Duration::from_secs(1)));
    let t = Instant::now();
    gort::time::sleep(Duration::from_millis(3));
    assert!(t.elapsed() >= Duration::from_millis(3));
}

#[test]
fn park_timeout_and_timer_cancel() {
    gort::run(|| {
        let t = Instant::now();
        let mut expired = false;
        while !expired {
            expired = gort::park::park_timeout(Duration::from_millis(5), gort::WaitReason::Other);
        }
        assert!(t.elapsed() >= Duration::from_millis(5));
        let fired = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let f2 = fired.clone();
        let h = gort::timer::add_timer(Instant::now() + Duration::from_millis(5), move || {
            f2.store(true, std::sync::atomic::Ordering::SeqCst)
        });
        assert!(h.cancel());
        gort::time::sleep(Duration::from_millis(15));
        assert!(!fired.load(std::sync::atomic::Ordering::SeqCst));
        assert!(!h.fired());
    });
}

/// Many concurrent sleepers (1M in the ignored variant, run by scripts/soak.sh).
fn many_sleepers(n: usize) {
    let rt = runtime::Builder::new().build().unwrap();
    rt.run(move || {
        let t0 = Instant::now();
        let hs: Vec<_> = (0..n)
            .map(|i| {
                gort::Builder::new()
                    .stack_size(16 * 1024)
                    .spawn(move || gort::time::sleep(Duration::from_millis(200 + (i % 100) as u64)))
                    .unwrap()
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert!(t0.elapsed() >= Duration::from_millis(200));
    });
}

#[test]
fn ten_thousand_sleepers() {
    many_sleepers(10_000);
}

#[test]
#[ignore = "large: 1M sleepers, run with --ignored (scripts/soak.sh)"]
fn one_million_sleepers() {
    many_sleepers(1_000_000);
}
