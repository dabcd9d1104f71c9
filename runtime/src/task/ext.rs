//! The run-time half of a task ([`Ext`]), kept in the top `EXT_BYTES` of the task's own stack
//! slot (below its scratch buffer, if it has one: see stack/view.rs), and the `Task` methods
//! that build, start, finish and drop it, and lend out the scratch buffer (see the parent
//! module).
//!
//! Invariants: `Task::ext` is null, or points to a live `Ext` in the top of the slot of the
//! `SlabStack` that `Ext::stack` holds; the coroutine in `Ext::coro` runs on a view of that
//! stack, which is given back (by `Task::finish`) only once the coroutine is done. Only the
//! owner thread touches the `Ext` (see the `Send` impl of `Task`).
use std::cell::{Cell, UnsafeCell};
use std::sync::atomic::Ordering;

use corosensei::{Coroutine, Yielder};

use super::{Suspend, Task, DONE};
use crate::overflow;
use crate::stack::{SlabStack, StackView, EXT_BYTES};

type Coro = Coroutine<(), Suspend, (), StackView>;

/// The run-time half of a task, owner-thread-only: kept in the top `EXT_BYTES` of the task's
/// own stack slot (`SlabStack::ext_addr`), not in the task header. So the header, which a
/// `JoinHandle` keeps alive after the coroutine finished, is 56 bytes smaller (a million
/// kept handles touch ~55 MB less fresh memory, and page faults are what a burst of spawns
/// mostly costs), and this half is recycled hot with the stack.
pub(super) struct Ext {
    /// The coroutine, built on a view of `stack`; `None` while the task has not started
    /// (only when the spawn allocated the stack eagerly: the guard budget was spent).
    pub(super) coro: UnsafeCell<Option<Coro>>,
    /// The stack the area lies in: given back by `Task::finish` once `coro` is done.
    stack: SlabStack,
    /// The coroutine's yielder, set when it first runs.
    pub(super) yielder: Cell<*const Yielder<(), Suspend>>,
}

const _: () = assert!(
    std::mem::size_of::<Ext>() <= EXT_BYTES
        && std::mem::align_of::<Ext>() <= 64
        && EXT_BYTES % 64 == 0,
    "task::Ext must fit the top of a stack slot"
);

/// Writes an `Ext` holding `stack` (and `coro`, built on a view of it) in the area at the top
/// of `stack`'s slot, below the top `reserve` bytes (0, or a `stack::scratch_reserve`).
pub(super) fn new_ext(stack: SlabStack, reserve: usize, coro: Option<Coro>) -> *mut Ext {
    let at = stack.ext_addr_below(reserve) as *mut Ext;
    // SAFETY: `at` is the `EXT_BYTES` area below the top `reserve` bytes of `stack`'s slot
    // (a multiple of 64, far smaller than the slot: see `SlabStack::view_below`): mapped,
    // aligned for `Ext` (checked above) and used by nothing else (the coroutine's frames lie
    // below it, a scratch buffer above it); the stack moves into the `Ext`, so the area lives
    // as long as the `Ext` does.
    unsafe {
        at.write(Ext {
            coro: UnsafeCell::new(coro),
            stack,
            yielder: Cell::new(std::ptr::null()),
        })
    };
    at
}

impl Task {
    /// Claims a never-run task's stack, if the spawn allocated one; afterwards the caller
    /// builds the coroutine ([`Task::install`]) or gives up, and starts `slot` (see
    /// `Slot::start`). (That this happens once per task is `start_fresh`'s `owner` check.)
    ///
    /// # Safety
    /// Owner thread only (the worker that just claimed the task), before the first resume.
    pub(crate) unsafe fn take_fresh(&self) -> Option<SlabStack> {
        // Relaxed: owner-thread-only (see `Task::ext`).
        let ext = self.ext.load(Ordering::Relaxed);
        self.ext.store(std::ptr::null_mut(), Ordering::Relaxed);
        if ext.is_null() {
            return None;
        }
        // SAFETY: a non-null `ext` points to a live `Ext` (from `new`) that only the owner
        // thread, the caller, touches; clearing the pointer makes this its only read.
        unsafe {
            if (*(*ext).coro.get()).is_some() {
                overflow::throw("Task::take_fresh: task already started");
            }
            Some(std::ptr::read(&(*ext).stack))
        }
    }

    /// Builds the coroutine of a fresh task on `stack` (running `body`) and installs it, with
    /// the stack, in the top of the stack's slot.
    ///
    /// # Safety
    /// Owner thread only, right after `take_fresh`.
    pub(crate) unsafe fn install<F>(&self, stack: SlabStack, body: F)
    where
        F: FnOnce(&Yielder<(), Suspend>, ()) + 'static,
    {
        let reserve = self.scratch_reserve();
        // SAFETY: the `Ext` keeps `stack` next to the coroutine, and `finish` (or `Drop`)
        // gives the stack back only once the coroutine is done (or leaks both).
        let coro = Coroutine::with_stack(unsafe { stack.view_below(reserve) }, body);
        // Relaxed: owner-thread-only (see `Task::ext`).
        self.ext
            .store(new_ext(stack, reserve, Some(coro)), Ordering::Relaxed);
    }

