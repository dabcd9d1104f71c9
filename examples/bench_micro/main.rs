//! Temporary driver for the sync micro-benchmarks (the lead owns the real main.rs):
//! `cargo run --release --example bench_micro -- <cmd> [n]`.
mod sync;

fn main() {
    let mut args = std::env::args().skip(1);
    let cmd = args.next().unwrap_or_else(|| "chan_pingpong".into());
    let n = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    if !sync::run(&cmd, n) {
        eprintln!("unknown benchmark {cmd}");
        std::process::exit(2);
    }
}
