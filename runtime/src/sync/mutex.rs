//! [`Mutex`], [`RwLock`] and [`Condvar`] that park coroutines (Go's `sync.Mutex`,
//! `sync.RWMutex`, `sync.Cond`).
//!
//! The logical lock state and FIFO waiter queue live behind a brief `std` mutex; the data
//! lives in a `std::sync::Mutex`/`RwLock` used only as storage: the logical lock guarantees it
//! is never contended, so taking it never blocks, and the crate needs no `unsafe`. Releases
//! hand off directly to the oldest waiter (see the module docs of [`crate::sync`]). A guard
//! drops its storage guard before releasing the logical lock.
//!
//! RwLock is FIFO ("phase fair"): a queued writer blocks later readers (as in Go, where a
//! pending `Lock` blocks new `RLock`s), and a writer's release admits the whole run of
//! readers at the queue's head.
use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, PoisonError};

use super::{lock, Waiter};

struct MState {
    locked: bool,
    q: VecDeque<Arc<Waiter>>,
}

/// A mutual-exclusion lock that parks coroutines; no poisoning.
pub struct Mutex<T: ?Sized> {
    st: std::sync::Mutex<MState>,
    data: std::sync::Mutex<T>,
}

/// Guard of a [`Mutex`]; unlocks on drop. `!Send`.
pub struct MutexGuard<'a, T: ?Sized> {
    g: Option<std::sync::MutexGuard<'a, T>>,
    m: &'a Mutex<T>,
}

impl<T> Mutex<T> {
    /// A new unlocked mutex.
    pub fn new(v: T) -> Mutex<T> {
        Mutex::new_const(v)
    }

    pub(crate) const fn new_const(v: T) -> Mutex<T> {
        Mutex {
            st: std::sync::Mutex::new(MState {
                locked: false,
                q: VecDeque::new(),
            }),
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
        let w = {
            let mut st = lock(&self.st);
            if !st.locked && st.q.is_empty() {
                st.locked = true;
                return self.guard();
            }
            let w = Waiter::new();
            st.q.push_back(w.clone());
            w
        };
        w.wait(); // ownership was handed to us
        self.guard()
    }

    /// Locks if free now.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        let mut st = lock(&self.st);
        if !st.locked && st.q.is_empty() {
            st.locked = true;
            drop(st);
            return Some(self.guard());
        }
        None
    }

    /// Mutable access without locking.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut().unwrap_or_else(PoisonError::into_inner)
    }

    fn unlock(&self) {
        let mut st = lock(&self.st);
        match st.q.pop_front() {
            Some(w) => w.grant(), // stays locked: direct hand-off
            None => st.locked = false,
        }
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

struct RwState {
    readers: usize,
    writer: bool,
    q: VecDeque<(Arc<Waiter>, bool)>,
}

impl RwState {
    /// Grants the head of the queue if possible: one writer, or a run of readers.
    fn wake(&mut self) {
        while let Some((_, is_writer)) = self.q.front() {
            if self.writer || (*is_writer && self.readers > 0) {
                return;
            }
            let Some((w, is_writer)) = self.q.pop_front() else {
                return;
            };
            if is_writer {
                self.writer = true;
                w.grant();
                return;
            }
            self.readers += 1;
            w.grant();
        }
    }
}

/// A reader-writer lock that parks coroutines; FIFO, no poisoning.
pub struct RwLock<T: ?Sized> {
    st: std::sync::Mutex<RwState>,
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
            st: std::sync::Mutex::new(RwState {
                readers: 0,
                writer: false,
                q: VecDeque::new(),
            }),
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

impl<T: ?Sized> RwLock<T> {
    /// Shared lock (Go's `RLock`).
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        let w = {
            let mut st = lock(&self.st);
            if !st.writer && st.q.is_empty() {
                st.readers += 1;
                None
            } else {
                let w = Waiter::new();
                st.q.push_back((w.clone(), false));
                Some(w)
            }
        };
        if let Some(w) = w {
            w.wait();
        }
        RwLockReadGuard {
            g: Some(self.data.read().unwrap_or_else(PoisonError::into_inner)),
            l: self,
        }
    }

    /// Exclusive lock (Go's `Lock`).
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        let w = {
            let mut st = lock(&self.st);
            if !st.writer && st.readers == 0 && st.q.is_empty() {
                st.writer = true;
                None
            } else {
                let w = Waiter::new();
                st.q.push_back((w.clone(), true));
                Some(w)
            }
        };
        if let Some(w) = w {
            w.wait();
        }
        RwLockWriteGuard {
            g: Some(self.data.write().unwrap_or_else(PoisonError::into_inner)),
            l: self,
        }
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        self.g = None;
        let mut st = lock(&self.l.st);
        st.readers -= 1;
        st.wake();
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.g = None;
        let mut st = lock(&self.l.st);
        st.writer = false;
        st.wake();
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
        let w = Waiter::new();
        lock(&self.q).push_back(w.clone()); // queued before unlocking: no lost notify
        drop(guard);
        w.wait();
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
