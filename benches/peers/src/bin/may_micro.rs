//! may micro benchmarks. One `RESULT name=... key=value ...` line per run.
//! Workers = number of CPUs, default coroutine stack size. The driver itself
//! runs in a coroutine.
//!
//! Channel choices (documented in benches/README.md): may only has unbounded
//! mpsc channels, so chan_pingpong uses two `may::sync::mpsc::channel()` (one
//! message in flight at a time, so the capacity does not matter), fanin uses
//! one unbounded channel (no back-pressure), parked waits on a per-coroutine
//! channel, mutex uses `may::sync::Mutex`.

use gort_bench_peers::{f1, hwm_kib, micro_args, rss_kib, timer_duration};
use may::go;
use may::sync::mpsc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

fn spawn_join_batch(n: u64) {
    let t = Instant::now();
    let mut done = 0;
    while done < n {
        let b = 1000.min(n - done);
        let hs: Vec<_> = (0..b).map(|_| go!(|| {})).collect();
        for h in hs {
            h.join().unwrap();
        }
        done += b;
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    println!("RESULT name=spawn_join_batch n={n} ns_per_op={}", f1(ns));
}

fn spawn_join_all(n: u64) {
    let t = Instant::now();
    let mut hs = Vec::with_capacity(n as usize);
    for _ in 0..n {
        hs.push(go!(|| {}));
    }
    for h in hs {
        h.join().unwrap();
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    println!("RESULT name=spawn_join_all n={n} ns_per_op={} peak_rss_kib={}", f1(ns), hwm_kib());
}

fn chan_pingpong(n: u64) {
    let (ping_tx, ping_rx) = mpsc::channel::<u64>();
    let (pong_tx, pong_rx) = mpsc::channel::<u64>();
    let echo = go!(move || {
        while let Ok(v) = ping_rx.recv() {
            if pong_tx.send(v).is_err() {
                break;
            }
        }
    });
    let t = Instant::now();
    for i in 0..n {
        ping_tx.send(i).unwrap();
        let v = pong_rx.recv().unwrap();
        debug_assert_eq!(v, i);
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    drop(ping_tx);
    echo.join().unwrap();
    println!("RESULT name=chan_pingpong n={n} ns_per_op={} chan=\"unbounded mpsc x2\"", f1(ns));
}

fn parked(n: u64) {
    let before = rss_kib();
    let started = Arc::new(AtomicU64::new(0));
    let mut txs = Vec::with_capacity(n as usize);
    let mut hs = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let (tx, rx) = mpsc::channel::<()>();
        let s = started.clone();
        txs.push(tx);
        hs.push(go!(move || {
            s.fetch_add(1, Ordering::Release);
            let _ = rx.recv();
        }));
    }
    while started.load(Ordering::Acquire) < n {
        may::coroutine::yield_now();
    }
    let after = rss_kib();
    let per = (after.saturating_sub(before)) as f64 / n as f64;
    for tx in txs {
        let _ = tx.send(());
    }
    for h in hs {
        h.join().unwrap();
    }
    println!("RESULT name=parked n={n} kib_per_task={:.3} rss_before_kib={before} rss_after_kib={after}", per);
}

fn timers(n: u64) {
    let before = rss_kib();
    let t = Instant::now();
    let hs: Vec<_> = (0..n).map(|i| go!(move || may::coroutine::sleep(timer_duration(i)))).collect();
    for h in hs {
        h.join().unwrap();
    }
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let peak = hwm_kib();
    println!("RESULT name=timers n={n} total_ms={} rss_delta_kib={} rss_before_kib={before}", f1(ms), peak.saturating_sub(before));
}

fn fanin(n: u64) {
    let producers = 100u64;
    let (tx, rx) = mpsc::channel::<u64>();
    let t = Instant::now();
    for p in 0..producers {
        let tx = tx.clone();
        let cnt = n / producers + u64::from(p < n % producers);
        go!(move || {
            for i in 0..cnt {
                tx.send(i).unwrap();
            }
        });
    }
    drop(tx);
    let mut got = 0u64;
    while rx.recv().is_ok() {
        got += 1;
    }
    assert_eq!(got, n);
    let secs = t.elapsed().as_secs_f64();
    println!("RESULT name=fanin n={n} msgs_per_sec={:.0} chan=\"unbounded mpsc\"", n as f64 / secs);
}

fn mutex(n: u64) {
    let tasks = 1000u64;
    let m = Arc::new(may::sync::Mutex::new(0u64));
    let t = Instant::now();
    let hs: Vec<_> = (0..tasks)
        .map(|k| {
            let m = m.clone();
            let cnt = n / tasks + u64::from(k < n % tasks);
            go!(move || {
                for _ in 0..cnt {
                    *m.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    assert_eq!(*m.lock().unwrap(), n);
    println!("RESULT name=mutex n={n} ns_per_op={}", f1(ns));
}

fn main() {
    let (name, n) = micro_args();
    may::config().set_workers(gort_bench_peers::ncpus());
    let name2 = name.clone();
    let driver = go!(move || match name2.as_str() {
        "spawn_join_batch" => spawn_join_batch(n),
        "spawn_join_all" => spawn_join_all(n),
        "chan_pingpong" => chan_pingpong(n),
        "parked" => parked(n),
        "timers" => timers(n),
        "fanin" => fanin(n),
        "mutex" => mutex(n),
        _ => unreachable!(),
    });
    if let Err(e) = driver.join() {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into());
        let msg: String = msg.chars().map(|c| if c == '"' || c == '\n' { '\'' } else { c }).collect();
        println!("RESULT name={name} n={n} error=\"{msg}\"");
    }
    // Coroutines left parked after a failure must not keep us alive.
    std::process::exit(0);
}
