//! Stealing never-run tasks from other workers' rings (Go's `stealWork` / `runqsteal`), with
//! a grace period for a lone new task.
//!
//! What: an idle worker takes about half of a victim's ring ([`RunQueue::steal_into`]). If
//! the victim's ring holds exactly one task, the thief leaves it alone until it has seen the
//! ring unchanged (same head and tail) for [`LONE_GRACE_NS`]: a coroutine that spawns one
//! peer and then blocks on it (a ping-pong, a request handed to a helper) gets the peer run
//! on its own worker, where every later wake-up is a local `runnext` hand-off. Stolen at
//! once, the peer would be pinned to the thief forever (tasks never migrate once started,
//! docs/soundness.md), and every message would pay a cross-worker wake-up (inbox plus a
//! futex or eventfd), 20-100 times slower.
//!
//! Why so long a grace: measured on the chan_pingpong benchmark, the spawner took 2 to 90 µs
//! from the spawn to its first park (the first run of a coroutine on a thread faults in its
//! stack and the thread's malloc arena), and the thief was often spinning already (zero
//! wake-up latency), so a few microseconds of grace did not stop the split.
//!
//! Invariants: the grace only delays a steal, never forbids it: while the lone task waits,
//! `has_stealable` keeps the thief awake, so after the grace it is taken even if the victim
//! runs one coroutine for a long time (there is no preemption). Rings with two or more tasks
//! are stolen from at once, as before (spawn bursts spread immediately).
//!
//! Go counterpart: `runqgrab` does not steal a running P's `runnext` until the thief has
//! slept ~3 µs. Difference: Go can migrate a goroutine later, so its grace is short; here the
//! first run decides the worker for good, so the grace is longer.
use std::sync::atomic::Ordering;

use super::{next_rand, WorkerCtx};
use crate::task::TaskRef;
use crate::timer::nanotime;

/// How long a thief leaves a victim's lone never-run task alone.
pub(super) const LONE_GRACE_NS: u64 = 200_000;

/// A victim ring state seen by a thief: (victim, head, tail) and since when (nanotime).
pub(super) type LoneSeen = Option<((usize, u32, u32), u64)>;

pub(super) fn steal(c: &WorkerCtx) -> Option<TaskRef> {
    let rt = c.rt;
    let n = rt.nworkers();
    if n == 1 {
        return None;
    }
    let start = (next_rand(c) % n as u64) as usize;
    let me = &c.w.runq;
    let mut deferred = false;
    for k in 0..n {
        let v = (start + k) % n;
        if v == c.index {
            continue;
        }
        let q = &rt.workers[v].runq;
        let (h, t) = q.bounds();
        if t.wrapping_sub(h) == 1 && !lone_grace_over(c, (v, h, t)) {
            deferred = true;
            continue;
        }
        if let Some(t) = q.steal_into(me) {
            c.w.counters.steals.fetch_add(1, Ordering::Relaxed);
            return Some(t);
        }
    }
    if deferred {
        // Let the victim run if it shares our CPU: it is about to take the task itself.
        std::thread::yield_now();
    }
    None
}

/// True once the thief has seen the victim's ring in state `key` for [`LONE_GRACE_NS`].
fn lone_grace_over(c: &WorkerCtx, key: (usize, u32, u32)) -> bool {
    let now = nanotime();
    match c.lone_seen.get() {
        Some((k, since)) if k == key => now.saturating_sub(since) >= LONE_GRACE_NS,
        _ => {
            c.lone_seen.set(Some((key, now)));
            false
        }
    }
}
