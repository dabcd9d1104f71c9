//! The per-worker run queue of never-run tasks (Go's `p.runq`).
//!
//! A bounded single-producer, multi-consumer ring of 256 slots. Only the owner worker pushes
//! (at `tail`); the owner and stealers pop by advancing `head` with a CAS. A stealer takes
//! about half of a victim's queue at once ([`RunQueue::steal_into`]). Batches move with one
//! publication: a full ring hands half of itself to the global injector in one `Vec` (Go's
//! `runqputslow`), and [`RunQueue::push_from`] refills the ring from the injector.
//!
//! Difference from Go: only tasks that have never run are stored here, because a task that has
//! started is pinned to its worker (see task.rs). So everything in this ring may be stolen.
//!
//! Generic over the element (an owning pointer, [`Owned`]: `TaskRef` in the runtime, `Arc` in
//! the model tests, which need no runtime).
//!
//! Invariants: `tail - head <= N` (wrapping u32 arithmetic); slots in `head..tail` each own one
//! element (stored with [`Owned::into_raw`]); slots outside hold stale pointers that are never
//! dereferenced.
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use std::sync::Arc;

use crate::slab::{Pooled, Ref};

pub(crate) const N: u32 = 256;

/// An owning pointer that can be stored as one raw word (`Arc`, `slab::Ref`), and sent to
/// the thread that pops it.
pub(crate) trait Owned: Sized + Send {
    /// Gives up ownership as a non-null pointer.
    fn into_raw(self) -> *mut ();
    /// Takes back ownership of a pointer from `into_raw`.
    ///
    /// # Safety
    /// `p` came from `Self::into_raw` and is taken back once.
    unsafe fn from_raw(p: *mut ()) -> Self;
}

impl<T: Send + Sync> Owned for Arc<T> {
    fn into_raw(self) -> *mut () {
        Arc::into_raw(self).cast_mut().cast()
    }
    unsafe fn from_raw(p: *mut ()) -> Self {
        // SAFETY: caller contract.
        unsafe { Arc::from_raw(p.cast::<T>()) }
    }
}

impl<T: Pooled> Owned for Ref<T> {
    fn into_raw(self) -> *mut () {
        Ref::into_raw(self).cast_mut().cast()
    }
    unsafe fn from_raw(p: *mut ()) -> Self {
        // SAFETY: caller contract.
        unsafe { Ref::from_raw(p.cast::<T>()) }
    }
}

pub(crate) struct RunQueue<T: Owned> {
    head: AtomicU32,
    tail: AtomicU32,
    buf: Box<[AtomicPtr<()>]>,
    /// The ring owns `T`s (stored raw) and hands them to whichever thread pops them, which
    /// `T: Send` (required by `Owned`) allows. (`fn() -> T`: the ring is `Sync` and unwind-safe
    /// like the atomics it is made of.)
    _own: PhantomData<fn() -> T>,
}

impl<T: Owned> RunQueue<T> {
    pub(crate) fn new() -> RunQueue<T> {
        RunQueue {
            head: AtomicU32::new(0),
            tail: AtomicU32::new(0),
            buf: (0..N)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
            _own: PhantomData,
        }
    }

    fn slot(&self, i: u32) -> &AtomicPtr<()> {
        &self.buf[(i % N) as usize]
    }

    pub(crate) fn len(&self) -> usize {
        let h = self.head.load(Ordering::Acquire);
        let t = self.tail.load(Ordering::Acquire);
        t.wrapping_sub(h).min(N) as usize
    }

