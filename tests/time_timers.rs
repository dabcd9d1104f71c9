//! Channel timers (mirrors Go's time tests: TestAfter, TestTimerStopStaleValue (1.23
//! semantics), TestReset, TestTicker, TestTickerResetLtZero-style behaviour).
use std::time::{Duration, Instant};

use gort::time::{after, tick, Ticker, Timer};

// Go: TestAfter: the value arrives no earlier than asked.
#[test]
fn after_never_early() {
    gort::run(|| {
        let t = Instant::now();
        let at = after(Duration::from_millis(15)).recv().unwrap();
        assert!(at.duration_since(t) >= Duration::from_millis(15));
        assert!(t.elapsed() >= Duration::from_millis(15));
    });
}

// Go 1.23: TestTimerStopStaleValue: after Stop/Reset no stale value is received.
#[test]
fn timer_stop_reset_no_stale_value() {
    gort::run(|| {
        let t = Timer::new(Duration::from_millis(5));
        gort::time::sleep(Duration::from_millis(20)); // fired, value unreceived
        assert!(t.stop(), "stop discards the unreceived value");
        assert!(t.channel().try_recv().is_err());
        assert!(!t.stop());
        // Reset after expiry: only the new arming's value, not before its deadline.
        let t = Timer::new(Duration::from_millis(1));
        gort::time::sleep(Duration::from_millis(10));
        let start = Instant::now();
        t.reset(Duration::from_millis(20));
        let at = t.channel().recv().unwrap();
        assert!(
            at.duration_since(start) >= Duration::from_millis(20),
            "stale value after reset"
        );
        // Stop before firing: nothing ever arrives.
        let t = Timer::new(Duration::from_millis(5));
        assert!(t.stop());
        assert!(t.channel().recv_timeout(Duration::from_millis(20)).is_err());
    });
}

// Go: TestTicker + slow receivers miss ticks; Stop ends ticks; Reset changes the period.
#[test]
fn ticker_drops_ticks_and_stops() {
    gort::run(|| {
        let tk = Ticker::new(Duration::from_millis(2));
        gort::time::sleep(Duration::from_millis(30));
        // Capacity 1: at most one buffered tick despite ~15 periods.
        assert_eq!(tk.channel().len(), 1);
        let mut last = tk.channel().recv().unwrap();
        for _ in 0..3 {
            let t = tk.channel().recv().unwrap();
            assert!(t > last);
            last = t;
        }
        tk.stop();
        assert!(tk
            .channel()
            .recv_timeout(Duration::from_millis(15))
            .is_err());
        tk.reset(Duration::from_millis(3));
        assert!(tk
            .channel()
            .recv_timeout(Duration::from_millis(500))
            .is_ok());
        let rx = tick(Duration::from_millis(1));
        for _ in 0..3 {
            rx.recv().unwrap();
        }
    });
}
