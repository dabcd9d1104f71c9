//! Reference-counted cells carved from large chunks: the memory of task headers (Go keeps its
//! `g`s in its own heap and recycles dead ones through `gFree` lists; this is that).
//!
//! What: a [`Ref<T>`] is an `Arc<T>` whose allocation is a cell of a per-type [`Pool`]. A
//! pool maps chunks with `mmap` (64 KiB at first, doubling to [`MAX_CHUNK`]), so a burst of a
//! million spawns makes ~30 system calls, not the `mprotect` per page that a glibc thread arena
//! makes while it grows (a fifth of the time of a million-task burst). (Transparent huge pages
//! for big chunks cut the page faults 15-fold, but in the VM the benchmarks run in, fresh
//! 2 MiB pages often cost the host more than the small pages they replace: 0.3-0.9 s of system
//! time for a million tasks instead of 0.2 s, so chunks use small pages, prefaulted ahead of
//! the carving in steps of an eighth of a chunk with `MADV_POPULATE_WRITE`; during a burst
//! the runtime's monitor also populates up to [`AHEAD`] past the carving from another core,
//! [`Pool::prefault_ahead`].) A [`Cache`] (one per
//! worker, used by its thread alone, registry.rs) hands out cells: its private free list, else
//! every cell freed since (taken from the pool's freed stack at once), else a run of [`RUN`]
//! fresh cells carved from the pool's chunk.
//! Dropping the last `Ref` drops the value in place and pushes the cell on the pool's freed
//! stack (one CAS), from any thread.
//!
//! [`Pool::for_each_live`] walks every carved cell and takes a `Ref` to each live one, the way
//! Go walks `allgs`: the pool doubles as the registry of live tasks (registry.rs).
//!
//! Invariants:
//! - A cell is in exactly one state: live (`refs >= 1`, value initialised, reachable only
//!   through `Ref`s, or through `for_each_live` while `refs >= 1`), on the freed stack, on a
//!   cache's free list, or in a cache's fresh run (the last three: value dropped or never
//!   written, `refs == 0`).
//! - `refs` is only ever accessed atomically (fresh chunks are zero), so `for_each_live` may
//!   read any carved cell's count; a count leaves 0 only in `Cache::alloc_with`, after
//!   the value is written.
//! - Chunks are never unmapped (like Go's heap for `g`s), so memory a burst of tasks needed
//!   stays with the pool for later spawns; a cell pointer, once handed out, stays mapped.
//! - The freed stack is pushed by CAS and emptied only by `swap(null)`; nobody pops a single
//!   node, so there is no ABA problem.
//!
//! Differences from `Arc`: no weak counts; `T: Pooled` names its pool (a `static`).
use std::alloc::Layout;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Fresh cells a cache carves from its pool at once.
pub(crate) const RUN: usize = 64;
/// First chunk size; each next chunk doubles, up to [`MAX_CHUNK`].
const FIRST_CHUNK: usize = 64 << 10;
/// Largest chunk mapped at once (address space; pages are touched as cells are used).
const MAX_CHUNK: usize = 16 << 20;
/// How far [`Pool::prefault_ahead`] keeps pages resident past the carving.
const AHEAD: usize = 16 << 20;
/// Current chunk size from which the pool counts as in a burst (about 5000 task headers).
const BURST_CHUNK: usize = 1 << 20;

/// A type whose `Ref`s live in one process-wide pool.
pub(crate) trait Pooled: Sized + Send + Sync + 'static {
    /// The pool of this type's cells.
    fn pool() -> &'static Pool<Self>;
}

#[repr(C)]
struct Cell<T> {
    refs: AtomicUsize,
    /// The value while the cell is live; while it is free, its first word is the link of the
    /// freed stack or of a cache's free list (see [`link`]).
    value: MaybeUninit<T>,
}

