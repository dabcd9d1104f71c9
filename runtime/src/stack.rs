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
//! Reuse: freed stacks go to the freeing worker's cache (pages stay warm); past
//! [`HIGH_WATER`] cached stacks of one class on that worker, the slot goes to the pool's
//! global dirty list; the monitor calls [`StackPool::trim`] about once a second, which gives
//! the pages of dirty stacks beyond [`GLOBAL_KEEP`] back to the OS (`MADV_DONTNEED`) and moves
//! them to the clean list. So the free path never makes a syscall.
//! Allocation order: worker cache, global dirty list, global clean list, new slot (new region
//! if needed).
//! Frees from non-worker threads go straight to the clean list. Slots are never given
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
use std::sync::atomic::{fence, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;

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
    /// Stacks cached for reuse (worker caches plus global clean list).
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

// ---- Lock-free region registry (read by the signal handler) -------------------------

/// One registry slot, guarded by a seqlock: odd `seq` means an update is in progress.
struct RegEntry {
    seq: AtomicUsize,
    base: AtomicUsize,
    len: AtomicUsize,
    slot: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_ENTRY: RegEntry = RegEntry {
    seq: AtomicUsize::new(0),
    base: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    slot: AtomicUsize::new(0),
};
static REGISTRY: [RegEntry; REGISTRY_CAP] = [EMPTY_ENTRY; REGISTRY_CAP];
/// Entries `0..REG_USED` may be live; readers scan only those.
static REG_USED: AtomicUsize = AtomicUsize::new(0);
/// Serializes writers (never taken by the signal handler).
static REG_LOCK: Mutex<()> = Mutex::new(());

fn reg_write(i: usize, base: usize, len: usize, slot: usize) {
    let e = &REGISTRY[i];
    let s = e.seq.load(Ordering::Relaxed);
    e.seq.store(s + 1, Ordering::Relaxed);
    fence(Ordering::Release);
    e.base.store(base, Ordering::Relaxed);
    e.len.store(len, Ordering::Relaxed);
    e.slot.store(slot, Ordering::Relaxed);
    e.seq.store(s + 2, Ordering::Release);
}

fn register(base: usize, len: usize, slot: usize) -> io::Result<usize> {
    let _g = REG_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let used = REG_USED.load(Ordering::Relaxed);
    let i = match (0..used).find(|&i| REGISTRY[i].len.load(Ordering::Relaxed) == 0) {
        Some(i) => i,
        None if used < REGISTRY_CAP => used,
        None => {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("gort: too many coroutine stack regions (limit {REGISTRY_CAP})"),
            ))
        }
    };
    reg_write(i, base, len, slot);
    if i == used {
        REG_USED.store(used + 1, Ordering::Release);
    }
    Ok(i)
}

fn unregister(i: usize) {
    let _g = REG_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    reg_write(i, 0, 0, 0);
}

/// If `addr` lies in the guard page of a slot of any pool's region, say which slot.
/// Async-signal-safe: atomics only, no locks, no allocation.
pub(crate) fn find_guard(addr: usize) -> Option<GuardHit> {
    let page = page_size();
    let used = REG_USED.load(Ordering::Acquire).min(REGISTRY_CAP);
    for e in &REGISTRY[..used] {
        // A torn read (writer mid-update, maybe this very thread) is retried a few
        // times, then skipped: a region being (un)registered holds no running stack.
        for _ in 0..4 {
            let s1 = e.seq.load(Ordering::Acquire);
            let (base, len, slot) = (
                e.base.load(Ordering::Relaxed),
                e.len.load(Ordering::Relaxed),
                e.slot.load(Ordering::Relaxed),
            );
            fence(Ordering::Acquire);
            if s1 % 2 == 1 || e.seq.load(Ordering::Relaxed) != s1 {
                continue;
            }
            if len == 0 || slot == 0 || addr < base || addr - base >= len {
                break;
            }
            let off = (addr - base) % slot;
            return (off < page).then(|| GuardHit {
                slot_base: addr - off,
                usable_size: slot - page,
            });
        }
    }
    None
}

// ---- Guards --------------------------------------------------------------------------

