//! The worker's local FIFO of pinned runnable tasks (part of Go's `p.runq`, for the tasks
//! that have run; never-run tasks live in the stealable ring in runq.rs).
//!
//! What: an unbounded ring buffer (power-of-two capacity, grows by doubling) that only its
//! worker thread touches. It replaces a `RefCell<VecDeque>`: a yield pushes and pops once per
//! switch, and the borrow flag plus `VecDeque`'s index wrapping were a measurable part of the
//! switch cost.
//!
//! Invariants:
//! - `!Sync` (it holds an `UnsafeCell`), so only the thread that owns the `WorkerCtx` reaches
//!   it; every method takes `&self`, creates the only `&mut Ring` for the duration of the call
//!   and runs no foreign code meanwhile (no callbacks, no `T` destructor: slots are moved in
//!   and out, never overwritten while full), so the `&mut` is never aliased, even re-entrantly.
//! - Slots in `head..tail` (wrapping u32 indices, masked by `cap - 1`) are `Some`, the others
//!   `None`; `tail - head <= cap`.
//!
//! Go counterpart: the local half of `runqput`/`runqget`; Go's ring is bounded and spills to
//! the global queue, ours is unbounded because pinned tasks cannot move to another worker.
use std::cell::UnsafeCell;

pub(crate) struct LocalQueue<T> {
    ring: UnsafeCell<Ring<T>>,
}

struct Ring<T> {
    buf: Box<[Option<T>]>,
    head: u32,
    tail: u32,
}

const MIN_CAP: usize = 64;

impl<T> LocalQueue<T> {
    pub(crate) fn new() -> LocalQueue<T> {
        LocalQueue {
            ring: UnsafeCell::new(Ring {
                buf: (0..MIN_CAP).map(|_| None).collect(),
                head: 0,
                tail: 0,
            }),
        }
    }

    /// Runs `f` with exclusive access to the ring.
    #[inline(always)]
    fn with<R>(&self, f: impl FnOnce(&mut Ring<T>) -> R) -> R {
        // SAFETY: `LocalQueue` is `!Sync`, so only one thread reaches it, and the callers
        // below are the only users of `with`: each runs a short operation that calls no foreign
        // code (no `T` drop, no callback), so no other `&mut Ring` can exist meanwhile.
        f(unsafe { &mut *self.ring.get() })
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.with(|r| r.tail.wrapping_sub(r.head) as usize)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.with(|r| r.tail == r.head)
    }

    #[inline]
    pub(crate) fn push_back(&self, t: T) {
        self.with(|r| {
            if r.tail.wrapping_sub(r.head) as usize == r.buf.len() {
                r.grow();
            }
            let mask = r.buf.len() - 1;
            let slot = &mut r.buf[r.tail as usize & mask];
            if slot.is_some() {
                crate::overflow::throw("LocalQueue::push_back: slot in use");
            }
            *slot = Some(t);
            r.tail = r.tail.wrapping_add(1);
        })
    }

    #[inline]
    pub(crate) fn pop_front(&self) -> Option<T> {
        self.with(|r| {
            if r.head == r.tail {
                return None;
            }
            let mask = r.buf.len() - 1;
            let t = r.buf[r.head as usize & mask].take();
            r.head = r.head.wrapping_add(1);
            t
        })
    }

    /// Pushes every item in order. The iterator (foreign code) runs outside the ring's borrow.
    pub(crate) fn push_all(&self, iter: impl IntoIterator<Item = T>) {
        for t in iter {
            self.push_back(t);
        }
    }
}

impl<T> Ring<T> {
    #[cold]
    fn grow(&mut self) {
        let cap = self.buf.len();
        if cap > (u32::MAX as usize) / 2 {
            crate::overflow::throw("LocalQueue::grow: too many runnable tasks");
        }
        let mut buf: Box<[Option<T>]> = (0..cap * 2).map(|_| None).collect();
        for (k, slot) in buf.iter_mut().take(cap).enumerate() {
            *slot = self.buf[self.head.wrapping_add(k as u32) as usize & (cap - 1)].take();
        }
        // The old buffer holds only `None`s now: dropping it runs no `T` destructor.
        self.buf = buf;
        self.head = 0;
        self.tail = cap as u32;
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

    #[test]
    fn grows_while_wrapped() {
        let q = LocalQueue::new();
        // Move head/tail off zero so that the ring is wrapped when it fills.
        for i in 0..40 {
            q.push_back(i);
        }
        for i in 0..40 {
            assert_eq!(q.pop_front(), Some(i));
        }
        for i in 0..1000 {
            q.push_back(i);
        }
        assert_eq!(q.len(), 1000);
        for i in 0..1000 {
            assert_eq!(q.pop_front(), Some(i));
        }
        assert_eq!(q.pop_front(), None);
    }

    #[test]
    fn index_wraparound_of_u32() {
        let q: LocalQueue<u32> = LocalQueue::new();
        q.with(|r| {
            r.head = u32::MAX - 5;
            r.tail = u32::MAX - 5;
        });
        for i in 0..100 {
            q.push_back(i);
        }
        for i in 0..100 {
            assert_eq!(q.pop_front(), Some(i));
        }
        assert!(q.is_empty());
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
