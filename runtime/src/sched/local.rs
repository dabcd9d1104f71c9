//! The worker's local FIFO of pinned runnable tasks (part of Go's `p.runq`, for the tasks
//! that have run; never-run tasks live in the stealable ring in runq.rs).
//!
//! What: a FIFO that only its worker thread touches: a fixed ring of 256 slots (indices
//! masked by a constant, so no bounds check and no capacity load) plus an unbounded spill
//! `VecDeque` for bursts. It replaces a `RefCell<VecDeque>`: a yield pushes and pops once per
//! switch, and the borrow flag plus `VecDeque`'s index wrapping were a measurable part of the
//! switch cost.
//!
//! Invariants:
//! - `!Sync` (it holds an `UnsafeCell`), so only the thread that owns the `WorkerCtx` reaches
//!   it; every method takes `&self`, creates the only `&mut Inner` for the duration of the call
//!   and runs no foreign code meanwhile (no callbacks, no `T` destructor: slots are moved in
//!   and out, never overwritten while full), so the `&mut` is never aliased, even re-entrantly.
//!   (The one call out is the global allocator when `spill` grows; a `GlobalAlloc`, an
//!   `unsafe impl`, that re-entered the scheduler would be outside anything gort supports.)
//! - Ring slots in `head..tail` (wrapping u32 indices, masked by `RING - 1`) are `Some`, the
//!   others `None`; `tail - head <= RING`.
//! - FIFO order: every item in the ring is older than every item in `spill` (a push goes to
//!   the ring only while `spill` is empty), so pop takes the ring first, then `spill`.
//!
//! Go counterpart: the local half of `runqput`/`runqget`; Go's ring is bounded and spills to
//! the global queue, ours spills to a private queue because pinned tasks cannot move to
//! another worker.
use std::cell::UnsafeCell;
use std::collections::VecDeque;

const RING: usize = 256;

pub(crate) struct LocalQueue<T> {
    inner: UnsafeCell<Inner<T>>,
}

struct Inner<T> {
    ring: [Option<T>; RING],
    head: u32,
    tail: u32,
    spill: VecDeque<T>,
}

impl<T> LocalQueue<T> {
    pub(crate) fn new() -> LocalQueue<T> {
        LocalQueue {
            inner: UnsafeCell::new(Inner {
                ring: [const { None }; RING],
                head: 0,
                tail: 0,
                spill: VecDeque::new(),
            }),
        }
    }

    /// Runs `f` with exclusive access to the queue.
    #[inline(always)]
    fn with<R>(&self, f: impl FnOnce(&mut Inner<T>) -> R) -> R {
        // SAFETY: `LocalQueue` is `!Sync`, so only one thread reaches it, and the callers
        // below are the only users of `with`: each runs a short operation that calls no foreign
        // code (no `T` drop, no callback), so no other `&mut Inner` can exist meanwhile.
        f(unsafe { &mut *self.inner.get() })
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.with(|q| q.tail.wrapping_sub(q.head) as usize + q.spill.len())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.with(|q| q.tail == q.head && q.spill.is_empty())
    }

    #[inline]
    pub(crate) fn push_back(&self, t: T) {
        self.with(|q| {
            if q.tail.wrapping_sub(q.head) as usize == RING {
                return q.push_spill(t);
            }
            if !q.spill.is_empty() {
                return q.push_spill(t);
            }
            let slot = &mut q.ring[q.tail as usize % RING];
            if slot.is_some() {
                crate::overflow::throw("LocalQueue::push_back: slot in use");
            }
            *slot = Some(t);
            q.tail = q.tail.wrapping_add(1);
        })
    }

    #[inline]
    pub(crate) fn pop_front(&self) -> Option<T> {
        self.with(|q| {
            if q.head == q.tail {
                return q.spill.pop_front();
            }
            let t = q.ring[q.head as usize % RING].take();
            q.head = q.head.wrapping_add(1);
            t
        })
    }

    /// Runs `f` on the item `pop_front` would return `n + 1` pops from now, if there is one.
    /// `f` must not touch this queue (the worker passes cache-prefetch hints).
    #[inline]
    pub(crate) fn peek_with(&self, n: u32, f: impl FnOnce(&T)) {
        self.with(|q| {
            let ring = q.tail.wrapping_sub(q.head);
            let slot = if n < ring {
                q.ring[q.head.wrapping_add(n) as usize % RING].as_ref()
            } else {
                q.spill.get((n - ring) as usize)
            };
            if let Some(t) = slot {
                f(t);
            }
        })
    }

    /// Pushes every item in order. The iterator (foreign code) runs outside the queue's borrow.
    pub(crate) fn push_all(&self, iter: impl IntoIterator<Item = T>) {
        for t in iter {
            self.push_back(t);
        }
    }
}

impl<T> Inner<T> {
    #[cold]
    #[inline(never)]
    fn push_spill(&mut self, t: T) {
        self.spill.push_back(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::rc::Rc;

    #[test]
    fn fifo_order_and_len() {
        let q = LocalQueue::new();
        assert!(q.is_empty());
        assert_eq!(q.pop_front(), None);
        for i in 0..10 {
            q.push_back(i);
        }
        assert_eq!(q.len(), 10);
        for i in 0..10 {
            assert_eq!(q.pop_front(), Some(i));
        }
        assert!(q.is_empty());
    }

    /// Pushes `0..n` and pops them back, checking FIFO order.
    fn fill_and_drain(q: &LocalQueue<u32>, n: u32) {
        for i in 0..n {
            q.push_back(i);
        }
        assert_eq!(q.len(), n as usize);
        for i in 0..n {
            assert_eq!(q.pop_front(), Some(i));
        }
        assert!(q.is_empty());
    }

    #[test]
    fn spills_while_wrapped_and_keeps_order() {
        let q = LocalQueue::new();
        // Move head/tail off zero so that the ring is wrapped when it fills.
        fill_and_drain(&q, 40);
        fill_and_drain(&q, 1000);
        assert_eq!(q.pop_front(), None);
    }

    #[test]
    fn index_wraparound_of_u32() {
        let q: LocalQueue<u32> = LocalQueue::new();
        q.with(|r| {
            r.head = u32::MAX - 5;
            r.tail = u32::MAX - 5;
        });
        fill_and_drain(&q, 100);
    }

    #[test]
    fn matches_vecdeque_model() {
        // Deterministic pseudo-random push/pop mix against VecDeque.
        let q = LocalQueue::new();
        let mut model = VecDeque::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x % 3 != 0 {
                q.push_back(i);
                model.push_back(i);
            } else {
                assert_eq!(q.pop_front(), model.pop_front());
            }
            assert_eq!(q.len(), model.len());
        }
        q.push_all(0..5u64);
        model.extend(0..5u64);
        while let Some(v) = model.pop_front() {
            assert_eq!(q.pop_front(), Some(v));
        }
        assert!(q.is_empty());
    }

    #[test]
    fn drops_queued_items() {
        let rc = Rc::new(());
        {
            let q = LocalQueue::new();
            for _ in 0..100 {
                q.push_back(rc.clone());
            }
            drop(q.pop_front());
            assert_eq!(Rc::strong_count(&rc), 100);
        }
        assert_eq!(Rc::strong_count(&rc), 1);
    }
}
