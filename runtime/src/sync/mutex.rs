//! [`Mutex`] and [`Condvar`] that park coroutines (Go's `sync.Mutex`, `sync.Cond`).
//!
//! # Design (Go's `sync.Mutex`, own code)
//!
//! One atomic `state` word: `LOCKED` (bit 0), `WOKEN` (bit 1: a woken waiter or a spinner is
//! competing, so an unlock need not wake another), `STARVING` (bit 2) and the number of
//! queued waiters (bits 3..). Uncontended, `lock` is one CAS `0 -> LOCKED` and `unlock` one
//! `fetch_sub(LOCKED)` that returns 0. Contended operations also take `q`, a `std` mutex
//! around the FIFO `VecDeque` of [`Waiter`] records, held briefly and never across a park.
//!
//! * **Normal mode**: `unlock` releases the lock and, if there are waiters and none is
//!   already woken, pops the oldest and wakes it (`WOKEN` set, waiter count decremented). The
//!   woken waiter does not own the lock: it competes with newly arriving lockers, which may
//!   barge in (after a brief spin while the holder runs on another worker). A waiter that
//!   loses goes back to the **front** of the queue. Barging keeps a lock that is released
//!   and retaken in quick succession on one worker without a context switch per acquisition.
//! * **Starvation mode** (`STARVING`): entered when a waiter that has waited more than 1 ms
//!   fails to acquire. `unlock` then hands ownership directly to the oldest waiter (it sets
//!   `LOCKED` again on the waiter's behalf, under `q`); newcomers neither spin nor barge and
//!   queue at the back. The mode ends when the waiter handed the lock is the last one or has
//!   waited less than 1 ms.
//!
//! # Invariants
//!
//! * While `q` is not held, the waiter count in `state` equals `q.len()`: a waiter registers
//!   (count + 1 by CAS, then push) and a releaser dequeues (count - 1 by CAS, then pop) with
//!   `q` held. A waiter registers only by a CAS from a state in which it cannot take the
//!   lock, so an unlock between its check and its registration makes the CAS fail and it
//!   retries instead of sleeping through a free lock.
//! * `STARVING` implies at least one queued waiter; while it is set `LOCKED` is clear only
//!   between an unlock's `fetch_sub` and its hand-off, and nobody but that hand-off sets it.
//! * The data lives in a `std::sync::Mutex` used only as storage: the logical lock guarantees
//!   it is never contended, so taking it never blocks, and this file needs no `unsafe`. A
//!   guard drops its storage guard before releasing the logical lock.
//!
//! # Differences from Go
//!
//! Go's waiters sleep on a runtime semaphore keyed by the mutex address; here each mutex
//! has its own queue behind a `std` mutex, and registration happens under it (so no
//! semaphore count is needed). Spinning is a few dozen `spin_loop` hints per round, for at
//! most 4 rounds, and only when the runtime has more than one worker (or the caller is a
//! plain thread); Go also checks the local run queue. Coroutines are pinned to workers, so a
//! woken waiter always resumes on its own worker. No poisoning (see [`crate::sync`]).
//! `try_lock`, like Go's `TryLock`, may barge in normal mode.
use std::collections::VecDeque;
use std::hint::spin_loop;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use super::{lock, Waiter, GRANTED};
use crate::sched::worker;

const LOCKED: usize = 1;
const WOKEN: usize = 2;
const STARVING: usize = 4;
const WAITER_SHIFT: u32 = 3;
const WAITER: usize = 1 << WAITER_SHIFT;

/// Go's `starvationThresholdNs`.
const STARVATION_THRESHOLD: Duration = Duration::from_millis(1);
/// Spin rounds before queueing (Go's `active_spin`).
const SPIN_ROUNDS: u32 = 4;
/// `spin_loop` hints per round (Go's `active_spin_cnt` is 30 `PAUSE`s).
const SPIN_HINTS: u32 = 16;

/// Waiter state: woken in normal mode; must compete for the lock again.
const WOKEN_RETRY: u8 = GRANTED;
/// Waiter state: ownership handed over in starvation mode.
const HANDOFF: u8 = 2;

/// A mutual-exclusion lock that parks coroutines; no poisoning.
pub struct Mutex<T: ?Sized> {
    state: AtomicUsize,
    q: std::sync::Mutex<VecDeque<Arc<Waiter>>>,
    data: std::sync::Mutex<T>,
}

/// Guard of a [`Mutex`]; unlocks on drop. `!Send`.
pub struct MutexGuard<'a, T: ?Sized> {
    g: Option<std::sync::MutexGuard<'a, T>>,
    m: &'a Mutex<T>,
}

