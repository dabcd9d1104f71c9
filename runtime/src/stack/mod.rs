//! Slab-allocated coroutine stacks.
//!
//! What: large `mmap(MAP_NORESERVE)` regions (THP off) cut into fixed slots of
//! `guard page + usable bytes`, one set of regions per size class (distinct rounded
//! usable size). Stacks grow down, so each slot's guard is its lowest page. A region
//! holds at most 256 slots (fewer for big stacks: about 64 MiB of address space per
//! region), which keeps the mmap count and the unused tail of the newest region small
//! while the registry below (65536 regions) still covers ~16M stacks.
//!
//! Guards: `madvise(MADV_GUARD_INSTALL)` (Linux >= 6.13) puts a guard marker in the
//! page tables without splitting the region's VMA, so a million stacks cost a few
//! thousand maps, not two million. Support is probed once per process on the first
//! guard (EINVAL = unsupported). Fallback: `mprotect(PROT_NONE)` per guard, which
//! splits the VMA (~2 maps each), so it runs within a process-wide budget of
//! `(vm.max_map_count - lines(/proc/self/maps) - 1000) / 2` guards, re-read when spent.
//!
//! Reuse: freed stacks go to the freeing worker's own [`StackCache`] (pages stay warm; no lock
//! or atomic read-modify-write on that path, see cache.rs); past [`HIGH_WATER`] cached stacks of
//! one class in that cache, and for frees from other threads, the slot goes to the pool's global
//! dirty list; the monitor calls [`StackPool::trim`] about once a second, which gives the pages
//! of dirty stacks beyond [`GLOBAL_KEEP`] back to the OS (`MADV_DONTNEED`) and moves them to the
//! clean list. So the free path never makes a syscall.
//! Allocation order: the caller's cache, global dirty list, global clean list, new slot (new
//! region if needed). Slots are never given
//! back as address space before the pool drops (only their pages are), so a burst of
//! N stacks keeps N slots' page-table entries and guard markers; that is the price of
//! guards installed once per slot.
//!
//! Invariants: every slot ever handed out has its guard installed (guards are never
//! removed); a region is unmapped only when its pool drops with no stack in use; the
//! lock-free [`find_guard`] registry lists every mapped region so the SIGSEGV handler
//! (see `overflow.rs`) can name a guard hit without locks or allocation.
//!
//! Go counterpart: `runtime/stack.go` (`stackpool`/`stackcache` per P, `stackfree`).
//! Go stacks start at 8 KiB and are copied to grow; ours are fixed-size (a Rust stack
//! cannot be moved: pointers into it exist), so overflow is fatal, as in Go past
//! `maxstacksize`, and is reported by the guard page instead of a prologue check.
// The scheduler (merged separately) is the caller; until then parts are test-only.

use std::io;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Bytes at the top of every slot kept out of the coroutine's stack: the started task's
/// run-time header lives there (`task::Ext`: its coroutine handle and yielder), so that the
/// task header proper stays small and that memory is recycled with the stack.
pub(crate) const EXT_BYTES: usize = 64;
/// Smallest usable stack size handed out.
pub(crate) const MIN_STACK: usize = 16 * 1024;
/// Usable stack size used when the user does not ask for one.
pub(crate) const DEFAULT_STACK: usize = 64 * 1024;
/// Most slots per region.
const MAX_SLOTS_PER_REGION: usize = 256;
/// Address space a region aims at when stacks are large (fewer slots then).
const REGION_TARGET_BYTES: usize = 64 << 20;
/// Warm stacks of one size class cached per worker before pages go back to the OS.
pub(crate) const HIGH_WATER: usize = 256;
/// Dirty (touched) stacks kept in the global list per size class; beyond this, [`StackPool::trim`]
/// gives their pages back to the OS.
pub(crate) const GLOBAL_KEEP: usize = 1024;
/// Maps left for the rest of the process when budgeting mprotect guards.
const MAP_MARGIN: usize = 1000;
/// Largest usable size accepted (guards against arithmetic overflow).
const MAX_STACK: usize = 1 << 40;
/// `MADV_GUARD_INSTALL` (Linux 6.13); not in every libc release.
const MADV_GUARD_INSTALL: libc::c_int = 102;
/// Capacity of the region registry.
const REGISTRY_CAP: usize = 65536;

