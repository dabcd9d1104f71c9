//! [`RwLock`]: a reader-writer lock that parks coroutines (Go's `sync.RWMutex`).
//!
//! # Design
//!
//! One atomic `state` word: `WRITER` (bit 0), `QUEUED` (bit 1: the waiter queue is not empty)
//! and the number of active readers (bits 2..). Uncontended operations touch only the word:
//! `read` is one CAS adding a reader, `write` one CAS `0 -> WRITER`, a read unlock one
//! `fetch_sub`, a write unlock one CAS `WRITER -> 0`. Anything else takes `q`, a `std` mutex
//! around the FIFO queue of [`Waiter`] records (writer flag alongside), held briefly and
//! never across a park.
//!
//! Fairness is FIFO ("phase fair"), unchanged from before: once anyone is queued (`QUEUED`),
//! newcomers queue too, so a waiting writer blocks later readers (as in Go, where a pending
//! `Lock` blocks new `RLock`s), and a release grants the head of the queue directly: one
//! writer, or the whole run of readers at the head.
//!
//! # Invariants
//!
//! * `QUEUED` is set iff `q` is non-empty; both change only with `q` held. A waiter enqueues
//!   only after a CAS that sets `QUEUED` from a state in which it could not acquire, so a
//!   release between its check and that CAS makes the CAS fail and it retries.
//! * Readers are counted only while `WRITER` is clear, and `WRITER` is set only with no
//!   readers. A granted waiter's share (reader count or `WRITER`) is added to `state` by the
//!   releaser, under `q`, before the waiter is woken.
//! * Whoever releases the last share while `QUEUED` is set (the last reader, or the writer)
//!   runs [`RwLock::wake`], which grants the head if it can.
//! * The data lives in a `std::sync::RwLock` used only as storage (never contended, no
//!   `unsafe`). Guards drop the storage guard before the logical release.
//!
//! Differences from Go: Go lets readers in ahead of a writer that is waiting for the active
//! readers to drain only through its reader count trick; here the queue order decides for
//! both. No poisoning (see [`crate::sync`]).
use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};

use super::{lock, Waiter};

const WRITER: usize = 1;
const QUEUED: usize = 2;
const READER: usize = 4;

/// A reader-writer lock that parks coroutines; FIFO, no poisoning.
pub struct RwLock<T: ?Sized> {
    state: AtomicUsize,
    /// Waiters, oldest first, with `true` for a writer.
    q: std::sync::Mutex<VecDeque<(Arc<Waiter>, bool)>>,
    data: std::sync::RwLock<T>,
}

/// Shared guard of a [`RwLock`].
pub struct RwLockReadGuard<'a, T: ?Sized> {
    g: Option<std::sync::RwLockReadGuard<'a, T>>,
    l: &'a RwLock<T>,
}

/// Exclusive guard of a [`RwLock`].
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    g: Option<std::sync::RwLockWriteGuard<'a, T>>,
    l: &'a RwLock<T>,
}

impl<T> RwLock<T> {
    /// A new unlocked lock.
    pub fn new(v: T) -> RwLock<T> {
        RwLock {
            state: AtomicUsize::new(0),
            q: std::sync::Mutex::new(VecDeque::new()),
            data: std::sync::RwLock::new(v),
        }
    }

    /// The data, consuming the lock.
    pub fn into_inner(self) -> T {
        self.data
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Can a reader (`writer == false`) or a writer enter a lock in state `s` without queueing?
fn can_enter(s: usize, writer: bool) -> bool {
    if writer {
        s == 0
    } else {
        s & (WRITER | QUEUED) == 0
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Shared lock (Go's `RLock`).
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        if !self.try_enter(false) {
            self.enter_slow(false);
        }
        RwLockReadGuard {
            g: Some(self.data.read().unwrap_or_else(PoisonError::into_inner)),
            l: self,
        }
    }

    /// Exclusive lock (Go's `Lock`).
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        if !self.try_enter(true) {
            self.enter_slow(true);
        }
        RwLockWriteGuard {
            g: Some(self.data.write().unwrap_or_else(PoisonError::into_inner)),
            l: self,
        }
    }

    /// The fast path: enter by CAS if nobody is queued and the lock is compatible.
    fn try_enter(&self, writer: bool) -> bool {
        let share = if writer { WRITER } else { READER };
        let mut old = self.state.load(Ordering::Relaxed);
        while can_enter(old, writer) {
            // Acquire: pairs with the Release RMWs of `read_unlock`/`write_unlock`.
            match self.state.compare_exchange_weak(
                old,
                old + share,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(s) => old = s,
            }
        }
        false
    }

    #[cold]
    fn enter_slow(&self, writer: bool) {
        let w = {
            let mut q = lock(&self.q);
            let mut old = self.state.load(Ordering::Relaxed);
            loop {
                if can_enter(old, writer) {
                    drop(q);
                    if self.try_enter(writer) {
                        return;
                    }
                    q = lock(&self.q);
                    old = self.state.load(Ordering::Relaxed);
                    continue;
                }
                // Relaxed: `q` orders this against the releaser that will grant us.
                match self.state.compare_exchange_weak(
                    old,
                    old | QUEUED,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(s) => old = s,
                }
            }
            let w = Waiter::take();
            q.push_back((w.clone(), writer));
            w
        };
        // Granted: the releaser added our share to `state`; its Release store in `grant`
        // (paired with the Acquire load in `wait`) follows its own Release unlock RMW.
        w.wait();
        Waiter::give_back(w);
    }

    fn read_unlock(&self) {
        // Release: pairs with the Acquire CAS of the next `try_enter`.
        let old = self.state.fetch_sub(READER, Ordering::Release);
        if old == READER | QUEUED {
            self.wake();
        }
    }

    fn write_unlock(&self) {
        // Release: pairs with the Acquire CAS of the next `try_enter`.
        if self
            .state
            .compare_exchange(WRITER, 0, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            // QUEUED is set (nobody else changes the word while we write).
            let old = self.state.fetch_sub(WRITER, Ordering::Release);
            debug_assert_eq!(old & WRITER, WRITER);
            self.wake();
        }
    }

    /// Grants the head of the queue if it can enter: one writer, or a run of readers.
    #[cold]
    fn wake(&self) {
        let mut q = lock(&self.q);
        let mut granted = Vec::new();
        while let Some(&(_, writer)) = q.front() {
            let last = q.len() == 1;
            let mut old = self.state.load(Ordering::Relaxed);
            let ok = loop {
                // QUEUED is ours to ignore here: we decide who leaves the queue.
                if !can_enter(old & !QUEUED, writer) {
                    break false;
                }
                let mut new = old + if writer { WRITER } else { READER };
                if last {
                    new &= !QUEUED;
                }
                // Relaxed: the waiter is told through `grant` (Release/Acquire).
                match self.state.compare_exchange_weak(
                    old,
                    new,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break true,
                    Err(s) => old = s,
                }
            };
            if !ok {
                break;
            }
            if let Some((w, _)) = q.pop_front() {
                granted.push(w);
            }
            if writer {
                break;
            }
        }
        drop(q);
        for w in granted {
            w.grant();
        }
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        self.g = None;
        self.l.read_unlock();
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.g = None;
        self.l.write_unlock();
    }
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.g.as_deref().expect("guard is live")
    }
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.g.as_deref().expect("guard is live")
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.g.as_deref_mut().expect("guard is live")
    }
}

impl<T: ?Sized> std::fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RwLock { .. }")
    }
}