/// Spinning only helps when the holder can run meanwhile: on another worker, or, for a
/// plain thread, on another CPU (the OS decides).
fn can_spin() -> bool {
    worker::current_rt().is_none_or(|rt| rt.nworkers() > 1)
}

impl<T> Mutex<T> {
    /// A new unlocked mutex.
    pub fn new(v: T) -> Mutex<T> {
        Mutex::new_const(v)
    }

    pub(crate) const fn new_const(v: T) -> Mutex<T> {
        Mutex {
            state: AtomicUsize::new(0),
            q: std::sync::Mutex::new(VecDeque::new()),
            data: std::sync::Mutex::new(v),
        }
    }

    /// The data, consuming the mutex.
    pub fn into_inner(self) -> T {
        self.data
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T: ?Sized> Mutex<T> {
    fn guard(&self) -> MutexGuard<'_, T> {
        MutexGuard {
            g: Some(self.data.lock().unwrap_or_else(PoisonError::into_inner)),
            m: self,
        }
    }

    /// Locks, parking while another owner holds it.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        // Acquire: pairs with the Release `fetch_sub` in `unlock`.
        if self
            .state
            .compare_exchange(0, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow();
        }
        self.guard()
    }

    /// Locks if free now (may barge past queued waiters in normal mode, like Go's
    /// `TryLock`; never in starvation mode).
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        let mut old = self.state.load(Ordering::Relaxed);
        loop {
            if old & (LOCKED | STARVING) != 0 {
                return None;
            }
            // Acquire: pairs with the Release `fetch_sub` in `unlock`.
            match self.state.compare_exchange_weak(
                old,
                old | LOCKED,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(self.guard()),
                Err(s) => old = s,
            }
        }
    }

    /// Mutable access without locking.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut().unwrap_or_else(PoisonError::into_inner)
    }

    #[cold]
    fn lock_slow(&self) {
        let spin_ok = can_spin();
        let mut rec: Option<Arc<Waiter>> = None; // our record, once we have queued
        let mut waited = false; // we have been queued and woken at least once
        let mut starving = false;
        let mut awoke = false;
        let mut spins = 0;
        let mut old = self.state.load(Ordering::Relaxed);
        loop {
            // Spin while another owner holds it in normal mode: it may unlock soon.
            if old & (LOCKED | STARVING) == LOCKED && spin_ok && spins < SPIN_ROUNDS {
                // Set WOKEN so the unlock does not wake a waiter that would only lose to us.
                if !awoke
                    && old & WOKEN == 0
                    && old >> WAITER_SHIFT != 0
                    && self
                        .state
                        .compare_exchange_weak(
                            old,
                            old | WOKEN,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                {
                    awoke = true;
                }
                for _ in 0..SPIN_HINTS {
                    spin_loop();
                }
                spins += 1;
                old = self.state.load(Ordering::Relaxed);
                continue;
            }
            if old & (LOCKED | STARVING) == 0 {
                // Free in normal mode: take it (clearing WOKEN if it was ours).
                let new = if awoke {
                    (old | LOCKED) & !WOKEN
                } else {
                    old | LOCKED
                };
                // Acquire: pairs with the Release `fetch_sub` in `unlock`.
                match self.state.compare_exchange_weak(
                    old,
                    new,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(s) => {
                        old = s;
                        continue;
                    }
                }
            }
            // Held (or starving): register as a waiter and park.
            let w = match rec.take() {
                Some(w) => {
                    w.rearm();
                    w
                }
                None => Waiter::take(),
            };
            let mut q = lock(&self.q);
            let queued = loop {
                let old = self.state.load(Ordering::Relaxed);
                if old & (LOCKED | STARVING) == 0 {
                    break false; // freed meanwhile: go back and try to take it
                }
                let mut new = old + WAITER;
                if starving && old & LOCKED != 0 {
                    new |= STARVING;
                }
                if awoke {
                    new &= !WOKEN;
                }
                // Relaxed: `q` orders this against the releaser that pops us.
                if self
                    .state
                    .compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    break true;
                }
            };
            if !queued {
                drop(q);
                rec = Some(w);
                old = self.state.load(Ordering::Relaxed);
                continue;
            }
            if waited {
                q.push_front(w.clone()); // a woken waiter that lost keeps its place
            } else {
                q.push_back(w.clone());
            }
            drop(q);
            let how = w.wait();
            if how == HANDOFF {
                // Starvation mode: the unlocker set LOCKED for us and fixed the state.
                Waiter::give_back(w);
                return;
            }
            debug_assert_eq!(how, WOKEN_RETRY);
            starving = starving || w.since.elapsed() > STARVATION_THRESHOLD;
            waited = true;
            rec = Some(w);
            awoke = true; // the unlocker set WOKEN for us
            spins = 0;
            old = self.state.load(Ordering::Relaxed);
        }
        if let Some(w) = rec {
            Waiter::give_back(w);
        }
    }

    fn unlock(&self) {
        // Release: pairs with the Acquire CAS in `lock`/`try_lock`/`lock_slow`.
        let new = self.state.fetch_sub(LOCKED, Ordering::Release) - LOCKED;
        if new != 0 {
            self.unlock_slow(new);
        }
    }

    #[cold]
    fn unlock_slow(&self, new: usize) {
        if new & STARVING != 0 {
            // Hand the lock to the oldest waiter; nobody can take it meanwhile, as everyone
            // else sees STARVING.
            let mut q = lock(&self.q);
            let w = q
                .pop_front()
                .expect("sync: Mutex starving with no waiter (state corrupted)");
            let short_wait = w.since.elapsed() <= STARVATION_THRESHOLD;
            let mut old = self.state.load(Ordering::Relaxed);
            loop {
                let mut next = old + LOCKED - WAITER;
                if short_wait || old >> WAITER_SHIFT == 1 {
                    next &= !STARVING;
                }
                // Relaxed: the waiter learns of its ownership through the Release store in
                // `grant_with` (paired with its Acquire load), and our Release `fetch_sub` in
                // `unlock` already published the data to it through that chain.
                match self.state.compare_exchange_weak(
                    old,
                    next,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(s) => old = s,
                }
            }
            drop(q);
            w.grant_with(HANDOFF);
            return;
        }
        // Normal mode: wake one waiter, unless none is queued, one is already woken (or
        // spinning), or the lock was retaken (its owner will wake one on unlock).
        let idle = |s: usize| s >> WAITER_SHIFT == 0 || s & (LOCKED | WOKEN | STARVING) != 0;
        if idle(new) {
            return;
        }
        let mut q = lock(&self.q);
        let mut old = self.state.load(Ordering::Relaxed);
        loop {
            if idle(old) {
                return;
            }
            let next = (old - WAITER) | WOKEN;
            // Relaxed: `q` orders this against registering waiters; the woken waiter takes
            // the lock with its own Acquire CAS.
            match self
                .state
                .compare_exchange_weak(old, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(s) => old = s,
            }
        }
        let w = q
            .pop_front()
            .expect("sync: Mutex waiter count without a waiter (state corrupted)");
        drop(q);
        w.grant_with(WOKEN_RETRY);
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        self.g = None;
        self.m.unlock();
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.g.as_deref().expect("guard is live")
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.g.as_deref_mut().expect("guard is live")
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

impl<T: ?Sized> std::fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mutex { .. }")
    }
}

