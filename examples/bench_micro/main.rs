//! gort's micro-benchmarks, one result line each (`RESULT name=... key=value`), driven by
//! `benches/` (the peer comparison) and by hand:
//!
//! ```text
//! cargo run --release --example bench_micro -- spawn_join_batch [N]
//! ```
//! Commands: spawn_join_batch, spawn_join_all, yield_pingpong, parked (each on its own
//! channel, as the peers do), parked_bare (bare park), timers, idle_cpu, plus
//! the channel/sync ones in sync.rs (chan_pingpong, fanin, mutex).
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod sync;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn hwm_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn cpu_ticks() -> u64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after ')' start at index 3 (state); utime=14, stime=15 (1-based in proc(5)).
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn spawn_join_batch(n: u64) {
    gort::run(move || {
        let t = Instant::now();
        let mut left = n;
        while left > 0 {
            let b = left.min(1000);
            let hs: Vec<_> = (0..b).map(|_| gort::spawn(|| {})).collect();
            for h in hs {
                h.join().unwrap();
            }
            left -= b;
        }
        let ns = t.elapsed().as_nanos() as f64 / n as f64;
        println!("RESULT name=spawn_join_batch ns_per_op={ns:.1}");
    });
}

fn spawn_join_all(n: u64) {
    gort::run(move || {
        let t = Instant::now();
        let mut hs = Vec::with_capacity(n as usize);
        for _ in 0..n {
            match gort::Builder::new().spawn(|| {}) {
                Ok(h) => hs.push(h),
                Err(e) => {
                    println!("RESULT name=spawn_join_all error=\"{e}\"");
                    return;
                }
            }
        }
        for h in hs {
            h.join().unwrap();
        }
        let ns = t.elapsed().as_nanos() as f64 / n as f64;
        println!("RESULT name=spawn_join_all ns_per_op={ns:.1}");
    });
}

fn yield_pingpong(n: u64) {
    // Two coroutines on one worker; a round trip is A yields to B and B yields back.
    let rt = gort::runtime::Builder::new().workers(1).build().unwrap();
    rt.run(move || {
        let other = gort::spawn(move || {
            for _ in 0..n {
                gort::yield_now();
            }
        });
        gort::yield_now(); // let it start
        let t = Instant::now();
        for _ in 0..n {
            gort::yield_now();
        }
        let ns = t.elapsed().as_nanos() as f64 / n as f64;
        other.join().unwrap();
        println!("RESULT name=yield_pingpong ns_per_op={ns:.1}");
    });
}

/// `n` coroutines each blocked receiving on its own channel (the same work as the peers'
/// `parked`: a task waiting on a oneshot/channel), RSS per coroutine.
fn parked(n: u64) {
    let before = rss_kib();
    gort::run(move || {
        let t = Instant::now();
        let ready = Arc::new(AtomicUsize::new(0));
        let mut txs = Vec::with_capacity(n as usize);
        let mut hs = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let (tx, rx) = gort::chan::bounded::<()>(1);
            let r = ready.clone();
            txs.push(tx);
            match gort::Builder::new().spawn(move || {
                r.fetch_add(1, Ordering::SeqCst);
                let _ = rx.recv();
            }) {
                Ok(h) => hs.push(h),
                Err(e) => {
                    println!("RESULT name=parked n={n} error=\"{e}\"");
                    std::process::exit(0)
                }
            }
        }
        while ready.load(Ordering::SeqCst) < n as usize {
            gort::time::sleep(Duration::from_millis(5));
        }
        let spawn_s = t.elapsed().as_secs_f64();
        let after = rss_kib();
        let per = after.saturating_sub(before) as f64 / n as f64;
        let maps = std::fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count());
        println!(
            "RESULT name=parked n={n} kib_per_task={per:.3} rss_before_kib={before} rss_after_kib={after} spawn_s={spawn_s:.2} maps={maps}"
        );
        for tx in txs {
            let _ = tx.send(());
        }
        for h in hs {
            h.join().unwrap();
        }
    });
}

/// `n` coroutines parked bare (`gort::park::park` until a flag is set): the runtime's own cost
/// per parked coroutine, without a channel.
fn parked_bare(n: u64) {
    let before = rss_kib();
    gort::run(move || {
        let go = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ready = Arc::new(AtomicUsize::new(0));
        let unparkers = Arc::new(std::sync::Mutex::new(Vec::with_capacity(n as usize)));
        let mut hs = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let (go, ready, unparkers) = (go.clone(), ready.clone(), unparkers.clone());
            match gort::Builder::new().spawn(move || {
                unparkers.lock().unwrap().push(gort::park::unparker());
                ready.fetch_add(1, Ordering::SeqCst);
                while !go.load(Ordering::SeqCst) {
                    gort::park::park();
                }
            }) {
                Ok(h) => hs.push(h),
                Err(e) => {
                    println!("RESULT name=parked_bare n={n} error=\"{e}\"");
                    std::process::exit(0)
                }
            }
        }
        while ready.load(Ordering::SeqCst) < n as usize {
            gort::time::sleep(Duration::from_millis(5));
        }
        let after = rss_kib();
        let per = after.saturating_sub(before) as f64 / n as f64;
        let maps = std::fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count());
        println!(
            "RESULT name=parked_bare n={n} kib_per_task={per:.3} rss_after_kib={after} maps={maps}"
        );
        go.store(true, Ordering::SeqCst);
        for u in unparkers.lock().unwrap().drain(..) {
            u.unpark();
        }
        for h in hs {
            h.join().unwrap();
        }
    });
}

fn timers(n: u64) {
    let before = rss_kib();
    gort::run(move || {
        let t = Instant::now();
        let hs: Vec<_> = (0..n)
            .map(|i| {
                gort::spawn(move || {
                    gort::time::sleep(Duration::from_micros(5000 + (i * 7919) % 10_000))
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        let peak = hwm_kib();
        println!(
            "RESULT name=timers n={n} total_ms={ms:.1} rss_delta_kib={} rss_before_kib={before}",
            peak.saturating_sub(before)
        );
    });
}

fn idle_cpu(secs: u64) {
    gort::run(|| {});
    std::thread::sleep(Duration::from_millis(200));
    let c0 = cpu_ticks();
    std::thread::sleep(Duration::from_secs(secs));
    let c1 = cpu_ticks();
    // Ticks are 1/100 s.
    let pct = (c1 - c0) as f64 / (secs as f64 * 100.0) * 100.0;
    println!("RESULT name=idle_cpu secs={secs} cpu_percent={pct:.3}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cmd = args.get(1).map(String::as_str).unwrap_or("help");
    let n = |d: u64| args.get(2).and_then(|v| v.parse().ok()).unwrap_or(d);
    match cmd {
        "spawn_join_batch" => spawn_join_batch(n(1_000_000)),
        "spawn_join_all" => spawn_join_all(n(1_000_000)),
        "yield_pingpong" => yield_pingpong(n(10_000_000)),
        "parked" => parked(n(100_000)),
        "parked_bare" => parked_bare(n(100_000)),
        "timers" => timers(n(100_000)),
        "idle_cpu" => idle_cpu(n(5)),
        other => {
            if !sync::run(other, n(1_000_000)) {
                eprintln!(
                    "usage: bench_micro spawn_join_batch|spawn_join_all|yield_pingpong|parked|parked_bare|timers|idle_cpu|chan_pingpong|fanin|mutex [N]"
                );
                std::process::exit(2);
            }
        }
    }
}