/// How guard pages are installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GuardMode {
    /// `madvise(MADV_GUARD_INSTALL)`: no extra VMA.
    GuardInstall,
    /// `mprotect(PROT_NONE)`: ~2 VMAs per guard, budgeted.
    Mprotect,
}

/// Counters for tests and runtime stats.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StackStats {
    /// Regions mapped.
    pub regions: usize,
    /// Slots carved (each with a guard) so far.
    pub slots_mapped: usize,
    /// Stacks cached for reuse (worker caches plus global lists).
    pub free_cached: usize,
    /// Stacks handed out and not yet freed.
    pub in_use: usize,
    /// Guard mode in use; `None` before the first guard.
    pub guard_mode: Option<GuardMode>,
}

/// A fault address that lies in a slot's guard page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GuardHit {
    /// Lowest address of the slot (the guard page).
    pub slot_base: usize,
    /// Usable bytes of the stack above the guard.
    pub usable_size: usize,
}

/// Page size, read once.
pub(crate) fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    match PAGE.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: sysconf has no memory-safety preconditions.
            let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            let p = if p > 0 { p as usize } else { 4096 };
            PAGE.store(p, Ordering::Relaxed);
            p
        }
        p => p,
    }
}

mod cache;
mod guard;
#[cfg(test)]
mod tests;
mod view;

pub(crate) use cache::StackCache;
pub(crate) use view::{scratch_reserve, StackView, MAX_SCRATCH};

pub(crate) use guard::find_guard;
use guard::{guard_install, guard_mprotect, os_err, register, take_budget, unregister, PROBED};

// ---- Pool ---------------------------------------------------------------------------

/// A coroutine stack carved from a [`StackPool`] slab. Give it back with
/// [`StackPool::free`]; dropping it instead leaks the slot (memory-safe). The coroutine gets
/// the usable bytes minus the top [`EXT_BYTES`] (see [`SlabStack::ext_addr`]).
/// 16 bytes (it lives in every started task's header): the top of the stack (corosensei
/// reads it on every resume), the usable size in pages and the pool id as `u32`.
#[derive(Debug)]
pub(crate) struct SlabStack {
    top: usize,
    usable_pages: u32,
    pool_id: u32,
}

impl SlabStack {
    /// Usable bytes above the guard.
    #[inline]
    pub(crate) fn usable_size(&self) -> usize {
        self.usable_pages as usize * page_size()
    }

    /// The address of the [`EXT_BYTES`] above the coroutine's stack (see there): 64-aligned,
    /// inside the slot, mapped read-write while the stack is out, and never touched by the
    /// coroutine's frames (corosensei's `base` is below it).
    #[inline]
    pub(crate) fn ext_addr(&self) -> usize {
        self.top - EXT_BYTES
    }

    /// The slot's lowest address (its guard page).
    fn slot_base(&self) -> usize {
        self.top - self.usable_size() - page_size()
    }
}

// `limit` is the slot's lowest address and includes the guard page, installed before the
// stack was handed out; `base` is `limit + page + usable - EXT_BYTES` with `usable` >=
// MIN_STACK; `limit` is page-aligned and `base` 64-aligned (hence STACK_ALIGNMENT-aligned).
// SAFETY: guarded, large enough, aligned, and mapped while out (regions are unmapped only
// when no stack is in use), which is what corosensei's `Stack` requires.
unsafe impl corosensei::stack::Stack for SlabStack {
    fn base(&self) -> corosensei::stack::StackPointer {
        NonZeroUsize::new(self.ext_addr()).expect("nonzero")
    }
    fn limit(&self) -> corosensei::stack::StackPointer {
        NonZeroUsize::new(self.slot_base()).expect("nonzero")
    }
}

/// `(usable size, slot bases)` per size class.
type ClassLists = Vec<(usize, Vec<usize>)>;

/// Finds (or adds) the list for size class `usable`.
fn class_list(lists: &mut ClassLists, usable: usize) -> &mut Vec<usize> {
    let i = lists.iter().position(|c| c.0 == usable).unwrap_or_else(|| {
        lists.push((usable, Vec::new()));
        lists.len() - 1
    });
    &mut lists[i].1
}