/// The link word of a free cell, stored over its (dead) value.
///
/// # Safety
/// `cell` is a cell of a pool (so `T` has room and alignment for a pointer, checked in
/// `Pool::new`).
unsafe fn link<T>(cell: *mut Cell<T>) -> *mut *mut Cell<T> {
    // SAFETY: caller contract: the value field lies in the cell.
    unsafe { ptr::addr_of_mut!((*cell).value).cast() }
}

/// Where cells come from: the current chunk and the stack of freed cells.
pub(crate) struct Pool<T> {
    freed: AtomicPtr<Cell<T>>,
    chunk: Mutex<Chunk>,
}

struct Chunk {
    /// Next uncarved byte and end of the current chunk.
    next: usize,
    end: usize,
    /// Size of the next chunk to map.
    size: usize,
    /// Every chunk: its start and the end of its carved part (for [`Pool::for_each_live`]).
    all: Vec<(usize, usize)>,
    /// End of the prefaulted part of the current chunk (see [`Chunk::populate`]).
    populated: usize,
}

impl Chunk {
    /// Prefaults the current chunk from `populated` past `upto` in one system call
    /// (`MADV_POPULATE_WRITE`, Linux 5.14; elsewhere a no-op and the pages fault one by one).
    /// A step is an eighth of the chunk (8 KiB to 2 MiB), so a small program touches little
    /// more than it uses. Measured on a million-task burst in a VM: page faults cost as much
    /// taken in batches of 2 MiB as one by one, minus the trap per page: 20-30% off the burst.
    #[cold]
    fn populate(&mut self, upto: usize) {
        let start = self.all.last().map_or(self.populated, |c| c.0);
        let step = ((self.end - start) / 8).max(4096);
        let from = self.populated;
        let to = (((from + step).max(upto) + 4095) & !4095).min(self.end);
        // SAFETY: `from..to` lies in the current chunk, a private anonymous mapping of ours;
        // populating it only makes its (zero) pages resident. Failure is harmless.
        unsafe {
            libc::madvise(
                from as *mut libc::c_void,
                to - from,
                libc::MADV_POPULATE_WRITE,
            )
        };
        self.populated = to;
    }
}

// The pool holds only pointers to cells whose values are dropped or not yet written; cells
// move between threads as `Ref<T>` does, which needs `T: Send + Sync`.
// SAFETY: all shared state is atomic or behind the mutex.
unsafe impl<T: Send + Sync> Sync for Pool<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Send for Pool<T> {}

impl<T> Pool<T> {
    /// Prefaults up to [`AHEAD`] bytes past the carved part of the current chunk, if the pool
    /// is in a burst (its current chunk is at least [`BURST_CHUNK`]): called by a runtime's
    /// monitor, so that another core makes the pages resident while a worker spawns. The range
    /// is claimed under the lock and populated after it is released, so carving never waits
    /// for it; a carve that overtakes it faults or populates its own pages as before.
    pub(crate) fn prefault_ahead(&self) {
        let (from, to) = {
            let mut c = self.chunk.lock().unwrap_or_else(|e| e.into_inner());
            let start = c.all.last().map_or(c.end, |l| l.0);
            if c.end - start < BURST_CHUNK {
                return;
            }
            let from = c.populated.max(c.next);
            let to = ((c.next + AHEAD + 4095) & !4095).min(c.end);
            if to <= from {
                return;
            }
            c.populated = to;
            (from & !4095, to)
        };
        // SAFETY: `from..to` lies in a chunk of ours (never unmapped); populating only makes
        // its pages resident, whatever cells in it are doing. Failure is harmless.
        unsafe {
            libc::madvise(
                from as *mut libc::c_void,
                to - from,
                libc::MADV_POPULATE_WRITE,
            )
        };
    }
}