    /// A snapshot of (head, tail); `tail - head` is the length if they did not move between
    /// the two loads.
    pub(crate) fn bounds(&self) -> (u32, u32) {
        // Acquire: as in `len` (pairs with the Release publications of head and tail).
        (
            self.head.load(Ordering::Acquire),
            self.tail.load(Ordering::Acquire),
        )
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Owner only. Pushes at the tail; when full, returns the task and half the queue so the
    /// caller moves them to the global injector (Go's `runqputslow`).
    pub(crate) fn push(&self, task: T) -> Result<(), Vec<T>> {
        loop {
            // Acquire: pairs with the Release CAS on head by consumers (their slot reads are done).
            let h = self.head.load(Ordering::Acquire);
            let t = self.tail.load(Ordering::Relaxed); // only we write tail
            if t.wrapping_sub(h) < N {
                self.slot(t).store(task.into_raw(), Ordering::Relaxed);
                // Release: publishes the slot write to consumers that load tail with Acquire.
                self.tail.store(t.wrapping_add(1), Ordering::Release);
                return Ok(());
            }
            // Full: take half off the head for the injector.
            const HALF: usize = (N / 2) as usize;
            let mut ptrs = [std::ptr::null_mut::<()>(); HALF];
            for (i, p) in ptrs.iter_mut().enumerate() {
                *p = self.slot(h.wrapping_add(i as u32)).load(Ordering::Relaxed);
            }
            if self
                .head
                .compare_exchange(
                    h,
                    h.wrapping_add(HALF as u32),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                continue; // a stealer raced us; there may be room now
            }
            let mut out = Vec::with_capacity(HALF + 1);
            // SAFETY: the CAS moved these slots out of `head..tail`, transferring their strong
            // counts to us.
            out.extend(ptrs.iter().map(|&p| unsafe { T::from_raw(p) }));
            out.push(task);
            return Err(out);
        }
    }

    /// Owner only. Moves up to `max` tasks from the front of `src` to the tail, as many as
    /// fit, with one publication of `tail` (Go's `globrunqget` refilling `runq`). Returns how
    /// many moved.
    pub(crate) fn push_from(&self, src: &mut VecDeque<T>, max: usize) -> usize {
        // Acquire: pairs with the Release CAS on head by consumers (their slot reads are done).
        let h = self.head.load(Ordering::Acquire);
        let t = self.tail.load(Ordering::Relaxed); // only we write tail
        let room = N.saturating_sub(t.wrapping_sub(h)) as usize;
        let k = max.min(room).min(src.len());
        for (i, task) in src.drain(..k).enumerate() {
            self.slot(t.wrapping_add(i as u32))
                .store(task.into_raw(), Ordering::Relaxed);
        }
        // Release: publishes the slot writes to consumers that load tail with Acquire.
        self.tail.store(t.wrapping_add(k as u32), Ordering::Release);
        k
    }

    /// The pointer at the head, as an address for a prefetch hint only (0 when empty): it
    /// may be stale (popped meanwhile, or a slot being overwritten), so it is never
    /// dereferenced and carries no ownership.
    pub(crate) fn peek_hint(&self) -> usize {
        // Relaxed: a hint (pairs with nothing); a stale value costs a useless prefetch.
        let h = self.head.load(Ordering::Relaxed);
        if self.tail.load(Ordering::Relaxed) == h {
            return 0;
        }
        self.slot(h).load(Ordering::Relaxed) as usize
    }

    /// Owner or anyone: pops from the head.
    pub(crate) fn pop(&self) -> Option<T> {
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
                return Some(unsafe { T::from_raw(p) });
            }
        }
    }

    /// Steals about half of `self` (the victim) into `dst` (owned by the caller) and returns
    /// one of the stolen tasks to run at once (Go's `runqsteal`).
    pub(crate) fn steal_into(&self, dst: &RunQueue<T>) -> Option<T> {
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
            let mut first: *mut () = std::ptr::null_mut();
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
            // SAFETY: the CAS transferred the elements of slots h..h+n to us; n-1 of them
            // now live in dst's `head..tail`, the first one we return.
            return Some(unsafe { T::from_raw(first) });
        }
    }
}

