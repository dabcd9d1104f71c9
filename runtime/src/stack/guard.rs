//! Guard pages and the lock-free registry of stack regions (read by the SIGSEGV handler).
//!
//! Guards: `madvise(MADV_GUARD_INSTALL)` (Linux 6.13+) adds no memory map; the fallback,
//! `mprotect(PROT_NONE)`, splits the VMA (about 2 maps a guard), so it runs within a
//! process-wide budget derived from `vm.max_map_count`. The registry is a fixed array of
//! atomics so that the signal handler can test "is this fault address a guard page" without
//! locks or allocation.
use std::io;
use std::sync::atomic::{fence, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::*;

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

pub(super) fn register(base: usize, len: usize, slot: usize) -> io::Result<usize> {
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

pub(super) fn unregister(i: usize) {
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
pub(super) static PROBED: AtomicU8 = AtomicU8::new(0);
/// Process-wide mprotect guard budget (guards left); `None` until first computed.
static MPROTECT_BUDGET: Mutex<Option<usize>> = Mutex::new(None);

pub(super) fn max_map_count() -> usize {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65530)
}

pub(super) fn budget_error(max: usize) -> io::Error {
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
pub(super) fn take_budget(local: &mut Option<usize>) -> io::Result<()> {
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

pub(super) fn bytecount(m: &[u8]) -> usize {
    m.iter().filter(|&&c| c == b'\n').count()
}

pub(super) fn os_err(what: &str, err: io::Error) -> io::Error {
    io::Error::new(err.kind(), format!("gort: {what}: {err}"))
}

/// Tries `MADV_GUARD_INSTALL` on the page at `addr`: `Ok(false)` if the kernel lacks it.
pub(super) fn guard_install(addr: usize) -> io::Result<bool> {
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
pub(super) fn guard_mprotect(addr: usize) -> io::Result<()> {
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
