//! tokio micro benchmarks. One `RESULT name=... key=value ...` line per run.
//! Runtime: multi-thread, default worker count. Everything runs inside one
//! spawned driver task on the worker pool.
//!
//! Channel choices (documented in benches/README.md):
//! - chan_pingpong: two `tokio::sync::mpsc::channel(1)` (capacity 1: the
//!   closest thing to an unbuffered channel tokio offers).
//! - fanin: one `mpsc::channel(1024)`, 100 producers, 1 consumer.
//! - parked: each task awaits its own `oneshot::Receiver`.
//! - mutex: `tokio::sync::Mutex<u64>`, 1000 tasks.

use gort_bench_peers::{f1, hwm_kib, micro_args, rss_kib, timer_duration};
use std::sync::Arc;
use std::time::Instant;

async fn spawn_join_batch(n: u64) {
    let t = Instant::now();
    let mut done = 0;
    while done < n {
        let b = 1000.min(n - done);
        let hs: Vec<_> = (0..b).map(|_| tokio::spawn(async {})).collect();
        for h in hs {
            h.await.unwrap();
        }
        done += b;
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    println!("RESULT name=spawn_join_batch n={n} ns_per_op={}", f1(ns));
}

async fn spawn_join_all(n: u64) {
    let t = Instant::now();
    let mut hs = Vec::new();
    if hs.try_reserve_exact(n as usize).is_err() {
        println!("RESULT name=spawn_join_all n={n} error=\"cannot allocate handle vector\"");
        return;
    }
    for _ in 0..n {
        hs.push(tokio::spawn(async {}));
    }
    for h in hs {
        h.await.unwrap();
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    println!("RESULT name=spawn_join_all n={n} ns_per_op={} peak_rss_kib={}", f1(ns), hwm_kib());
}

async fn chan_pingpong(n: u64) {
    let (ping_tx, mut ping_rx) = tokio::sync::mpsc::channel::<u64>(1);
    let (pong_tx, mut pong_rx) = tokio::sync::mpsc::channel::<u64>(1);
    let echo = tokio::spawn(async move {
        while let Some(v) = ping_rx.recv().await {
            if pong_tx.send(v).await.is_err() {
                break;
            }
        }
    });
    let t = Instant::now();
    for i in 0..n {
        ping_tx.send(i).await.unwrap();
        let v = pong_rx.recv().await.unwrap();
        debug_assert_eq!(v, i);
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    drop(ping_tx);
    echo.await.unwrap();
    println!("RESULT name=chan_pingpong n={n} ns_per_op={} chan=\"mpsc(1) x2\"", f1(ns));
}

async fn parked(n: u64) {
    let before = rss_kib();
    let started = Arc::new(tokio::sync::Semaphore::new(0));
    let mut txs = Vec::with_capacity(n as usize);
    let mut hs = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let s = started.clone();
        txs.push(tx);
        hs.push(tokio::spawn(async move {
            s.add_permits(1);
            let _ = rx.await;
        }));
    }
    // Wait until every task has run up to its park point.
    let _all = started.acquire_many(n as u32).await.unwrap();
    let after = rss_kib();
    let per = (after.saturating_sub(before)) as f64 / n as f64;
    for tx in txs {
        let _ = tx.send(());
    }
    for h in hs {
        h.await.unwrap();
    }
    println!("RESULT name=parked n={n} kib_per_task={:.3} rss_before_kib={before} rss_after_kib={after}", per);
}

async fn timers(n: u64) {
    let before = rss_kib();
    let t = Instant::now();
    let hs: Vec<_> = (0..n).map(|i| tokio::spawn(tokio::time::sleep(timer_duration(i)))).collect();
    for h in hs {
        h.await.unwrap();
    }
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let peak = hwm_kib();
    println!("RESULT name=timers n={n} total_ms={} rss_delta_kib={} rss_before_kib={before}", f1(ms), peak.saturating_sub(before));
}

async fn fanin(n: u64) {
    let producers = 100u64;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(1024);
    let t = Instant::now();
    for p in 0..producers {
        let tx = tx.clone();
        let cnt = n / producers + u64::from(p < n % producers);
        tokio::spawn(async move {
            for i in 0..cnt {
                tx.send(i).await.unwrap();
            }
        });
    }
    drop(tx);
    let mut got = 0u64;
    while rx.recv().await.is_some() {
        got += 1;
    }
    assert_eq!(got, n);
    let secs = t.elapsed().as_secs_f64();
    println!("RESULT name=fanin n={n} msgs_per_sec={:.0} chan=\"mpsc(1024)\"", n as f64 / secs);
}

async fn mutex(n: u64) {
    let tasks = 1000u64;
    let m = Arc::new(tokio::sync::Mutex::new(0u64));
    let t = Instant::now();
    let hs: Vec<_> = (0..tasks)
        .map(|k| {
            let m = m.clone();
            let cnt = n / tasks + u64::from(k < n % tasks);
            tokio::spawn(async move {
                for _ in 0..cnt {
                    *m.lock().await += 1;
                }
            })
        })
        .collect();
    for h in hs {
        h.await.unwrap();
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    assert_eq!(*m.lock().await, n);
    println!("RESULT name=mutex n={n} ns_per_op={}", f1(ns));
}

fn main() {
    let (name, n) = micro_args();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    // The driver is itself a spawned task so it runs on a worker thread like
    // everything else (block_on's future runs on the main thread, which would
    // turn every channel hop into a cross-thread wakeup).
    let driver = rt.spawn(async move {
        match name.as_str() {
            "spawn_join_batch" => spawn_join_batch(n).await,
            "spawn_join_all" => spawn_join_all(n).await,
            "chan_pingpong" => chan_pingpong(n).await,
            "parked" => parked(n).await,
            "timers" => timers(n).await,
            "fanin" => fanin(n).await,
            "mutex" => mutex(n).await,
            _ => unreachable!(),
        }
    });
    rt.block_on(driver).expect("driver task");
}