impl<T: Pooled> Pool<T> {
    /// An empty pool (maps nothing until the first cell is needed).
    pub(crate) const fn new() -> Pool<T> {
        // A free cell keeps its free-list link in the value's place.
        assert!(
            std::mem::size_of::<T>() >= std::mem::size_of::<usize>()
                && std::mem::align_of::<T>() >= std::mem::align_of::<usize>(),
            "slab::Pool: the value must have room and alignment for a pointer"
        );
        Pool {
            freed: AtomicPtr::new(ptr::null_mut()),
            chunk: Mutex::new(Chunk {
                next: 0,
                end: 0,
                size: FIRST_CHUNK,
                all: Vec::new(),
                populated: 0,
            }),
        }
    }

    /// Carves up to `RUN` fresh cells: returns `(first, count)`, contiguous.
    #[cold]
    #[inline(never)]
    fn carve(&self) -> (*mut Cell<T>, usize) {
        let size = std::mem::size_of::<Cell<T>>();
        let mut c = self.chunk.lock().unwrap_or_else(|e| e.into_inner());
        if c.end - c.next < size {
            let bytes = c.size.max(size * RUN);
            c.next = map_chunk(bytes);
            c.end = c.next + bytes;
            c.populated = c.next;
            c.size = (c.size * 2).min(MAX_CHUNK);
            let start = c.next;
            c.all.push((start, start));
        }
        let n = ((c.end - c.next) / size).min(RUN);
        let first = c.next as *mut Cell<T>;
        c.next += n * size;
        let next = c.next;
        if next > c.populated {
            c.populate(next);
        }
        if let Some(last) = c.all.last_mut() {
            last.1 = next;
        }
        (first, n)
    }

    /// Calls `f` with a `Ref` to every value alive in the pool (Go's `forEachG` over `allgs`),
    /// each taken like `Weak::upgrade`: only while its count is not 0, oldest cells first,
    /// until `f` returns false. Walks every cell ever carved, so it costs time in proportion
    /// to the largest number of values once alive.
    pub(crate) fn for_each_live(&self, mut f: impl FnMut(Ref<T>) -> bool) {
        let size = std::mem::size_of::<Cell<T>>();
        let chunks = self
            .chunk
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .all
            .clone();
        for (start, end) in chunks {
            let mut p = start;
            while p + size <= end {
                let cell = p as *mut Cell<T>;
                p += size;
                // SAFETY: a carved cell of a chunk that is never unmapped; `refs` is an atomic
                // at all times (zero from `mmap`, and only ever written atomically), so reading
                // it races with nothing.
                let refs = unsafe { &(*cell).refs };
                let mut n = refs.load(Ordering::Relaxed);
                while n != 0 {
                    // Acquire: pairs with the Release store of the count in `Cache::alloc_with` (and the
                    // counts that extend its release sequence), so the value is visible.
                    match refs.compare_exchange_weak(n, n + 1, Ordering::Acquire, Ordering::Relaxed)
                    {
                        Ok(_) => {
                            // SAFETY: we took a count of a live cell.
                            if !f(unsafe { Ref::from_cell(cell) }) {
                                return;
                            }
                            break;
                        }
                        Err(m) => n = m,
                    }
                }
            }
        }
    }

    /// Pushes a free cell on the freed stack.
    ///
    /// # Safety
    /// `cell` is a cell of this pool that nobody else references (its value dropped or never
    /// written).
    unsafe fn push_freed(&self, cell: *mut Cell<T>) {
        let mut head = self.freed.load(Ordering::Relaxed);
        loop {
            // SAFETY: caller contract: the cell is ours alone until the CAS publishes it, and
            // its value is dead, so its first word may hold the link.
            unsafe { *link(cell) = head };
            // Release: publishes the dropped value and the link to the cache that takes the
            // stack with the Acquire swap in `Cache::take_cell` (RMWs by later pushers extend
            // this release sequence).
            match self
                .freed
                .compare_exchange_weak(head, cell, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }
}

/// Maps a chunk of `bytes` (a multiple of the page size); aborts like `Arc::new` when out of
/// memory.
fn map_chunk(bytes: usize) -> usize {
    // SAFETY: a fresh private anonymous mapping at an address the kernel picks.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::alloc::handle_alloc_error(Layout::from_size_align(bytes, 4096).expect("layout"));
    }
    p as usize
}

/// One owner's supply of cells (see the module comment). Not shared: callers keep it behind
/// their own lock.
pub(crate) struct Cache<T: Pooled> {
    /// Private free list (linked through [`link`]).
    free: *mut Cell<T>,
    /// Fresh cells `fresh..fresh + left`.
    fresh: *mut Cell<T>,
    left: usize,
}

// The cache holds only free cells (no live value), which any thread may fill.
// SAFETY: moving the cache moves pointers to memory nobody else uses.
unsafe impl<T: Pooled> Send for Cache<T> {}

impl<T: Pooled> Cache<T> {
    pub(crate) const fn new() -> Cache<T> {
        Cache {
            free: ptr::null_mut(),
            fresh: ptr::null_mut(),
            left: 0,
        }
    }