    /// The running coroutine's scratch buffer (see `Builder::spawn_with_buffer`): `len`
    /// bytes above its `Ext`, zeroed if an earlier coroutine left bytes there. Fresh stack
    /// pages are zero already and are only read here, so they stay unbacked (the kernel maps
    /// its shared zero page) until the coroutine writes to them.
    ///
    /// # Safety
    /// Only from the task's own coroutine, at most once and before it first parks, with `len`
    /// at most the scratch lines it was spawned with, times 64; the caller must not let the
    /// slice outlive the coroutine's body.
    pub(crate) unsafe fn scratch<'a>(&self, len: usize) -> &'a mut [u8] {
        if len > self.scratch_lines() as usize * 64 {
            overflow::throw("Task::scratch: longer than reserved");
        }
        // Relaxed: owner-thread-only (see `Task::ext`); non-null while the coroutine runs.
        let at = (self.ext.load(Ordering::Relaxed) as usize + EXT_BYTES) as *mut u8;
        // SAFETY: `install` kept the `scratch_reserve` bytes above the `Ext` out of the
        // coroutine's stack; they are mapped while the stack is out (until the coroutine is
        // done) and nothing else uses them: the caller is the coroutine, which asks once. The
        // slot is raw `mmap` memory that no Rust allocation owns: every byte holds a value
        // (zero-filled by the kernel, or whatever an earlier coroutine stored there), read
        // here as plain integers and cleared below if any is nonzero before it is lent out.
        unsafe {
            let words = std::slice::from_raw_parts(at as *const u64, len / 8);
            let dirty =
                words.iter().any(|&w| w != 0) || (len / 8 * 8..len).any(|i| at.add(i).read() != 0);
            if dirty {
                at.write_bytes(0, len);
            }
            std::slice::from_raw_parts_mut(at, len)
        }
    }

    /// After the coroutine returned: marks DONE and hands back its stack.
    ///
    /// # Safety
    /// Owner thread only, after `resume` returned `CoroutineResult::Return`.
    pub(crate) unsafe fn finish(&self) -> SlabStack {
        self.state.store(DONE, Ordering::Release);
        // Relaxed: owner-thread-only (see `Task::ext`).
        let ext = self.ext.load(Ordering::Relaxed);
        self.ext.store(std::ptr::null_mut(), Ordering::Relaxed);
        if ext.is_null() {
            overflow::throw("Task::finish: no coroutine");
        }
        // SAFETY: owner thread, coroutine finished and not running (caller's contract). A
        // done coroutine owns nothing (its view of the stack borrows nothing), so it is left in
        // place, never dropped, and the stack is moved out once (the pointer is cleared).
        unsafe {
            match &*(*ext).coro.get() {
                Some(c) if c.done() => {}
                _ => overflow::throw("Task::finish: coroutine not done"),
            }
            std::ptr::read(&(*ext).stack)
        }
    }

    /// Called by the coroutine body on its first run.
    pub(crate) fn set_yielder(&self, y: &Yielder<(), Suspend>) {
        // Relaxed: owner-thread-only (see `Task::ext`).
        let ext = self.ext.load(Ordering::Relaxed);
        if ext.is_null() {
            overflow::throw("Task::set_yielder: task not started");
        }
        // SAFETY: the running coroutine (on the owner thread) calls this after `install`; the
        // `Ext` lives until `finish`, after the coroutine returned.
        unsafe { (*ext).yielder.set(y as *const _) };
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.slot.drop_contents(&mut self.slot_flags);
        let ext = *self.ext.get_mut();
        if ext.is_null() {
            return;
        }
        // SAFETY: `&mut self`: nobody else reaches the `Ext`, live since `new`/`install`.
        let coro = unsafe { &mut *(*ext).coro.get() };
        if let Some(c) = coro {
            if c.started() && !c.done() {
                // A suspended coroutine dropped (blocked forever, or runtime shut down):
                // unwinding it here could run its destructors on a foreign thread, so leak it
                // (and its stack).
                return;
            }
        }
        // Not started: dropping it drops its closure, on the stack, which is still ours. The
        // stack itself is then leaked (dropping a `SlabStack` leaks its slot: memory-safe).
        drop(coro.take());
    }
}

#[cfg(test)]
mod tests {
    /// The header stays within a 96-byte pool cell (with the cell's count): every byte of it
    /// is fresh memory a million kept `JoinHandle`s touch.
    #[test]
    fn header_fits_its_cell() {
        assert!(std::mem::size_of::<super::Task>() <= 88);
        assert!(std::mem::size_of::<super::Ext>() <= crate::stack::EXT_BYTES);
    }
}
