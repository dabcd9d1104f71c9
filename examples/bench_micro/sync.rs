//! Channel and sync micro-benchmarks (filled in with gort::chan / gort::sync).
pub fn run(_cmd: &str, _n: u64) -> bool {
    false
}