struct Region {
    base: usize,
    len: usize,
    reg_idx: usize,
}

struct Class {
    usable: usize,
    /// Next uncarved slot and the end of the newest region.
    next: usize,
    end: usize,
    clean: Vec<usize>,
    /// Freed stacks whose pages are still resident (no syscall on the free path).
    dirty: Vec<usize>,
    /// Lowest `dirty.len()` since the last trim: stacks below it sat unused all along.
    dirty_low: usize,
}

struct Inner {
    classes: Vec<Class>,
    regions: Vec<Region>,
    mode: Option<GuardMode>,
    slots_mapped: usize,
    /// Test hook: a private mprotect budget instead of the process-wide one.
    budget: Option<usize>,
}

/// Stack allocator for one runtime. Send + Sync.
pub(crate) struct StackPool {
    /// Tells this pool's stacks from others' (a sanity check in `free`).
    id: u32,
    inner: Mutex<Inner>,
    forced: Option<GuardMode>,
    /// Stacks outside the global lists: in use, or held by a [`StackCache`].
    out: AtomicUsize,
    /// `len` counters of the live caches, for `stats`.
    cache_lens: Mutex<Vec<Arc<AtomicUsize>>>,
    /// Set once a carve failed for lack of guard budget (spawns then allocate eagerly).
    exhausted: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Our critical sections do not panic midway; a poisoned lock's data is consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl StackPool {
    /// An empty pool (workers add their own [`StackCache`]).
    pub(crate) fn new() -> StackPool {
        Self::build(None)
    }

    /// A pool that always uses `mode` (tests exercise both guard paths with it).
    #[cfg(test)]
    pub(crate) fn with_guard_mode(mode: GuardMode) -> StackPool {
        Self::build(Some(mode))
    }