    /// Moves `value` into a cell: a `Ref` with count 1.
    #[cfg(test)]
    pub(crate) fn alloc(&mut self, value: T) -> Ref<T> {
        self.alloc_with(1, || value)
    }

    /// Puts the value `make` returns into a cell (built in place when `make` inlines, which
    /// saves copying a large `T`) with a count of `refs` (at least 1): the returned `Ref` owns
    /// one; the caller owns the other `refs - 1` and takes each back with
    /// `Ref::from_raw(Ref::as_ptr(..))` (saving an atomic increment per reference).
    // Always inlined, with `make`: the value is then built in the cell, not copied into it.
    #[inline(always)]
    pub(crate) fn alloc_with(&mut self, refs: usize, make: impl FnOnce() -> T) -> Ref<T> {
        if refs == 0 {
            crate::overflow::throw("Cache::alloc_with: no reference");
        }
        let cell = self.take_cell();
        // SAFETY: `take_cell` returns a free cell of `T::pool()` that only we reference (a
        // `for_each_live` may read its count, which stays 0 until the store below); a panic in
        // `make` leaves it unused (leaked: memory-safe).
        unsafe {
            (*cell).value.as_mut_ptr().write(make());
            // Release: publishes the value to `for_each_live` (pairs with its Acquire CAS).
            (*cell).refs.store(refs, Ordering::Release);
            Ref::from_cell(cell)
        }
    }

    #[inline]
    fn take_cell(&mut self) -> *mut Cell<T> {
        if self.free.is_null() {
            // Acquire: pairs with the Release CAS of every push in `Pool::push_freed`.
            self.free = T::pool().freed.swap(ptr::null_mut(), Ordering::Acquire);
        }
        if !self.free.is_null() {
            let cell = self.free;
            // SAFETY: cells on our list are ours alone; their links were published to us by
            // the swap above.
            self.free = unsafe { *link(cell) };
            return cell;
        }
        if self.left == 0 {
            (self.fresh, self.left) = T::pool().carve();
        }
        let cell = self.fresh;
        // SAFETY: `fresh..fresh + left` lies in one chunk (from `carve`), so `cell + 1` stays
        // within or one past it.
        self.fresh = unsafe { cell.add(1) };
        self.left -= 1;
        cell
    }
}

impl<T: Pooled> Drop for Cache<T> {
    fn drop(&mut self) {
        // Hand every cell we hold back to the pool's freed stack.
        let pool = T::pool();
        while !self.free.is_null() {
            let cell = self.free;
            // SAFETY: a free cell on our list: ours alone, its link valid.
            unsafe {
                self.free = *link(cell);
                pool.push_freed(cell);
            }
        }
        for i in 0..self.left {
            // SAFETY: `fresh..fresh + left` are fresh cells of one chunk, ours alone.
            unsafe { pool.push_freed(self.fresh.add(i)) };
        }
        self.left = 0;
    }
}

mod reference;
pub(crate) use reference::Ref;

#[cfg(test)]
mod tests;