/// Process-wide probe result: 0 unknown, 1 MADV_GUARD_INSTALL works, 2 it does not.
static PROBED: AtomicU8 = AtomicU8::new(0);
/// Process-wide mprotect guard budget (guards left); `None` until first computed.
static MPROTECT_BUDGET: Mutex<Option<usize>> = Mutex::new(None);

fn max_map_count() -> usize {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65530)
}

fn budget_error(max: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::OutOfMemory,
        format!(
            "gort: cannot guard another coroutine stack: vm.max_map_count ({max}) is nearly \
             used up; raise it with sysctl -w vm.max_map_count={}",
            (max * 4).max(262_144)
        ),
    )
}

/// Takes one mprotect guard from `local` (test override) or the process-wide budget.
fn take_budget(local: &mut Option<usize>) -> io::Result<()> {
    if let Some(left) = local {
        *left = left
            .checked_sub(1)
            .ok_or_else(|| budget_error(max_map_count()))?;
        return Ok(());
    }
    let mut b = MPROTECT_BUDGET.lock().unwrap_or_else(|e| e.into_inner());
    if matches!(*b, None | Some(0)) {
        // (Re)compute: the sysctl may have been raised, or maps released.
        let max = max_map_count();
        let maps = std::fs::read("/proc/self/maps").map_or(max, |m| bytecount(&m));
        *b = Some(max.saturating_sub(maps + MAP_MARGIN) / 2);
    }
    match b.as_mut() {
        Some(left) if *left > 0 => {
            *left -= 1;
            Ok(())
        }
        _ => Err(budget_error(max_map_count())),
    }
}

fn bytecount(m: &[u8]) -> usize {
    m.iter().filter(|&&c| c == b'\n').count()
}

fn os_err(what: &str, err: io::Error) -> io::Error {
    io::Error::new(err.kind(), format!("gort: {what}: {err}"))
}

/// Tries `MADV_GUARD_INSTALL` on the page at `addr`: `Ok(false)` if the kernel lacks it.
fn guard_install(addr: usize) -> io::Result<bool> {
    // SAFETY: `addr` is a page of a region this pool mapped and owns; installing a
    // guard there only makes later accesses to that page fault.
    let r = unsafe { libc::madvise(addr as *mut libc::c_void, page_size(), MADV_GUARD_INSTALL) };
    if r == 0 {
        PROBED.store(1, Ordering::Relaxed);
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EINVAL) => Ok(false),
        _ => Err(os_err("madvise(MADV_GUARD_INSTALL) on a stack guard", err)),
    }
}

/// Makes the page at `addr` `PROT_NONE` (splits the region's VMA).
fn guard_mprotect(addr: usize) -> io::Result<()> {
    // SAFETY: as in `guard_install`; the page becomes PROT_NONE and holds no data.
    if unsafe { libc::mprotect(addr as *mut libc::c_void, page_size(), libc::PROT_NONE) } != 0 {
        let err = io::Error::last_os_error();
        return Err(match err.raw_os_error() {
            Some(libc::ENOMEM) => budget_error(max_map_count()),
            _ => os_err("mprotect(PROT_NONE) on a stack guard", err),
        });
    }
    Ok(())
}

// ---- Pool ---------------------------------------------------------------------------

/// A coroutine stack carved from a [`StackPool`] slab. Give it back with
/// [`StackPool::free`]; dropping it instead leaks the slot (memory-safe).
#[derive(Debug)]
pub(crate) struct SlabStack {
    slot_base: usize,
    usable: usize,
    pool_id: usize,
}

impl SlabStack {
    /// Usable bytes above the guard.
    #[cfg(test)]
    pub(crate) fn usable_size(&self) -> usize {
        self.usable
    }
}

