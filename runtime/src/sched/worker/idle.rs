//! The idle side of the worker loop (Go's spinning Ms and `stopm`): a worker that found no
//! work spins briefly while another worker is busy, then sleeps in `epoll_wait` on its own
//! poller. One sleeper at a time holds the timer role and bounds that wait by the nearest
//! timer; the others wait without a timeout. Wakers write the sleeper's eventfd.
//!
//! Lost wake-up freedom: before sleeping, a worker publishes that it is idle (idle list,
//! `sleep` state), issues a SeqCst fence and re-checks every source of work; a waker writes
//! its work first and then reads the sleep state (see sched/mod.rs for the full argument).
use std::sync::atomic::{fence, Ordering};

use super::{has_runnext, WorkerCtx};
use crate::sched::{AWAKE, SLEEPING};
use crate::timer::nanotime;

/// Before sleeping, spin briefly while another worker is busy: work it hands us (a wake-up
/// in our inbox, a spawn to steal) is then picked up without an eventfd round trip on either
/// side (Go's spinning Ms). A fully idle runtime never spins.
///
/// Spinning pays only when work comes from other workers (channel hand-offs, spawns); a
/// worker serving its own connections gets its work from its own epoll instance, which the
/// spin cannot see, so there spinning only burns CPU and delays that work. The worker keeps a
/// credit: a spin that finds work earns two, one that does not costs one, and with no credit
/// it sleeps at once, except for one probing spin every `SPIN_PROBE` idle turns so that a
/// change of workload is noticed.
pub(super) fn spin_for_work(c: &WorkerCtx) -> bool {
    let rt = c.rt;
    if rt.nworkers() == 1 || rt.nidle.load(Ordering::Relaxed) + 1 >= rt.nworkers() {
        return false;
    }
    let credit = c.spin_credit.get();
    if credit <= 0 {
        if credit > -SPIN_PROBE {
            c.spin_credit.set(credit - 1);
            return false;
        }
        c.spin_credit.set(0);
    }
    for i in 0..SPIN_ROUNDS {
        for _ in 0..32 {
            std::hint::spin_loop();
        }
        if has_local_work(c)
            || rt.has_stealable()
            || (i % 64 == 63 && rt.next_timer() <= nanotime())
        {
            c.spin_credit
                .set((c.spin_credit.get() + 2).min(SPIN_CREDIT_MAX));
            return true;
        }
    }
    c.spin_credit.set(c.spin_credit.get() - 1);
    false
}

/// Spin rounds before sleeping (each ~32 pause instructions, roughly 1 µs; ~10 µs in all).
/// Measured on the echo benchmark (c=1000) before per-worker pollers: no spin cost more CPU
/// per round trip (futex sleep/wake in the kernel), 50 µs burnt ~1.3 µs of user time per
/// round trip; 10 was the balance. It also keeps fan-in over a channel from paying an
/// eventfd wake per message.
const SPIN_ROUNDS: u32 = 10;

/// Upper bound of the spin credit (see `spin_for_work`).
pub(super) const SPIN_CREDIT_MAX: i32 = 16;

/// With no spin credit, one idle turn in this many still spins.
const SPIN_PROBE: i32 = 32;

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
    let timer_role = !rt.timer_role.load(Ordering::Relaxed)
        && rt
            .timer_role
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok();
    w.sleep.store(SLEEPING, Ordering::SeqCst);
    fence(Ordering::SeqCst);
    let ready_now = has_local_work(c)
        || w.woken_spinning.load(Ordering::SeqCst)
        || rt.has_stealable()
        || rt.next_timer() <= nanotime()
        || rt.shutdown.load(Ordering::SeqCst);
    if !ready_now {
        sleep_in_poller(c, timer_role);
        w.counters.polls.fetch_add(1, Ordering::Relaxed);
    }
    if timer_role {
        rt.timer_role.store(false, Ordering::SeqCst);
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
}

/// Blocks in this worker's own `epoll_wait` until one of its descriptors is ready, a waker
/// writes its eventfd, or (holding the timer role) the nearest timer is due; then runs the
/// expired timers.
///
/// Timers without loss: the role holder publishes the time it will wake at, fences, and
/// re-reads the nearest timer; `Shared::timer_added` pushes the timer, fences and reads that
/// time. One of them sees the other. A sleeper without the role needs no timeout: the role
/// is held by another sleeper, or is free, and then every worker is awake or about to sleep
/// and will take it (the role is released only by a worker that is awake).
fn sleep_in_poller(c: &'static WorkerCtx, timer_role: bool) {
    let rt = c.rt;
    let mut timeout_ms = -1;
    if timer_role {
        rt.timer_holder.store(c.index, Ordering::SeqCst);
        rt.timer_poll_until
            .store(rt.next_timer().max(1), Ordering::SeqCst);
        // Pairs with the fence in `Shared::timer_added`.
        fence(Ordering::SeqCst);
        let next = rt.next_timer();
        let now = nanotime();
        timeout_ms = if next == u64::MAX {
            -1
        } else if next <= now {
            0
        } else {
            // Round up: never wake before the timer is due.
            ((next - now).div_ceil(1_000_000)).min(i32::MAX as u64) as i32
        };
    }
    let n = c.w.poller.poll_blocking(timeout_ms);
    c.pipeline.set(n as u32);
    if timer_role {
        rt.timer_poll_until.store(0, Ordering::SeqCst);
    }
    rt.run_timers(nanotime());
}
