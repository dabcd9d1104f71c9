//! Shared helpers for the peer benchmark programs (not part of gort).

use std::time::Duration;

/// Reads a `Vm*:` field (in KiB) from /proc/self/status.
pub fn proc_status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    for line in s.lines() {
        if let Some(rest) = line.strip_prefix(field) {
            if let Some(rest) = rest.strip_prefix(':') {
                let num: String = rest.trim().chars().take_while(|c| c.is_ascii_digit()).collect();
                return num.parse().unwrap_or(0);
            }
        }
    }
    0
}

/// Current resident set size in KiB.
pub fn rss_kib() -> u64 {
    proc_status_kib("VmRSS")
}

/// Peak resident set size in KiB.
pub fn hwm_kib() -> u64 {
    proc_status_kib("VmHWM")
}

/// Port from argv[1]; exits with a usage message otherwise.
pub fn port_arg(prog: &str) -> u16 {
    match std::env::args().nth(1).and_then(|p| p.parse().ok()) {
        Some(p) => p,
        None => {
            eprintln!("usage: {prog} PORT");
            std::process::exit(2);
        }
    }
}

/// Number of online CPUs.
pub fn ncpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Small deterministic PRNG (xorshift64*), used for timer durations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Random sleep in [5 ms, 15 ms) for task `i` (same distribution in every peer).
pub fn timer_duration(i: u64) -> Duration {
    let mut r = Rng::new(i + 1);
    Duration::from_micros(5_000 + r.next_u64() % 10_000)
}

/// Micro benchmark names and default sizes, shared by tokio_micro and may_micro.
pub const USAGE: &str = "usage: PROG SUBCOMMAND [N]\n  spawn_join_batch [1000000]\n  spawn_join_all [1000000]\n  chan_pingpong [1000000]\n  parked N (e.g. 100000, 1000000)\n  timers [100000]\n  fanin [1000000]\n  mutex [1000000]";

/// Default N for a subcommand.
pub fn default_n(name: &str) -> Option<u64> {
    Some(match name {
        "spawn_join_batch" | "spawn_join_all" | "chan_pingpong" | "fanin" | "mutex" => 1_000_000,
        "parked" => 100_000,
        "timers" => 100_000,
        _ => return None,
    })
}

/// Parses `SUBCOMMAND [N]` from argv.
pub fn micro_args() -> (String, u64) {
    let mut a = std::env::args().skip(1);
    let name = a.next().unwrap_or_default();
    let def = match default_n(&name) {
        Some(d) => d,
        None => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let n = a.next().and_then(|s| s.parse().ok()).unwrap_or(def);
    (name, n)
}

/// Formats a float to one decimal place.
pub fn f1(x: f64) -> String {
    format!("{x:.1}")
}
