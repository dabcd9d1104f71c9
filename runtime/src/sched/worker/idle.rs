//! The idle side of the worker loop (Go's spinning Ms and `stopm`): a worker that found no
//! work spins briefly while another worker is busy, then sleeps, either as the one poller
//! (blocked in `epoll_wait` with the nearest timer as timeout) or on its thread parker.
//!
//! Lost wake-up freedom: before sleeping, a worker publishes that it is idle (idle list,
//! `sleep` state), issues a SeqCst fence and re-checks every source of work; a waker writes
//! its work first and then reads the sleep state (see sched/mod.rs for the full argument).
use std::sync::atomic::{fence, Ordering};

use super::{has_runnext, WorkerCtx};
use crate::sched::{AWAKE, SLEEP_FUTEX, SLEEP_POLL};
use crate::timer::nanotime;

/// Before sleeping, spin briefly while another worker is busy: work it hands us (a wake-up
/// in our inbox, a spawn to steal) is then picked up without a futex or eventfd round trip
/// on either side (Go's spinning Ms). A fully idle runtime never spins.
pub(super) fn spin_for_work(c: &WorkerCtx) -> bool {
    let rt = c.rt;
    if rt.nworkers() == 1 || rt.nidle.load(Ordering::Relaxed) + 1 >= rt.nworkers() {
        return false;
    }
    for i in 0..SPIN_ROUNDS {
        for _ in 0..32 {
            std::hint::spin_loop();
        }
        if has_local_work(c) || rt.has_stealable() {
            return true;
        }
        if i % 64 == 63 && rt.next_timer() <= nanotime() {
            return true;
        }
    }
    false
}

/// Spin rounds before sleeping (each ~32 pause instructions, roughly 1 µs; ~10 µs in all).
/// Measured on the echo benchmark (c=1000): no spin costs more CPU per round trip (futex
/// sleep/wake in the kernel), 50 µs burns ~1.3 µs of user time per round trip; 10 is the
/// balance. It also keeps fan-in over a channel from paying a futex wake per message.
const SPIN_ROUNDS: u32 = 10;

pub(super) fn has_local_work(c: &WorkerCtx) -> bool {
    has_runnext(c) || !c.local.is_empty() || c.w.inbox_len.load(Ordering::SeqCst) != 0
}

pub(super) fn sleep(c: &'static WorkerCtx) {
    let rt = c.rt;
    let w = c.w;
    if c.spinning.replace(false) {
        rt.nspinning.fetch_sub(1, Ordering::SeqCst);
    }
    {
        let mut idle = rt.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.push(c.index);
        rt.nidle.fetch_add(1, Ordering::SeqCst);
    }
    let poller = rt.poller.try_acquire();
    w.sleep.store(
        if poller { SLEEP_POLL } else { SLEEP_FUTEX },
        Ordering::SeqCst,
    );
    fence(Ordering::SeqCst);
    let ready_now = has_local_work(c)
        || w.woken_spinning.load(Ordering::SeqCst)
        || rt.has_stealable()
        || rt.next_timer() <= nanotime()
        || rt.shutdown.load(Ordering::SeqCst);
    if !ready_now {
        if poller {
            rt.poller.poll_blocking(rt);
            w.counters.polls.fetch_add(1, Ordering::Relaxed);
        } else {
            std::thread::park();
        }
    }
    if poller {
        rt.poller.release();
    }
    w.sleep.store(AWAKE, Ordering::SeqCst);
    {
        let mut idle = rt.idle.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pos) = idle.iter().position(|&i| i == c.index) {
            idle.swap_remove(pos);
            rt.nidle.fetch_sub(1, Ordering::SeqCst);
        }
    }
    if w.woken_spinning.swap(false, Ordering::SeqCst) {
        c.spinning.set(true);
    }
    // Poller hand-off: if we leave the poller role with work to do while others sleep, wake
    // one so that somebody keeps watching the network and the timers.
    if poller && has_local_work(c) && rt.nidle.load(Ordering::SeqCst) > 0 {
        rt.wake_idle();
    }
}