impl<T: Owned> Drop for RunQueue<T> {
    fn drop(&mut self) {
        while let Some(t) = self.pop() {
            drop(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Debug, Clone)]
    enum Op {
        Push(usize),
        Pop(usize),
        PushFrom(usize, usize, usize),
        Steal { victim: usize, thief: usize },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..2usize).prop_map(Op::Push),
            2 => (0..2usize).prop_map(Op::Pop),
            1 => (0..2usize, 0..300usize, 0..300usize).prop_map(|(q, k, max)| Op::PushFrom(q, k, max)),
            1 => (0..2usize, 0..2usize).prop_map(|(victim, thief)| Op::Steal { victim, thief }),
        ]
    }

    proptest! {
        /// Sequential model test against two VecDeques plus an overflow list.
        #[test]
        fn matches_model(ops in proptest::collection::vec(op(), 1..600)) {
            let qs = [RunQueue::<Arc<u64>>::new(), RunQueue::<Arc<u64>>::new()];
            let mut model = [VecDeque::new(), VecDeque::new()];
            let mut next = 0u64;
            for o in ops {
                match o {
                    Op::Push(q) => {
                        next += 1;
                        match qs[q].push(Arc::new(next)) {
                            Ok(()) => model[q].push_back(next),
                            Err(batch) => {
                                // Half of the oldest plus the new one went out, in order.
                                let mut expect: Vec<u64> = model[q].drain(..(N / 2) as usize).collect();
                                expect.push(next);
                                let got: Vec<u64> = batch.iter().map(|a| **a).collect();
                                prop_assert_eq!(got, expect);
                            }
                        }
                    }
                    Op::PushFrom(q, k, max) => {
                        let mut src: VecDeque<Arc<u64>> = (0..k).map(|i| Arc::new(next + 1 + i as u64)).collect();
                        next += k as u64;
                        let moved = qs[q].push_from(&mut src, max);
                        let expect = max.min(N as usize - model[q].len()).min(k);
                        prop_assert_eq!(moved, expect);
                        prop_assert_eq!(src.len(), k - moved);
                        let first = next + 1 - k as u64;
                        model[q].extend((0..moved as u64).map(|i| first + i));
                    }
                    Op::Pop(q) => {
                        prop_assert_eq!(qs[q].pop().map(|a| *a), model[q].pop_front());
                    }
                    Op::Steal { victim, thief } => {
                        if victim == thief || !model[thief].is_empty() {
                            continue;
                        }
                        let n = model[victim].len();
                        let got = qs[victim].steal_into(&qs[thief]).map(|a| *a);
                        if n == 0 {
                            prop_assert_eq!(got, None);
                        } else {
                            let take = n - n / 2;
                            let moved: Vec<u64> = model[victim].drain(..take).collect();
                            prop_assert_eq!(got, Some(moved[0]));
                            model[thief].extend(&moved[1..]);
                        }
                    }
                }
                prop_assert_eq!(qs[0].len(), model[0].len());
                prop_assert_eq!(qs[1].len(), model[1].len());
            }
        }
    }

    /// Concurrent: the owner pushes and pops while two thieves steal; every element is taken
    /// exactly once and none leaks (Arc counts).
    #[test]
    fn concurrent_steal_takes_each_once() {
        let victim = Arc::new(RunQueue::<Arc<u64>>::new());
        let done = Arc::new(AtomicBool::new(false));
        let total = 200_000u64;
        let thieves: Vec<_> = (0..2)
            .map(|_| {
                let v = victim.clone();
                let d = done.clone();
                std::thread::spawn(move || {
                    let mine = RunQueue::<Arc<u64>>::new();
                    let mut got = Vec::new();
                    loop {
                        let finished = d.load(Ordering::SeqCst);
                        if let Some(x) = v.steal_into(&mine) {
                            got.push(*x);
                        }
                        while let Some(x) = mine.pop() {
                            got.push(*x);
                        }
                        if finished && v.is_empty() {
                            return got;
                        }
                    }
                })
            })
            .collect();
        let mut got = Vec::new();
        let mut overflow = Vec::new();
        for i in 0..total {
            if let Err(batch) = victim.push(Arc::new(i)) {
                overflow.extend(batch.into_iter().map(|a| *a));
            }
            if i % 3 == 0 {
                if let Some(x) = victim.pop() {
                    got.push(*x);
                }
            }
        }
        done.store(true, Ordering::SeqCst);
        while let Some(x) = victim.pop() {
            got.push(*x);
        }
        for t in thieves {
            got.extend(t.join().unwrap());
        }
        got.extend(overflow);
        let set: HashSet<u64> = got.iter().copied().collect();
        assert_eq!(got.len() as u64, total, "duplicates or losses");
        assert_eq!(set.len() as u64, total);
    }
}
