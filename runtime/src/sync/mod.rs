//! Go's `sync` vocabulary for coroutines: [`Mutex`], [`RwLock`], [`Condvar`], [`WaitGroup`],
//! [`Once`], [`OnceLock`], [`Semaphore`] (Go's `x/sync/semaphore`), [`Barrier`].
//!
//! Every wait parks through [`crate::park`] (coroutines park, plain threads block), so a
//! guard may be held across other blocking gort calls. Guards are `!Send`: a coroutine is
//! pinned to its worker, so a guard never migrates.
//!
//! Each primitive keeps its state and a FIFO queue of [`Waiter`]s behind a `std` mutex held
//! only briefly (never across a park). Fairness: **always hand off**. When a waiter is queued,
//! a release grants the resource directly to the oldest waiter (it is never re-contended),
//! and a newcomer may take a free resource only when nobody is queued. This is Go's
//! starvation mode made permanent: no waiter starves, at the cost of a context switch per
//! hand-off under contention.
//!
//! Poisoning: none, like `parking_lot`. A panic while a guard is held unlocks the lock
//! during unwinding and the next owner sees the data as it was left; Go has no poisoning
//! either, and a coroutine's panic is reported at its `join`. Internal `std` mutexes ignore
//! poison too, since no user code runs under them. [`Once`] counts a panicking initializer
//! as done (Go's semantics); [`OnceLock`] lets the next caller retry.
mod misc;
mod mutex;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, MutexGuard as StdGuard, PoisonError};

use crate::park::{self, unparker, Unparker};
use crate::task::WaitReason;

pub use misc::{Barrier, BarrierWaitResult, Once, OnceLock, Semaphore, WaitGroup};
pub use mutex::{Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A queued waiter: granted by a releaser, then unparked.
pub(crate) struct Waiter {
    granted: AtomicBool,
    unparker: Unparker,
}

impl Waiter {
    pub(crate) fn new() -> Arc<Waiter> {
        Arc::new(Waiter {
            granted: AtomicBool::new(false),
            unparker: unparker(),
        })
    }

    pub(crate) fn grant(&self) {
        // Release: pairs with the Acquire load in `wait`/`is_granted`.
        self.granted.store(true, Ordering::Release);
        self.unparker.unpark();
    }

    pub(crate) fn is_granted(&self) -> bool {
        self.granted.load(Ordering::Acquire)
    }

    pub(crate) fn wait(&self) {
        while !self.is_granted() {
            park::park_reason(WaitReason::Sync);
        }
    }
}

pub(crate) fn lock<S>(m: &std::sync::Mutex<S>) -> StdGuard<'_, S> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