    fn build(forced: Option<GuardMode>) -> StackPool {
        // Relaxed: a unique-number counter (pairs with nothing); it would wrap only after
        // four billion pools.
        static NEXT_ID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        StackPool {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            inner: Mutex::new(Inner {
                classes: Vec::new(),
                regions: Vec::new(),
                mode: None,
                slots_mapped: 0,
                budget: None,
            }),
            forced,
            out: AtomicUsize::new(0),
            cache_lens: Mutex::new(Vec::new()),
            exhausted: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Test hook: give this pool a private budget of `guards` mprotect guards.
    #[cfg(test)]
    pub(crate) fn set_guard_budget(&self, guards: usize) {
        lock(&self.inner).budget = Some(guards);
    }

    /// Test hook: the `(base, len)` of every region.
    #[cfg(test)]
    pub(crate) fn region_ranges(&self) -> Vec<(usize, usize)> {
        lock(&self.inner)
            .regions
            .iter()
            .map(|r| (r.base, r.len))
            .collect()
    }

    /// A stack with at least `size` usable bytes (rounded up to whole pages, at least
    /// [`MIN_STACK`]), from `cache` (the calling worker's) when it holds one.
    pub(crate) fn alloc(
        &self,
        size: usize,
        cache: Option<&StackCache<'_>>,
    ) -> io::Result<SlabStack> {
        let page = page_size();
        if size > MAX_STACK {
            return Err(too_large(size));
        }
        let usable = (size.max(MIN_STACK) + page - 1) & !(page - 1);
        let slot_base = match cache.and_then(|c| self.check_cache(c).pop(usable)) {
            Some(b) => b,
            None => self.alloc_global(usable)?,
        };
        Ok(SlabStack {
            top: slot_base + page + usable,
            // At most MAX_STACK / page pages: fits.
            usable_pages: (usable / page) as u32,
            pool_id: self.id,
        })
    }

    /// `alloc` past the caller's cache (out of line: keeps the cached path short).
    #[cold]
    #[inline(never)]
    fn alloc_global(&self, usable: usize) -> io::Result<usize> {
        let slot_base = match self.pop_global(usable) {
            Some(b) => b,
            None => match self.carve(usable) {
                Ok(b) => {
                    self.exhausted.store(false, Ordering::Relaxed);
                    b
                }
                Err(e) => {
                    if e.kind() == io::ErrorKind::OutOfMemory {
                        self.exhausted.store(true, Ordering::Relaxed);
                    }
                    return Err(e);
                }
            },
        };
        // Relaxed: a count; `Drop` reads it with exclusive access (pairs with nothing).
        self.out.fetch_add(1, Ordering::Relaxed);
        Ok(slot_base)
    }

    fn check_cache<'c>(&self, c: &'c StackCache<'_>) -> &'c StackCache<'c> {
        if !std::ptr::eq(c.pool, self) {
            crate::overflow::throw("StackPool: cache of another pool");
        }
        c
    }

    fn pop_global(&self, usable: usize) -> Option<usize> {
        let mut inner = lock(&self.inner);
        let class = inner.classes.iter_mut().find(|c| c.usable == usable)?;
        let d = class.dirty.pop();
        class.dirty_low = class.dirty_low.min(class.dirty.len());
        d.or_else(|| class.clean.pop())
    }

    /// Puts slot `base` of class `usable` on the global dirty list.
    #[cold]
    #[inline(never)]
    fn give_back(&self, usable: usize, base: usize) {
        let mut inner = lock(&self.inner);
        match inner.classes.iter_mut().find(|c| c.usable == usable) {
            Some(class) => class.dirty.push(base),
            None => crate::overflow::throw("StackPool::free: stack of an unknown size class"),
        }
        // Relaxed: a count (see `alloc`).
        self.out.fetch_sub(1, Ordering::Relaxed);
    }

    fn register_cache(&self, len: Arc<AtomicUsize>) {
        lock(&self.cache_lens).push(len);
    }

    fn unregister_cache(&self, len: &Arc<AtomicUsize>) {
        lock(&self.cache_lens).retain(|l| !Arc::ptr_eq(l, len));
    }

    /// Carves a new guarded slot, mapping a new region when the newest one is full.
    fn carve(&self, usable: usize) -> io::Result<usize> {
        let page = page_size();
        let slot = usable + page;
        let mut guard = lock(&self.inner);
        let inner = &mut *guard;
        let ci = match inner.classes.iter().position(|c| c.usable == usable) {
            Some(i) => i,
            None => {
                let c = Class {
                    usable,
                    next: 0,
                    end: 0,
                    clean: Vec::new(),
                    dirty: Vec::new(),
                    dirty_low: 0,
                };
                inner.classes.push(c);
                inner.classes.len() - 1
            }
        };
        if inner.classes[ci].next >= inner.classes[ci].end {
            let region = map_region(slot)?;
            let class = &mut inner.classes[ci];
            (class.next, class.end) = (region.base, region.base + region.len);
            inner.regions.push(region);
        }
        let addr = inner.classes[ci].next;
        let probed = match PROBED.load(Ordering::Relaxed) {
            1 => Some(GuardMode::GuardInstall),
            2 => Some(GuardMode::Mprotect),
            _ => None,
        };
        let mut mode = self.forced.or(inner.mode).or(probed);
        if mode != Some(GuardMode::Mprotect) {
            if guard_install(addr)? {
                mode = Some(GuardMode::GuardInstall);
            } else if self.forced.is_some() {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "gort: madvise(MADV_GUARD_INSTALL) is not supported (Linux < 6.13)",
                ));
            } else {
                PROBED.store(2, Ordering::Relaxed);
                mode = Some(GuardMode::Mprotect);
            }
        }
        if mode == Some(GuardMode::Mprotect) {
            take_budget(&mut inner.budget)?;
            guard_mprotect(addr)?;
        }
        inner.mode = mode;
        inner.classes[ci].next += slot;
        inner.slots_mapped += 1;
        Ok(addr)
    }

    /// True after an allocation failed for lack of memory or guard budget, until one succeeds.
    pub(crate) fn exhausted(&self) -> bool {
        self.exhausted.load(Ordering::Relaxed)
    }

    /// Returns `stack` to the pool: to `cache` (the calling worker's) unless that is full.
    pub(crate) fn free(&self, stack: SlabStack, cache: Option<&StackCache<'_>>) {
        if stack.pool_id != self.id {
            crate::overflow::throw("StackPool::free: stack belongs to another pool");
        }
        let usable = stack.usable_size();
        if let Some(c) = cache {
            if self.check_cache(c).push(usable, stack.slot_base()) {
                return;
            }
        }
        self.give_back(usable, stack.slot_base());
    }

    /// Gives the pages of global dirty stacks beyond [`GLOBAL_KEEP`] per class that stayed
    /// unused since the previous trim back to the OS (`MADV_DONTNEED`) and moves them to the clean list. Called by the runtime's monitor
    /// about once a second (Go's background scavenger plays this part), so the free path never
    /// makes a syscall. Returns how many stacks were released.
    pub(crate) fn trim(&self) -> usize {
        self.trim_to(GLOBAL_KEEP)
    }

    pub(crate) fn trim_to(&self, keep: usize) -> usize {
        let page = page_size();
        let mut released = 0;
        let mut inner = lock(&self.inner);
        for class in inner.classes.iter_mut() {
            // Only the surplus that stayed unused since the last trim: the oldest entries.
            let idle = class.dirty_low.min(class.dirty.len());
            let n = idle.saturating_sub(keep);
            for base in class.dirty.drain(..n) {
                // SAFETY: the usable range lies in a region this pool mapped; the stack was
                // handed back, so nothing runs on it, and dropping its pages is allowed. The
                // guard page below the range is left alone.
                unsafe {
                    let addr = (base + page) as *mut libc::c_void;
                    libc::madvise(addr, class.usable, libc::MADV_DONTNEED);
                }
                class.clean.push(base);
                released += 1;
            }
            class.dirty_low = class.dirty.len();
        }
        released
    }

    /// Current counters.
    pub(crate) fn stats(&self) -> StackStats {
        let inner = lock(&self.inner);
        // Relaxed: counters read for a report (pair with nothing); exact when no stack moves.
        let in_caches: usize = lock(&self.cache_lens)
            .iter()
            .map(|l| l.load(Ordering::Relaxed))
            .sum();
        let global: usize = inner
            .classes
            .iter()
            .map(|c| c.clean.len() + c.dirty.len())
            .sum();
        StackStats {
            regions: inner.regions.len(),
            slots_mapped: inner.slots_mapped,
            free_cached: global + in_caches,
            in_use: self.out.load(Ordering::Relaxed).saturating_sub(in_caches),
            guard_mode: inner.mode,
        }
    }
}

