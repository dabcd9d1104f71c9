//! The per-worker run queue of never-run tasks (Go's `p.runq`).
//!
//! A bounded single-producer, multi-consumer ring of 256 slots. Only the owner worker pushes
//! (at `tail`); the owner and stealers pop by advancing `head` with a CAS. A stealer takes
//! about half of a victim's queue at once ([`RunQueue::steal_into`]).
//!
//! Difference from Go: only tasks that have never run are stored here, because a task that has
//! started is pinned to its worker (see task.rs). So everything in this ring may be stolen.
//!
//! Invariants: `tail - head <= N` (wrapping u32 arithmetic); slots in `head..tail` each own one
//! strong `Arc<Task>` count (stored with `Arc::into_raw`); slots outside hold stale pointers that
//! are never dereferenced.
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use std::sync::Arc;

use crate::task::Task;

pub(crate) const N: u32 = 256;

pub(crate) struct RunQueue {
    head: AtomicU32,
    tail: AtomicU32,
    buf: Box<[AtomicPtr<Task>]>,
}

impl RunQueue {
    pub(crate) fn new() -> RunQueue {
        RunQueue {
            head: AtomicU32::new(0),
            tail: AtomicU32::new(0),
            buf: (0..N).map(|_| AtomicPtr::new(std::ptr::null_mut())).collect(),
        }
    }

    fn slot(&self, i: u32) -> &AtomicPtr<Task> {
        &self.buf[(i % N) as usize]
    }

    pub(crate) fn len(&self) -> usize {
        let h = self.head.load(Ordering::Acquire);
        let t = self.tail.load(Ordering::Acquire);
        t.wrapping_sub(h).min(N) as usize
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Owner only. Pushes at the tail; when full, returns the task and half the queue so the
    /// caller moves them to the global injector (Go's `runqputslow`).
    pub(crate) fn push(&self, task: Arc<Task>) -> Result<(), Vec<Arc<Task>>> {
        loop {
            // Acquire: pairs with the Release CAS on head by consumers (their slot reads are done).
            let h = self.head.load(Ordering::Acquire);
            let t = self.tail.load(Ordering::Relaxed); // only we write tail
            if t.wrapping_sub(h) < N {
                self.slot(t).store(Arc::into_raw(task) as *mut Task, Ordering::Relaxed);
                // Release: publishes the slot write to consumers that load tail with Acquire.
                self.tail.store(t.wrapping_add(1), Ordering::Release);
                return Ok(());
            }
            // Full: take half off the head for the injector.
            let n = N / 2;
            let ptrs: Vec<*mut Task> = (0..n)
                .map(|i| self.slot(h.wrapping_add(i)).load(Ordering::Relaxed))
                .collect();
            if self
                .head
                .compare_exchange(h, h.wrapping_add(n), Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                continue; // a stealer raced us; there may be room now
            }
            let mut out: Vec<Arc<Task>> = ptrs
                .into_iter()
                // SAFETY: the CAS moved these slots out of `head..tail`, transferring their
                // strong counts to us.
                .map(|p| unsafe { Arc::from_raw(p) })
                .collect();
            out.push(task);
            return Err(out);
        }
    }

    /// Owner or anyone: pops from the head.
    pub(crate) fn pop(&self) -> Option<Arc<Task>> {
        loop {
            let h = self.head.load(Ordering::Acquire);
            // Acquire: pairs with the owner's Release store of tail after writing the slot.
            let t = self.tail.load(Ordering::Acquire);
            if t == h {
                return None;
            }
            let p = self.slot(h).load(Ordering::Relaxed);
            if self
                .head
                .compare_exchange(h, h.wrapping_add(1), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                // SAFETY: winning the CAS took slot `h` out of `head..tail`; the producer cannot
                // have overwritten it before head moved, so `p` is the pointer it stored.
                return Some(unsafe { Arc::from_raw(p) });
            }
        }
    }

    /// Steals about half of `self` (the victim) into `dst` (owned by the caller) and returns
    /// one of the stolen tasks to run at once (Go's `runqsteal`).
    pub(crate) fn steal_into(&self, dst: &RunQueue) -> Option<Arc<Task>> {
        let dt = dst.tail.load(Ordering::Relaxed); // we own dst
        let dh = dst.head.load(Ordering::Acquire);
        loop {
            let h = self.head.load(Ordering::Acquire);
            let t = self.tail.load(Ordering::Acquire);
            let avail = t.wrapping_sub(h);
            if avail == 0 || avail > N {
                if avail > N {
                    continue; // torn read of head/tail while they moved; retry
                }
                return None;
            }
            let n = avail - avail / 2;
            let room = N - dt.wrapping_sub(dh);
            let n = n.min(room.max(1));
            let mut first: *mut Task = std::ptr::null_mut();
            for i in 0..n {
                let p = self.slot(h.wrapping_add(i)).load(Ordering::Relaxed);
                if i == 0 {
                    first = p;
                } else {
                    dst.slot(dt.wrapping_add(i - 1)).store(p, Ordering::Relaxed);
                }
            }
            if self
                .head
                .compare_exchange(h, h.wrapping_add(n), Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            // Release: publishes the copied slots (pairs with Acquire loads of dst.tail).
            dst.tail.store(dt.wrapping_add(n - 1), Ordering::Release);
            // SAFETY: the CAS transferred the strong counts of slots h..h+n to us; n-1 of them
            // now live in dst's `head..tail`, the first one we return.
            return Some(unsafe { Arc::from_raw(first) });
        }
    }
}

impl Drop for RunQueue {
    fn drop(&mut self) {
        while let Some(t) = self.pop() {
            drop(t);
        }
    }
}
