//! Micro-benchmarks of gort's channels and sync primitives (issue 4):
//! `chan_pingpong` (round trips over two unbuffered channels between two coroutines),
//! `fanin` (100 producers, 1 consumer, N messages in total) and `mutex` (1000 coroutines
//! contending on one `gort::sync::Mutex`, N lock/unlock pairs in total).
//! Each prints one `RESULT name=... <metric>=...` line.
use std::sync::Arc;
use std::time::Instant;

use gort::chan;
use gort::sync::{Mutex, WaitGroup};

/// Runs benchmark `cmd` with size `n`; false if `cmd` is not one of ours.
pub fn run(cmd: &str, n: u64) -> bool {
    match cmd {
        "chan_pingpong" => pingpong(n),
        "fanin" => fanin(n),
        "mutex" => mutex(n),
        _ => return false,
    }
    true
}

fn pingpong(n: u64) {
    let ns = gort::run(move || {
        let (ping_tx, ping_rx) = chan::bounded::<u64>(0);
        let (pong_tx, pong_rx) = chan::bounded::<u64>(0);
        let echo = gort::spawn(move || {
            for v in &ping_rx {
                if pong_tx.send(v).is_err() {
                    break;
                }
            }
        });
        let t = Instant::now();
        for i in 0..n {
            ping_tx.send(i).unwrap();
            assert_eq!(pong_rx.recv(), Ok(i));
        }
        let el = t.elapsed();
        drop(ping_tx);
        echo.join().unwrap();
        el.as_nanos() as f64 / n.max(1) as f64
    });
    println!("RESULT name=chan_pingpong ns_per_op={ns:.1}");
}

fn fanin(n: u64) {
    let rate = gort::run(move || {
        const PRODUCERS: u64 = 100;
        let (tx, rx) = chan::bounded::<u64>(128);
        let per = n / PRODUCERS;
        let t = Instant::now();
        for _ in 0..PRODUCERS {
            let tx = tx.clone();
            gort::spawn(move || {
                for i in 0..per {
                    tx.send(i).unwrap();
                }
            });
        }
        drop(tx);
        let got = rx.iter().count() as u64;
        assert_eq!(got, per * PRODUCERS);
        got as f64 / t.elapsed().as_secs_f64()
    });
    println!("RESULT name=fanin msgs_per_sec={rate:.0}");
}

fn mutex(n: u64) {
    let ns = gort::run(move || {
        const COROS: u64 = 1000;
        let m = Arc::new(Mutex::new(0u64));
        let wg = WaitGroup::new();
        let per = (n / COROS).max(1);
        let t = Instant::now();
        for _ in 0..COROS {
            wg.add(1);
            let (m, wg) = (m.clone(), wg.clone());
            gort::spawn(move || {
                for _ in 0..per {
                    *m.lock() += 1;
                }
                wg.done();
            });
        }
        wg.wait();
        let el = t.elapsed();
        assert_eq!(*m.lock(), per * COROS);
        el.as_nanos() as f64 / (per * COROS) as f64
    });
    println!("RESULT name=mutex ns_per_op={ns:.1}");
}
