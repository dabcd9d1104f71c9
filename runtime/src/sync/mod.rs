//! Go's `sync` vocabulary for coroutines: [`Mutex`], [`RwLock`], [`Condvar`], [`WaitGroup`],
//! [`Once`], [`OnceLock`], [`Semaphore`] (Go's `x/sync/semaphore`), [`Barrier`].
//!
//! Every wait parks through [`crate::park`] (coroutines park, plain threads block), so a
//! guard may be held across other blocking gort calls. Guards are `!Send`: a coroutine is
//! pinned to its worker, so a guard never migrates.
//!
//! Fast paths are a single atomic state word: an uncontended [`Mutex`] lock is one CAS and
//! its unlock one atomic add; [`RwLock`] read/write lock and unlock likewise. Only contended
//! operations take the primitive's brief `std` mutex (never held across a park), which guards
//! a queue of [`Waiter`] records.
//!
//! Fairness: [`Mutex`] follows Go's `sync.Mutex` (normal mode with barging, starvation mode
//! with direct hand-off after a waiter has waited 1 ms; see `mutex.rs`). [`RwLock`],
//! [`Semaphore`] and [`Condvar`] are FIFO and hand off directly to the oldest waiter.
//!
//! Poisoning: none, like `parking_lot`. A panic while a guard is held unlocks the lock
//! during unwinding and the next owner sees the data as it was left; Go has no poisoning
//! either, and a coroutine's panic is reported at its `join`. Internal `std` mutexes ignore
//! poison too, since no user code runs under them. [`Once`] counts a panicking initializer
//! as done (Go's semantics); [`OnceLock`] lets the next caller retry.
mod misc;
mod mutex;
mod rwlock;

use std::cell::RefCell;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, MutexGuard as StdGuard, PoisonError};
use std::time::Instant;

use crate::park::{self, unparker, Unparker};
use crate::task::WaitReason;

pub use misc::{Barrier, BarrierWaitResult, Once, OnceLock, Semaphore, WaitGroup};
pub use mutex::{Condvar, Mutex, MutexGuard};
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Waiter state: still waiting (what [`Waiter::wait`] loops on).
pub(crate) const WAITING: u8 = 0;
/// Waiter state set by a plain [`Waiter::grant`].
pub(crate) const GRANTED: u8 = 1;

/// A queued waiter: granted by a releaser (which sets a nonzero state), then unparked.
///
/// Records are recycled through a small per-thread cache ([`Waiter::take`] /
/// [`Waiter::give_back`]): coroutines are pinned to their worker thread, and `Arc::get_mut`
/// proves a cached record is no longer shared (the releaser that granted it has dropped its
/// handle), so reuse needs no `unsafe` and a contended wait allocates nothing in steady state.
/// A cached record keeps its last owner's `Task` (not its stack, which is freed when the
/// coroutine finishes) alive until reused: at most `CACHE_MAX` per thread.
pub(crate) struct Waiter {
    state: AtomicU8,
    unparker: Unparker,
    /// When the owner first started waiting (the mutex's starvation check reads it).
    pub(crate) since: Instant,
}

/// Most records one thread keeps for reuse.
const CACHE_MAX: usize = 8;

thread_local! {
    static CACHE: RefCell<Vec<Arc<Waiter>>> = const { RefCell::new(Vec::new()) };
}

impl Waiter {
    /// A fresh record for the caller.
    pub(crate) fn new() -> Arc<Waiter> {
        Arc::new(Waiter {
            state: AtomicU8::new(WAITING),
            unparker: unparker(),
            since: Instant::now(),
        })
    }

    /// A record for the caller: a recycled one from this thread's cache, or a fresh one.
    pub(crate) fn take() -> Arc<Waiter> {
        let cached = CACHE.try_with(|c| {
            let mut c = c.borrow_mut();
            for i in (0..c.len()).rev() {
                if let Some(m) = Arc::get_mut(&mut c[i]) {
                    *m.state.get_mut() = WAITING;
                    m.unparker = unparker();
                    m.since = Instant::now();
                    return Some(c.swap_remove(i));
                }
            }
            None
        });
        cached.ok().flatten().unwrap_or_else(Waiter::new)
    }

    /// Returns a record obtained from [`Waiter::take`] once its wait is over (a releaser may
    /// still hold a handle for a moment; `take` skips it until that is dropped).
    pub(crate) fn give_back(w: Arc<Waiter>) {
        let _ = CACHE.try_with(|c| {
            let mut c = c.borrow_mut();
            if c.len() < CACHE_MAX {
                c.push(w);
            }
        });
    }

    /// Re-arms the caller's own record for another wait (it is already dequeued).
    pub(crate) fn rearm(&self) {
        // Relaxed: the record is pushed onto a queue under a `std` mutex afterwards, which
        // publishes this store to the releaser that pops it.
        self.state.store(WAITING, Ordering::Relaxed);
    }

    /// Sets the state to `v` (nonzero) and wakes the owner.
    pub(crate) fn grant_with(&self, v: u8) {
        debug_assert_ne!(v, WAITING);
        // Release: pairs with the Acquire load in `wait`/`state`. The owner may return at
        // once, but cannot reuse the record while the caller still holds its `Arc` (reuse
        // needs `Arc::get_mut`), so `unparker` stays valid here.
        self.state.store(v, Ordering::Release);
        self.unparker.unpark();
    }

    pub(crate) fn grant(&self) {
        self.grant_with(GRANTED);
    }

    /// The state (`WAITING` until granted).
    pub(crate) fn state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }

    /// Parks until granted; returns the granted state.
    pub(crate) fn wait(&self) -> u8 {
        loop {
            let s = self.state();
            if s != WAITING {
                return s;
            }
            park::park_reason(WaitReason::Sync);
        }
    }
}

pub(crate) fn lock<S>(m: &std::sync::Mutex<S>) -> StdGuard<'_, S> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