/// A condition variable for [`Mutex`] (Go's `sync.Cond`). Waits may wake spuriously: loop
/// on the condition.
#[derive(Default)]
pub struct Condvar {
    q: std::sync::Mutex<VecDeque<Arc<Waiter>>>,
}

impl Condvar {
    /// A new condition variable.
    pub fn new() -> Condvar {
        Condvar::default()
    }

    /// Atomically unlocks `guard`'s mutex and parks until notified, then relocks.
    pub fn wait<'a, T: ?Sized>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        let m = guard.m;
        let w = Waiter::take();
        lock(&self.q).push_back(w.clone()); // queued before unlocking: no lost notify
        drop(guard);
        w.wait();
        Waiter::give_back(w);
        m.lock()
    }

    /// Waits until `cond` is false.
    pub fn wait_while<'a, T: ?Sized>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut cond: impl FnMut(&mut T) -> bool,
    ) -> MutexGuard<'a, T> {
        while cond(&mut guard) {
            guard = self.wait(guard);
        }
        guard
    }

    /// Wakes the oldest waiter (Go's `Signal`).
    pub fn notify_one(&self) {
        if let Some(w) = lock(&self.q).pop_front() {
            w.grant();
        }
    }

    /// Wakes every waiter (Go's `Broadcast`).
    pub fn notify_all(&self) {
        for w in std::mem::take(&mut *lock(&self.q)) {
            w.grant();
        }
    }
}

impl std::fmt::Debug for Condvar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Condvar { .. }")
    }
}
