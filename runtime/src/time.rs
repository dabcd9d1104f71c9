//! Sleeping (Go's `time.Sleep`). A sleeper never wakes early: it loops until the clock has
//! passed its deadline, whatever wakes it.
use std::time::{Duration, Instant};

use crate::park::{self, unparker};
use crate::sched::worker;
use crate::task::WaitReason;
use crate::timer::{self, TimerAction};

/// Parks the calling coroutine for at least `d` (blocks a plain thread).
pub fn sleep(d: Duration) {
    match Instant::now().checked_add(d) {
        Some(t) => sleep_until(t),
        None => loop {
            // Effectively forever.
            park::park_reason(WaitReason::Timer);
        },
    }
}

/// Parks the calling coroutine until `deadline` has passed (blocks a plain thread).
pub fn sleep_until(deadline: Instant) {
    if worker::current_task().is_none() {
        let now = Instant::now();
        if deadline > now {
            std::thread::sleep(deadline - now);
        }
        return;
    }
    if Instant::now() >= deadline {
        return;
    }
    let when = timer::instant_to_nanos(deadline).saturating_add(1);
    let mut h = timer::add_timer_nanos(when, TimerAction::Unpark(unparker()));
    while Instant::now() < deadline {
        park::park_reason(WaitReason::Timer);
        if h.fired() && Instant::now() < deadline {
            // Defensive: the timer fired yet the clock disagrees; arm another.
            h = timer::add_timer_nanos(when.saturating_add(1000), TimerAction::Unpark(unparker()));
        }
    }
}

pub use crate::timeutil::{after, tick, Ticker, Timer};
