#!/usr/bin/env bash
# The large runs kept out of CI: 1M concurrent sleepers (test), and 1M parked coroutines
# with their RSS per coroutine (benchmark). Needs ~6 GiB of memory; default sysctls.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --test sched_sleep -- --ignored one_million_sleepers
cargo build --release --example bench_micro
target/release/examples/bench_micro parked 1000000
target/release/examples/bench_micro parked_bare 1000000
target/release/examples/bench_micro spawn_join_all 1000000
