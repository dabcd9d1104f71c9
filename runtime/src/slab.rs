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
//! the carving in steps of an eighth of a chunk with `MADV_POPULATE_WRITE`.) A [`Cache`] (one per
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
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ptr::{self, NonNull};
use std::sync::atomic::{fence, AtomicPtr, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Fresh cells a cache carves from its pool at once.
pub(crate) const RUN: usize = 64;
/// First chunk size; each next chunk doubles, up to [`MAX_CHUNK`].
const FIRST_CHUNK: usize = 64 << 10;
/// Largest chunk mapped at once (address space; pages are touched as cells are used).
const MAX_CHUNK: usize = 16 << 20;

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
    #[inline]
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

/// A counted reference to a `T` in a pool cell (like `Arc<T>`, see the module comment).
pub(crate) struct Ref<T: Pooled> {
    cell: NonNull<Cell<T>>,
    _own: PhantomData<T>,
}

// As `Arc<T>`: sending or sharing a `Ref` shares the `T` and may drop it on another thread.
// SAFETY: `T: Send + Sync` (required by `Pooled`).
unsafe impl<T: Pooled> Send for Ref<T> {}
// SAFETY: as above.
unsafe impl<T: Pooled> Sync for Ref<T> {}

impl<T: Pooled> Ref<T> {
    /// # Safety
    /// `cell` is live with one count that the new `Ref` takes over.
    unsafe fn from_cell(cell: *mut Cell<T>) -> Ref<T> {
        Ref {
            // SAFETY: cells come from non-null chunks.
            cell: unsafe { NonNull::new_unchecked(cell) },
            _own: PhantomData,
        }
    }

    fn cell(&self) -> &Cell<T> {
        // SAFETY: a `Ref` keeps its cell live (count >= 1), and chunks are never unmapped.
        unsafe { self.cell.as_ref() }
    }

    /// The value's address (as `Arc::as_ptr`).
    pub(crate) fn as_ptr(this: &Ref<T>) -> *const T {
        this.cell().value.as_ptr()
    }

    /// Gives up the `Ref` without dropping its count (as `Arc::into_raw`).
    pub(crate) fn into_raw(this: Ref<T>) -> *const T {
        let p = Ref::as_ptr(&this);
        std::mem::forget(this);
        p
    }

    /// Takes back a count given up by [`Ref::into_raw`] (as `Arc::from_raw`), or one of the
    /// extra counts of `Cache::alloc_with`.
    ///
    /// # Safety
    /// `p` came from `Ref::<T>::into_raw` (or `as_ptr` of a cell whose extra count the caller
    /// owns) and that count is taken back once.
    pub(crate) unsafe fn from_raw(p: *const T) -> Ref<T> {
        let off = std::mem::offset_of!(Cell<T>, value);
        // SAFETY: caller contract: `p` is the value field of a live cell.
        unsafe { Ref::from_cell(p.byte_sub(off).cast_mut().cast::<Cell<T>>()) }
    }

    /// A new `Ref` to the value at `p` (as `Arc::increment_strong_count` + `from_raw`).
    ///
    /// # Safety
    /// `p` is the address of a value in a live cell (for instance from [`Ref::as_ptr`] of a
    /// `Ref` that is kept alive during this call).
    pub(crate) unsafe fn clone_raw(p: *const T) -> Ref<T> {
        // SAFETY: caller contract.
        let r = std::mem::ManuallyDrop::new(unsafe { Ref::from_raw(p) });
        (*r).clone()
    }

    /// True if both point to the same value.
    pub(crate) fn ptr_eq(a: &Ref<T>, b: &Ref<T>) -> bool {
        a.cell == b.cell
    }

    /// The number of `Ref`s (a snapshot, as `Arc::strong_count`).
    #[cfg(test)]
    pub(crate) fn strong_count(this: &Ref<T>) -> usize {
        // Acquire: as `Arc::strong_count` (pairs with the Release decrement in `drop`), so a
        // caller that sees 1 also sees what the other owners did before they let go.
        this.cell().refs.load(Ordering::Acquire)
    }

    /// Mutable access if this is the only `Ref` (as `Arc::get_mut`).
    #[cfg(test)]
    pub(crate) fn get_mut(this: &mut Ref<T>) -> Option<&mut T> {
        if Ref::strong_count(this) != 1 {
            return None;
        }
        // SAFETY: we hold the only count and `&mut` to it, so nobody else can reach the value
        // (no weak references exist); the Acquire load above ordered the other owners' uses
        // before ours.
        Some(unsafe { (*this.cell.as_ptr()).value.assume_init_mut() })
    }
}

impl<T: Pooled> std::ops::Deref for Ref<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a live cell's value is initialised (module invariant).
        unsafe { self.cell().value.assume_init_ref() }
    }
}

impl<T: Pooled> Clone for Ref<T> {
    fn clone(&self) -> Ref<T> {
        // Relaxed: as `Arc::clone`: the caller already holds a count, so the cell cannot be
        // freed meanwhile, and the new count publishes nothing (pairs with nothing).
        let old = self.cell().refs.fetch_add(1, Ordering::Relaxed);
        if old > isize::MAX as usize {
            crate::overflow::throw("Ref::clone: reference count overflow");
        }
        Ref {
            cell: self.cell,
            _own: PhantomData,
        }
    }
}

impl<T: Pooled> Drop for Ref<T> {
    fn drop(&mut self) {
        // Release: our uses of the value happen before the last owner drops it (pairs with
        // the Acquire fence below, in whichever thread drops the last count).
        if self.cell().refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        fence(Ordering::Acquire);
        let cell = self.cell.as_ptr();
        // SAFETY: we dropped the last count: nobody else references the cell, its value is
        // initialised and dropped once here; then the free cell goes back to the pool.
        unsafe {
            (*cell).value.assume_init_drop();
            T::pool().push_freed(cell);
        }
    }
}

#[cfg(test)]
mod tests;