// SAFETY: `limit` is the slot's lowest address and includes the guard page, installed
// before the stack was handed out; `base` is `limit + page + usable` with `usable`
// >= MIN_STACK; both are page-aligned (hence STACK_ALIGNMENT-aligned). The memory stays
// mapped while the stack is out: regions are unmapped only when no stack is in use.
unsafe impl corosensei::stack::Stack for SlabStack {
    fn base(&self) -> corosensei::stack::StackPointer {
        NonZeroUsize::new(self.slot_base + page_size() + self.usable).expect("nonzero")
    }
    fn limit(&self) -> corosensei::stack::StackPointer {
        NonZeroUsize::new(self.slot_base).expect("nonzero")
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
    id: usize,
    caches: Box<[Mutex<ClassLists>]>,
    inner: Mutex<Inner>,
    forced: Option<GuardMode>,
    in_use: AtomicUsize,
    cached: AtomicUsize,
    /// Set once a carve failed for lack of guard budget (spawns then allocate eagerly).
    exhausted: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Our critical sections do not panic midway; a poisoned lock's data is consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl StackPool {
    /// A pool with one cache per worker.
    pub(crate) fn new(workers: usize) -> StackPool {
        Self::build(workers, None)
    }

    /// A pool that always uses `mode` (tests exercise both guard paths with it).
    #[cfg(test)]
    pub(crate) fn with_guard_mode(workers: usize, mode: GuardMode) -> StackPool {
        Self::build(workers, Some(mode))
    }

    fn build(workers: usize, forced: Option<GuardMode>) -> StackPool {
        static NEXT_ID: AtomicUsize = AtomicUsize::new(1);
        StackPool {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            caches: (0..workers).map(|_| Mutex::new(Vec::new())).collect(),
            inner: Mutex::new(Inner {
                classes: Vec::new(),
                regions: Vec::new(),
                mode: None,
                slots_mapped: 0,
                budget: None,
            }),
            forced,
            in_use: AtomicUsize::new(0),
            cached: AtomicUsize::new(0),
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
    /// [`MIN_STACK`]). `worker` is the caller's worker index, or `usize::MAX`.
    pub(crate) fn alloc(&self, size: usize, worker: usize) -> io::Result<SlabStack> {
        let page = page_size();
        if size > MAX_STACK {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("gort: coroutine stack size {size} is too large"),
            ));
        }
        let usable = (size.max(MIN_STACK) + page - 1) & !(page - 1);
        let slot_base = match self.pop_cached(usable, worker) {
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
        self.in_use.fetch_add(1, Ordering::Relaxed);
        Ok(SlabStack {
            slot_base,
            usable,
            pool_id: self.id,
        })
    }

    fn pop_cached(&self, usable: usize, worker: usize) -> Option<usize> {
        let hit = self
            .caches
            .get(worker)
            .and_then(|c| class_list(&mut lock(c), usable).pop())
            .or_else(|| {
                let mut inner = lock(&self.inner);
                let class = inner.classes.iter_mut().find(|c| c.usable == usable)?;
                let d = class.dirty.pop();
                class.dirty_low = class.dirty_low.min(class.dirty.len());
                d.or_else(|| class.clean.pop())
            });
        if hit.is_some() {
            self.cached.fetch_sub(1, Ordering::Relaxed);
        }
        hit
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

    /// Returns `stack` to the pool; `worker` is the caller's worker index or `usize::MAX`.
    pub(crate) fn free(&self, stack: SlabStack, worker: usize) {
        if stack.pool_id != self.id {
            crate::overflow::throw("StackPool::free: stack belongs to another pool");
        }
        self.in_use.fetch_sub(1, Ordering::Relaxed);
        self.cached.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.caches.get(worker) {
            let mut lists = lock(c);
            let list = class_list(&mut lists, stack.usable);
            if list.len() < HIGH_WATER {
                list.push(stack.slot_base);
                return;
            }
        }
        let mut inner = lock(&self.inner);
        match inner.classes.iter_mut().find(|c| c.usable == stack.usable) {
            Some(class) => class.dirty.push(stack.slot_base),
            None => crate::overflow::throw("StackPool::free: stack of an unknown size class"),
        }
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
        StackStats {
            regions: inner.regions.len(),
            slots_mapped: inner.slots_mapped,
            free_cached: self.cached.load(Ordering::Relaxed),
            in_use: self.in_use.load(Ordering::Relaxed),
            guard_mode: inner.mode,
        }
    }
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
        if self.in_use.load(Ordering::Relaxed) != 0 {
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
pub(crate) mod test_child {
    use std::process::{Command, Output};

    const ENV: &str = "GORT_TEST_CHILD";

    /// True when this process is the child re-run for test `name`.
    pub(crate) fn is_child(name: &str) -> bool {
        std::env::var(ENV).is_ok_and(|v| v == name)
    }

    /// Runs exactly test `name` (full path, e.g. `stack::tests::x`) in a child.
    pub(crate) fn run(name: &str) -> Output {
        let exe = std::env::current_exe().expect("current_exe");
        Command::new(exe)
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(ENV, name)
            .output()
            .expect("spawn test child")
    }

    /// The signal that killed the child, if any.
    pub(crate) fn signal(out: &Output) -> Option<i32> {
        std::os::unix::process::ExitStatusExt::signal(&out.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corosensei::stack::Stack;
    use proptest::prelude::*;

    fn guard_of(s: &SlabStack) -> usize {
        s.limit().get()
    }

    /// Pool with `mode`, or `None` (test skipped) if the kernel lacks MADV_GUARD_INSTALL.
    fn pool_in(mode: GuardMode) -> Option<StackPool> {
        let pool = StackPool::with_guard_mode(1, mode);
        match pool.alloc(MIN_STACK, 0) {
            Ok(s) => {
                pool.free(s, 0);
                Some(pool)
            }
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                eprintln!("skipped: {e}");
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    /// Lines of /proc/self/maps overlapping the pool's regions.
    fn maps_in(pool: &StackPool) -> usize {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let ranges = pool.region_ranges();
        maps.lines()
            .filter(|l| {
                let r = l.split(' ').next().unwrap();
                let (a, b) = r.split_once('-').unwrap();
                let a = usize::from_str_radix(a, 16).unwrap();
                let b = usize::from_str_radix(b, 16).unwrap();
                ranges.iter().any(|&(base, len)| a < base + len && base < b)
            })
            .count()
    }

    #[test]
    fn alloc_free_reuse() {
        let pool = StackPool::new(2);
        let a = pool.alloc(DEFAULT_STACK, 0).unwrap();
        let base = guard_of(&a);
        pool.free(a, 0);
        let b = pool.alloc(DEFAULT_STACK, 0).unwrap();
        assert_eq!(guard_of(&b), base, "worker cache reuses the slot");
        // Worker 1 cannot see worker 0's cache: it carves a new slot.
        let c = pool.alloc(DEFAULT_STACK, 1).unwrap();
        assert_ne!(guard_of(&c), base);
        // A non-worker free goes to the global list, visible to every worker.
        let cb = guard_of(&c);
        pool.free(c, usize::MAX);
        let d = pool.alloc(DEFAULT_STACK, 0).unwrap();
        assert_eq!(guard_of(&d), cb);
        let st = pool.stats();
        assert_eq!((st.slots_mapped, st.in_use, st.free_cached), (2, 2, 0));
        assert!(st.guard_mode.is_some());
        pool.free(b, 0);
        pool.free(d, 1);
        assert_eq!(pool.stats().free_cached, 2);
    }

    #[test]
    fn sizes_round_up_and_classes_are_separate() {
        let page = page_size();
        let pool = StackPool::new(1);
        let a = pool.alloc(1, 0).unwrap();
        let b = pool.alloc(MIN_STACK + 1, 0).unwrap();
        let c = pool.alloc(DEFAULT_STACK, usize::MAX).unwrap();
        assert_eq!(a.usable_size(), MIN_STACK);
        assert_eq!(b.usable_size(), MIN_STACK + page);
        assert_eq!(c.usable_size(), DEFAULT_STACK);
        assert_eq!(pool.stats().regions, 3);
        for s in [&a, &b, &c] {
            assert_eq!(s.base().get() - s.limit().get(), s.usable_size() + page);
            assert_eq!(s.base().get() % corosensei::stack::STACK_ALIGNMENT, 0);
        }
        let err = pool.alloc(usize::MAX / 2, 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        for s in [a, b, c] {
            pool.free(s, 0);
        }
    }

    #[test]
    fn whole_usable_range_is_writable() {
        let page = page_size();
        let pool = StackPool::new(1);
        for size in [MIN_STACK, DEFAULT_STACK, 256 * 1024] {
            let s = pool.alloc(size, 0).unwrap();
            let lo = (s.limit().get() + page) as *mut u8;
            // SAFETY: `lo..base` is the stack's usable range, mapped read-write and
            // owned by this test while the stack is out.
            unsafe {
                std::ptr::write_bytes(lo, 0xAB, s.usable_size());
                assert_eq!(*lo, 0xAB);
                assert_eq!(*((s.base().get() - 1) as *const u8), 0xAB);
            }
            pool.free(s, 0);
        }
    }

    #[test]
    fn find_guard_covers_exactly_the_guard_page() {
        let page = page_size();
        let pool = StackPool::new(1);
        let s = pool.alloc(DEFAULT_STACK, 0).unwrap();
        let g = guard_of(&s);
        let hit = GuardHit {
            slot_base: g,
            usable_size: DEFAULT_STACK,
        };
        assert_eq!(find_guard(g), Some(hit));
        assert_eq!(find_guard(g + page - 1), Some(hit));
        assert_eq!(find_guard(g + page), None);
        assert_eq!(find_guard(s.base().get() - 1), None);
        assert_eq!(find_guard(8), None);
        pool.free(s, 0);
    }

    /// In the child: touch the guard page of a fresh stack of the given mode.
    fn touch_guard(mode: GuardMode) {
        let pool = StackPool::with_guard_mode(1, mode);
        let s = pool.alloc(DEFAULT_STACK, 0).unwrap();
        // SAFETY: not safe to complete: this read is meant to fault (child process).
        unsafe { std::ptr::read_volatile(guard_of(&s) as *const u8) };
        std::process::exit(0); // reached only if the guard is missing
    }

    #[test]
    fn guard_faults_with_guard_install() {
        let name = "stack::tests::guard_faults_with_guard_install";
        if test_child::is_child(name) {
            touch_guard(GuardMode::GuardInstall);
        }
        if pool_in(GuardMode::GuardInstall).is_none() {
            return;
        }
        let out = test_child::run(name);
        assert_eq!(test_child::signal(&out), Some(libc::SIGSEGV), "{out:?}");
    }

    #[test]
    fn guard_faults_with_mprotect() {
        let name = "stack::tests::guard_faults_with_mprotect";
        if test_child::is_child(name) {
            touch_guard(GuardMode::Mprotect);
        }
        let out = test_child::run(name);
        assert_eq!(test_child::signal(&out), Some(libc::SIGSEGV), "{out:?}");
    }

    #[test]
    fn pages_go_back_past_high_water() {
        let page = page_size();
        let pool = StackPool::new(1);
        let stacks: Vec<SlabStack> = (0..=HIGH_WATER)
            .map(|_| pool.alloc(MIN_STACK, 0).unwrap())
            .collect();
        let resident = |s: &SlabStack| {
            let mut vec = vec![0u8; s.usable_size() / page];
            // SAFETY: the range is page-aligned and mapped; `vec` has one byte per page.
            let r = unsafe {
                libc::mincore(
                    (s.limit().get() + page) as *mut libc::c_void,
                    s.usable_size(),
                    vec.as_mut_ptr(),
                )
            };
            assert_eq!(r, 0);
            vec.iter().filter(|&&b| b & 1 != 0).count()
        };
        for s in &stacks {
            // SAFETY: the usable range of a stack this test owns.
            unsafe {
                std::ptr::write_bytes((s.limit().get() + page) as *mut u8, 1, s.usable_size())
            };
        }
        let last = guard_of(stacks.last().unwrap());
        let last_resident = resident(stacks.last().unwrap());
        assert_eq!(last_resident, MIN_STACK / page);
        for s in stacks {
            pool.free(s, 0);
        }
        // The first HIGH_WATER stay cached on worker 0; the last went to the dirty list, still
        // resident until a trim gives its pages back.
        // A trim releases only what stayed unused since the previous trim: the first call
        // sets the low-water mark, the second releases the idle stack.
        assert_eq!(pool.trim_to(GLOBAL_KEEP), 0);
        assert_eq!(pool.trim_to(0), 1);
        assert_eq!(pool.trim_to(0), 0);
        let again: Vec<SlabStack> = (0..=HIGH_WATER)
            .map(|_| pool.alloc(MIN_STACK, 0).unwrap())
            .collect();
        let s = again
            .iter()
            .find(|s| guard_of(s) == last)
            .expect("slot reused");
        assert_eq!(resident(s), 0, "MADV_DONTNEED released the pages");
        assert_eq!(pool.stats().slots_mapped, HIGH_WATER + 1);
        for s in again {
            pool.free(s, 0);
        }
    }

    #[test]
    fn guard_install_adds_no_maps() {
        let Some(pool) = pool_in(GuardMode::GuardInstall) else {
            return;
        };
        let stacks: Vec<SlabStack> = (0..1000)
            .map(|_| pool.alloc(DEFAULT_STACK, 0).unwrap())
            .collect();
        let st = pool.stats();
        assert_eq!(st.guard_mode, Some(GuardMode::GuardInstall));
        assert!(
            maps_in(&pool) <= st.regions,
            "{} maps for {} regions",
            maps_in(&pool),
            st.regions
        );
        for s in stacks {
            pool.free(s, 0);
        }
        // Past the ~32.7k stacks at which mprotect guards would exhaust 65530 maps.
        let many: Vec<SlabStack> = (0..40_000)
            .map(|_| pool.alloc(MIN_STACK, 0).unwrap())
            .collect();
        assert!(maps_in(&pool) <= pool.stats().regions);
        for s in many {
            pool.free(s, usize::MAX);
        }
    }

    #[test]
    fn pool_is_send_sync_and_stack_is_send() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<StackPool>();
        send::<SlabStack>();
    }

    #[test]
    fn mprotect_guards_cost_maps_and_respect_budget() {
        let pool = StackPool::with_guard_mode(1, GuardMode::Mprotect);
        let stacks: Vec<SlabStack> = (0..100)
            .map(|_| pool.alloc(DEFAULT_STACK, 0).unwrap())
            .collect();
        assert_eq!(pool.stats().guard_mode, Some(GuardMode::Mprotect));
        assert!(
            maps_in(&pool) >= 199,
            "each mprotect guard splits the region"
        );
        pool.set_guard_budget(2);
        let more = [
            pool.alloc(DEFAULT_STACK, 0).unwrap(),
            pool.alloc(DEFAULT_STACK, 0).unwrap(),
        ];
        let err = pool.alloc(DEFAULT_STACK, 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::OutOfMemory);
        let msg = err.to_string();
        assert!(
            msg.contains("vm.max_map_count") && msg.contains("sysctl -w"),
            "{msg}"
        );
        // Reuse needs no new guard, so it works past the budget.
        for s in more {
            pool.free(s, 0);
        }
        let s = pool.alloc(DEFAULT_STACK, 0).unwrap();
        pool.free(s, 0);
        for s in stacks {
            pool.free(s, 0);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// Live stacks never overlap, each guard is found, and counters add up.
        #[test]
        fn random_alloc_free(ops in proptest::collection::vec((0usize..3, 0usize..4, any::<bool>()), 1..200)) {
            let sizes = [MIN_STACK, DEFAULT_STACK, 100 * 1024];
            let pool = StackPool::new(3);
            let mut live: Vec<SlabStack> = Vec::new();
            for (size, worker, free) in ops {
                let worker = if worker == 3 { usize::MAX } else { worker };
                if free && !live.is_empty() {
                    let s = live.swap_remove(size % live.len());
                    pool.free(s, worker);
                } else {
                    let s = pool.alloc(sizes[size], worker).unwrap();
                    prop_assert!(s.usable_size() >= sizes[size]);
                    prop_assert!(find_guard(guard_of(&s)).is_some());
                    for o in &live {
                        prop_assert!(s.base() <= o.limit() || o.base() <= s.limit());
                    }
                    live.push(s);
                }
            }
            let st = pool.stats();
            prop_assert_eq!(st.in_use, live.len());
            prop_assert_eq!(st.in_use + st.free_cached, st.slots_mapped);
            for s in live {
                pool.free(s, 0);
            }
        }
    }
}
