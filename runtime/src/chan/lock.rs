//! The channel lock: a test-and-test-and-set spin lock whose unlock is a plain store.
//!
//! What: guards one channel's `State` (buffer, waiter queues, `closed`). Every channel
//! operation takes it once (a ping-pong round trip four times), so its cost is on the path of
//! every message.
//!
//! Why not `std::sync::Mutex`: its unlock is an atomic swap (it must learn whether a waiter
//! sleeps on the futex) and its guard reads the global panic count to decide on poisoning. Here
//! the lock is one CAS (Acquire) and the unlock a Release store, a plain `mov` on x86.
//!
//! Invariants (what makes spinning acceptable): the lock is held only for short sections
//! that never park, block or wait for another thread, and run no user code except drops of
//! runtime-owned values; it is not re-entrant (a section never calls back into the same
//! channel). A contended locker spins with `spin_loop` for a few rounds, then calls
//! `thread::yield_now` between attempts, so that a holder preempted by the OS on our CPU gets
//! it back. No poisoning: the guard releases the lock in `Drop`, also while unwinding, and
//! the channel code leaves `State` consistent wherever it can panic (only on allocation).
//!
//! Go counterpart: `hchan.lock` (a `runtime.mutex`, futex-based: spins, then sleeps in the
//! kernel). Difference: gort never sleeps in the kernel for a channel lock; its sections are
//! short enough that yielding the CPU is the only slow path needed.
use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};

pub(crate) struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// The value is reached only through a `SpinGuard`, and at most one guard exists at a time
// (the `locked` flag, taken with an Acquire CAS and released with a Release store, which also
// orders the accesses of consecutive holders).
// SAFETY: sharing the lock thus only moves access to `T` between threads, one at a time, so
// `T: Send` is enough, as for `std::sync::Mutex`.
unsafe impl<T: Send> Sync for SpinLock<T> {}

/// Exclusive access to the locked value; unlocks on drop. `!Send` and `!Sync` (like
/// `MutexGuard`): a shared guard must not hand out `&T` on several threads.
pub(crate) struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
    _not_send: PhantomData<*mut T>,
}

/// Spin rounds (each up to 64 `spin_loop` hints) before a contended locker starts yielding.
const SPIN_ROUNDS: u32 = 6;

impl<T> SpinLock<T> {
    pub(crate) const fn new(value: T) -> SpinLock<T> {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    #[inline]
    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        // Acquire: pairs with the Release store in `SpinGuard::drop` of the previous holder.
        if self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
        SpinGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        let mut round = 0;
        loop {
            // Relaxed: only a hint to wait before retrying; the CAS below acquires.
            while self.locked.load(Ordering::Relaxed) {
                if round < SPIN_ROUNDS {
                    for _ in 0..(2u32 << round) {
                        std::hint::spin_loop();
                    }
                    round += 1;
                } else {
                    std::thread::yield_now();
                }
            }
            // Acquire: as in `lock`.
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while its thread holds the lock (see the `Sync` impl).
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference through the guard.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // Release: publishes this holder's writes to the next one (pairs with the Acquire
        // CAS in `lock`).
        self.lock.locked.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::SpinLock;
    use std::sync::Arc;

    #[test]
    fn excludes_and_publishes_across_threads() {
        let l = Arc::new(SpinLock::new((0u64, 0u64)));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        let mut g = l.lock();
                        // Two fields updated non-atomically: a torn view would show them apart.
                        assert_eq!(g.0, g.1);
                        g.0 += 1;
                        g.1 += 1;
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*l.lock(), (80_000, 80_000));
    }

    #[test]
    fn a_panic_under_the_lock_releases_it() {
        let l = Arc::new(SpinLock::new(1));
        let l2 = l.clone();
        let r = std::thread::spawn(move || {
            let _g = l2.lock();
            panic!("inside the lock");
        })
        .join();
        assert!(r.is_err());
        assert_eq!(*l.lock(), 1);
    }
}