#[cold]
#[inline(never)]
fn too_large(size: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("gort: coroutine stack size {size} is too large"),
    )
}

fn map_region(slot: usize) -> io::Result<Region> {
    let slots = (REGION_TARGET_BYTES / slot).clamp(1, MAX_SLOTS_PER_REGION);
    let len = slots * slot;
    // SAFETY: a fresh anonymous private mapping at an address the kernel picks; it
    // aliases nothing.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        let what = format!("cannot map a {} KiB region for coroutine stacks", len >> 10);
        return Err(os_err(&what, io::Error::last_os_error()));
    }
    // SAFETY: `p..p+len` is the mapping just made. Failure (no THP support) is harmless.
    unsafe { libc::madvise(p, len, libc::MADV_NOHUGEPAGE) };
    match register(p as usize, len, slot) {
        Ok(reg_idx) => Ok(Region {
            base: p as usize,
            len,
            reg_idx,
        }),
        Err(e) => {
            // SAFETY: unmapping the mapping just made; nothing refers to it yet.
            unsafe { libc::munmap(p, len) };
            Err(e)
        }
    }
}

impl Drop for StackPool {
    fn drop(&mut self) {
        // With stacks still out (a leak by the caller), keep every region mapped and
        // registered: a coroutine may still run on one.
        // Caches borrow the pool, so they have given their stacks back by now.
        if *self.out.get_mut() != 0 {
            return;
        }
        for r in lock(&self.inner).regions.drain(..) {
            unregister(r.reg_idx);
            // SAFETY: no stack of this pool is in use and the pool is going away, so
            // nothing refers to the region any more.
            unsafe { libc::munmap(r.base as *mut libc::c_void, r.len) };
        }
    }
}

/// Re-running the test binary on one test, to observe fatal signals in isolation.
#[cfg(test)]
pub(crate) mod test_child;
