//! A worker's own cache of warm stacks (Go's per-P `stackcache`).
//!
//! What: up to [`HIGH_WATER`] freed stacks per size class, plus the one freed last (`hot`,
//! of any class), kept by one worker so that its spawn/exit churn reuses warm stacks without
//! taking a lock or an atomic read-modify-write. A coroutine that runs to completion in one go
//! gives its stack back right before the next fresh one takes it, so `hot` serves that churn
//! without the per-class lists (measured: ~70 instructions less per spawn+exit).
//! The cache lives in the worker's thread-local context; it is `!Sync` (a `RefCell`), so only
//! the thread that holds it can use it, which is what makes the unlocked fast path sound in
//! safe code. Other threads, and a worker whose cache is full or empty, go to the pool's locked
//! global lists ([`StackPool::alloc`] / [`StackPool::free`]).
//!
//! Invariants: every slot in the cache was handed out by `pool` (counted in its `out`) and is
//! not in use; `len` (read by [`StackPool::stats`] from other threads) is written only by the
//! cache's holder, so a plain load + store keeps it exact. Dropping the cache gives its stacks
//! back to the pool's global dirty lists (the borrow of `pool` makes the cache die first).
//!
//! Go counterpart: `p.mcache.stackcache` (`stackcacherefill` / `stackcacherelease` move half
//! a cache to and from the global pool; ours moves one stack at a time past the high-water
//! mark, which the monitor's trim then gives back to the OS).
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{class_list, ClassLists, StackPool, HIGH_WATER};

/// One worker's stacks (see the module comment).
pub(crate) struct StackCache<'a> {
    pub(super) pool: &'a StackPool,
    lists: RefCell<ClassLists>,
    /// Stacks held, for `StackPool::stats`; written only by the holder of the cache.
    len: Arc<AtomicUsize>,
    /// The stack freed last, `(usable, slot base)`, or base 0 for none.
    hot: Cell<(usize, usize)>,
}

impl<'a> StackCache<'a> {
    /// An empty cache for stacks of `pool`.
    pub(crate) fn new(pool: &'a StackPool) -> StackCache<'a> {
        let len = Arc::new(AtomicUsize::new(0));
        pool.register_cache(len.clone());
        StackCache {
            pool,
            lists: RefCell::new(Vec::new()),
            len,
            hot: Cell::new((0, 0)),
        }
    }

    /// A cached slot of class `usable`, if any.
    #[inline]
    pub(super) fn pop(&self, usable: usize) -> Option<usize> {
        let (u, b) = self.hot.get();
        if b != 0 && u == usable {
            self.hot.set((0, 0));
            self.add_len(-1);
            return Some(b);
        }
        let b = class_list(&mut self.lists.borrow_mut(), usable).pop()?;
        self.add_len(-1);
        Some(b)
    }

    /// Keeps slot `base` of class `usable` unless that class already holds [`HIGH_WATER`];
    /// false if the caller must give it to the pool instead.
    #[inline]
    pub(super) fn push(&self, usable: usize, base: usize) -> bool {
        if self.hot.get().1 == 0 {
            self.hot.set((usable, base));
            self.add_len(1);
            return true;
        }
        let mut lists = self.lists.borrow_mut();
        let list = class_list(&mut lists, usable);
        if list.len() >= HIGH_WATER {
            return false;
        }
        list.push(base);
        self.add_len(1);
        true
    }

    fn add_len(&self, d: isize) {
        // Relaxed load + store: only this cache's holder writes `len` (the cache is !Sync), so
        // no update is lost; `stats` reads it with a Relaxed load and pairs with nothing (a
        // counter that publishes no data).
        let n = self.len.load(Ordering::Relaxed);
        self.len.store(n.wrapping_add_signed(d), Ordering::Relaxed);
    }
}

impl Drop for StackCache<'_> {
    fn drop(&mut self) {
        let (usable, base) = self.hot.replace((0, 0));
        if base != 0 {
            self.pool.give_back(usable, base);
        }
        for (usable, bases) in self.lists.get_mut().drain(..) {
            for base in bases {
                self.pool.give_back(usable, base);
            }
        }
        self.len.store(0, Ordering::Relaxed);
        self.pool.unregister_cache(&self.len);
    }
}
